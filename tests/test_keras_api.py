"""fastnet.keras's pinned API: Sequential / Dense / Dropout / Input,
compile / fit / evaluate / predict / train_on_batch, get_weights /
set_weights layouts and dtypes, summary's parameter counts, History,
utils, config, datasets.mnist offline, and a clear error for everything
outside the subset.  (The optimizers' numbers: test_keras_conformance.py.)"""

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnet
from fastnet import keras, optim
from fastnet.keras import layers, models, optimizers, utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def floatx64():
    old = fastnet.get_floatx()
    keras.config.set_floatx("float64")
    yield
    fastnet.set_floatx(old)


def mlp(*units, n_in=6, activation="relu", last="softmax"):
    model = models.Sequential()
    for i, u in enumerate(units):
        kw = {"input_shape": (n_in,)} if i == 0 else {}
        model.add(layers.Dense(u, activation=last if i == len(units) - 1 else activation, **kw))
    return model


def data(n=50, n_in=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    return x, y % classes


def softmax_forward(weights, x, hidden=lambda z: np.maximum(z, 0)):
    a = x.astype(np.float64)
    for k in range(0, len(weights), 2):
        z = a @ weights[k] + weights[k + 1]
        a = hidden(z) if k < len(weights) - 2 else z
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def summary_text(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


# ----------------------------------------------------------------------
# building, weights, summary
# ----------------------------------------------------------------------
def test_seed003_and_seed001_parameter_counts():
    chollet = mlp(512, 10, n_in=784)
    text = summary_text(chollet)
    assert "Trainable params: 407,050" in text and "Total params: 407,050" in text
    assert "(None, 512)" in text and "401,920" in text and "5,130" in text
    seed001 = models.Sequential([layers.Input(shape=(784,)),
                                 layers.Dense(16, activation="sigmoid"),
                                 layers.Dense(16, activation="sigmoid"),
                                 layers.Dense(10, activation="softmax")])
    assert "Trainable params: 13,002" in summary_text(seed001)
    assert seed001.count_params() == 13002


def test_input_shape_builds_at_once_and_set_weights_before_fit():
    model = mlp(4, 3)
    w = model.get_weights()
    assert [a.shape for a in w] == [(6, 4), (4,), (4, 3), (3,)]
    assert all(a.dtype == np.float32 for a in w)
    # Keras's initialisers: glorot_uniform kernels, zero biases
    for kernel, bias in zip(w[0::2], w[1::2]):
        limit = np.sqrt(6.0 / sum(kernel.shape))
        assert np.all(np.abs(kernel) <= limit) and np.abs(kernel).max() > limit / 2
        assert not bias.any()
    new = [np.full_like(a, 0.01 * (i + 1)) for i, a in enumerate(w)]
    model.set_weights(new)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    # layer-level weights, Keras's layout
    kernel, bias = model.layers[0].get_weights()
    np.testing.assert_array_equal(kernel, new[0])
    model.layers[1].set_weights([np.ones((4, 3)), np.zeros(3)])
    np.testing.assert_array_equal(model.get_weights()[2], np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"kernel has shape \(3, 4\), expected \(4, 3\)"):
        model.layers[1].set_weights([np.ones((3, 4)), np.zeros(3)])
    with pytest.raises(ValueError, match="4 weight arrays, got 2"):
        model.set_weights(new[:2])


def test_float64_models(floatx64):
    model = mlp(4, 3)
    assert all(a.dtype == np.float64 for a in model.get_weights())
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = data()
    model.fit(x, y, epochs=1, verbose=0)
    assert all(a.dtype == np.float64 for a in model.get_weights())
    assert model.predict(x, verbose=0).dtype == np.float64
    assert keras.config.floatx() == "float64" == fastnet.get_floatx()


def test_set_random_seed_reproduces_weights_and_shuffles_and_spares_numpy():
    x, y = data()
    runs = []
    for _ in range(2):
        utils.set_random_seed(7)
        model = mlp(5, 3)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        state = np.random.get_state()[1].copy()
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        # compiling and fitting do not draw from NumPy's global generator
        np.testing.assert_array_equal(np.random.get_state()[1], state)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    utils.set_random_seed(8)
    assert not np.array_equal(mlp(5, 3).get_weights()[0], runs[0][0][:, :5])


# ----------------------------------------------------------------------
# training and inference
# ----------------------------------------------------------------------
def test_fit_history_evaluate_predict():
    utils.set_random_seed(1)
    x, y = data(n=80)
    yv = utils.to_categorical(y, 3)
    model = mlp(8, 3)
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        history = model.fit(x, yv, epochs=3, batch_size=16, validation_split=0.25)
    assert isinstance(history, keras.callbacks.History)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == 3 for v in history.history.values()) and history.epoch == [0, 1, 2]
    text = out.getvalue()
    assert "Epoch 1/3" in text and "Epoch 3/3" in text
    assert "4/4 ━━━━━━━━━━━━━━━━━━━━" in text and "- val_loss: " in text   # 60 rows, 16 a batch
    # validation_split: the last 25 % (rows 60-79), as Keras
    probs = model.predict(x[60:], verbose=0)
    np.testing.assert_allclose(probs, softmax_forward(model.get_weights(), x[60:]),
                               rtol=2e-5, atol=1e-6)
    loss, acc = model.evaluate(x[60:], yv[60:], verbose=0)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(20), y[60:]])), rel=1e-5)
    assert acc == pytest.approx(np.mean(np.argmax(probs, 1) == y[60:]))
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    assert model.evaluate(x, yv, verbose=0, return_dict=True).keys() == {"accuracy", "loss"}


