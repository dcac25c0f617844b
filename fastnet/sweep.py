"""Sweeps of training runs on Dask, and ensembles trained that way.

    from fastnet.sweep import sweep
    result = sweep("spec.json", "results/")                 # a LocalCluster
    result = sweep(spec, "results/", scheduler="tcp://host:8786")
    result = sweep(spec, "results/", serial=True)            # no Dask at all
    print(result.markdown())

    python -m fastnet.sweep SPEC [--scheduler tcp://host:8786] [--workers N]
                                 [--threads-per-worker T] [--results DIR]

A spec (a JSON or TOML file, or the same thing as a dict) names a network,
the data, SGD's arguments, the values to sweep (a ``grid`` or a list of
``runs``) and the ``seeds``; see ``SPEC_HELP``.  Nothing in a spec file is
executed: networks are named builders or layer lists in ``layer.describe()``
form, data are the bundled digits or a file read by fastnet's safe loaders.
A Python builder (``network=callable(mini_batch_size) -> layers``) is
accepted from the library only.

Each run is one task: seed NumPy's global RNG, build the layers, ``SGD`` with
a per-epoch checkpoint in the results directory, on exactly ``threads`` CPU
kernel threads.  A worker process runs one training at a time (a process
lock: NumPy's global RNG, stdout capture and the kernels' thread count are
per process), so a worker is ``1 Dask thread x T kernel threads``.  The data
are scattered to the workers once.  A finished run is written atomically to
``DIR/run-<id>/`` (``network.npz``, ``result.json``); ``<id>`` hashes the
run's whole configuration and the data's fingerprint, so a rerun of the same
sweep skips what is done.  A worker lost mid-run makes Dask rerun the task
elsewhere, which resumes from the run's checkpoint when DIR is storage the
workers share (it always is on a LocalCluster).  A run that raises is
reported as failed in the table; the others go on.

dask and distributed are an optional extra: ``pip install "fastnet[distributed]"``.
"""

import argparse
import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import os
import sys
import tempfile
import threading
import time
import traceback
import uuid

import numpy as np

from .ensemble import Ensemble, write_json_atomic

SGD_KEYS = ("epochs", "mini_batch_size", "eta", "lmbda")
SWEEPABLE = SGD_KEYS + ("network", "engine")
SPEC_KEYS = ("name", "network", "data", "sgd", "grid", "runs", "seeds",
             "engine", "threads", "ensemble")
RESULT_FILE = "result.json"
NETWORK_FILE = "network.npz"
CHECKPOINT_FILE = "checkpoint.npz"
ERROR_FILE = "error.json"
RUNNING_FILE = "running.json"      # who trains the run now (host, pid)
EVENT_TOPIC = "fastnet-sweep"
_MAX_SPEC_BYTES = 1 << 20
_MISSING_DASK = ("fastnet.sweep needs dask and distributed, an optional extra: "
                 "pip install \"fastnet[distributed]\" (or pip install \"dask[distributed]\")")

SPEC_HELP = """\
A sweep spec (JSON, or TOML with the same keys):
  network   a builder name, one of
              %s,
            or {"layers": [layer dicts as layer.describe() gives them]}; a
            ConvPoolLayer's image_shape batch is set to the run's mini_batch_size
  data      "mnist_sample" (default: the bundled 8,000/1,000/1,000 digits), or
            {"path": FILE_OR_DIR, "features": 784} read by fastnet.data.load_data
            (pickles through fastnet's restricted unpickler); either may add
            "limit": [n_train, n_valid, n_test] to use the first rows only
  sgd       {"epochs": E, "mini_batch_size": M, "eta": ETA, "lmbda": L}
            (eta and lmbda default to the named network's book values,
            mini_batch_size to 10)
  grid      {KEY: [values], ...}: every combination; or
  runs      [{KEY: value, ...}, ...]: a list; KEY in
              %s
  seeds     [0, 1, ...] (default [0]): every run is done once per seed
  engine    "cpu" (default), "reference" or "cuda"
  threads   CPU kernel threads per run (default 1; --threads-per-worker overrides it)
  ensemble  true or {"vote": "plurality" | "average"}: the runs that differ
            only by seed also vote as an ensemble on the test data
"""


class SpecError(ValueError):
    """A sweep spec that cannot be run; the message says what and where."""


def _require_dask():
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ImportError("%s (%s)" % (_MISSING_DASK, exc)) from None
    return distributed


# ---------------------------------------------------------------------------
# the book's networks, by name
# ---------------------------------------------------------------------------
def _conv_layers(mbs, activation, two):
    from .layers import ConvPoolLayer
    layers = [ConvPoolLayer(image_shape=(mbs, 1, 28, 28), filter_shape=(20, 1, 5, 5),
                            poolsize=(2, 2), activation_fn=activation)]
    if two:
        layers.append(ConvPoolLayer(image_shape=(mbs, 20, 12, 12),
                                    filter_shape=(40, 20, 5, 5), poolsize=(2, 2),
                                    activation_fn=activation))
    return layers, (40 * 4 * 4 if two else 20 * 12 * 12)


def _build_fc(mbs):
    from .layers import FullyConnectedLayer, SoftmaxLayer
    return [FullyConnectedLayer(n_in=784, n_out=100), SoftmaxLayer(n_in=100, n_out=10)]


