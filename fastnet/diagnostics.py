"""Looking inside a trained network, through fastnet's public API only.

Pure NumPy (the pictures are in ``fastnet.plot``); every function takes any
fastnet ``Network`` on any engine and uses nothing but ``net.params``,
``net.layers``, ``net.output(x, layer=k)``, ``net.predict`` and
``net.cost_and_grads``.

- ``count_params(net)``: the number of trainable numbers.
- ``grid_lines``, ``plane_grid``: points of the input plane to push through.
- ``layer_images(net, points)``: the image of those points at every layer.
- ``predict_grid(net, bounds)``: class probabilities over the input plane.
- ``layer_interpolation(layer, points)``: the frames of a continuous move
  from a 2-D layer's input to its output (identity -> affine -> activation).
- ``majority_vote(predictions)``: an ensemble's labels from its members'.
- ``gradient_norms(net, x, y)``: per layer, the norms of dC/dw and dC/db
  and the mean |delta| (see its docstring for what delta is here).
"""

import numpy as np


__all__ = ["count_params", "grid_lines", "plane_grid", "layer_images",
           "predict_grid", "layer_interpolation", "gradient_norms",
           "decision_line", "majority_vote"]


def count_params(net):
    """The number of trainable parameters: the sizes of ``net.params`` summed
    (784-16-16-10 has 784*16+16 + 16*16+16 + 16*10+10 = 13,002)."""
    return int(sum(np.asarray(p.get_value(borrow=True)).size for p in net.params))


def _bounds(bounds, where):
    try:
        x0, x1, y0, y1 = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError("%s: bounds must be (xmin, xmax, ymin, ymax), got %r"
                         % (where, bounds)) from None
    if not all(np.isfinite([x0, x1, y0, y1])) or not (x0 < x1 and y0 < y1):
        raise ValueError("%s: bounds must be finite with xmin < xmax and ymin < ymax, "
                         "got %r" % (where, bounds))
    return x0, x1, y0, y1


def _at_least(value, minimum, what, where):
    try:
        v = int(value)
    except (TypeError, ValueError):
        v = None
    if v is None or v != value or v < minimum:
        raise ValueError("%s: %s must be an integer >= %d, got %r"
                         % (where, what, minimum, value))
    return v


def grid_lines(bounds, n_lines=11, points_per_line=60):
    """The lines of a square grid over ``bounds`` = (xmin, xmax, ymin, ymax),
    as an array (2 * n_lines, points_per_line, 2): first the vertical lines
    (constant x), then the horizontal ones (constant y).  Pushed through a
    network by ``layer_images`` they show how each layer bends the plane."""
    where = "grid_lines"
    x0, x1, y0, y1 = _bounds(bounds, where)
    n_lines = _at_least(n_lines, 2, "n_lines", where)
    points_per_line = _at_least(points_per_line, 2, "points_per_line", where)
    xs, ys = np.linspace(x0, x1, n_lines), np.linspace(y0, y1, n_lines)
    tx, ty = np.linspace(x0, x1, points_per_line), np.linspace(y0, y1, points_per_line)
    vertical = np.stack([np.repeat(xs[:, None], points_per_line, 1),
                         np.repeat(ty[None, :], n_lines, 0)], axis=-1)
    horizontal = np.stack([np.repeat(tx[None, :], n_lines, 0),
                           np.repeat(ys[:, None], points_per_line, 1)], axis=-1)
    return np.concatenate([vertical, horizontal])


