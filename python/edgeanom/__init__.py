"""edgeanom: anomaly detection from the workstation to the edge device."""

from edgeanom._version import __version__
from edgeanom.errors import EdgeanomError

__all__ = ["EdgeanomError", "__version__"]
