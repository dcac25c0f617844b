"""keras.datasets: ``mnist`` (offline)."""

from . import mnist

__all__ = ["mnist"]
