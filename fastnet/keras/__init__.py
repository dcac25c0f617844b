"""fastnet.keras: a faithful subset of Keras 3 on fastnet's engines."""

from . import optimizers  # noqa: F401