def plane_grid(bounds, resolution=100):
    """A resolution x resolution lattice over ``bounds``: (xx, yy, points)
    with xx, yy of shape (resolution, resolution) as ``np.meshgrid`` gives
    them and points = the (resolution**2, 2) rows (x, y)."""
    where = "plane_grid"
    x0, x1, y0, y1 = _bounds(bounds, where)
    resolution = _at_least(resolution, 2, "resolution", where)
    xx, yy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def layer_images(net, points):
    """The image of ``points`` at every layer: ``[points, out_0, out_1, ...]``.

    ``points`` has shape (..., n_in) (a list of lines from ``grid_lines``, a
    plain (n, n_in) array); entry k+1 is ``net.output(., layer=k)`` with the
    same leading shape and the layer's width last.  Entry 0 is the input as
    the network sees it (cast to its floatX)."""
    arr = np.asarray(points)
    n_in = net.n_in
    if arr.ndim < 1 or arr.shape[-1] != n_in:
        raise ValueError("layer_images: points must have shape (..., %d), got %s"
                         % (n_in, arr.shape))
    lead = arr.shape[:-1]
    flat = arr.reshape(-1, n_in)
    if flat.shape[0] == 0:
        raise ValueError("layer_images: points is empty")
    images = [flat.astype(net.dtype)]
    for k in range(len(net.layers)):
        images.append(net.output(flat, layer=k))
    return [im.reshape(lead + (im.shape[-1],)) for im in images]


def predict_grid(net, bounds, resolution=100):
    """(xx, yy, probabilities) over the input plane of a 2-input network:
    probabilities has shape (resolution, resolution, n_classes)."""
    if net.n_in != 2:
        raise ValueError("predict_grid: the network takes %d inputs; the input "
                         "plane needs 2" % net.n_in)
    xx, yy, points = plane_grid(bounds, resolution)
    probs = net.output(points)
    return xx, yy, probs.reshape(xx.shape + (probs.shape[-1],))


def decision_line(net):
    """The softmax layer's decision boundary in the space of its input, for a
    2-class network whose last hidden layer has 2 units: (a, c) such that the
    boundary is the line a . h + c = 0 (class 1 where a . h + c > 0)."""
    out = net.layers[-1]
    if out.n_in != 2 or out.n_out != 2:
        raise ValueError("decision_line: the softmax layer is %d -> %d; a line in "
                         "its input plane needs 2 -> 2" % (out.n_in, out.n_out))
    w = out.w.get_value() * (1.0 - out.p_dropout)
    b = out.b.get_value()
    return w[:, 1] - w[:, 0], float(b[1] - b[0])


