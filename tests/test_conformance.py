"""fastnet against network3's own numbers: tests/conformance (see its README
and PROVENANCE.md; FASTNET_CONFORMANCE_DIR points elsewhere).

Every case is driven through fastnet's public API exactly as a network3 user
would: ``np.random.seed(seed)``, the layer constructor calls in order,
``Network(layers, mbs, engine=...)``, ``net.SGD(...)``; then the parameters
(``net.params``), ``net.cost_and_grads``, ``net.output``, ``net.predict``,
``net.batch_accuracies`` / ``net.accuracy`` and what SGD printed are compared
with the golden arrays at the README's tolerances
(``max|a - g| <= rtol * max|g| + atol``; initial parameters bitwise; labels,
accuracies and log lines exactly).

Parametrised over the 16 golden files (``<case>-<floatX>``) and the engines
(reference; cpu when built -- in CI a missing engine fails).  f and h (1,600
and 800 steps on the whole 8,000-row recipe, rebuilt here from the
bundled digits, fastnet/_data, and checked against the stored sha256) are marked ``slow``; they
run by default, ``-m "not slow"`` leaves them out.

Time budget (2 cores, unloaded): everything but h takes a few seconds per
engine (f: 0.5 s on either engine).  h takes ~30 s in float64 and ~20 s in
float32 on the NumPy reference engine, ~25 s in float64 and ~2 s in float32 on
the cpu engine.  The reference runs h in float64 only (the strict,
tie-consistent check); h float32 -- an accuracy-level check -- runs on the
compiled engines.  ``FASTNET_TEST_FULL=1`` runs the reference on h float32 too.
"""

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import conformance_util as cu

# never a silent skip: without its data this file is an error, in CI or not
if not cu.conformance_present():
    raise RuntimeError(cu.conformance_missing_reason())

import fastnet  # noqa: E402

ENGINES = cu.engine_names()
RUN_STAGES = ("step", "epoch", "multi", "long")

# h (800 steps of the conv2 ReLU net): float64 is held to rtol 1e-10 only on
# engines whose convolution is tie-consistent (README note 7: identical patches
# must give bitwise-identical sums, or max-pool ties break differently and the
# run drifts to 4e-2 by step 800).  Measured on h float64, 800 steps:
#   reference  max|delta|/max|golden| <= 2.6e-14 on every parameter, probs at
#              1e-10, stdout and accuracies identical (92.30% / 93.30%)
#   cpu        max|delta|/max|golden| <= 2.6e-14 on every parameter, the same
# so both get the strict check.  Any other engine (cuda) gets the +-2-point
# check, and a warning when it would have passed the strict one.
# float32 is accuracy-level on every engine (network3's own float32 and float64
# runs differ by 0.9 points); measured, against golden 91.40% / 92.50%:
#   reference 93.10% / 93.10%,  cpu 92.60% / 92.40%.
H_STRICT_ENGINES = {"reference", "cpu"}
# h float32 on the reference engine: accuracy-level only and 20 s; see the docstring.
H_FLOAT32_ENGINES_SKIPPED = set() if os.environ.get("FASTNET_TEST_FULL") else {"reference"}


@pytest.fixture(autouse=True)
def _restore_floatx():
    old = fastnet.get_floatx()
    yield
    fastnet.set_floatx(old)


@pytest.fixture
def engine(request):
    cu.require_engine(request.param)
    return request.param


# the engine's id comes last: test_run[c_conv2_relu_l2-float64-epoch-reference]
on_engines = pytest.mark.parametrize("engine", ENGINES, indirect=True)


def _cases(has=None):
    """(case, floatX) params whose file holds ``has`` (an array name or a run)."""
    out = []
    for case in cu.CASES:
        for fx in cu.FLOATXS:
            if has is not None:
                names = cu.array_names(case, fx)
                if has not in names:
                    continue
            marks = [pytest.mark.slow] if case in cu.SLOW_CASES else []
            out.append(pytest.param(case, fx, id="%s-%s" % (case, fx), marks=marks))
    return out


def _run_cases():
    out = []
    for case in cu.CASES:
        for fx in cu.FLOATXS:
            names = cu.array_names(case, fx)
            for stage in RUN_STAGES:
                if stage + "_stdout" not in names or case == "e_dropout_inference":
                    continue
                marks = [pytest.mark.slow] if case in cu.SLOW_CASES else []
                out.append(pytest.param(case, fx, stage, id="%s-%s-%s" % (case, fx, stage),
                                        marks=marks))
    return out


def _label(g, engine):
    return "%s-%s [%s]" % (g.case, g.fx, engine)


