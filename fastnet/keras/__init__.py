"""fastnet.keras: a faithful subset of Keras 3 on fastnet's engines.

``models.Sequential`` with ``layers.Dense`` / ``layers.Dropout`` /
``layers.Input``, ``compile(optimizer, loss, metrics=['accuracy'])``,
``fit`` / ``evaluate`` / ``predict`` / ``train_on_batch``,
``get_weights`` / ``set_weights``, ``summary``; Keras 3's optimizers
(``optimizers.SGD, RMSprop, Adagrad, Adam``: Keras's definitions, defaults
and argument names); ``utils.to_categorical`` / ``set_random_seed``;
``config.set_floatx``; ``datasets.mnist.load_data()`` offline.  Code written
for Keras runs with its imports changed::

    from fastnet.keras import models, layers
    from fastnet.keras.datasets import mnist

Anything outside the subset (a layer, loss, metric or argument fastnet does
not have) is a ValueError or NotImplementedError naming it.
"""

from . import callbacks, config, datasets, layers, losses, models, optimizers, utils  # noqa: F401
from .models import Sequential  # noqa: F401
from .layers import Input  # noqa: F401

__all__ = ["Sequential", "Input", "callbacks", "config", "datasets", "layers", "losses",
           "models", "optimizers", "utils"]
