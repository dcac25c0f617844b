"""fastnet's command line: ``fastnet COMMAND ...`` or ``python -m fastnet COMMAND ...``.

Commands: demo, info, bench, sweep, expand, chapter6, augment-preview
(``fastnet COMMAND --help`` for each).
Exit status: 0 on success, 2 for a usage error (a bad option or value, a
missing file, an engine this machine cannot run), reported as one line on
stderr; 1 when a command cannot run in this installation (bench outside a
source checkout, sweep missing from the build); 130 on Ctrl-C.
"""

import argparse
import importlib
import os
import sys
import time

COMMANDS = (
    ("demo", "train the book's conv net on the bundled MNIST sample (offline)"),
    ("info", "version, engines, floatX, threads, CPU features and installed extras"),
    ("bench", "the benchmark suite against PyTorch, JAX, network3 (source checkout)"),
    ("sweep", "hyper-parameter sweeps (fastnet.sweep)"),
    ("expand", "write the chapter's expanded training set (one-pixel shifts)"),
    ("chapter6", "chapter 6's results ladder, shallow net to ensemble, beside the book's"),
    ("augment-preview", "a picture of on-the-fly augmentation: digits and distorted copies"),
)


class UsageError(Exception):
    """A command-line mistake: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (UsageError) instead of the
    usage block and sys.exit(2)."""

    def error(self, message):
        raise UsageError("%s: error: %s (see %s --help)" % (self.prog, message, self.prog))


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("%r must be at least 1" % text)
    return value


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------
def _book_net(name, mbs):
    from fastnet import ConvPoolLayer, FullyConnectedLayer, ReLU, SoftmaxLayer
    if name == "conv":
        # chapter 6: two conv-pool layers with ReLU, FC 100 ReLU, softmax; L2 0.1
        return [
            ConvPoolLayer(image_shape=(mbs, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            ConvPoolLayer(image_shape=(mbs, 20, 12, 12), filter_shape=(40, 20, 5, 5),
                          poolsize=(2, 2), activation_fn=ReLU),
            FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=ReLU),
            SoftmaxLayer(n_in=100, n_out=10)], 0.03, 0.1
    # "fc": chapter 6's first network, sigmoid
    return [FullyConnectedLayer(n_in=784, n_out=100),
            SoftmaxLayer(n_in=100, n_out=10)], 0.1, 0.0


def _usable_engine(name, prog):
    """The engine module ``name``; a UsageError saying why when this machine
    cannot run it."""
    from fastnet.engines import get_engine
    try:
        engine = get_engine(name)
    except ImportError as exc:
        raise UsageError("%s: error: engine %r is not available here: %s"
                         % (prog, name, str(exc).splitlines()[0]))
    if hasattr(engine, "available") and not engine.available():
        raise UsageError("%s: error: engine %r needs a CUDA GPU and none was found; use "
                         "--engine cpu" % (prog, name))
    return engine


def demo(argv, prog):
    from fastnet.engines import ENGINES
    parser = _Parser(
        prog=prog,
        description="Train the book's chapter-6 network on the bundled real MNIST sample "
                    "(8,000 training / 1,000 validation / 1,000 test digits), offline, "
                    "printing network3's log, progress on stderr and the throughput.")
    parser.add_argument("--epochs", type=_positive_int, default=3, help="default: 3")
    parser.add_argument("--mini-batch-size", type=_positive_int, default=10, help="default: 10")
    parser.add_argument("--net", choices=("conv", "fc"), default="conv",
                        help="conv: two conv-pool layers + FC 100, ReLU, L2 0.1 (default); "
                             "fc: 784-100-10 sigmoid")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="default: FASTNET_ENGINE, else cpu")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="train on this file instead of the bundled sample: the book's "
                             "mnist.pkl.gz, an .npz or a directory of IDX files "
                             "(fastnet.data.load_data)")
    parser.add_argument("--seed", type=int, default=0, help="np.random.seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines on stderr")
    args = parser.parse_args(argv)

    import numpy as np
    import fastnet
    from fastnet import Network, datasets
    from fastnet.engines import default_engine_name

    engine_name = args.engine or default_engine_name()
    if engine_name not in ENGINES:
        raise UsageError("%s: error: FASTNET_ENGINE=%r is not one of %s"
                         % (prog, engine_name, ", ".join(ENGINES)))
    _usable_engine(engine_name, prog)
    if args.data is None:
        training_data, validation_data, test_data = datasets.mnist_sample()
        source = "the bundled MNIST sample"
        licence = "; MNIST, CC BY-SA 3.0"
    else:
        if not os.path.exists(args.data):
            raise UsageError("%s: error: --data %s: no such file or directory"
                             % (prog, args.data))
        from fastnet.data import load_data
        try:
            training_data, validation_data, test_data = load_data(args.data)
        except (OSError, ValueError) as exc:
            raise UsageError("%s: error: --data %s: %s" % (prog, args.data, exc))
        source, licence = args.data, ""
    print("fastnet %s demo: the book's %s net on %s (%d training, %d validation, %d test "
          "digits%s)" % (fastnet.__version__, args.net, source, len(training_data[0]),
                         len(validation_data[0]), len(test_data[0]), licence))
    np.random.seed(args.seed)
    mbs = args.mini_batch_size
    layers, eta, lmbda = _book_net(args.net, mbs)
    net = Network(layers, mbs, engine=engine_name)
    print("engine: %s, floatX: %s, mini-batch size %d, eta %g, lmbda %g, %d epochs"
          % (net.engine.name, fastnet.get_floatx(), mbs, eta, lmbda, args.epochs))
    sys.stdout.flush()
    t0 = time.perf_counter()
    history = net.SGD(training_data, args.epochs, mbs, eta, validation_data,
                      test_data, lmbda=lmbda, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    print("Trained %d samples in %.2f s of training (%.2f s wall with evaluation): "
          "%.0f samples/s"
          % (history.samples_trained, history.training_seconds, wall,
             history.samples_per_second))
    return 0


# ---------------------------------------------------------------------------
# info
# ---------------------------------------------------------------------------
# extra of pyproject.toml -> the module that tells whether it is installed
EXTRAS = (("cuda", "numba_cuda"), ("progress", "tqdm"), ("bench", "matplotlib"))


def _installed(module):
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def info(argv, prog):
    parser = _Parser(prog=prog, description="Print fastnet's version, its engines (and why "
                     "one is unavailable), floatX, the compiled engine's threads and CPU "
                     "features, and which optional extras are installed.")
    parser.parse_args(argv)
    import numpy as np
    import fastnet
    from fastnet.engines import ENGINES, get_engine
    print("fastnet %s (Python %s, NumPy %s)" % (fastnet.__version__,
                                                sys.version.split()[0], np.__version__))
    print("floatX: %s" % fastnet.get_floatx())
    for name in ENGINES:
        try:
            engine = get_engine(name)
            ok = not hasattr(engine, "available") or engine.available()
            why = "" if ok else " (no CUDA GPU found)"
        except Exception as exc:  # an engine that does not import: say why, go on
            ok, why = False, " (%s)" % str(exc).splitlines()[0]
        print("engine %-9s %s%s" % (name + ":", "available" if ok else "unavailable", why))
    try:
        cpu = get_engine("cpu")
    except (ImportError, RuntimeError):  # not built, or FASTNET_ISA refused: said above
        pass
    else:
        print("cpu threads: %d (OpenMP %s)" % (cpu.get_num_threads(),
                                              "on" if cpu.openmp_enabled() else "off"))
        print("cpu threads per training step: %s" % (
            "as many as measured fastest, up to %d (FASTNET_ADAPTIVE_THREADS=0: all)"
            % cpu.get_num_threads() if cpu.get_adaptive_threads()
            else "all %d (FASTNET_ADAPTIVE_THREADS=0)" % cpu.get_num_threads()))
        wait = cpu.wait_policy()
        print("cpu threads wait: %s (%s)" % (
            "spin %d rounds, then sleep" % wait["spincount"] if wait["spincount"] is not None
            else "OpenMP's setting", wait["source"]))
        print("cpu vector sigmoid/tanh (libmvec): %s"
              % ("yes" if cpu.vector_activations() else "no"))
        isa = cpu.info()
        print("cpu instruction set: %s (%s; built: %s; this CPU runs: %s)"
              % (isa["isa"], isa["isa_reason"], ", ".join(isa["isa_built"]),
                 ", ".join(isa["cpu_levels"]) if isa["cpu_levels"] is not None
                 else "not probed"))
    print("extras: %s" % ", ".join("%s %s" % (extra, "installed" if _installed(module)
                                              else "not installed")
                                   for extra, module in EXTRAS))
    return 0


# ---------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------
BENCH_MISSING = ("the benchmark suite is not part of the installed package: it is the "
                 "bench/ folder of the fastnet source repository (it also needs the "
                 "engines it compares: PyTorch, JAX, ...). Clone the repository and run "
                 "`fastnet bench` (or `python bench/run.py`) from its root.")


def _is_checkout(folder):
    """Whether ``folder`` is a fastnet source checkout with the bench suite."""
    try:
        with open(os.path.join(folder, "pyproject.toml")) as f:
            meta = f.read()
    except OSError:
        return False
    return ('name = "fastnet"' in meta
            and os.path.isfile(os.path.join(folder, "bench", "run.py")))


def find_checkout():
    """The source checkout whose bench/ to run: the one this fastnet was
    imported from, else the current directory when it is one; or None."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in (package_parent, os.getcwd()):
        if _is_checkout(folder):
            return folder
    return None


def bench(argv, prog):
    checkout = find_checkout()
    if checkout is None:
        if any(a in ("-h", "--help") for a in argv):
            print("usage: %s [bench/run.py options]\n\n%s" % (prog, BENCH_MISSING))
            return 0
        sys.stderr.write("%s: %s\n" % (prog, BENCH_MISSING))
        return 1
    if any(a in ("-h", "--help") for a in argv):
        print("%s runs bench/run.py of the source checkout %s; its options:\n" % (prog, checkout))
        sys.stdout.flush()
    if checkout not in sys.path:
        sys.path.insert(0, checkout)
    from bench.run import main as bench_main
    return bench_main(argv)


# ---------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------
SWEEP_MISSING = "not available in this build of fastnet (the module fastnet.sweep is missing)"


def sweep(argv, prog):
    try:
        module = importlib.import_module("fastnet.sweep")
    except ModuleNotFoundError as exc:
        if exc.name != "fastnet.sweep":
            raise
        if any(a in ("-h", "--help") for a in argv):
            print("usage: %s ...\n\n%s: %s" % (prog, prog, SWEEP_MISSING))
            return 0
        sys.stderr.write("%s: %s\n" % (prog, SWEEP_MISSING))
        return 1
    return module.main(argv)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
def expand(argv, prog):
    from . import expand as module
    try:
        return module.main(argv, prog)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UsageError("%s: error: %s" % (prog, exc)) from None


def chapter6(argv, prog):
    from . import chapter6 as module
    try:
        return module.main(argv, prog)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError("%s: error: %s" % (prog, exc)) from None


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("%r must be a number >= 0" % text)
    return value


def augment_preview(argv, prog):
    parser = _Parser(
        prog=prog,
        description="Write a PNG grid of digits from the bundled MNIST sample, each with "
                    "distorted copies as SGD(..., augment=...) would draw them "
                    "(fastnet.augment).  Needs matplotlib (the plot extra).")
    parser.add_argument("--transform", choices=("elastic", "affine", "shift", "all"),
                        default="elastic", help="default: elastic; all: shift, then "
                        "affine, then elastic")
    parser.add_argument("--alpha", type=_nonnegative_float, default=34.0,
                        help="elastic: displacement scale in pixels (default: 34)")
    parser.add_argument("--sigma", type=_nonnegative_float, default=4.0,
                        help="elastic: Gaussian width in pixels (default: 4)")
    parser.add_argument("--max-rotation", type=_nonnegative_float, default=15.0,
                        help="affine: degrees (default: 15)")
    parser.add_argument("--max-shear", type=_nonnegative_float, default=0.3,
                        help="affine: horizontal skew (default: 0.3)")
    parser.add_argument("--max-scale", type=_nonnegative_float, default=0.0,
                        help="affine: zoom 1 +- this (default: 0)")
    parser.add_argument("--max-pixels", type=int, default=1,
                        help="shift: pixels either way (default: 1)")
    parser.add_argument("--n", type=_positive_int, default=8, help="digits (default: 8)")
    parser.add_argument("--copies", type=_positive_int, default=6,
                        help="distorted copies of each (default: 6)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the augment seed (default: 0)")
    parser.add_argument("--out", metavar="PNG", default="augment-preview.png",
                        help="default: augment-preview.png")
    args = parser.parse_args(argv)
    if args.n > 100 or args.copies > 30:
        raise UsageError("%s: error: at most 100 digits (--n) and 30 copies (--copies)"
                         % prog)
    if not 0 <= args.seed < 1 << 64:
        raise UsageError("%s: error: --seed must be in [0, 2**64)" % prog)
    import numpy as np
    from fastnet import augment as A
    from fastnet import datasets
    try:
        parts = {"shift": [A.Shift(args.max_pixels)],
                 "affine": [A.Affine(args.max_rotation, args.max_shear, args.max_scale)],
                 "elastic": [A.Elastic(args.alpha, args.sigma)]}
        chosen = (parts["shift"] + parts["affine"] + parts["elastic"]
                  if args.transform == "all" else parts[args.transform])
        transform = chosen[0] if len(chosen) == 1 else A.Compose(chosen)
    except ValueError as exc:
        raise UsageError("%s: error: %s" % (prog, exc))
    (x, y), _, _ = datasets.mnist_sample()
    # the first digit of each class, then the next ones
    order = [int(np.flatnonzero(y == d)[k]) for k in range(-(-args.n // 10))
             for d in range(10)][:args.n]
    try:
        path = A.preview(args.out, transform, x[order], copies=args.copies, seed=args.seed)
    except ImportError as exc:
        sys.stderr.write("%s: %s\n" % (prog, exc))
        return 1
    except OSError as exc:
        raise UsageError("%s: error: cannot write %s: %s" % (prog, args.out, exc.strerror))
    print("wrote %s: %d digits, each with %d copies distorted by %r"
          % (path, args.n, args.copies, transform))
    return 0


HANDLERS = {"demo": demo, "info": info, "bench": bench, "sweep": sweep, "expand": expand,
            "chapter6": chapter6, "augment-preview": augment_preview}


def _top_parser(prog):
    import fastnet
    parser = _Parser(prog=prog, description="fastnet: network3.py of Nielsen's book, fast. "
                     "`%s COMMAND --help` describes a command." % prog)
    parser.add_argument("--version", action="version", version="fastnet " + fastnet.__version__)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
    for name, summary in COMMANDS:
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv=None, prog="fastnet"):
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in HANDLERS:
            status = HANDLERS[argv[0]](argv[1:], "%s %s" % (prog, argv[0]))
        elif not argv:
            raise UsageError("%s: error: choose a command: %s (see %s --help)"
                             % (prog, ", ".join(HANDLERS), prog))
        elif argv[0].startswith("-"):
            _top_parser(prog).parse_args(argv)   # --help, --version: exit 0
            status = 0
        else:
            raise UsageError("%s: error: unknown command %r; choose from %s (see %s --help)"
                             % (prog, argv[0], ", ".join(HANDLERS), prog))
    except UsageError as exc:
        sys.stderr.write("%s\n" % exc)
        return 2
    except SystemExit as exc:   # argparse's --help and --version
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % prog)
        return 130
    return 0 if status is None else status