def _tol(g, stage):
    rtol = cu.RTOL_LONG_F[g.fx] if (g.case == "f_fc_long" and stage == "long") else cu.RTOL[g.fx]
    return rtol, cu.ATOL[g.fx]


def _cross(g):
    """For a float32 file: the float64 file of the same case, the README's
    'better reference' (same rtol); None otherwise."""
    if g.fx != "float32" or g.case in ("h_conv2_relu_long",):
        return None
    return cu.golden(g.case, "float64")


def _check_inference(rep, g, net, stage, rtol, atol, cross=None, data=None):
    """<stage>_probs / _yout / _hidden on the first test rows; accuracies."""
    train, valid, test = data if data is not None else g.data()
    tx = test[0]
    if stage + "_probs" in g:
        rows = g[stage + "_probs"].shape[0]
        probs = net.output(tx[:rows])
        rep.array(stage, stage + "_probs", probs, g[stage + "_probs"], rtol, atol)
        if cross is not None:
            rep.array(stage, stage + "_probs vs float64 file", probs, cross[stage + "_probs"],
                      rtol, atol, check_dtype=False)
        rep.exact(stage, stage + "_yout (predict)", net.predict(tx[:rows]).astype(np.int64),
                  g[stage + "_yout"])
        rep.exact(stage, stage + "_yout (argmax of output)", np.argmax(probs, axis=1).astype(np.int64),
                  g[stage + "_yout"])
    if stage + "_hidden" in g:
        rows = g[stage + "_hidden"].shape[0]
        hidden = net.output(tx[:rows], layer=-2)
        rep.array(stage, stage + "_hidden", hidden, g[stage + "_hidden"], rtol, atol)
        if cross is not None:
            rep.array(stage, stage + "_hidden vs float64 file", hidden, cross[stage + "_hidden"],
                      rtol, atol, check_dtype=False)
    for part, pair in (("valid", valid), ("test", test)):
        name = "%s_%s_acc" % (stage, part)
        if name in g:
            batches = np.asarray(net.batch_accuracies(pair), dtype=np.float64)
            rep.exact(stage, name + "_batches", batches, g[name + "_batches"])
            rep.exact(stage, name, np.float64(net.accuracy(pair)), g[name])


def _check_params(rep, g, net, stage, rtol, atol, cross=None):
    for p, name in zip(net.params, g.param_names(stage)):
        rep.array(stage, name, p.get_value(), g[name], rtol, atol)
        if cross is not None:
            rep.array(stage, name + " vs float64 file", p.get_value(), cross[name], rtol, atol,
                      check_dtype=False)