def test_fit_includes_the_last_partial_batch_and_reports_keras_epoch_means():
    """50 rows in batches of 16: 4 steps (16, 16, 16, 2), as Keras; the epoch
    loss is the mean over samples of the steps' losses (Keras 3's Mean
    weighted by batch size)."""
    x, y = data(n=50)
    utils.set_random_seed(3)
    a = mlp(5, 3)
    b = mlp(5, 3)
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.compile(optimizer=optimizers.SGD(learning_rate=0.1, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = a.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    steps = [b.train_on_batch(x[i:i + 16], y[i:i + 16]) for i in range(0, 50, 16)]
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
    sizes = np.array([16, 16, 16, 2])
    losses, accs = np.array(steps).T
    assert history.history["loss"][0] == pytest.approx(np.sum(losses * sizes) / 50, rel=1e-6)
    assert history.history["accuracy"][0] == pytest.approx(np.sum(accs * sizes) / 50)


def test_train_on_batch_reports_the_batch_before_its_step():
    x, y = data(n=10)
    model = mlp(5, 3)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = model.evaluate(x, y, verbose=0)
    w0 = model.get_weights()
    got = model.train_on_batch(x, y)
    assert got == pytest.approx(before, rel=1e-5)
    assert not np.array_equal(w0[0], model.get_weights()[0])
    # a batch bigger than any seen so far: the network grows, the optimizer state stays
    x2, y2 = data(n=200, seed=4)
    model.train_on_batch(x2, y2)
    assert model._net.mini_batch_size == 200
    assert model._net._plan.opt_step == 2


def test_compile_takes_names_keras_objects_and_fastnet_optim():
    for name, cls, defaults in [
            ("rmsprop", optimizers.RMSprop, dict(learning_rate=0.001, rho=0.9, epsilon=1e-7)),
            ("sgd", optimizers.SGD, dict(learning_rate=0.01, momentum=0.0, nesterov=False)),
            ("adam", optimizers.Adam, dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                                           epsilon=1e-7)),
            ("adagrad", optimizers.Adagrad, dict(learning_rate=0.001, epsilon=1e-7,
                                                 initial_accumulator_value=0.1))]:
        model = mlp(4, 3)
        model.compile(optimizer=name, loss="sparse_categorical_crossentropy")
        assert type(model.optimizer) is cls
        for k, v in defaults.items():
            assert getattr(model.optimizer, k) == v, (name, k)
    x, y = data()
    torch_adam = optim.Adam(lr=0.01)
    model = mlp(4, 3)
    model.compile(optimizer=torch_adam, loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert model.optimizer is torch_adam


def test_binary_crossentropy_and_mse_outputs_learn_xor():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    t = np.array([0, 1, 1, 0], np.float32)
    for loss in ("binary_crossentropy", "mse"):
        utils.set_random_seed(5)
        model = models.Sequential([layers.Dense(8, activation="tanh", input_shape=(2,)),
                                   layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer=optimizers.Adam(learning_rate=0.05), loss=loss,
                      metrics=["accuracy"])
        history = model.fit(x, t, epochs=300, batch_size=4, verbose=0)
        assert history.history["accuracy"][-1] == 1.0, loss
        assert history.history["loss"][-1] < 0.5 * history.history["loss"][0], loss
        assert model.predict(x, verbose=0).shape == (4, 1)
        assert model.evaluate(x, t, verbose=0)[1] == 1.0


def test_dropout_keeps_keras_inference_and_weights():
    utils.set_random_seed(2)
    model = models.Sequential([layers.Dense(8, activation="relu", input_shape=(6,)),
                               layers.Dropout(0.5), layers.Dense(3, activation="softmax")])
    weights = model.get_weights()
    with pytest.warns(UserWarning, match="network3's dropout"):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    x, y = data()
    # at inference Keras's Dropout is the identity: predict = the plain forward pass
    np.testing.assert_allclose(model.predict(x, verbose=0), softmax_forward(weights, x),
                               rtol=2e-5, atol=1e-6)
    assert "(Dropout)" in summary_text(model)
    model.fit(x, y, epochs=1, verbose=0)


# ----------------------------------------------------------------------
# utils and datasets
# ----------------------------------------------------------------------
def test_to_categorical():
    got = utils.to_categorical([2, 0, 1])
    np.testing.assert_array_equal(got, np.eye(3, dtype=np.float32)[[2, 0, 1]])
    assert utils.to_categorical(np.array([1]), 4).shape == (1, 4)
    with pytest.raises(ValueError, match="num_classes"):
        utils.to_categorical([5], 3)
    with pytest.raises(ValueError, match="integer class labels"):
        utils.to_categorical([0.5])


def test_mnist_offline_uses_the_bundled_digits_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (xtr, ytr), (xte, yte) = keras.datasets.mnist.load_data()
    assert xtr.shape == (8000, 28, 28) and xte.shape == (2000, 28, 28)
    assert xtr.dtype == np.uint8 and ytr.shape == (8000,) and yte.dtype.kind in "iu"
    assert "bundled with fastnet" in capsys.readouterr().err
    # the same digits as fastnet.datasets.mnist_sample (train, then valid + test)
    (sx, sy), _, _ = fastnet.datasets.mnist_sample()
    np.testing.assert_array_equal(xtr.reshape(8000, 784) / np.float32(255), sx)
    np.testing.assert_array_equal(ytr, sy)


def test_mnist_reads_a_keras_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    os.makedirs(tmp_path / "datasets")
    imgs = np.arange(3 * 784, dtype=np.uint8).reshape(3, 28, 28)
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=imgs, y_train=np.array([1, 2, 3]),
             x_test=imgs[:1], y_test=np.array([4]))
    (xtr, ytr), (xte, yte) = keras.datasets.mnist.load_data()
    np.testing.assert_array_equal(xtr, imgs)
    assert list(ytr) == [1, 2, 3] and list(yte) == [4]
    assert "cached MNIST" in capsys.readouterr().err
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=imgs)
    with pytest.raises(ValueError, match="lacks the array"):
        keras.datasets.mnist.load_data()


# ----------------------------------------------------------------------
# everything outside the subset is a clear error
# ----------------------------------------------------------------------
def test_unsupported_things_are_clear_errors():
    x, y = data()
    with pytest.raises(NotImplementedError, match="not supported; fastnet.keras has Dense"):
        models.Sequential().add(object())
    with pytest.raises(NotImplementedError, match="activation 'elu'"):
        layers.Dense(3, activation="elu")
    with pytest.raises(NotImplementedError, match="use_bias=False"):
        layers.Dense(3, use_bias=False)
    with pytest.raises(NotImplementedError, match="kernel_regularizer"):
        layers.Dense(3, kernel_regularizer="l2")
    with pytest.raises(ValueError, match="unknown argument 'units_typo'"):
        layers.Dense(3, units_typo=4)
    with pytest.raises(NotImplementedError, match="flat inputs"):
        layers.Dense(3, input_shape=(28, 28))
    model = mlp(4, 3)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.compile(loss="hinge")
    with pytest.raises(NotImplementedError, match="loss .* is not supported"):
        model.compile(loss=lambda a, b: 0)
    with pytest.raises(NotImplementedError, match="metric 'mae'"):
        model.compile(loss="mse", metrics=["mae"])
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        model.compile(optimizer="adamw", loss="sparse_categorical_crossentropy")
    with pytest.raises(NotImplementedError, match="mse' on a softmax"):
        model.compile(loss="mse")
    with pytest.raises(NotImplementedError, match="jit_compile=False"):
        model.compile(loss="sparse_categorical_crossentropy", jit_compile=False)
    with pytest.raises(RuntimeError, match="compile the model"):
        model.fit(x, y, verbose=0)
    with pytest.raises(NotImplementedError, match="activation='softmax'"):
        mlp(4, 3, last="sigmoid").compile(loss="categorical_crossentropy")
    model.compile(loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="to_categorical"):
        model.fit(x, y, verbose=0)
    with pytest.raises(NotImplementedError, match="callbacks"):
        model.fit(x, utils.to_categorical(y, 3), callbacks=[object()], verbose=0)
    with pytest.raises(ValueError, match="unknown argument 'epoch'"):
        model.fit(x, utils.to_categorical(y, 3), epoch=3)
    with pytest.raises(NotImplementedError, match="shuffle='batch'"):
        model.fit(x, utils.to_categorical(y, 3), shuffle="batch")
    with pytest.raises(ValueError, match="features per row"):
        model.predict(np.zeros((2, 5)))
    with pytest.raises(NotImplementedError, match="clipnorm"):
        optimizers.Adam(clipnorm=1.0)
    with pytest.raises(NotImplementedError, match="centered"):
        optimizers.RMSprop(centered=True)
    with pytest.raises(NotImplementedError, match="schedules"):
        optimizers.SGD(learning_rate=lambda step: 0.1)
    with pytest.raises(ValueError, match="learning_rate must be"):
        optimizers.Adagrad(learning_rate=-1)


def test_seed003_example_runs_quick():
    env = dict(os.environ, OMP_NUM_THREADS="1", KERAS_HOME=os.path.join(ROOT, "no-such-dir"))
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "seed003_keras.py"),
                           "--quick", "--seed", "0"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Trainable params: 407,050" in done.stdout
    assert "63/63 ━━━━━━━━━━━━━━━━━━━━" in done.stdout
    assert "bundled with fastnet" in done.stderr
    acc = float(done.stdout.rsplit("test_acc:", 1)[1])
    assert acc > 0.85, done.stdout
