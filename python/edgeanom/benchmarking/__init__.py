"""`edgeanom bench`: whole-pipeline latency, throughput, memory and power, measured the way trtexec does.

Modules, one job each: `stats` (summary statistics), `runner` (times the pipeline stages), `tegrastats`
and `jetson` (parsers and the power sampler for NVIDIA Jetson), `cuda_timing` (CUDA-event stage timer),
`report` (the JSON document and its schema), `plot` (PNG figures) and `compare` (two reports side by side).
Definitions of every figure are in docs/bench.md.
"""