# ---------------------------------------------------------------------------
# import, data
# ---------------------------------------------------------------------------
def test_import_network3_prints_nothing(tmp_path):
    """network3 printed a GPU banner on import (config_json's import_stdout);
    fastnet's network3 shim prints nothing, on stdout or stderr.  A fresh
    interpreter imports the very network3 and fastnet this session tests."""
    import network3
    paths = [os.path.dirname(os.path.abspath(network3.__file__)),
             os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    code = ("import network3, fastnet, sys; "
            "assert network3.__file__ == %r and fastnet.__file__ == %r, "
            "(network3.__file__, fastnet.__file__)" % (network3.__file__, fastnet.__file__))
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "", "import network3 printed %r" % r.stdout
    assert r.stderr == "", "import network3 wrote to stderr: %r" % r.stderr
    assert cu.golden("a_fc_sigmoid", "float64").cfg["import_stdout"].startswith(
        "Trying to run under a GPU")


def test_recipe_matches_stored_rows_and_hashes():
    """The helper's rebuild of the MNIST recipe: sha256 of f's and h's parts,
    and the rows a, b, c, e store are the recipe's first rows."""
    for case in ("f_fc_long", "h_conv2_relu_long"):
        cu.mnist_recipe_checked(cu.golden(case, "float64").cfg["data"])
    (tx, ty), (vx, vy), (sx, sy) = cu.mnist_recipe()
    for case in ("a_fc_sigmoid", "b_conv_sigmoid", "c_conv2_relu_l2", "e_dropout_inference"):
        g = cu.golden(case, "float64")
        for name, (x, y) in (("train", (tx, ty)), ("valid", (vx, vy)), ("test", (sx, sy))):
            n = g[name + "_x"].shape[0]
            assert np.array_equal(g[name + "_x"], x[:n]), (case, name)
            assert np.array_equal(g[name + "_y"], y[:n]), (case, name)


# ---------------------------------------------------------------------------
# initial parameters and untrained inference
# ---------------------------------------------------------------------------
@on_engines
@pytest.mark.parametrize("case,fx", _cases())
def test_init(case, fx, engine):
    g = cu.golden(case, fx)
    rep = cu.Report(_label(g, engine))
    fastnet.set_floatx(fx)
    layers = cu.build_layers(g.cfg)
    before = [p.get_value() for layer in layers for p in layer.params]
    for value, name in zip(before, g.param_names("init")):
        rep.exact("init (built layers)", name, value, g[name])
    net = fastnet.Network(layers, g.mbs, engine=engine)
    for p, name in zip(net.params, g.param_names("init")):
        rep.exact("init (net.params)", name, p.get_value(), g[name])
    rtol, atol = _tol(g, "init")
    if "init_probs" in g:
        _check_inference(rep, g, net, "init", rtol, atol, _cross(g))
        # inference must not move the parameters
        for p, name in zip(net.params, g.param_names("init")):
            rep.exact("init (after inference)", name, p.get_value(), g[name])
    rep.done()


@on_engines
@pytest.mark.parametrize("case,fx", _cases("init_cost"))
def test_init_cost_and_grads(case, fx, engine):
    """cost and T.grad(cost, params) on train mini-batch 0, num_training_batches=1."""
    g = cu.golden(case, fx)
    rep = cu.Report(_label(g, engine))
    net = cu.build(g, engine)
    (tx, ty), _, _ = g.data()
    cost, grads = net.cost_and_grads(tx[:g.mbs], ty[:g.mbs], g.cfg["lmbda"], 1)
    rtol, atol = _tol(g, "init")
    cross = _cross(g)
    rep.array("init", "init_cost", np.asarray(cost), g["init_cost"], rtol, atol, check_dtype=False)
    assert len(grads) == len(net.params)
    for gr, name in zip(grads, g.cfg["param_order"]):
        rep.array("init", "init_grad_" + name, gr, g["init_grad_" + name], rtol, atol)
        if cross is not None:
            rep.array("init", "init_grad_%s vs float64 file" % name, gr,
                      cross["init_grad_" + name], rtol, atol, check_dtype=False)
    # nothing was updated
    for p, name in zip(net.params, g.param_names("init")):
        rep.exact("init (after cost_and_grads)", name, p.get_value(), g[name])
    rep.done()


@on_engines
@pytest.mark.parametrize("case,fx", _cases("epoch_cost"))
def test_epoch_cost_and_grads(case, fx, engine):
    """The same at the golden epoch parameters (every layer's backward pass is
    non-trivial there), with the epoch run's num_training_batches."""
    g = cu.golden(case, fx)
    rep = cu.Report(_label(g, engine))
    net = cu.build(g, engine)
    cu.set_params(net, g.params("epoch"))
    (tx, ty), _, _ = g.data()
    ntb = g.cfg["runs"]["epoch"]["train_rows"] // g.mbs
    cost, grads = net.cost_and_grads(tx[:g.mbs], ty[:g.mbs], g.cfg["lmbda"], ntb)
    rtol, atol = _tol(g, "epoch")
    cross = _cross(g)
    rep.array("epoch", "epoch_cost", np.asarray(cost), g["epoch_cost"], rtol, atol,
              check_dtype=False)
    for gr, name in zip(grads, g.cfg["param_order"]):
        golden_grad = g["epoch_grad_" + name]
        assert np.any(golden_grad != 0)
        rep.array("epoch", "epoch_grad_" + name, gr, golden_grad, rtol, atol)
        if cross is not None:
            rep.array("epoch", "epoch_grad_%s vs float64 file" % name, gr,
                      cross["epoch_grad_" + name], rtol, atol, check_dtype=False)
    rep.done()


# ---------------------------------------------------------------------------
# training runs: step, epoch, multi (a-d), long (f; h below)
# ---------------------------------------------------------------------------
@on_engines
@pytest.mark.parametrize("case,fx,stage", [p for p in _run_cases()
                                           if p.values[0] != "h_conv2_relu_long"])
def test_run(case, fx, stage, engine):
    g = cu.golden(case, fx)
    rep = cu.Report(_label(g, engine))
    run = g.cfg["runs"][stage]
    data = g.data()
    (tx, ty), valid, test = data
    n = run["train_rows"]
    net = cu.build(g, engine)
    out = cu.sgd(net, (tx[:n], ty[:n]), run["epochs"], g.mbs, g.cfg["eta"], valid, test,
                 g.cfg["lmbda"])
    rtol, atol = _tol(g, stage)
    cross = _cross(g)
    _check_params(rep, g, net, stage, rtol, atol, cross)
    _check_inference(rep, g, net, stage, rtol, atol, cross, data)
    rep.text(stage, stage + "_stdout", out, str(g[stage + "_stdout"]))
    rep.done()


# ---------------------------------------------------------------------------
# h: 800 steps of the book's conv2 ReLU net; max-pool ties (README note 7)
# ---------------------------------------------------------------------------
@on_engines
@pytest.mark.slow
@pytest.mark.parametrize("fx", cu.FLOATXS)
def test_long_h(fx, engine):
    if fx == "float32" and engine in H_FLOAT32_ENGINES_SKIPPED:
        pytest.skip("h float32 on the %s engine: an accuracy-level check that costs ~20 s; "
                    "it runs on the compiled engines (FASTNET_TEST_FULL=1 runs it here)" % engine)
    g = cu.golden("h_conv2_relu_long", fx)
    rep = cu.Report(_label(g, engine))
    run = g.cfg["runs"]["long"]
    data = g.data()
    train, valid, test = data
    net = cu.build(g, engine)
    out = cu.sgd(net, train, run["epochs"], g.mbs, g.cfg["eta"], valid, test, g.cfg["lmbda"])
    rtol, atol = _tol(g, "long")
    strict = fx == "float64" and engine in H_STRICT_ENGINES
    if strict:
        _check_params(rep, g, net, "long", rtol, atol)
        _check_inference(rep, g, net, "long", rtol, atol, None, data)
        rep.text("long", "long_stdout", out, str(g["long_stdout"]))
        rep.done()
        return
    # accuracy level: a conv that is not tie-consistent (or float32, whose
    # rounding alone moves h's accuracy by a point) follows network3 only this far
    for part, pair in (("valid", valid), ("test", test)):
        acc = net.accuracy(pair)
        want = float(g["long_%s_acc" % part])
        rep.checked += 1
        if not abs(acc - want) <= cu.H_ACCURACY_POINTS:
            rep.fail("long", "long_%s_acc: %.2f%%, golden %.2f%%: more than %g points apart"
                     % (part, 100 * acc, 100 * want, 100 * cu.H_ACCURACY_POINTS))
    lines = out.splitlines()
    rep.checked += 1
    if not (lines[0] == "Training mini-batch number 0" and lines[-3] == "Finished training network."
            and re.fullmatch(r"Best validation accuracy of \d+\.\d\d% obtained at iteration 799",
                             lines[-2])):
        rep.fail("long", "stdout is not network3's:\n" + out)
    if fx == "float64":
        worst = [cu.mismatch(p.get_value(), g[name], rtol, atol)
                 for p, name in zip(net.params, g.param_names("long"))]
        if all(w is None for w in worst):
            warnings.warn("engine %r follows h float64 at rtol %g: its conv looks tie-consistent; "
                          "add it to H_STRICT_ENGINES in %s" % (engine, rtol, __file__))
    rep.done()


# ---------------------------------------------------------------------------
# e: dropout -- inference at the golden trained parameters (the masks come
# from Theano's RNG and cannot be matched, README note 8)
# ---------------------------------------------------------------------------
@on_engines
@pytest.mark.parametrize("fx", cu.FLOATXS)
def test_dropout_inference(fx, engine):
    g = cu.golden("e_dropout_inference", fx)
    rep = cu.Report(_label(g, engine))
    net = cu.build(g, engine)
    cu.set_params(net, g.params("epoch"))
    rtol, atol = _tol(g, "epoch")
    # each file holds its own trained parameters: no cross-check against float64 here
    _check_inference(rep, g, net, "epoch", rtol, atol, None)
    rep.done()


@on_engines
@pytest.mark.parametrize("fx", cu.FLOATXS)
def test_dropout_training_run(fx, engine):
    """e's epoch run trains (dropout masks of fastnet's own RNG): it prints
    network3's lines for one epoch of 20 mini-batches and moves every layer."""
    g = cu.golden("e_dropout_inference", fx)
    run = g.cfg["runs"]["epoch"]
    (tx, ty), valid, test = g.data()
    net = cu.build(g, engine)
    out = cu.sgd(net, (tx[:run["train_rows"]], ty[:run["train_rows"]]), run["epochs"], g.mbs,
                 g.cfg["eta"], valid, test, g.cfg["lmbda"])
    pattern = (r"Training mini-batch number 0\n"
               r"Epoch 0: validation accuracy \d+\.\d\d%\n"
               r"This is the best validation accuracy to date\.\n"
               r"The corresponding test accuracy is \d+\.\d\d%\n"
               r"Finished training network\.\n"
               r"Best validation accuracy of \d+\.\d\d% obtained at iteration 19\n"
               r"Corresponding test accuracy of \d+\.\d\d%\n")
    assert re.fullmatch(pattern, out), out
    for p, name in zip(net.params, g.param_names("init")):
        v = p.get_value()
        assert np.all(np.isfinite(v)), name
        assert not np.array_equal(v, g[name]), "%s did not move" % name
