"""fastnet.plot: every picture is a PNG of the asked pixel size that shows
something (many distinct colours, not a blank canvas)."""

import struct
import sys

import numpy as np
import pytest

import fastnet
from fastnet import ConvPoolLayer, FullyConnectedLayer, Network, SoftmaxLayer, plot
from fastnet import datasets


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def check_png(path, width, height, min_colours=20):
    assert png_size(path) == (width, height)
    import matplotlib.image
    pixels = matplotlib.image.imread(path)[..., :3]
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) >= min_colours, "the picture is (nearly) blank"
    # ink: a real share of the pixels is not background white
    assert np.mean(pixels.min(axis=-1) < 0.9) > 0.01


def curve_net(seed=0):
    np.random.seed(seed)
    return Network([FullyConnectedLayer(n_in=2, n_out=2, activation_fn=fastnet.tanh),
                    FullyConnectedLayer(n_in=2, n_out=3, activation_fn=fastnet.tanh),
                    SoftmaxLayer(n_in=3, n_out=2)], 10)


@pytest.fixture(scope="module")
def curves():
    return datasets.two_curves(60, noise=0.05, seed=1)


def test_layer_images(tmp_path, curves):
    path = plot.layer_images(curve_net(), *curves, tmp_path / "layers.png", title="t",
                             figsize=(6, 2.5), dpi=50)
    check_png(path, 300, 125)


def test_layer_images_two_unit_last_layer_draws_the_decision_line(tmp_path, curves):
    np.random.seed(2)
    net = Network([FullyConnectedLayer(n_in=2, n_out=2, activation_fn=fastnet.tanh),
                   SoftmaxLayer(n_in=2, n_out=2)], 10)
    net.layers[-1].w.set_value([[1.0, -1.0], [0.5, 0.0]])
    check_png(plot.layer_images(net, *curves, tmp_path / "l.png", figsize=(4, 2), dpi=60),
              240, 120)


def test_decision_boundary(tmp_path, curves):
    check_png(plot.decision_boundary(curve_net(), *curves, tmp_path / "b.png",
                                     resolution=40, figsize=(3, 3), dpi=60), 180, 180)


def test_interpolation_frames_and_gif(tmp_path, curves):
    paths = plot.interpolation_frames(curve_net(), 0, *curves, tmp_path / "frames", steps=2,
                                      gif="bend.gif", figsize=(2, 2), dpi=50)
    assert len(paths) == 6 and paths[-1].endswith("bend.gif")
    for p in paths[:-1]:
        check_png(p, 100, 100)
    from PIL import Image
    with Image.open(paths[-1]) as gif:
        assert gif.n_frames == 5 and gif.size == (100, 100)


def test_gradient_norms(tmp_path):
    steps = [100, 200, 300]
    runs = {"sigmoid": (steps, [[1e-5, 1e-4, 1e-3], [2e-5, 2e-4, 2e-3], [3e-5, 3e-4, 4e-3]]),
            "ReLU": (steps, [[0.05, 0.04, 0.03]] * 3)}
    check_png(plot.gradient_norms(runs, tmp_path / "g.png", figsize=(6, 3), dpi=50), 300, 150)
    with pytest.raises(ValueError, match="shape"):
        plot.gradient_norms({"a": ([1, 2], [[1.0]])}, tmp_path / "bad.png")


def test_weight_images(tmp_path):
    np.random.seed(0)
    net = Network([FullyConnectedLayer(n_in=784, n_out=6), SoftmaxLayer(n_in=6, n_out=10)], 10)
    check_png(plot.weight_images(net, tmp_path / "w.png", columns=3, figsize=(3, 2), dpi=80),
              240, 160)
    with pytest.raises(ValueError, match="not a square image"):
        plot.weight_images(Network([FullyConnectedLayer(n_in=5, n_out=2),
                                    SoftmaxLayer(n_in=2, n_out=2)], 1), tmp_path / "x.png")


