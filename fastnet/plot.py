"""Pictures of networks and runs, as PNG files (matplotlib, Agg backend).

matplotlib is an optional extra: ``pip install "fastnet[plot]"``; it is
imported when a picture is drawn, never by ``import fastnet``.  Every function
writes one PNG of exactly ``figsize`` inches x ``dpi`` (no tight cropping,
so its pixel size is known) and returns the path.

- ``layer_images``: each layer's image of the plane (points, warped grid).
- ``decision_boundary``: the classes of a 2-input network over its plane.
- ``interpolation_frames``: identity -> affine -> activation of one layer,
  as PNG frames and optionally a GIF.
- ``gradient_norms``: per-layer gradient norms during training, per run.
- ``weight_images``: a dense layer's incoming weights as 28x28 images.
- ``conv_filters``: a ConvPoolLayer's filters, as the book's figure.
- ``learning_curves``: accuracy and cost per epoch, several runs overlaid.
- ``misclassified``: a gallery of misclassified digits, true/predicted.
- ``ensemble_errors``: the digits an ensemble's majority vote gets wrong.
"""

import os

import numpy as np

from . import diagnostics

__all__ = ["layer_images", "decision_boundary", "interpolation_frames",
           "gradient_norms", "weight_images", "conv_filters", "learning_curves",
           "misclassified", "ensemble_errors"]

CLASS_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
GRID_COLOUR = "#9a9a9a"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError('fastnet.plot needs matplotlib: pip install "fastnet[plot]"') from None
    matplotlib.use("Agg")       # files only, never a window
    import matplotlib.pyplot as plt
    return plt


def _figure(figsize, dpi):
    plt = _pyplot()
    try:
        w, h = (float(v) for v in figsize)
        dpi = float(dpi)
    except (TypeError, ValueError):
        raise ValueError("figsize must be (width, height) in inches and dpi a number, "
                         "got %r, %r" % (figsize, dpi)) from None
    if not (w > 0 and h > 0 and dpi > 0):
        raise ValueError("figsize and dpi must be positive, got %r, %r" % (figsize, dpi))
    return plt.figure(figsize=(w, h), dpi=dpi)


def _save(fig, path):
    plt = _pyplot()
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    try:
        fig.savefig(path, dpi=fig.dpi, format="png")
    finally:
        plt.close(fig)
    return path


def _labels(y, n, where):
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError("%s: y must be 1-D with one label per point (%d), got shape %s"
                         % (where, n, y.shape))
    return y.astype(np.int64)


def _points_2d(x, where):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] == 0:
        raise ValueError("%s: x must be (n, 2) points of the plane, got shape %s"
                         % (where, x.shape))
    return x


def _auto_bounds(x, margin=0.15):
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = margin * np.maximum(hi - lo, 1e-6)
    return (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])


def _scatter(ax, x2, y, size=8):
    for c in np.unique(y):
        sel = y == c
        ax.scatter(x2[sel, 0], x2[sel, 1], s=size, c=CLASS_COLOURS[int(c) % 10],
                   edgecolors="none", zorder=3, label="class %d" % c)


def _draw_lines(ax, lines):
    for line in lines:
        ax.plot(line[:, 0], line[:, 1], color=GRID_COLOUR, lw=0.6, zorder=1)


class _Projection(object):
    """A layer's representation shown in 2-D: as it is when 2 units wide,
    else its first two principal axes (fitted on the data points)."""

    def __init__(self, points):
        width = points.shape[-1]
        self.width = width
        if width > 2:
            flat = points.reshape(-1, width).astype(np.float64)
            self.mean = flat.mean(axis=0)
            _, _, vt = np.linalg.svd(flat - self.mean, full_matrices=False)
            self.axes = vt[:2].T
        self.label = ("%d units" % width if width <= 2
                      else "%d units, first 2 principal axes" % width)

    def __call__(self, a):
        a = np.asarray(a, dtype=np.float64)
        if self.width == 1:
            return np.concatenate([a, np.zeros_like(a)], axis=-1)
        if self.width == 2:
            return a
        return (a - self.mean) @ self.axes


