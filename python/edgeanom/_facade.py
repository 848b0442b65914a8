"""Lets `edgeanom.train(...)`, `edgeanom.export(...)` and `edgeanom.evaluate(...)` be calls while `edgeanom.train`
etc. stay the subpackages they are: each subpackage's module object becomes callable, forwarding to the API."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(module_name: str, target: str) -> None:
    """Make `sys.modules[module_name]` callable; a call runs `target` ("module:function"), imported then."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            mod, _, fn = target.partition(":")
            return getattr(importlib.import_module(mod), fn)(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
