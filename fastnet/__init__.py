"""fastnet: network3.py from Nielsen's "Neural Networks and Deep Learning",
chapter 6 -- the same networks and numbers, trained fast on a CPU or a GPU.

The public surface is network3's: ``Network``, ``ConvPoolLayer``,
``FullyConnectedLayer``, ``SoftmaxLayer``, the activations ``sigmoid``,
``tanh``, ``ReLU``, ``linear``, ``load_data_shared`` and ``size``.  New names:
``set_floatx`` / ``get_floatx``, ``Shared``, ``get_engine``, ``datasets``,
``augment`` (on-the-fly distortions for ``SGD(..., augment=...)``).
"""

__version__ = "0.1.0"

from .activations import ReLU, linear, sigmoid, tanh
from .config import get_floatx, set_floatx
from .data import load_data_shared, size
from .engines import available_engines, get_engine
from .ensemble import Ensemble
from .layers import ConvPoolLayer, DenseOutputLayer, FullyConnectedLayer, SoftmaxLayer
from .network import Network, TrainingHistory
from .params import Shared
from .persist import load, save
from . import optim  # noqa: E402  (fastnet.optim: the optimizers)
from . import augment  # noqa: E402  (fastnet.augment: SGD's augment= transforms)

__all__ = [
    "Network", "ConvPoolLayer", "FullyConnectedLayer", "SoftmaxLayer", "DenseOutputLayer",
    "sigmoid", "tanh", "ReLU", "linear", "load_data_shared", "size",
    "set_floatx", "get_floatx", "Shared", "get_engine", "available_engines",
    "TrainingHistory", "load", "save", "optim", "Ensemble", "augment",
]