def _build_conv(mbs, activation="sigmoid", two=False):
    from .layers import FullyConnectedLayer, SoftmaxLayer
    layers, n_flat = _conv_layers(mbs, activation, two)
    return layers + [FullyConnectedLayer(n_in=n_flat, n_out=100, activation_fn=activation),
                     SoftmaxLayer(n_in=100, n_out=10)]


def _build_conv2_relu_dropout(mbs):
    from .layers import FullyConnectedLayer, SoftmaxLayer
    layers, n_flat = _conv_layers(mbs, "ReLU", True)
    return layers + [
        FullyConnectedLayer(n_in=n_flat, n_out=1000, activation_fn="ReLU", p_dropout=0.5),
        FullyConnectedLayer(n_in=1000, n_out=1000, activation_fn="ReLU", p_dropout=0.5),
        SoftmaxLayer(n_in=1000, n_out=10, p_dropout=0.5)]


# name -> (builder(mini_batch_size) -> layers, the book's eta, the book's lmbda)
NETWORKS = {
    "fc": (_build_fc, 0.1, 0.0),
    "conv": (_build_conv, 0.1, 0.0),
    "conv2": (lambda mbs: _build_conv(mbs, two=True), 0.1, 0.0),
    "conv2_relu": (lambda mbs: _build_conv(mbs, "ReLU", two=True), 0.03, 0.1),
    "conv2_relu_dropout": (_build_conv2_relu_dropout, 0.03, 0.1),
}