def layer_interpolation(layer, points, steps=10):
    """Frames of a continuous move from a dense layer's input to its output.

    For a FullyConnectedLayer with as many inputs as outputs (a 2-unit tanh
    layer, say), the inference map h = f(s x.w + b) (s = 1 - p_dropout) is
    taken in two stages: x.((1-t) I + t s w) + t b for t from 0 to 1 (the
    identity becomes the affine map), then (1-t) z + t f(z) (the affine map
    becomes the layer).  Returns an array (2 * steps + 1, *points.shape): the
    first frame is ``points``, the middle one the affine image z, the last
    one the layer's output f(z).
    """
    where = "layer_interpolation"
    if layer.is_output or getattr(layer, "activation_fn", None) is None \
            or not hasattr(layer, "n_in"):
        raise ValueError("%s: need a hidden dense layer (FullyConnectedLayer), got %s"
                         % (where, type(layer).__name__))
    if layer.n_in != layer.n_out:
        raise ValueError("%s: the layer maps %d -> %d units; interpolating between "
                         "input and output needs n_in == n_out" % (where, layer.n_in,
                                                                    layer.n_out))
    steps = _at_least(steps, 1, "steps", where)
    x = np.asarray(points, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != layer.n_in:
        raise ValueError("%s: points must have shape (..., %d), got %s"
                         % (where, layer.n_in, x.shape))
    w = layer.w.get_value().astype(np.float64) * (1.0 - layer.p_dropout)
    b = layer.b.get_value().astype(np.float64)
    eye = np.eye(layer.n_in)
    frames = []
    for t in np.linspace(0.0, 1.0, steps + 1):
        frames.append(x @ ((1.0 - t) * eye + t * w) + t * b)
    z = frames[-1]
    fz = np.asarray(layer.activation_fn(z), dtype=np.float64)
    for t in np.linspace(0.0, 1.0, steps + 1)[1:]:
        frames.append((1.0 - t) * z + t * fz)
    return np.stack(frames)


def _delta_rows(x, row, mbs):
    return np.repeat(x[row:row + 1], mbs, axis=0)


def gradient_norms(net, x, y, delta_samples=100):
    """Per layer, how strongly the cost pulls on it: a list with one dict per
    layer, input layer first, with

    - ``layer`` (index), ``type`` (the class name), ``n_params``;
    - ``weight_grad_norm``: ||dC/dw||, the Euclidean norm of the layer's
      weight gradient;
    - ``bias_grad_norm``: ||dC/db|| (chapter 5's "speed of learning" of a
      layer: dC/db is the error delta = dC/dz averaged over the samples);
    - ``mean_abs_delta``: the mean over samples and units of |delta|, the
      error of each single sample at the layer's weighted inputs z.

    C is network3's cost without regularisation (mean log-likelihood) over
    the complete mini-batches of (x, y): the gradients are the means of
    ``net.cost_and_grads`` over those mini-batches.  ``mean_abs_delta`` is
    taken over the first ``delta_samples`` rows (None: all): the gradient of
    a mini-batch made of one row repeated is exactly that row's dC/db, which
    is its delta for a dense layer (for a ConvPoolLayer, the delta of each
    feature map summed over the positions of its pooled output, where network3
    adds the bias).  Layers with dropout see a fresh
    mask on every call, so their numbers are then one draw of a random
    quantity.  Nothing is updated.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    mbs = net.mini_batch_size
    if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError("gradient_norms: x and y must have the same number of rows, "
                         "got shapes %s and %s" % (x.shape, y.shape))
    n_batches = x.shape[0] // mbs
    if n_batches < 1:
        raise ValueError("gradient_norms: %d rows is less than one mini-batch of %d"
                         % (x.shape[0], mbs))
    total = None
    for j in range(n_batches):
        _, grads = net.cost_and_grads(x[j * mbs:(j + 1) * mbs], y[j * mbs:(j + 1) * mbs])
        grads = [g.astype(np.float64) for g in grads]
        total = grads if total is None else [t + g for t, g in zip(total, grads)]
    mean_grads = [t / n_batches for t in total]

    if delta_samples is None:
        n_delta = x.shape[0]
    else:
        n_delta = min(_at_least(delta_samples, 1, "delta_samples", "gradient_norms"),
                      x.shape[0])
    abs_delta = [0.0] * len(net.layers)
    for row in range(n_delta):
        _, grads = net.cost_and_grads(_delta_rows(x, row, mbs), _delta_rows(y, row, mbs))
        for k in range(len(net.layers)):
            abs_delta[k] += float(np.mean(np.abs(grads[2 * k + 1].astype(np.float64))))

    result = []
    for k, layer in enumerate(net.layers):
        gw, gb = mean_grads[2 * k], mean_grads[2 * k + 1]
        result.append({
            "layer": k,
            "type": type(layer).__name__,
            "n_params": int(gw.size + gb.size),
            "weight_grad_norm": float(np.linalg.norm(gw)),
            "bias_grad_norm": float(np.linalg.norm(gb)),
            "mean_abs_delta": abs_delta[k] / n_delta,
        })
    return result


def majority_vote(predictions):
    """The label most members give each sample: ``predictions`` is
    (n_members, n) integer labels; ties go to the smallest label."""
    p = np.asarray(predictions)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError("majority_vote: predictions must be (n_members, n) labels, got "
                         "shape %s" % (p.shape,))
    if p.dtype.kind not in "iu":
        if p.dtype.kind != "f" or not np.all(p == np.round(p)):
            raise ValueError("majority_vote: predictions must be integer labels, got %s"
                             % p.dtype)
    p = p.astype(np.int64)
    if (p < 0).any():
        raise ValueError("majority_vote: predictions hold a negative label (%d)" % p.min())
    n = p.shape[1]
    votes = np.zeros((n, int(p.max()) + 1), dtype=np.int64)
    for member in p:
        votes[np.arange(n), member] += 1
    return votes.argmax(axis=1)
