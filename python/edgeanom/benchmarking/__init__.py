"""`edgeanom bench`: whole-pipeline latency, throughput, memory and power, measured the way trtexec does.

Modules, one job each: `stats` (summary statistics), `runner` (times the pipeline stages), `tegrastats`
(the Jetson power sampler; its parsers are in `edgeanom.jetson`), `report` (the JSON document and its schema), `plot` (PNG figures) and `compare` (two reports side by side).
Definitions of every figure are in docs/bench.md.
"""