def _layers_from_dicts(specs, mbs, where):
    from .layers import LAYER_TYPES
    if not isinstance(specs, list) or not specs:
        raise SpecError("%s: 'layers' must be a non-empty list of layer dicts" % where)
    layers = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or spec.get("type") not in LAYER_TYPES:
            raise SpecError("%s: layer %d must be a dict with 'type' one of %s, got %r"
                            % (where, i, sorted(LAYER_TYPES), spec))
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        for key in ("filter_shape", "image_shape", "poolsize"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        if spec["type"] == "ConvPoolLayer" and isinstance(kwargs.get("image_shape"), tuple) \
                and kwargs["image_shape"]:
            kwargs["image_shape"] = (mbs,) + kwargs["image_shape"][1:]
        try:
            layers.append(LAYER_TYPES[spec["type"]](**kwargs))
        except (TypeError, ValueError) as exc:
            raise SpecError("%s: layer %d (%s): %s" % (where, i, spec["type"], exc)) from None
    return layers


def _check_layer_list(network, mbs):
    """Build a layer list once here, so a bad one is a SpecError before any
    run starts (the user's RNG state is kept)."""
    from .network import Network
    state = np.random.get_state()
    try:
        layers = build_layers(network, mbs, "spec.network")
        Network(layers, mbs, engine="reference")
    except SpecError:
        raise
    except ValueError as exc:
        raise SpecError("spec.network: %s" % exc) from None
    finally:
        np.random.set_state(state)


def build_layers(network, mini_batch_size, where="network"):
    """The layers a run's ``network`` describes: a builder name, a
    ``{"layers": [...]}`` dict or (library only) a callable."""
    if callable(network):
        return list(network(mini_batch_size))
    if isinstance(network, str):
        if network not in NETWORKS:
            raise SpecError("%s: unknown network %r; the named networks are %s"
                            % (where, network, ", ".join(sorted(NETWORKS))))
        return NETWORKS[network][0](mini_batch_size)
    if isinstance(network, dict) and set(network) == {"layers"}:
        return _layers_from_dicts(network["layers"], mini_batch_size, where)
    raise SpecError("%s: must be a network name (%s) or {\"layers\": [...]}, got %r"
                    % (where, ", ".join(sorted(NETWORKS)), network))


# ---------------------------------------------------------------------------
# specs
# ---------------------------------------------------------------------------
def read_spec(path):
    """The spec dict in a JSON or TOML file (by extension; JSON otherwise)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        blob = f.read(_MAX_SPEC_BYTES + 1)
    if len(blob) > _MAX_SPEC_BYTES:
        raise SpecError("%s: a spec larger than %d bytes" % (path, _MAX_SPEC_BYTES))
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("%s: not UTF-8 text (%s)" % (path, exc)) from None
    if path.endswith(".toml"):
        import tomllib
        try:
            spec = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError("%s: not valid TOML: %s" % (path, exc)) from None
    else:
        try:
            spec = json.loads(text)
        except ValueError as exc:
            raise SpecError("%s: not valid JSON: %s" % (path, exc)) from None
    if not isinstance(spec, dict):
        raise SpecError("%s: a spec must be a JSON object / TOML table, got %s"
                        % (path, type(spec).__name__))
    return spec


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_value(key, value, where):
    """A swept or fixed value, checked before any worker sees it."""
    if key in ("epochs", "mini_batch_size"):
        if not _is_int(value) or value < 1:
            raise SpecError("%s: %s must be a positive integer, got %r" % (where, key, value))
        return int(value)
    if key in ("eta", "lmbda"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise SpecError("%s: %s must be a finite number, got %r" % (where, key, value))
        return float(value)
    if key == "engine":
        if value not in ("cpu", "reference", "cuda"):
            raise SpecError("%s: engine must be 'cpu', 'reference' or 'cuda', got %r"
                            % (where, value))
        return value
    if key == "network":
        if isinstance(value, str) and value not in NETWORKS:
            raise SpecError("%s: unknown network %r; the named networks are %s"
                            % (where, value, ", ".join(sorted(NETWORKS))))
        if not (callable(value) or isinstance(value, (str, dict))):
            raise SpecError("%s: network must be a name (%s) or {\"layers\": [...]}, "
                            "got %r" % (where, ", ".join(sorted(NETWORKS)), value))
        return value
    raise SpecError("%s: %r cannot be set per run; the keys are %s"
                    % (where, key, ", ".join(SWEEPABLE)))


def _network_label(network):
    if isinstance(network, str):
        return network
    if callable(network):
        return "%s.%s" % (getattr(network, "__module__", "?"),
                          getattr(network, "__qualname__", repr(network)))
    return "layers:" + hashlib.sha256(
        json.dumps(network, sort_keys=True).encode()).hexdigest()[:8]


def _network_identity(network):
    """What a run's id hashes for its network (a callable: its name)."""
    return "callable:" + _network_label(network) if callable(network) else network


def _data_spec(value, where):
    if value is None or value == "mnist_sample":
        return {"source": "mnist_sample"}
    if isinstance(value, dict):
        unknown = set(value) - {"source", "path", "features", "limit"}
        if unknown:
            raise SpecError("%s: unknown keys %s; data takes source, path, features, limit"
                            % (where, sorted(unknown)))
        out = dict(value)
        if "path" in out:
            if not isinstance(out["path"], str) or not out["path"]:
                raise SpecError("%s: path must be a file or directory name" % where)
            out.setdefault("source", "path")
        out.setdefault("source", "mnist_sample")
        if out["source"] not in ("mnist_sample", "path") or \
                (out["source"] == "path") != ("path" in out):
            raise SpecError("%s: source must be 'mnist_sample' or a 'path' to read"
                            % where)
        if "features" in out and not (out["features"] is None or
                                      (_is_int(out["features"]) and out["features"] > 0)):
            raise SpecError("%s: features must be a positive integer" % where)
        if "limit" in out:
            lim = out["limit"]
            if not isinstance(lim, list) or len(lim) != 3 or \
                    not all(_is_int(v) and v > 0 for v in lim):
                raise SpecError("%s: limit must be [n_train, n_valid, n_test], "
                                "positive integers, got %r" % (where, lim))
        return out
    raise SpecError("%s: must be \"mnist_sample\" or {\"path\": ...}, got %r" % (where, value))


def load_spec_data(data_spec):
    """The three (x, y) pairs a data spec names, as NumPy arrays."""
    if data_spec["source"] == "mnist_sample":
        from .datasets import mnist_sample
        parts = mnist_sample()
    else:
        from .data import load_data
        parts = load_data(data_spec["path"], features=data_spec.get("features", 784))
    if "limit" in data_spec:
        parts = tuple((x[:n], y[:n]) for (x, y), n in zip(parts, data_spec["limit"]))
    return tuple(parts)


class Run(object):
    """One training run: a plain dict ``config`` and its id."""

    def __init__(self, config, network, swept):
        self.config = config          # JSON-able; what the id hashes
        self.network = network        # the name, layer dicts or a callable
        self.swept = swept            # {key: value} that vary in this sweep
        blob = json.dumps(config, sort_keys=True).encode()
        self.id = hashlib.sha256(blob).hexdigest()[:12]

    @property
    def name(self):
        return "run-" + self.id

    def __repr__(self):
        return "Run(%s, %s)" % (self.id, self.swept)


class SweepPlan(object):
    """A checked spec: its runs, data and options."""

    def __init__(self, spec, threads=None, data=None):
        if not isinstance(spec, dict):
            raise SpecError("spec: must be a dict (or a JSON/TOML file), got %s"
                            % type(spec).__name__)
        unknown = set(spec) - set(SPEC_KEYS)
        if unknown:
            raise SpecError("spec: unknown keys %s; a spec takes %s"
                            % (sorted(unknown), ", ".join(SPEC_KEYS)))
        self.name = str(spec.get("name", "sweep"))
        if "network" not in spec:
            raise SpecError("spec: 'network' is missing (one of %s, or {\"layers\": [...]})"
                            % ", ".join(sorted(NETWORKS)))
        base = {"network": _check_value("network", spec["network"], "spec.network"),
                "engine": _check_value("engine", spec.get("engine", "cpu"), "spec.engine")}
        sgd = spec.get("sgd", {})
        if not isinstance(sgd, dict):
            raise SpecError("spec.sgd: must be a table of %s" % ", ".join(SGD_KEYS))
        for key, value in sgd.items():
            if key not in SGD_KEYS:
                raise SpecError("spec.sgd: unknown key %r; SGD takes %s"
                                % (key, ", ".join(SGD_KEYS)))
            base[key] = _check_value(key, value, "spec.sgd.%s" % key)
        variants = self._variants(spec)
        seeds = spec.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or \
                not all(_is_int(s) and 0 <= s < 2 ** 32 for s in seeds):
            raise SpecError("spec.seeds: must be a non-empty list of integers in "
                            "[0, 2**32), got %r" % (seeds,))
        if len(set(seeds)) != len(seeds):
            raise SpecError("spec.seeds: %r repeats a seed" % (seeds,))
        if threads is None:
            threads = spec.get("threads", 1)
        if not _is_int(threads) or threads < 1:
            raise SpecError("spec.threads: must be a positive integer, got %r" % (threads,))
        self.threads = int(threads)
        self.data_spec = _data_spec(spec.get("data"), "spec.data")
        self.ensemble = self._ensemble(spec.get("ensemble", False))
        self.swept_keys = sorted({k for v in variants for k in v})
        self.base = base
        self._variants_list = variants
        self.seeds = [int(s) for s in seeds]
        self._data = data

    @staticmethod
    def _variants(spec):
        if "grid" in spec and "runs" in spec:
            raise SpecError("spec: give 'grid' or 'runs', not both")
        if "grid" in spec:
            grid = spec["grid"]
            if not isinstance(grid, dict) or not grid:
                raise SpecError("spec.grid: must be a non-empty table {key: [values]}")
            keys = list(grid)
            for key in keys:
                values = grid[key]
                if not isinstance(values, list) or not values:
                    raise SpecError("spec.grid.%s: must be a non-empty list of values, "
                                    "got %r" % (key, values))
            lists = [[_check_value(k, v, "spec.grid.%s[%d]" % (k, i))
                      for i, v in enumerate(grid[k])] for k in keys]
            return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]
        if "runs" in spec:
            runs = spec["runs"]
            if not isinstance(runs, list) or not runs:
                raise SpecError("spec.runs: must be a non-empty list of tables")
            out = []
            for i, run in enumerate(runs):
                if not isinstance(run, dict):
                    raise SpecError("spec.runs[%d]: must be a table {key: value}, got %r"
                                    % (i, run))
                out.append({k: _check_value(k, v, "spec.runs[%d].%s" % (i, k))
                            for k, v in run.items()})
            return out
        return [{}]

    @staticmethod
    def _ensemble(value):
        if value is False or value is None:
            return None
        if value is True:
            return {"vote": "plurality"}
        if isinstance(value, dict) and set(value) <= {"vote"} and \
                value.get("vote", "plurality") in ("plurality", "average"):
            return {"vote": value.get("vote", "plurality")}
        raise SpecError("spec.ensemble: must be true or {\"vote\": \"plurality\" | "
                        "\"average\"}, got %r" % (value,))

    def data(self):
        if self._data is None:
            self._data = load_spec_data(self.data_spec)
        return self._data

    def runs(self):
        from .persist import data_fingerprints
        fingerprints = data_fingerprints(*self.data())
        runs = []
        for variant in self._variants_list:
            params = dict(self.base, **variant)
            network = params["network"]
            book = NETWORKS.get(network) if isinstance(network, str) else None
            params.setdefault("mini_batch_size", 10)
            for key, default in (("eta", book and book[1]), ("lmbda", book and book[2])):
                if key not in params:
                    if default is None:
                        raise SpecError("spec.sgd: %s is required for a network that "
                                        "is not a named one" % key)
                    params[key] = float(default)
            if "epochs" not in params:
                raise SpecError("spec.sgd: 'epochs' is missing")
            if isinstance(network, dict):
                _check_layer_list(network, params["mini_batch_size"])
            for seed in self.seeds:
                config = {"network": _network_identity(network),
                          "engine": params["engine"], "threads": self.threads,
                          "seed": seed, "data": fingerprints,
                          "sgd": {k: params[k] for k in SGD_KEYS}}
                swept = dict(variant)
                swept["seed"] = seed
                runs.append(Run(config, network, swept))
        ids = [r.id for r in runs]
        if len(set(ids)) != len(ids):
            raise SpecError("spec: two runs are the same run (same values and seed); "
                            "each combination must appear once")
        return runs