def layer_images(net, x, y, path, bounds=None, n_lines=15, title=None,
                 point_size=8, figsize=None, dpi=100):
    """One panel per representation of a 2-input network: the input plane,
    then the output of every hidden layer (the softmax layer is left out: its
    decision is drawn as a dashed line in the last hidden plane when that is
    2-D and there are 2 classes).  Each panel shows the points ``x`` coloured
    by ``y`` and the image of a square grid over ``bounds`` (default: the
    points' box plus a margin).  Layers wider than 2 are shown on their first
    two principal axes."""
    where = "plot.layer_images"
    if net.n_in != 2:
        raise ValueError("%s: the network takes %d inputs; the plane needs 2"
                         % (where, net.n_in))
    x = _points_2d(x, where)
    y = _labels(y, x.shape[0], where)
    if bounds is None:
        bounds = _auto_bounds(x)
    lines = diagnostics.grid_lines(bounds, n_lines, 80)
    point_images = diagnostics.layer_images(net, x)
    line_images = diagnostics.layer_images(net, lines)
    hidden = [k for k, layer in enumerate(net.layers) if not layer.is_output]
    shown = [0] + [k + 1 for k in hidden]
    n = len(shown)
    if figsize is None:
        figsize = (3.0 * n, 3.3)
    fig = _figure(figsize, dpi)
    out = net.layers[-1]
    for panel, idx in enumerate(shown):
        ax = fig.add_subplot(1, n, panel + 1)
        project = _Projection(point_images[idx])
        _draw_lines(ax, project(line_images[idx]))
        _scatter(ax, project(point_images[idx]), y, size=point_size)
        if idx == 0:
            ax.set_title("input plane", fontsize=9)
        else:
            layer = net.layers[idx - 1]
            act = getattr(layer.activation_fn, "name", "")
            ax.set_title("layer %d: %s %s" % (idx - 1, act, project.label), fontsize=8)
        if (idx == shown[-1] and idx > 0 and project.width == 2
                and out.n_in == 2 and out.n_out == 2):
            _decision_line(ax, *diagnostics.decision_line(net), project(point_images[idx]))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    if title:
        fig.suptitle(title, fontsize=10)
    top = 0.88 - (0.06 * (1 + title.count("\n")) if title else 0.0)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=top, wspace=0.08)
    return _save(fig, path)


def _decision_line(ax, a, c, pts):
    """The line a . h + c = 0, the part of it inside the points' box."""
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    pad = 0.1 * (hi - lo + 1e-9)
    lo, hi = lo - pad, hi + pad
    if abs(a[1]) >= abs(a[0]) and a[1] != 0:
        hx = np.linspace(lo[0], hi[0], 400)
        hy = -(a[0] * hx + c) / a[1]
    elif a[0] != 0:
        hy = np.linspace(lo[1], hi[1], 400)
        hx = -(a[1] * hy + c) / a[0]
    else:
        return
    inside = (hx >= lo[0]) & (hx <= hi[0]) & (hy >= lo[1]) & (hy <= hi[1])
    if inside.any():
        ax.plot(hx[inside], hy[inside], "k--", lw=1.2, zorder=4)


