"""fastnet.diagnostics on cases with known answers."""

import numpy as np
import pytest

import fastnet
from fastnet import ConvPoolLayer, FullyConnectedLayer, Network, SoftmaxLayer, diagnostics


def identity_net(mbs=7):
    """2 -> linear 2 (w = I, b = 0) -> softmax: layer 0 is the identity."""
    np.random.seed(0)
    first = FullyConnectedLayer(n_in=2, n_out=2, activation_fn=fastnet.linear)
    first.w.set_value(np.eye(2))
    first.b.set_value(np.zeros(2))
    out = SoftmaxLayer(n_in=2, n_out=2)
    out.w.set_value([[0.0, 1.0], [0.0, -1.0]])
    out.b.set_value([0.0, 0.5])
    return Network([first, out], mbs)


def test_count_params_784_16_16_10():
    np.random.seed(0)
    net = Network([FullyConnectedLayer(n_in=784, n_out=16),
                   FullyConnectedLayer(n_in=16, n_out=16),
                   SoftmaxLayer(n_in=16, n_out=10)], 10)
    assert diagnostics.count_params(net) == 13002


def test_grid_lines_cover_the_bounds():
    lines = diagnostics.grid_lines((-1, 3, 0, 2), n_lines=5, points_per_line=9)
    assert lines.shape == (10, 9, 2)
    vertical, horizontal = lines[:5], lines[5:]
    np.testing.assert_array_equal(vertical[:, :, 0], np.linspace(-1, 3, 5)[:, None].repeat(9, 1))
    np.testing.assert_array_equal(vertical[:, 0, 1], 0.0)
    np.testing.assert_array_equal(vertical[:, -1, 1], 2.0)
    np.testing.assert_array_equal(horizontal[:, :, 1], np.linspace(0, 2, 5)[:, None].repeat(9, 1))


def test_identity_network_layer_image_is_the_grid(float64):
    net = identity_net()
    lines = diagnostics.grid_lines((-2, 2, -1.5, 1.5), n_lines=6, points_per_line=13)
    images = diagnostics.layer_images(net, lines)
    assert len(images) == 3
    assert images[1].shape == lines.shape
    np.testing.assert_array_equal(images[0], lines)
    np.testing.assert_array_equal(images[1], lines)
    # the last image is the softmax of the known logits (0, -x + y... )
    logits = lines @ np.array([[0.0, 1.0], [0.0, -1.0]]) + [0.0, 0.5]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(images[2], e / e.sum(-1, keepdims=True), rtol=1e-12)


def test_layer_images_follow_net_output_float32():
    np.random.seed(3)
    net = Network([FullyConnectedLayer(n_in=2, n_out=3, activation_fn=fastnet.tanh),
                   FullyConnectedLayer(n_in=3, n_out=2, activation_fn=fastnet.sigmoid),
                   SoftmaxLayer(n_in=2, n_out=2)], 4)
    x = np.random.RandomState(0).uniform(-1, 1, size=(5, 6, 2))
    images = diagnostics.layer_images(net, x)
    assert [im.shape for im in images] == [(5, 6, 2), (5, 6, 3), (5, 6, 2), (5, 6, 2)]
    h = np.tanh(x.reshape(-1, 2) @ net.layers[0].w.get_value() + net.layers[0].b.get_value())
    np.testing.assert_allclose(images[1].reshape(-1, 3), h, rtol=1e-5, atol=1e-6)