# ---------------------------------------------------------------------------
# one run (on a worker, or here when serial)
# ---------------------------------------------------------------------------
# one training per process at a time: NumPy's global RNG, sys.stdout and the
# kernels' thread count belong to the process
_RUN_LOCK = threading.Lock()


def _finite_or_none(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_none(v) for v in obj]
    return obj


def _announce(run_id, state):
    """Tell the client a run started (for its progress line); a no-op
    outside a Dask worker."""
    try:
        from distributed import get_worker
        worker = get_worker()
        worker.log_event(EVENT_TOPIC, {"run": run_id, "state": state,
                                       "worker": worker.address})
    except (ImportError, ValueError):
        pass


def train_run(run, data, checkpoint_dir=None):
    """Train one run; returns its outcome dict (never raises for a run's own
    failure: the error is in the dict).  The trained network comes back as
    the bytes of its ``.npz`` under ``"network_npz"``."""
    from .engines import get_engine
    from .network import Network
    with _RUN_LOCK:
        _announce(run.id, "started")
        outcome = {"run": run.name, "id": run.id, "config": _jsonable_config(run),
                   "swept": run.swept, "host": os.uname().nodename, "pid": os.getpid()}
        log = io.StringIO()
        t0 = time.perf_counter()
        # in serial mode this is the user's process: give back its RNG and threads
        rng_state = np.random.get_state()
        cpu_threads = None
        try:
            checkpoint = None
            resumed_from = None
            if checkpoint_dir is not None:
                run_dir = os.path.join(checkpoint_dir, run.name)
                os.makedirs(run_dir, exist_ok=True)
                checkpoint = os.path.join(run_dir, CHECKPOINT_FILE)
                if os.path.exists(checkpoint):
                    resumed_from = checkpoint
                write_json_atomic(os.path.join(run_dir, RUNNING_FILE),
                                  {"host": outcome["host"], "pid": outcome["pid"],
                                   "started": time.time()})
            cfg = run.config
            engine = get_engine(cfg["engine"])
            if engine.name == "cpu":
                cpu_threads = (engine, engine.get_num_threads())
                engine.set_num_threads(cfg["threads"])
            sgd = cfg["sgd"]
            mbs = sgd["mini_batch_size"]
            np.random.seed(cfg["seed"])
            layers = build_layers(run.network, mbs)
            net = Network(layers, mbs, engine=cfg["engine"])
            # arrays deserialized by Dask may be unaligned views of a
            # message buffer; the compiled kernels need aligned rows
            training_data, validation_data, test_data = (
                tuple(np.require(a, requirements="CA") for a in pair) for pair in data)
            with contextlib.redirect_stdout(log):
                history = net.SGD(training_data, sgd["epochs"], mbs, sgd["eta"],
                                  validation_data, test_data, lmbda=sgd["lmbda"],
                                  checkpoint=checkpoint)
            with tempfile.TemporaryDirectory(prefix="fastnet-sweep-") as tmp:
                path = os.path.join(tmp, NETWORK_FILE)
                net.save(path)
                with open(path, "rb") as f:
                    outcome["network_npz"] = f.read()
            outcome.update(status="ok", history=_finite_or_none(history.as_dict()),
                           resumed_from_checkpoint=resumed_from is not None,
                           final_test_accuracy=net.accuracy(test_data))
        except Exception as exc:   # the run's own failure: reported, not fatal
            outcome.update(status="failed", error="%s: %s" % (type(exc).__name__, exc),
                           traceback=traceback.format_exc())
        finally:
            np.random.set_state(rng_state)
            if cpu_threads is not None:
                cpu_threads[0].set_num_threads(cpu_threads[1])
        outcome["seconds"] = time.perf_counter() - t0
        outcome["log"] = log.getvalue().splitlines()
        return outcome


