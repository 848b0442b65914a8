"""The one exception type library code raises for user-facing problems.

The CLI turns it into a one-line message and exit code 2; library callers can catch it.
Messages name the file, field or shape at fault and, where possible, how to fix it.
"""

from __future__ import annotations


class EdgeanomError(Exception):
    """A problem with the user's input, files or environment (not a bug in edgeanom)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): libraries such
    as onnx, torch and OpenVINO raise multi-line messages, and a one-line error quotes only their first."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