def test_conv_filters(tmp_path):
    np.random.seed(0)
    net = Network([ConvPoolLayer(image_shape=(2, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                                 poolsize=(2, 2)),
                   SoftmaxLayer(n_in=20 * 12 * 12, n_out=10)], 2)
    check_png(plot.conv_filters(net, tmp_path / "c.png", figsize=(8, 2), dpi=50), 400, 100)
    with pytest.raises(ValueError, match="no ConvPoolLayer"):
        plot.conv_filters(curve_net(), tmp_path / "none.png")


def test_learning_curves_from_history_dicts_and_lists(tmp_path):
    history = [{"epoch": 0, "validation_accuracy": 0.8, "test_accuracy": 0.79, "seconds": 1},
               {"epoch": 1, "validation_accuracy": 0.85, "test_accuracy": None, "seconds": 1},
               {"epoch": 2, "validation_accuracy": 0.9, "test_accuracy": 0.88, "seconds": 1}]
    check_png(plot.learning_curves(history, tmp_path / "one.png", figsize=(4, 3), dpi=50),
              200, 150)
    with_cost = {"validation_accuracy": [0.5, 0.7, 0.8], "training_cost": [2.0, 1.0, 0.5],
                 "training_accuracy": [0.6, 0.75, 0.85]}
    check_png(plot.learning_curves([history, with_cost], tmp_path / "two.png",
                                   labels=["a", "b"], figsize=(8, 3), dpi=50), 400, 150)
    # several dict-of-lists runs are several runs, not one run of epoch dicts
    check_png(plot.learning_curves([with_cost, {"validation_accuracy": [0.4, 0.6]}],
                                   tmp_path / "three.png", labels=["a", "b"],
                                   figsize=(8, 3), dpi=50), 400, 150)
    with pytest.raises(ValueError, match="2 labels for 1 runs"):
        plot.learning_curves(history, tmp_path / "bad.png", labels=["a", "b"])
    with pytest.raises(ValueError, match="one entry per epoch"):
        plot.learning_curves({"validation_accuracy": [0.5], "test_accuracy": [0.1, 0.2]},
                             tmp_path / "bad.png")


def test_learning_curves_from_a_training_history(tmp_path):
    train, valid, test = datasets.mnist_sample()
    np.random.seed(0)
    net = Network([FullyConnectedLayer(n_in=784, n_out=10), SoftmaxLayer(n_in=10, n_out=10)], 10)
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        history = net.SGD((train[0][:500], train[1][:500]), 3, 10, 0.5,
                          (valid[0][:100], valid[1][:100]), (test[0][:100], test[1][:100]))
    check_png(plot.learning_curves(history, tmp_path / "h.png", figsize=(4, 3), dpi=50),
              200, 150)


def digits():
    _, _, (x, y) = datasets.mnist_sample()
    return x[:50], y[:50]


def test_misclassified(tmp_path):
    x, y = digits()
    wrong = y.copy()
    wrong[[3, 7, 9]] = (y[[3, 7, 9]] + 1) % 10
    check_png(plot.misclassified(x, y, wrong, tmp_path / "m.png", figsize=(3, 1.5), dpi=80),
              240, 120)
    with pytest.raises(ValueError, match="no digit is misclassified"):
        plot.misclassified(x, y, y, tmp_path / "none.png")


def test_ensemble_errors(tmp_path):
    x, y = digits()
    members = np.stack([y, y, y])
    members[0, :5] = (y[:5] + 1) % 10          # one member wrong: the vote is right
    members[1, 10:12] = (y[10:12] + 2) % 10
    members[2, 10:12] = (y[10:12] + 2) % 10    # two members agree on a wrong label
    check_png(plot.ensemble_errors(x, y, members, tmp_path / "e.png", figsize=(3, 1.5),
                                   dpi=80), 240, 120)
    with pytest.raises(ValueError, match="makes no error"):
        plot.ensemble_errors(x, y, np.stack([y, y]), tmp_path / "n.png")


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch, curves):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "fastnet\[plot\]"'):
        plot.decision_boundary(curve_net(), *curves, tmp_path / "b.png")