def _jsonable_config(run):
    return json.loads(json.dumps(run.config))


# ---------------------------------------------------------------------------
# results on disk
# ---------------------------------------------------------------------------
def _write_bytes_atomic(path, blob):
    from .persist import write_atomic
    write_atomic(path, lambda f: f.write(blob))


def read_result(results_dir, run):
    """The finished outcome of ``run`` in ``results_dir``, or None."""
    path = os.path.join(results_dir, run.name, RESULT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except FileNotFoundError:
        return None
    except ValueError:
        return None   # unreadable: the run is done again
    if result.get("status") != "ok" or result.get("config") != _jsonable_config(run) \
            or not os.path.exists(os.path.join(results_dir, run.name, NETWORK_FILE)):
        return None
    return result


def record(results_dir, outcome):
    """Write a finished outcome: network.npz, then result.json (the marker
    that the run is done); a failure goes to error.json."""
    run_dir = os.path.join(results_dir, outcome["run"])
    os.makedirs(run_dir, exist_ok=True)
    outcome = dict(outcome)
    blob = outcome.pop("network_npz", None)
    if outcome["status"] == "ok":
        _write_bytes_atomic(os.path.join(run_dir, NETWORK_FILE), blob)
        write_json_atomic(os.path.join(run_dir, RESULT_FILE), outcome)
        for stale in (CHECKPOINT_FILE, ERROR_FILE, RUNNING_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(run_dir, stale))
    else:
        write_json_atomic(os.path.join(run_dir, ERROR_FILE), outcome)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(run_dir, RUNNING_FILE))
    return outcome


