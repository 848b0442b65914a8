"""Start the `tritonserver` bundled in the nvidia-pytriton wheel on an exported model repository, for the
Triton tests. Runs in the Triton venv (numpy<2, onnxruntime), not in the test's Python:

    python triton_serve.py REPOSITORY MODEL GRPC_PORT HTTP_PORT METRICS_PORT

That build has only the Python backend, so the repository's `<name>-python` model (written by `edgeanom export
--triton`: model.py running the graph in ONNX Runtime) is the one loaded. The wheel keeps one backend stub per
Python version; the one of this Python is put in place, as pytriton itself does.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from pytriton.utils.distribution import get_libs_path, get_root_module_path, get_stub_path


def main() -> None:
    repo, model, grpc, http, metrics = sys.argv[1], sys.argv[2], *sys.argv[3:6]
    server = Path(tempfile.mkdtemp(prefix="tritonserver-")) / "tritonserver"
    skip = shutil.ignore_patterns("python_backend_stubs", "triton_python_backend_stub")
    shutil.copytree(get_root_module_path() / "tritonserver", server, ignore=skip)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy(get_stub_path(version), server / "backends" / "python" / "triton_python_backend_stub")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [env.get("LD_LIBRARY_PATH"), get_libs_path().as_posix()]))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # the stub's Python: this venv's
    command = [
        str(server / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={server / 'backends'}",
        "--model-control-mode=explicit",
        f"--load-model={model}",
        f"--grpc-port={grpc}",
        f"--http-port={http}",
        f"--metrics-port={metrics}",
        "--allow-metrics=false",
    ]
    os.execve(command[0], command, env)


if __name__ == "__main__":
    main()
