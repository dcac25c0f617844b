"""Activation functions are matched by identity, not by name (issue #15).

fastnet runs its activations inside compiled kernels, so it must know
*which* function a user means.  A user's own function that merely shares a
name with one of fastnet's (a leaky ``ReLU``, LeCun's scaled ``tanh``) would
otherwise be silently replaced by fastnet's: it is refused instead.  What is
accepted: fastnet's objects (network3's names are those), their names as
strings, NumPy's and math's tanh and SciPy's expit by identity, and
Theano / PyTensor objects (what network3 itself passed) by name.
"""

import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import fastnet
from fastnet import ConvPoolLayer, FullyConnectedLayer, activations

MBS = 2


def fc(fn):
    return FullyConnectedLayer(4, 3, activation_fn=fn).activation_fn


def conv(fn):
    return ConvPoolLayer((2, 1, 3, 3), (MBS, 1, 6, 6), activation_fn=fn).activation_fn


@pytest.mark.parametrize("fn, ours", [
    (fastnet.sigmoid, fastnet.sigmoid), (fastnet.tanh, fastnet.tanh),
    (fastnet.ReLU, fastnet.ReLU), (fastnet.linear, fastnet.linear),
    ("sigmoid", fastnet.sigmoid), ("tanh", fastnet.tanh), ("ReLU", fastnet.ReLU),
    ("relu", fastnet.ReLU), ("linear", fastnet.linear),
    (np.tanh, fastnet.tanh), (math.tanh, fastnet.tanh)])
def test_accepted_by_identity_or_name_string(fn, ours):
    assert fc(fn) is ours
    assert conv(fn) is ours


def test_scipy_expit_is_sigmoid():
    from scipy.special import expit
    assert fc(expit) is fastnet.sigmoid
    z = np.linspace(-30, 30, 61)
    np.testing.assert_allclose(fastnet.sigmoid(z), expit(z), rtol=1e-12)


def _leaky_relu(z):
    return np.where(z > 0, z, 0.01 * z)


def _lecun_tanh(z):
    return 1.7159 * np.tanh(2.0 * z / 3.0)


def _named(fn, name):
    fn.__name__ = name
    fn.__qualname__ = name
    return fn


class _CallableNamedSigmoid(object):
    __name__ = "sigmoid"
    name = "sigmoid"

    def __call__(self, z):
        return 0.5 * (1 + np.tanh(z))


@pytest.mark.parametrize("fn", [
    _named(_leaky_relu, "ReLU"), _named(_lecun_tanh, "tanh"),
    _named(lambda z: 2 * z, "linear"), _named(lambda z: z, "relu"),
    _CallableNamedSigmoid(), np.exp, math.exp, abs])
def test_own_function_sharing_a_name_is_refused(fn):
    for build in (fc, conv):
        with pytest.raises(ValueError) as info:
            build(fn)
        msg = str(info.value)
        assert repr(fn) in msg
        for name in ("sigmoid", "tanh", "ReLU", "linear"):
            assert name in msg
        assert "compiled kernels" in msg and "arbitrary Python" in msg


def test_unknown_name_string_lists_what_is_supported():
    with pytest.raises(ValueError, match=r"'softplus'.*sigmoid, tanh, ReLU and linear"):
        fc("softplus")


def _foreign(module, name, as_object):
    """An object as Theano / PyTensor define them: an Elemwise op instance
    (its class lives in the library) or a plain function of the library."""
    if as_object:
        cls = type("Elemwise", (object,), {"__module__": module,
                                            "__call__": lambda self, z: z})
        op = cls()
        op.name = name
        op.__module__ = "tensor"   # Theano set this on its ops for epydoc
        return op
    fn = types.FunctionType((lambda z: z).__code__, {}, name)
    fn.__module__ = module
    return fn


@pytest.mark.parametrize("module, name, as_object, ours", [
    ("theano.tensor.elemwise", "sigmoid", True, fastnet.sigmoid),  # theano.tensor.nnet.sigmoid
    ("theano.tensor.elemwise", "tanh", True, fastnet.tanh),        # T.tanh
    ("theano.tensor.nnet.nnet", "relu", False, fastnet.ReLU),      # T.nnet.relu
    ("pytensor.tensor.elemwise", "tanh", True, fastnet.tanh),
    ("pytensor.tensor.math", "sigmoid", False, fastnet.sigmoid)])
def test_theano_and_pytensor_objects_by_name(module, name, as_object, ours):
    assert fc(_foreign(module, name, as_object)) is ours


@pytest.mark.parametrize("module, name", [
    ("theano.tensor.nnet.sigm", "ultra_fast_sigmoid"),   # a different function
    ("theanotools", "tanh"),                            # not Theano's package
    ("mylib.theano", "ReLU")])
def test_other_modules_or_names_refused(module, name):
    with pytest.raises(ValueError, match="compiled kernels"):
        fc(_foreign(module, name, False))


def test_network3_shim_gives_fastnets_objects():
    code = ("import network3, fastnet\n"
            "from network3 import ReLU, sigmoid, tanh, linear, FullyConnectedLayer\n"
            "assert ReLU is fastnet.ReLU and sigmoid is fastnet.sigmoid\n"
            "assert tanh is fastnet.tanh and linear is fastnet.linear\n"
            "assert FullyConnectedLayer(4, 3, activation_fn=ReLU).activation_fn is ReLU\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_activation_objects_still_pickle_by_name():
    import pickle
    for act in (fastnet.sigmoid, fastnet.tanh, fastnet.ReLU, fastnet.linear):
        assert pickle.loads(pickle.dumps(act)) is act
    assert activations.by_name("relu") is fastnet.ReLU