def decision_boundary(net, x, y, path, bounds=None, resolution=150, title=None,
                      point_size=8, figsize=(4.0, 4.0), dpi=100):
    """The input plane of a 2-input network coloured by its predicted class
    (shade: the probability of that class), the boundary drawn where two
    classes' probabilities are equal, and the points ``x`` coloured by ``y``."""
    where = "plot.decision_boundary"
    x = _points_2d(x, where)
    y = _labels(y, x.shape[0], where)
    if bounds is None:
        bounds = _auto_bounds(x)
    xx, yy, probs = diagnostics.predict_grid(net, bounds, resolution)
    from matplotlib.colors import to_rgb
    winner = probs.argmax(axis=-1)
    confidence = probs.max(axis=-1)
    strength = np.clip((confidence - 1.0 / probs.shape[-1]) / (1.0 - 1.0 / probs.shape[-1]),
                       0, 1)[..., None]
    colours = np.array([to_rgb(CLASS_COLOURS[c % 10]) for c in range(probs.shape[-1])])
    image = 1.0 - 0.45 * strength * (1.0 - colours[winner])
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(image, origin="lower", extent=(xx[0, 0], xx[0, -1], yy[0, 0], yy[-1, 0]),
              aspect="auto", interpolation="bilinear", zorder=0)
    if probs.shape[-1] == 2:
        ax.contour(xx, yy, probs[..., 1] - probs[..., 0], levels=[0.0], colors="k",
                   linewidths=1.2, zorder=2)
    else:
        ax.contour(xx, yy, winner, levels=np.arange(probs.shape[-1]) + 0.5, colors="k",
                   linewidths=1.0, zorder=2)
    _scatter(ax, x, y, size=point_size)
    ax.set_xlim(bounds[0], bounds[1])
    ax.set_ylim(bounds[2], bounds[3])
    ax.set_title(title or "decision boundary", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.08, top=0.88)
    return _save(fig, path)


def interpolation_frames(net, layer, x, y, out_dir, steps=8, bounds=None, n_lines=15,
                         gif=None, prefix="frame", figsize=(4.0, 4.0), dpi=80,
                         frame_ms=120):
    """The frames of ``diagnostics.layer_interpolation`` for layer ``layer``
    (index into ``net.layers``; a 2 -> 2 FullyConnectedLayer) applied to its
    own input: the points and the grid over the input plane as they reach
    that layer, moved from the layer's input (identity) through its affine
    map to its output.  Writes ``out_dir/<prefix>_NN.png`` (2*steps+1 files)
    and, when ``gif`` is given, the same frames as a looping GIF at ``gif``
    (a path; a relative one is taken inside ``out_dir``).  Returns the list
    of written paths, the GIF last."""
    where = "plot.interpolation_frames"
    if not isinstance(layer, (int, np.integer)) or not -len(net.layers) <= layer < len(net.layers):
        raise ValueError("%s: layer must be an index into the network's %d layers, got %r"
                         % (where, len(net.layers), layer))
    layer = int(layer) % len(net.layers)
    x = _points_2d(x, where)
    y = _labels(y, x.shape[0], where)
    if bounds is None:
        bounds = _auto_bounds(x)
    lines = diagnostics.grid_lines(bounds, n_lines, 80)
    # the layer's input: the network's images at the layer before
    point_in = diagnostics.layer_images(net, x)[layer]
    line_in = diagnostics.layer_images(net, lines)[layer]
    target = net.layers[layer]
    point_frames = diagnostics.layer_interpolation(target, point_in, steps)
    line_frames = diagnostics.layer_interpolation(target, line_in, steps)
    everything = np.concatenate([point_frames.reshape(-1, 2), line_frames.reshape(-1, 2)])
    lo, hi = everything.min(axis=0), everything.max(axis=0)
    pad = 0.05 * (hi - lo + 1e-9)
    os.makedirs(os.fspath(out_dir), exist_ok=True)
    paths = []
    act = getattr(target.activation_fn, "name", "activation")
    for i in range(point_frames.shape[0]):
        stage = ("identity -> affine" if i <= steps else "affine -> %s" % act)
        fig = _figure(figsize, dpi)
        ax = fig.add_subplot(1, 1, 1)
        _draw_lines(ax, line_frames[i])
        _scatter(ax, point_frames[i], y, size=6)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("layer %d, %s (%d/%d)" % (layer, stage, i, point_frames.shape[0] - 1),
                     fontsize=9)
        fig.subplots_adjust(left=0.03, right=0.97, bottom=0.03, top=0.92)
        paths.append(_save(fig, os.path.join(os.fspath(out_dir), "%s_%02d.png" % (prefix, i))))
    if gif:
        from PIL import Image       # pillow comes with matplotlib
        frames = [Image.open(p).convert("P", palette=Image.ADAPTIVE, colors=64)
                  for p in paths]
        # pause on the input, the affine image and the output
        durations = [frame_ms] * len(frames)
        for i in (0, steps, len(frames) - 1):
            durations[i] = frame_ms * 6
        gif_path = os.path.join(os.fspath(out_dir), os.fspath(gif))
        frames[0].save(gif_path, save_all=True, append_images=frames[1:],
                       duration=durations, loop=0, optimize=True)
        paths.append(gif_path)
    return paths


