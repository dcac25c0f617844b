"""network3, as the book imports it -- backed by fastnet.

``import network3`` then ``from network3 import Network, ConvPoolLayer,
FullyConnectedLayer, SoftmaxLayer, ReLU`` and the book's code runs unchanged.
fastnet prints no import banner: network3's "Trying to run under a GPU" line
described Theano's device choice, which fastnet makes with ``device=``.
"""

from fastnet import (ConvPoolLayer, FullyConnectedLayer, Network, ReLU,  # noqa: F401
                     SoftmaxLayer, linear, load_data_shared, sigmoid, size, tanh)
from fastnet.config import get_floatx, set_floatx  # noqa: F401

GPU = False  # network3's flag; fastnet chooses the device with Network(..., device=)
