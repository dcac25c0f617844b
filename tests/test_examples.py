"""The example scripts, run as a reader runs them (``--quick``), checked on
the numbers they print and the pictures they write."""

import os
import re
import subprocess
import sys

import pytest

import fastnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def run_example(name, out_dir):
    env = dict(os.environ)
    # the fastnet this test imported, whether installed or built in place
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["MPLBACKEND"] = "Agg"
    # tiny networks: one thread is fastest on a busy machine, and the
    # numbers do not depend on the thread count (checked: 1 and 2 agree)
    env.setdefault("OMP_NUM_THREADS", "1")
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), "--quick",
                           "--out", str(out_dir)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def percent(pattern, text):
    match = re.search(pattern, text)
    assert match, "no line matching %r in:\n%s" % (pattern, text)
    return [float(v) for v in match.groups()]


def assert_pictures(out_dir, names):
    for name in names:
        path = out_dir / name
        assert path.is_file(), "%s was not written" % name
        with open(path, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" or head[:6] == b"GIF89a", name
        assert path.stat().st_size > 5000, "%s is suspiciously small" % name


def test_seed000_manifolds(tmp_path):
    out = run_example("seed000_manifolds.py", tmp_path)
    easy, tight, wide = percent(r"spiral accuracies: easy 2-unit ([\d.]+)%, tight 2-unit "
                                r"([\d.]+)%, tight 20-unit ([\d.]+)%", out)
    assert easy >= 95.0 and tight <= 90.0 and wide >= 95.0, out
    linear, = percent(r"no hidden layer \(a straight line\): held-out accuracy ([\d.]+)%", out)
    bent, = percent(r"2-2 tanh network: held-out accuracy ([\d.]+)%", out)
    assert bent > linear + 10, out
    narrow, = percent(r"circles, 2-unit tanh x3: held-out accuracy ([\d.]+)%", out)
    lifted, = percent(r"circles, 3-unit tanh x1: held-out accuracy ([\d.]+)%", out)
    assert lifted >= 95.0 and narrow < lifted, out
    assert_pictures(tmp_path, ["seed000_curves_layers.png", "seed000_curves_boundary.png",
                               "seed000_spiral_layers.png", "seed000_spiral_easy.png",
                               "seed000_spiral_tight.png", "seed000_spiral_tight_wide.png",
                               "seed000_curves_bend.gif", "seed000_circles_2units.png",
                               "seed000_circles_3units.png",
                               "seed000_curves_frames/frame_00.png"])


def test_seed001_mlp(tmp_path):
    out = run_example("seed001_mlp.py", tmp_path)
    assert "784-16-16-10 (sigmoid): 13,002 parameters" in out, out
    sigmoid, = percent(r"sigmoid .*test accuracy ([\d.]+)%", out)
    relu, = percent(r"ReLU .*test accuracy ([\d.]+)%", out)
    assert sigmoid > 80.0 and relu > 80.0, out
    assert_pictures(tmp_path, ["seed001_first_layer.png", "seed001_learning_curves.png",
                               "seed001_misclassified.png"])


def norms(name, text):
    match = re.search(r"gradient norms \(input -> output\), %s: (.*)" % name, text)
    assert match, text
    return [float(v) for v in match.group(1).split()]


def test_seed002_xor_vanishing(tmp_path):
    out = run_example("seed002_xor_vanishing.py", tmp_path)
    linear, = percent(r"no hidden layer: +accuracy +([\d.]+)%", out)
    tanh, = percent(r"2-2-2 tanh +seed 0: +accuracy +([\d.]+)%", out)
    assert linear <= 75.0 and tanh == 100.0, out
    sigmoid, relu = norms("sigmoid", out), norms("ReLU", out)
    assert len(sigmoid) == len(relu) == 4
    assert sigmoid == sorted(sigmoid) and sigmoid[-1] > 10 * sigmoid[0], out
    assert max(relu) / min(relu) < max(sigmoid) / min(sigmoid), out
    for name in ("sigmoid", "ReLU"):
        at_init = re.search(r"at initialisation, %s: ([\d.e+\- ]+?)  \(" % name, out)
        assert at_init and [float(v) for v in at_init.group(1).split()] == [0.0] * 4, out
    assert_pictures(tmp_path, ["seed002_xor_linear.png", "seed002_xor_tanh.png",
                               "seed002_xor_layers.png", "seed002_gradient_norms.png"])


@pytest.mark.parametrize("name", ["seed000_manifolds.py", "seed001_mlp.py",
                                  "seed002_xor_vanishing.py"])
def test_examples_say_how_to_run_them(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        source = f.read()
    assert "python examples/%s [--quick] [--out DIR]" % name in source


def test_seed004_chapter6(tmp_path):
    out = run_example("seed004_chapter6.py", tmp_path)
    table = out[out.index("Chapter 6's ladder"):]
    rungs = [l.split("|")[1].strip() for l in table.splitlines()
             if l.startswith("| ") and "---" not in l][1:]
    assert rungs == ["shallow", "conv1", "conv2", "relu_l2", "expanded", "dropout", "ensemble"]
    assert_pictures(tmp_path, ["learning_curves.png", "conv_filters.png"])