def gradient_norms(runs, path, layer_names=None, ylabel="||dC/db|| per layer",
                   title=None, figsize=None, dpi=100):
    """One panel per run, one line per layer: a per-layer quantity (e.g.
    ``bias_grad_norm`` from ``diagnostics.gradient_norms``) against the
    training progress, on a log scale shared by the panels.

    ``runs``: {label: (steps, values)} with ``values`` of shape
    (len(steps), n_layers), layers input first."""
    where = "plot.gradient_norms"
    if not runs:
        raise ValueError("%s: runs is empty" % where)
    prepared = []
    for label, pair in runs.items():
        try:
            steps, values = pair
        except (TypeError, ValueError):
            raise ValueError("%s: run %r must be a pair (steps, values)" % (where, label)) from None
        steps = np.asarray(steps, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[0] != steps.shape[0] or steps.ndim != 1:
            raise ValueError("%s: run %r: values must have shape (len(steps), n_layers), "
                             "got steps %s and values %s" % (where, label, steps.shape,
                                                              values.shape))
        prepared.append((label, steps, values))
    n = len(prepared)
    if figsize is None:
        figsize = (4.2 * n, 3.4)
    fig = _figure(figsize, dpi)
    plt = _pyplot()
    cmap = plt.get_cmap("viridis")
    positive = np.concatenate([v[v > 0] for _, _, v in prepared])
    lo, hi = (positive.min(), positive.max()) if positive.size else (1e-3, 1.0)
    first = None
    for i, (label, steps, values) in enumerate(prepared):
        ax = fig.add_subplot(1, n, i + 1, sharey=first)
        first = first or ax
        n_layers = values.shape[1]
        for k in range(n_layers):
            name = (layer_names[k] if layer_names is not None and k < len(layer_names)
                    else "layer %d" % k)
            ax.plot(steps, np.where(values[:, k] > 0, values[:, k], np.nan), lw=1.5,
                    marker="o" if len(steps) <= 30 else None, markersize=3,
                    color=cmap(k / max(n_layers - 1, 1) * 0.9), label=name)
        ax.set_yscale("log")
        ax.set_ylim(lo / 2, hi * 2)
        ax.set_title(str(label), fontsize=9)
        ax.set_xlabel("mini-batches trained", fontsize=8)
        ax.tick_params(labelsize=7)
        if i == 0:
            ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.15, top=0.82 if title else 0.9,
                        wspace=0.15)
    return _save(fig, path)


