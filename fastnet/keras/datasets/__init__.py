"""keras.datasets: ``mnist`` (offline)."""

from . import mnist  # noqa: F401
