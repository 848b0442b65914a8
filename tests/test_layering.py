"""The package's imports run in one direction: every import points down a layer (or within one), never up, and
no two modules import each other, directly or through others. Function-level imports count too.

Layers, bottom to top (docs/architecture.md draws the same map):
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "edgeanom"

LAYERS: list[tuple[str, ...]] = [
    # 0: small utilities
    ("_version", "errors", "jsonutil", "fileio", "threads", "jetson", "_scoring", "_facade"),
    # 1: the bundle and what it describes: data, preprocessing, the C++ wrapper, thresholds, models
    ("bundle", "data", "holdout", "calibration", "preprocess", "scoring", "models"),
    # 2: turning a batch into scores: scorer, the adaptive stage, backends, TensorRT engines, the machine's description
    ("scorer", "adaptive", "backends", "engines", "environment"),
    # 3: the deployed path: batched scoring and the streaming runtime
    ("inference", "runtime"),
    # 4: the jobs: train, export, evaluate, bench, demo, and the Python API over them
    ("train", "export", "evaluate", "benchmarking", "demo", "api"),
    # 5: the command line and the package's face
    ("cli", "__init__", "__main__"),
]


def _layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"module edgeanom.{module.split('.', 1)[-1]} is in no layer: add it to LAYERS")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every edgeanom module `path` imports, at any depth (TYPE_CHECKING imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "edgeanom"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "edgeanom":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _exists(candidate) else base)
    return {m for m in found if m != module}


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    stub = (PACKAGE / rel).with_suffix(".pyi").is_file()  # the compiled core has only its stub here
    return stub or (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        graph[module] = _imports(path, module)
    return graph


def test_every_import_points_down_or_sideways() -> None:
    upward = []
    for module, targets in _graph().items():
        for target in targets:
            if _layer_of(target) > _layer_of(module):
                upward.append(f"{module} (layer {_layer_of(module)}) -> {target} (layer {_layer_of(target)})")
    assert not upward, "imports that point up a layer:\n" + "\n".join(sorted(upward))


def test_no_import_cycles_between_packages_or_modules() -> None:
    """Cycles are checked between top-level packages (train <-> models) and between single modules."""
    graph = _graph()

    def top(m: str) -> str:
        parts = m.split(".")
        return ".".join(parts[:2])

    package_graph: dict[str, set[str]] = {}
    for module, targets in graph.items():
        package_graph.setdefault(top(module), set()).update(top(t) for t in targets if top(t) != top(module))
    for g, what in ((package_graph, "packages"), (graph, "modules")):
        cycle = _find_cycle(g)
        assert cycle is None, f"import cycle between {what}: {' -> '.join(cycle or [])}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.endswith(".__init__") or nxt == "edgeanom":
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The test above can fail: an import from the runtime up into train is reported."""
    fake = tmp_path / "edgeanom" / "runtime"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from edgeanom.train.api import train_bundle\n")
    assert _imports(fake / "bad.py", "edgeanom.runtime.bad") == {"edgeanom.train.api"}
    assert _layer_of("edgeanom.train.api") > _layer_of("edgeanom.runtime.bad")
    assert _find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


BLOCK_TORCH = """
import builtins, sys
real = builtins.__import__
def no_torch(name, *args, **kwargs):
    if name == "torch" or name.startswith("torch."):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")
    return real(name, *args, **kwargs)
builtins.__import__ = no_torch
"""


@pytest.mark.slow
def test_runtime_and_run_work_without_torch(tmp_path: Path) -> None:
    """`edgeanom.runtime` imports, and `edgeanom run` scores a sensor CSV end to end, with torch unimportable
    (through the adaptive stage too)."""
    import numpy as np

    from bundle_factory import make_bundle
    from edgeanom.adaptive import section
    from edgeanom.bundle import load_bundle

    bundle = make_bundle(tmp_path / "model", kind="vector", features=3)
    loaded = load_bundle(bundle)
    loaded.meta["score"]["adaptive"] = {**section("vector", None, np.ones(10)), "min_history": 5}
    loaded.save()
    csv = tmp_path / "rows.csv"
    csv.write_text("c0,c1,c2\n" + "\n".join(f"{i % 3},{i % 5},{i % 7}" for i in range(20)) + "\n")
    events = tmp_path / "events.jsonl"
    script = BLOCK_TORCH + (
        "import edgeanom.runtime, edgeanom.runtime.launch, edgeanom.api\n"
        "from edgeanom.cli.main import app\n"
        "sys.argv = ['edgeanom', 'run', '--model', sys.argv[1], '--sensor', sys.argv[2], '--events', sys.argv[3],"
        " '--status-interval', '0']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(bundle), str(csv), str(events)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [x["kind"] for x in lines]
    assert kinds.count("sample") == 20 and kinds[-1] == "summary"
    assert all("surprise" in x for x in lines if x["kind"] == "sample")