# ---------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------
class SweepResult(object):
    """The outcomes of a sweep (one dict per run, in spec order), with the
    table, the plot and the ensembles."""

    def __init__(self, plan, runs, outcomes, results_dir, wall_seconds, skipped, ensembles):
        self.plan = plan
        self.runs = runs
        self.outcomes = outcomes
        self.results_dir = results_dir
        self.wall_seconds = wall_seconds
        self.skipped = skipped
        self.ensembles = ensembles

    @property
    def failed(self):
        return [o for o in self.outcomes if o["status"] != "ok"]

    def network(self, run_index, engine=None):
        """The trained network of run ``run_index`` (loaded from its .npz)."""
        from .persist import load
        return load(os.path.join(self.results_dir, self.runs[run_index].name,
                                 NETWORK_FILE), engine=engine)

    def rows(self):
        keys = [k for k in self.plan.swept_keys] + ["seed"]
        rows = []
        for o in self.outcomes:
            h = o.get("history") or {}
            row = {"run": o["run"]}
            row.update({k: _cell(o["swept"].get(k)) for k in keys})
            row.update(status=o["status"],
                       best_validation_accuracy=h.get("best_validation_accuracy"),
                       test_accuracy=h.get("test_accuracy"),
                       final_test_accuracy=o.get("final_test_accuracy"),
                       seconds=o.get("seconds"), error=o.get("error", ""))
            rows.append(row)
        return rows

    def csv(self):
        out = io.StringIO()
        rows = self.rows()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()

    def markdown(self):
        rows = self.rows()
        cols = list(rows[0])

        def fmt(col, v):
            if v is None:
                return ""
            if col.endswith("accuracy"):
                return "%.4f" % v
            if col == "seconds":
                return "%.1f" % v
            if isinstance(v, float):
                return "%g" % v
            return str(v).replace("|", "\\|").replace("\n", " ")
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt(c, r[c]) for c in cols) + " |" for r in rows]
        for e in self.ensembles:
            lines.append("")
            lines.append("Ensemble of %d (%s; %s vote): test accuracy %.4f, best member "
                         "%.4f (%s), average vote %.4f"
                         % (len(e["members"]), _describe(e["swept"]), e["vote"],
                            e["accuracy"], e["best_member_accuracy"],
                            e["best_member"], e["average_vote_accuracy"]))
        return "\n".join(lines) + "\n"

    def plot(self, path):
        """Accuracy against each swept parameter, as a PNG: each run's best
        validation accuracy and test accuracy, and their mean over the runs
        that share a value."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("the sweep's plot needs matplotlib: pip install "
                              "\"fastnet[bench]\"") from None
        keys = [k for k in self.plan.swept_keys] or ["seed"]
        fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
        for ax, key in zip(axes[0], keys):
            ok = [o for o in self.outcomes if o["status"] == "ok"]
            labels = sorted({_cell(o["swept"].get(key)) for o in ok}, key=_sort_key)
            numeric = all(isinstance(v, (int, float)) for v in labels)
            pos = {v: (v if numeric else i) for i, v in enumerate(labels)}
            for metric, marker in (("best_validation_accuracy", "o"), ("test_accuracy", "s")):
                xs = [pos[_cell(o["swept"].get(key))] for o in ok]
                ys = [o["history"][metric] for o in ok]
                line = ax.plot(xs, ys, marker, alpha=0.5, label=metric.replace("_", " "))
                means = [np.mean([y for x, y in zip(xs, ys) if x == pos[v]]) for v in labels]
                ax.plot([pos[v] for v in labels], means, "-", color=line[0].get_color())
            if not numeric:
                ax.set_xticks(range(len(labels)))
                ax.set_xticklabels([str(v) for v in labels], rotation=20)
            elif key in ("eta", "lmbda") and min(labels) > 0 and \
                    max(labels) / min(labels) >= 10:
                ax.set_xscale("log")
            ax.set_xlabel(key)
            ax.set_ylabel("accuracy")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        n_failed = len(self.failed)
        fig.suptitle("%s: %d runs%s (points: runs; lines: mean of the runs at each value)"
                     % (self.plan.name, len(self.outcomes),
                        ", %d failed" % n_failed if n_failed else ""), fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def ensemble(self, index=0, engine=None):
        """The Ensemble of group ``index`` of ``self.ensembles``."""
        e = self.ensembles[index]
        from .persist import load
        return Ensemble([load(os.path.join(self.results_dir, name, NETWORK_FILE),
                              engine=engine) for name in e["members"]], vote=e["vote"])


def _cell(v):
    if v is None or isinstance(v, (int, float, str)):
        return v
    return _network_label(v)


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def _describe(swept):
    return ", ".join("%s=%s" % (k, _cell(v)) for k, v in sorted(swept.items())) or "one config"


def _ensembles(plan, runs, outcomes, results_dir, test_data):
    """Group the finished runs that differ only by seed; each group of two
    or more votes on the test data."""
    if plan.ensemble is None:
        return []
    from .persist import load
    groups = {}
    for run, o in zip(runs, outcomes):
        if o["status"] != "ok":
            continue
        swept = {k: v for k, v in o["swept"].items() if k != "seed"}
        key = json.dumps({k: _cell(v) for k, v in swept.items()}, sort_keys=True)
        groups.setdefault(key, (swept, []))[1].append(run)
    result = []
    for swept, members in groups.values():
        if len(members) < 2:
            continue
        nets = [load(os.path.join(results_dir, r.name, NETWORK_FILE)) for r in members]
        ens = Ensemble(nets, vote=plan.ensemble["vote"])
        member_acc = [net.accuracy(test_data) for net in nets]
        best = int(np.argmax(member_acc))
        result.append({"swept": swept, "members": [r.name for r in members],
                       "vote": ens.vote, "accuracy": ens.accuracy(test_data),
                       "plurality_vote_accuracy": ens.accuracy(test_data, "plurality"),
                       "average_vote_accuracy": ens.accuracy(test_data, "average"),
                       "member_accuracies": member_acc,
                       "best_member": members[best].name,
                       "best_member_accuracy": member_acc[best]})
    return result


def default_cluster_shape(threads_per_worker=None, cores=None):
    """(workers, threads per worker) that fit the machine's cores."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
    threads = threads_per_worker or 1
    return max(1, cores // threads), threads


@contextlib.contextmanager
def _client_for(client, scheduler, workers, threads):
    """The Client to use: the one given, one connected to ``scheduler``, or
    a LocalCluster of ``workers`` processes x 1 Dask thread (each run uses
    ``threads`` kernel threads)."""
    distributed = _require_dask()
    if client is not None:
        yield client
        return
    if scheduler is not None:
        with distributed.Client(scheduler, timeout="30s") as c:
            yield c
        return
    import logging
    n_workers, _ = default_cluster_shape(threads)
    if workers is not None:
        n_workers = workers
    with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                  processes=True, host="127.0.0.1",
                                  dashboard_address=None,
                                  # a worker's shutdown race logs ERRORs; a
                                  # run's own failure is in its outcome
                                  silence_logs=logging.CRITICAL) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def sweep(spec, results_dir, client=None, scheduler=None, workers=None,
          threads_per_worker=None, serial=False, data=None, on_progress=None,
          plot=True):
    """Run every run of ``spec`` (a dict or a JSON/TOML path) and return a
    SweepResult; outcomes are written into ``results_dir``.

    ``client``: a ``distributed.Client``; else ``scheduler`` (an address such
    as ``tcp://host:8786``); else a LocalCluster of ``workers`` processes
    (default: the cores / ``threads_per_worker``).  ``threads_per_worker``:
    the CPU kernel threads of every run (default: the spec's ``threads``,
    else 1).  ``serial=True`` trains the runs one after another in this
    process, without Dask.  ``data``: three (x, y) pairs instead of the
    spec's data.  ``on_progress(counts)`` is called with a dict of
    ``done, running, failed, pending, skipped`` as runs start and end.
    """
    if not isinstance(spec, dict):
        spec = read_spec(spec)
    plan = SweepPlan(spec, threads=threads_per_worker, data=data)
    runs = plan.runs()
    # absolute: the workers write the runs' checkpoints there, whatever their cwd
    results_dir = os.path.abspath(os.fspath(results_dir))
    os.makedirs(results_dir, exist_ok=True)
    if not any(callable(r.network) for r in runs):
        # the spec as run, for the record (TOML dates and the like as text)
        write_json_atomic(os.path.join(results_dir, "sweep.json"),
                          _finite_or_none(json.loads(json.dumps(spec, default=str))))
    t0 = time.perf_counter()
    outcomes = {}
    for run in runs:
        done = read_result(results_dir, run)
        if done is not None:
            outcomes[run.id] = done
    skipped = len(outcomes)
    todo = [r for r in runs if r.id not in outcomes]
    tracker = _Progress(len(runs), skipped, on_progress)
    if todo and serial:
        for run in todo:
            tracker.started(run.id)
            outcome = record(results_dir, train_run(run, plan.data(), results_dir))
            outcomes[run.id] = outcome
            tracker.finished(run.id, outcome["status"] == "ok")
    elif todo:
        with _client_for(client, scheduler, workers, plan.threads) as c:
            outcomes.update(_run_on_dask(c, plan, todo, results_dir, tracker))
    wall = time.perf_counter() - t0
    ordered = [outcomes[r.id] for r in runs]
    result = SweepResult(plan, runs, ordered, results_dir, wall, skipped,
                         _ensembles(plan, runs, ordered, results_dir, plan.data()[2]))
    with open(os.path.join(results_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(result.markdown())
    with open(os.path.join(results_dir, "results.csv"), "w", encoding="utf-8") as f:
        f.write(result.csv())
    if result.ensembles:
        write_json_atomic(os.path.join(results_dir, "ensembles.json"), result.ensembles)
    if plot and any(o["status"] == "ok" for o in ordered):
        try:
            result.plot(os.path.join(results_dir, "accuracy.png"))
        except ImportError as exc:
            sys.stderr.write("fastnet.sweep: no plot: %s\n" % exc)
    return result


class _Progress(object):
    """Counts of done / running / failed runs, for the progress display."""

    def __init__(self, total, skipped, callback):
        self.total = total
        self.skipped = skipped
        self.done = skipped
        self.failed = 0
        self.slots = {}         # worker -> the run it trains now (one at a time)
        self.finished_ids = set()
        self.lock = threading.Lock()
        self.callback = callback
        self._report()

    def counts(self):
        return {"total": self.total, "done": self.done, "failed": self.failed,
                "running": len(self._running()), "skipped": self.skipped,
                "pending": self.total - self.done - self.failed - len(self._running())}

    def _running(self):
        return set(self.slots.values()) - self.finished_ids

    def _report(self):
        if self.callback is not None:
            self.callback(self.counts())

    def started(self, run_id, worker="local"):
        """``run_id`` started on ``worker``: the run that worker trained
        before is over, even if its result has not arrived yet."""
        with self.lock:
            if run_id in self.finished_ids:
                return      # a late event from the worker
            self.slots[worker] = run_id
            self._report()

    def finished(self, run_id, ok):
        with self.lock:
            self.finished_ids.add(run_id)
            if ok:
                self.done += 1
            else:
                self.failed += 1
            self._report()


def _run_on_dask(client, plan, todo, results_dir, tracker):
    distributed = _require_dask()
    by_key = {}
    pending_ids = {r.id for r in todo}

    def on_event(event):
        _, msg = event
        if isinstance(msg, dict) and msg.get("run") in pending_ids:
            tracker.started(msg["run"], msg.get("worker", "?"))

    client.subscribe_topic(EVENT_TOPIC, on_event)
    try:
        # the data go to every worker once; every task refers to them
        [data_future] = client.scatter([plan.data()], broadcast=True, hash=False)
        token = uuid.uuid4().hex[:8]
        futures = []
        for run in todo:
            f = client.submit(train_run, run, data_future, results_dir,
                              key="fastnet-run-%s-%s" % (run.id, token), pure=False)
            by_key[f.key] = run
            futures.append(f)
        outcomes = {}
        for future in distributed.as_completed(futures):
            run = by_key[future.key]
            try:
                outcome = future.result()
            except Exception as exc:   # e.g. KilledWorker: the task failed on every try
                outcome = {"run": run.name, "id": run.id, "config": _jsonable_config(run),
                           "swept": run.swept, "status": "failed",
                           "error": "%s: %s" % (type(exc).__name__, exc)}
            outcome = record(results_dir, outcome)
            pending_ids.discard(run.id)
            outcomes[run.id] = outcome
            tracker.finished(run.id, outcome["status"] == "ok")
        return outcomes
    finally:
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(EVENT_TOPIC)


# ---------------------------------------------------------------------------
# ensembles: the chapter's five members, trained in parallel
# ---------------------------------------------------------------------------
def train_ensemble(network, results_dir, seeds=(0, 1, 2, 3, 4), sgd=None,
                   data="mnist_sample", vote="plurality", **sweep_kwargs):
    """Train one member per seed as a sweep and return (Ensemble, SweepResult).

    ``network``: a builder name, ``{"layers": [...]}`` or a callable;
    ``sgd``: SGD's arguments (``epochs`` at least); ``data``: a data spec or
    three (x, y) pairs; the rest goes to ``sweep``.
    """
    spec = {"name": "ensemble", "network": network, "sgd": dict(sgd or {}),
            "seeds": list(seeds), "ensemble": {"vote": vote}}
    if isinstance(data, (tuple, list)) and len(data) == 3 and not isinstance(data[0], str):
        sweep_kwargs["data"] = tuple(data)
    else:
        spec["data"] = data
    result = sweep(spec, results_dir, **sweep_kwargs)
    if result.failed:
        raise RuntimeError("train_ensemble: %d member(s) failed: %s"
                           % (len(result.failed),
                              "; ".join(o.get("error", "?") for o in result.failed)))
    return result.ensemble(0), result


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------
def _progress_printer(stream):
    last = [None]

    def show(counts):
        line = ("runs: %(done)d/%(total)d done, %(running)d running, %(failed)d failed, "
                "%(pending)d pending" % counts)
        if counts["skipped"]:
            line += " (%d already done)" % counts["skipped"]
        if line != last[0]:
            last[0] = line
            if stream.isatty():
                stream.write("\r" + line.ljust(78))
            else:
                stream.write(line + "\n")
            stream.flush()
    return show


def main(argv=None):
    """``python -m fastnet sweep SPEC ...``: returns the exit status (0 when
    every run finished, 1 when some failed, 2 for a bad spec or arguments)."""
    parser = argparse.ArgumentParser(
        prog="python -m fastnet sweep",
        description="Train the runs of a sweep spec (JSON or TOML) on Dask: a "
                    "LocalCluster sized to this machine, or a scheduler by address.",
        epilog=SPEC_HELP % (", ".join(sorted(NETWORKS)), ", ".join(SWEEPABLE)),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="the sweep spec, a .json or .toml file")
    parser.add_argument("--scheduler", default=None,
                        help="a Dask scheduler's address, e.g. tcp://host:8786 "
                             "(default: start a LocalCluster)")
    parser.add_argument("--workers", type=int, default=None,
                        help="LocalCluster worker processes (default: cores / threads)")
    parser.add_argument("--threads-per-worker", type=int, default=None,
                        help="CPU kernel threads of each run (default: the spec's "
                             "'threads', else 1)")
    parser.add_argument("--results", default=None,
                        help="results directory (default: SPEC's name + '-results')")
    parser.add_argument("--serial", action="store_true",
                        help="train the runs one after another here, without Dask")
    args = parser.parse_args(argv)
    for name in ("workers", "threads_per_worker"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error("--%s must be >= 1, got %d" % (name.replace("_", "-"), value))
    if args.scheduler is not None and args.workers is not None:
        parser.error("--workers sizes a LocalCluster; with --scheduler the cluster's "
                     "workers are used")
    results = args.results or os.path.splitext(args.spec)[0] + "-results"
    try:
        result = sweep(args.spec, results, scheduler=args.scheduler, workers=args.workers,
                       threads_per_worker=args.threads_per_worker, serial=args.serial,
                       on_progress=_progress_printer(sys.stderr))
    except (ValueError, OSError, ImportError) as exc:
        # a bad spec, unreadable data, an unreachable scheduler, no dask
        sys.stderr.write("fastnet sweep: %s\n" % exc)
        return 2
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    sys.stdout.write(result.markdown())
    sys.stdout.write("%d runs (%d already done, %d failed) in %.1f s; results in %s\n"
                     % (len(result.outcomes), result.skipped, len(result.failed),
                        result.wall_seconds, results))
    return 1 if result.failed else 0


if __name__ == "__main__":
    # through the imported module, so Dask pickles train_run by reference
    # (not this __main__ copy by value)
    from fastnet import sweep as _sweep_module
    sys.exit(_sweep_module.main(sys.argv[1:]))