def test_layer_interpolation_ends_at_the_layer_output(float64):
    np.random.seed(1)
    net = Network([FullyConnectedLayer(n_in=2, n_out=2, activation_fn=fastnet.tanh),
                   FullyConnectedLayer(n_in=2, n_out=2, activation_fn=fastnet.tanh),
                   SoftmaxLayer(n_in=2, n_out=2)], 5)
    x = np.random.RandomState(2).uniform(-1, 1, size=(11, 2))
    images = diagnostics.layer_images(net, x)
    frames = diagnostics.layer_interpolation(net.layers[1], images[1], steps=4)
    assert frames.shape == (9, 11, 2)
    np.testing.assert_array_equal(frames[0], images[1])
    layer = net.layers[1]
    affine = images[1] @ layer.w.get_value() + layer.b.get_value()
    np.testing.assert_allclose(frames[4], affine, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(frames[-1], images[2], rtol=1e-12, atol=1e-14)
    # half way through the affine stage: the average of identity and affine
    np.testing.assert_allclose(frames[2], 0.5 * (images[1] + affine), rtol=1e-12, atol=1e-14)


def test_predict_grid_and_decision_line(float64):
    net = identity_net()
    xx, yy, probs = diagnostics.predict_grid(net, (-1, 1, -1, 1), resolution=9)
    assert xx.shape == yy.shape == (9, 9) and probs.shape == (9, 9, 2)
    points = np.stack([xx.ravel(), yy.ravel()], 1)
    np.testing.assert_allclose(probs.reshape(-1, 2), net.output(points), rtol=1e-12)
    a, c = diagnostics.decision_line(net)
    # points on a . h + c = 0 (h = x here) get equal probabilities
    t = np.linspace(-1, 1, 7)
    direction = np.array([-a[1], a[0]])
    on_line = -c * a / np.dot(a, a) + t[:, None] * direction
    p = net.output(on_line)
    np.testing.assert_allclose(p[:, 0], p[:, 1], rtol=1e-12)


def random_output_layer(net):
    # a random output layer: network3's zero start sends no error back
    rng = np.random.RandomState(5)
    out = net.layers[-1]
    out.w.set_value(rng.normal(0, 1, size=out.w.shape))
    out.b.set_value(rng.normal(0, 1, size=out.b.shape))
    return net


def dense_net(mbs):
    np.random.seed(4)
    return random_output_layer(Network([
        FullyConnectedLayer(n_in=3, n_out=4, activation_fn=fastnet.sigmoid),
        FullyConnectedLayer(n_in=4, n_out=3, activation_fn=fastnet.tanh),
        SoftmaxLayer(n_in=3, n_out=2)], mbs))


def conv_net(mbs):
    np.random.seed(4)
    return random_output_layer(Network([
        ConvPoolLayer(image_shape=(mbs, 1, 6, 6), filter_shape=(2, 1, 3, 3), poolsize=(2, 2),
                      activation_fn=fastnet.tanh),
        SoftmaxLayer(n_in=2 * 2 * 2, n_out=2)], mbs))


def mean_cost(net, x, y):
    mbs = net.mini_batch_size
    n = x.shape[0] // mbs
    return np.mean([net.cost_and_grads(x[j * mbs:(j + 1) * mbs], y[j * mbs:(j + 1) * mbs])[0]
                    for j in range(n)])


def finite_difference(net, param, cost, h=1e-6):
    grad = np.zeros(param.shape)
    base = param.get_value()
    for idx in np.ndindex(param.shape):
        for sign in (1, -1):
            v = base.copy()
            v[idx] += sign * h
            param.set_value(v)
            grad[idx] += sign * cost() / (2 * h)
    param.set_value(base)
    return grad


@pytest.mark.parametrize("build, n_params", [(dense_net, [16, 15, 8]), (conv_net, [20, 18])],
                         ids=["dense", "conv"])
def test_gradient_norms_equal_finite_differences(float64, build, n_params):
    net = build(mbs=5)
    rng = np.random.RandomState(6)
    x = rng.normal(size=(12, net.n_in))     # 2 complete mini-batches; 2 rows left out
    y = rng.randint(0, 2, size=12)
    rows = diagnostics.gradient_norms(net, x, y, delta_samples=3)
    assert [r["layer"] for r in rows] == list(range(len(n_params)))
    assert [r["n_params"] for r in rows] == n_params

    def cost():
        return mean_cost(net, x, y)

    for k, layer in enumerate(net.layers):
        gw = finite_difference(net, layer.w, cost)
        gb = finite_difference(net, layer.b, cost)
        assert rows[k]["weight_grad_norm"] == pytest.approx(np.linalg.norm(gw), rel=1e-6)
        assert rows[k]["bias_grad_norm"] == pytest.approx(np.linalg.norm(gb), rel=1e-6)
        assert rows[k]["bias_grad_norm"] > 1e-4      # a case that could fail

    # mean |delta|: each sample's own dC_i/db by finite differences of its cost
    for k, layer in enumerate(net.layers):
        total = 0.0
        for i in range(3):
            xi, yi = np.repeat(x[i:i + 1], 5, 0), np.repeat(y[i:i + 1], 5)
            delta = finite_difference(net, layer.b, lambda: mean_cost(net, xi, yi))
            total += np.mean(np.abs(delta))
        assert rows[k]["mean_abs_delta"] == pytest.approx(total / 3, rel=1e-6)


def test_gradient_norms_are_zero_below_network3s_zero_softmax(float64):
    np.random.seed(0)
    net = Network([FullyConnectedLayer(n_in=3, n_out=4), SoftmaxLayer(n_in=4, n_out=2)], 2)
    rows = diagnostics.gradient_norms(net, np.ones((4, 3)), np.array([0, 1, 1, 1]))
    assert rows[0]["weight_grad_norm"] == 0.0 and rows[0]["bias_grad_norm"] == 0.0
    assert rows[1]["bias_grad_norm"] > 0.0


def test_majority_vote():
    p = np.array([[1, 2, 3, 0], [1, 2, 4, 5], [0, 3, 4, 6]])
    np.testing.assert_array_equal(diagnostics.majority_vote(p), [1, 2, 4, 0])


@pytest.mark.parametrize("call, message", [
    (lambda net: diagnostics.layer_images(net, np.zeros((3, 3))), "shape"),
    (lambda net: diagnostics.gradient_norms(net, np.zeros((3, 2)), np.zeros(3, int)),
     "less than one mini-batch"),
    (lambda net: diagnostics.gradient_norms(net, np.zeros((8, 2)), np.zeros(7, int)),
     "same number of rows"),
    (lambda net: diagnostics.grid_lines((1, 0, 0, 1)), "xmin < xmax"),
    (lambda net: diagnostics.plane_grid((0, 1, 0, 1), resolution=1), "resolution"),
    (lambda net: diagnostics.layer_interpolation(net.layers[1], np.zeros((2, 2))),
     "FullyConnectedLayer"),
    (lambda net: diagnostics.majority_vote(np.array([[0.5, 1.0]])), "integer labels"),
])
def test_bad_input_is_a_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(identity_net())