def _image_grid(images, columns, path, figsize, dpi, cmap, captions=None, title=None,
                symmetric=False, corner_labels=None):
    n = len(images)
    rows = -(-n // columns)
    fig = _figure(figsize, dpi)
    for i, img in enumerate(images):
        ax = fig.add_subplot(rows, columns, i + 1)
        if symmetric:
            m = float(np.abs(img).max()) or 1.0
            ax.imshow(img, cmap=cmap, vmin=-m, vmax=m, interpolation="nearest")
        else:
            ax.imshow(img, cmap=cmap, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if captions is not None:
            ax.set_title(captions[i], fontsize=7, pad=2)
        if corner_labels is not None:
            top, bottom = corner_labels[i]
            ax.text(1.04, 1.0, top, transform=ax.transAxes, fontsize=8, va="top",
                    color="#2ca02c")
            ax.text(1.04, 0.0, bottom, transform=ax.transAxes, fontsize=8, va="bottom",
                    color="#d62728")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.02, right=0.95 if corner_labels else 0.98, bottom=0.02,
                        top=0.86 if title else 0.95, wspace=0.35 if corner_labels else 0.1,
                        hspace=0.35 if captions else 0.1)
    return _save(fig, path)


def _image_shape(size, image_shape, where):
    if image_shape is None:
        side = int(round(np.sqrt(size)))
        if side * side != size:
            raise ValueError("%s: %d inputs are not a square image; give image_shape"
                             % (where, size))
        return (side, side)
    image_shape = tuple(int(v) for v in image_shape)
    if int(np.prod(image_shape)) != size:
        raise ValueError("%s: image_shape %s does not hold %d values"
                         % (where, image_shape, size))
    return image_shape


def weight_images(net_or_layer, path, max_units=None, image_shape=None, columns=None,
                  title=None, figsize=None, dpi=100):
    """The incoming weights of each unit of a dense layer (default: the
    network's first layer) as images (28x28 for MNIST): red pulls the unit
    up, blue down, each image on its own symmetric scale -- what each hidden
    unit "looks for"."""
    where = "plot.weight_images"
    layer = net_or_layer.layers[0] if hasattr(net_or_layer, "layers") else net_or_layer
    if hasattr(layer, "filter_shape") or not hasattr(layer, "n_out"):
        raise ValueError("%s: need a FullyConnectedLayer or SoftmaxLayer (or a network "
                         "starting with one), got %s" % (where, type(layer).__name__))
    w = layer.w.get_value()
    shape = _image_shape(w.shape[0], image_shape, where)
    units = w.shape[1] if max_units is None else min(int(max_units), w.shape[1])
    if units < 1:
        raise ValueError("%s: max_units must be >= 1, got %r" % (where, max_units))
    columns = columns or min(units, 8)
    rows = -(-units // columns)
    if figsize is None:
        figsize = (1.1 * columns, 1.2 * rows + (0.4 if title else 0.1))
    images = [w[:, j].reshape(shape) for j in range(units)]
    captions = ["unit %d" % j for j in range(units)]
    return _image_grid(images, columns, path, figsize, dpi, "RdBu_r", captions=captions,
                       title=title, symmetric=True)


def conv_filters(net_or_layer, path, channel=0, columns=None, title=None, figsize=None,
                 dpi=100):
    """The filters of a ConvPoolLayer (default: the network's first) as the
    book's figure in chapter 6: one small square per feature map, darker
    shades for larger weights.  For several input channels, ``channel``
    picks which one to show."""
    where = "plot.conv_filters"
    if hasattr(net_or_layer, "layers"):
        convs = [l for l in net_or_layer.layers if hasattr(l, "filter_shape")]
        if not convs:
            raise ValueError("%s: the network has no ConvPoolLayer" % where)
        layer = convs[0]
    else:
        layer = net_or_layer
    if not hasattr(layer, "filter_shape"):
        raise ValueError("%s: need a ConvPoolLayer, got %s" % (where, type(layer).__name__))
    w = layer.w.get_value()
    if not 0 <= channel < w.shape[1]:
        raise ValueError("%s: channel %r is out of range for %d input channels"
                         % (where, channel, w.shape[1]))
    n = w.shape[0]
    columns = columns or min(n, 10)
    rows = -(-n // columns)
    if figsize is None:
        figsize = (0.8 * columns, 0.8 * rows + (0.4 if title else 0.1))
    images = [w[f, channel] for f in range(n)]
    return _image_grid(images, columns, path, figsize, dpi, "gray_r", title=title)


_CURVE_KEYS = (("training_accuracy", "training"), ("validation_accuracy", "validation"),
               ("test_accuracy", "test"))
_COST_KEYS = (("training_cost", "training"), ("validation_cost", "validation"),
              ("test_cost", "test"))


def _epoch_table(run, where):
    """{key: array over epochs (NaN where missing)} from a TrainingHistory,
    a list of epoch dicts or a dict of lists."""
    epochs = getattr(run, "epochs", run)
    if isinstance(epochs, dict):
        table = {}
        length = None
        for key, values in epochs.items():
            values = [np.nan if v is None else float(v) for v in values]
            if length is not None and len(values) != length:
                raise ValueError("%s: the lists of a run must have one entry per epoch; "
                                 "%r has %d, another %d" % (where, key, len(values), length))
            length = len(values)
            table[key] = np.array(values)
        return table
    try:
        records = list(epochs)
    except TypeError:
        raise ValueError("%s: a run must be a TrainingHistory, a list of epoch dicts or a "
                         "dict of lists, got %s" % (where, type(run).__name__)) from None
    if not all(isinstance(r, dict) for r in records):
        raise ValueError("%s: a list run must hold one dict per epoch" % where)
    keys = set(k for r in records for k in r)
    return {k: np.array([np.nan if r.get(k) is None else float(r[k]) for r in records])
            for k in keys}


def learning_curves(runs, path, labels=None, title=None, figsize=None, dpi=100):
    """Accuracy per epoch (training / validation / test, whichever a run has)
    and, when some run has costs (``training_cost`` ...), cost per epoch in a
    second panel; several runs overlaid, one colour per run.

    ``runs``: one run or a list of them; a run is a ``TrainingHistory``, its
    ``epochs`` list of dicts (keys ``epoch``, ``validation_accuracy``,
    ``test_accuracy``, ...; None where not measured -- network3 measures the
    test accuracy only at a new best validation accuracy, so test points can
    be sparse) or a dict of equal-length lists."""
    where = "plot.learning_curves"
    def is_epoch_record(item):
        # one epoch's dict holds numbers; a dict-of-lists run holds lists
        return isinstance(item, dict) and not any(
            isinstance(v, (list, tuple, np.ndarray)) for v in item.values())

    single = hasattr(runs, "epochs") or isinstance(runs, dict) or (
        isinstance(runs, (list, tuple)) and len(runs) > 0 and is_epoch_record(runs[0]))
    run_list = [runs] if single else list(runs)
    if not run_list:
        raise ValueError("%s: no runs" % where)
    if labels is None:
        labels = ["run %d" % i for i in range(len(run_list))] if len(run_list) > 1 else [""]
    if len(labels) != len(run_list):
        raise ValueError("%s: %d labels for %d runs" % (where, len(labels), len(run_list)))
    tables = [_epoch_table(r, where) for r in run_list]
    has_cost = any(k in t and np.isfinite(t[k]).any() for t in tables for k, _ in _COST_KEYS)
    if not any(k in t and np.isfinite(t[k]).any() for t in tables for k, _ in _CURVE_KEYS):
        raise ValueError("%s: no run has any accuracy to plot (keys %s)"
                         % (where, ", ".join(k for k, _ in _CURVE_KEYS)))
    panels = 2 if has_cost else 1
    if figsize is None:
        figsize = (5.0 * panels, 3.6)
    fig = _figure(figsize, dpi)
    styles = {"training": ":", "validation": "-", "test": "--"}
    markers = {"training": None, "validation": "o", "test": "s"}
    groups = [(_CURVE_KEYS, "accuracy", True)] + ([(_COST_KEYS, "cost", False)] if has_cost else [])
    for p, (keys, ylabel, percent) in enumerate(groups):
        ax = fig.add_subplot(1, panels, p + 1)
        for i, (table, label) in enumerate(zip(tables, labels)):
            colour = CLASS_COLOURS[i % 10]
            for key, kind in keys:
                if key not in table or not np.isfinite(table[key]).any():
                    continue
                values = table[key] * (100.0 if percent else 1.0)
                epochs = table.get("epoch", np.arange(len(values)))
                ok = np.isfinite(values)
                name = ("%s %s" % (label, kind)).strip()
                ax.plot(epochs[ok], values[ok], linestyle=styles[kind], marker=markers[kind],
                        markersize=3, color=colour, lw=1.3, label=name)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(ylabel + (" (%)" if percent else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.14, top=0.86 if title else 0.95,
                        wspace=0.25)
    return _save(fig, path)


def _digit_errors_input(x, y_true, where):
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError("%s: x must be (n, pixels), got shape %s" % (where, x.shape))
    y_true = _labels(y_true, x.shape[0], where)
    return x, y_true


def misclassified(x, y_true, y_pred, path, max_images=24, image_shape=None, columns=None,
                  title=None, figsize=None, dpi=100):
    """The first ``max_images`` digits with y_pred != y_true, each captioned
    "true T, predicted P".  Returns the path; a ValueError when nothing is
    misclassified (an empty picture says nothing)."""
    where = "plot.misclassified"
    x, y_true = _digit_errors_input(x, y_true, where)
    y_pred = _labels(y_pred, x.shape[0], where)
    wrong = np.flatnonzero(y_true != y_pred)[:int(max_images)]
    if wrong.size == 0:
        raise ValueError("%s: no digit is misclassified" % where)
    shape = _image_shape(x.shape[1], image_shape, where)
    columns = columns or min(wrong.size, 8)
    rows = -(-wrong.size // columns)
    if figsize is None:
        figsize = (1.1 * columns, 1.25 * rows + (0.4 if title else 0.1))
    images = [x[i].reshape(shape) for i in wrong]
    captions = ["true %d, got %d" % (y_true[i], y_pred[i]) for i in wrong]
    return _image_grid(images, columns, path, figsize, dpi, "gray_r", captions=captions,
                       title=title)


def ensemble_errors(x, y_true, predictions, path, max_images=40, image_shape=None,
                    columns=None, title=None, figsize=None, dpi=100):
    """The digits an ensemble gets wrong, as the book's figure in chapter 6:
    the correct label top right (green), the ensemble's bottom right (red).

    ``predictions``: the ensemble's labels (n,), or each member's labels
    (n_members, n) combined by majority vote (ties go to the smaller label).
    Returns the path; a ValueError when the ensemble makes no error."""
    where = "plot.ensemble_errors"
    x, y_true = _digit_errors_input(x, y_true, where)
    p = np.asarray(predictions)
    if p.ndim == 2 and p.shape[1] == x.shape[0]:
        vote = diagnostics.majority_vote(p)
    elif p.ndim == 1:
        vote = _labels(p, x.shape[0], where)
    else:
        raise ValueError("%s: predictions must be (n,) or (n_members, n) with n = %d, got "
                         "shape %s" % (where, x.shape[0], p.shape))
    wrong = np.flatnonzero(vote != y_true)
    if wrong.size == 0:
        raise ValueError("%s: the ensemble makes no error" % where)
    shown = wrong[:int(max_images)]
    shape = _image_shape(x.shape[1], image_shape, where)
    columns = columns or min(shown.size, 10)
    rows = -(-shown.size // columns)
    if figsize is None:
        figsize = (1.0 * columns, 1.0 * rows + 0.45)
    images = [x[i].reshape(shape) for i in shown]
    corners = [(str(y_true[i]), str(vote[i])) for i in shown]
    if title is None:
        title = "%d of %d digits wrong (correct top right, ensemble bottom right)" % (
            wrong.size, x.shape[0])
    return _image_grid(images, columns, path, figsize, dpi, "gray_r", title=title,
                       corner_labels=corners)
