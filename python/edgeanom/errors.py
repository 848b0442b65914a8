"""The one exception type library code raises for user-facing problems.

The CLI turns it into a one-line message and exit code 2; library callers can catch it.
Messages name the file, field or shape at fault and, where possible, how to fix it.
"""

from __future__ import annotations


class EdgeanomError(Exception):
    """A problem with the user's input, files or environment (not a bug in edgeanom)."""
