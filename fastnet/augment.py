"""On-the-fly augmentation of the training images, drawn per mini-batch.

``net.SGD(..., augment=fastnet.augment.Elastic(alpha=34, sigma=4))`` trains
every mini-batch on freshly distorted copies of its rows; nothing is
materialised, evaluation and validation see the images as they are.  The
transforms, for 784-wide rows (28 x 28 images, row-major):

``Shift(max_pixels=1)``
    moves each image by dy rows and dx columns, each drawn uniformly from
    -max_pixels .. max_pixels, zeros where nothing moved in (the chapter's
    one-pixel shifts, drawn instead of stored; exact: no interpolation).
``Affine(max_rotation=0, max_shear=0, max_scale=0)``
    rotation by t degrees, t ~ U(-max_rotation, max_rotation), a horizontal
    skew k ~ U(-max_shear, max_shear) and a zoom 1 + U(-max_scale, max_scale)
    about the image centre, with bilinear sampling (zeros outside).
``Elastic(alpha=34, sigma=4)``
    Simard et al. (2003): two fields of displacements drawn U(-1, 1) per
    pixel, each smoothed by a Gaussian of width sigma (truncated at 4 sigma,
    zeros beyond the image: scipy.ndimage.gaussian_filter's mode='constant')
    and scaled by alpha; each pixel takes the input at its displaced position,
    bilinearly (zeros outside: map_coordinates's mode='grid-constant').
``Compose([a, b, ...])`` or ``a + b``
    the transforms one after the other, each on the last one's output.

Randomness is counter-based, as dropout's: a 64-bit seed the Network took
from NumPy's global RNG state when it was built (``net.augment_seed``; so
``np.random.seed(s)`` before building makes a run reproducible; the
transforms take no seed of their own), and each random number is a pure
hash of (that seed, the transform's place in the composition, the step
counter and row of the sample, the draw's index).  The same seed gives the
same distorted images whatever the thread count or engine, and a run
resumed from a checkpoint draws what the uninterrupted run drew.

The mathematics, once: ``table()`` turns a transform into plain numbers (a
float64 array, ``TABLE_WIDTH`` columns per transform, the Gaussian's
weights included, computed here once with NumPy), and every engine's
``augment(x, table, seed, counter, out)`` kernel applies it: the NumPy
reference (fastnet/engines/reference.py), the compiled one (csrc/augment.pxd,
also inside the compiled training loop) and the CUDA one.
"""

import math
import numbers

import numpy as np

#: the images: 28 x 28, one 784-wide row each
SIDE = 28
PIXELS = SIDE * SIDE
#: a transform's row in the table: kind, parameters, then (elastic) the
#: Gaussian's weights w[0] .. w[R] from column TAPS0
TABLE_WIDTH = 8 + SIDE
TAPS0 = 8
#: transforms in one composition at most
MAX_TRANSFORMS = 8
#: the kinds (column 0 of a table row)
SHIFT, AFFINE, ELASTIC = 1, 2, 3
#: the Gaussian is cut at TRUNCATE sigma (scipy's default truncate=4.0)
TRUNCATE = 4.0
#: random numbers per sample a transform draws
DRAWS = {SHIFT: 2, AFFINE: 3, ELASTIC: 2 * PIXELS}


def _number(cls, name, value, low, high, low_open=False, integer=False):
    """``value`` checked as a finite real in [low, high] (low excluded when
    low_open; an integer when ``integer``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError("%s: %s must be a number, got %r" % (cls, name, value))
    v = float(value)
    if integer and (not math.isfinite(v) or v != int(v)):
        raise ValueError("%s: %s must be an integer, got %r" % (cls, name, value))
    if not math.isfinite(v) or v < low or v > high or (low_open and v == low):
        raise ValueError("%s: %s must be in %s%g, %g], got %r"
                         % (cls, name, "(" if low_open else "[", low, high, value))
    return int(v) if integer else v


class Transform(object):
    """A random distortion of 28 x 28 images (see the module's docstring).
    ``a + b`` composes; ``to_spec()`` describes it as plain data."""

    kind = None

    def __add__(self, other):
        if not isinstance(other, Transform):
            return NotImplemented
        return Compose([self, other])

    def transforms(self):
        """The elementary transforms, in the order they apply."""
        return [self]

    @property
    def is_identity(self):
        """True when the transform gives every image back unchanged."""
        return all(t._identity() for t in self.transforms())

    def table(self):
        """The transform as the kernels read it: float64 (n, TABLE_WIDTH),
        one row per elementary transform that changes anything."""
        rows = [t._row() for t in self.transforms() if not t._identity()]
        out = np.zeros((len(rows), TABLE_WIDTH), dtype=np.float64)
        for i, r in enumerate(rows):
            out[i, :len(r)] = r
        return out

    def to_spec(self):
        raise NotImplementedError

    def __eq__(self, other):
        return isinstance(other, Transform) and self.to_spec() == other.to_spec()

    def __hash__(self):
        return hash(repr(self))

    def apply(self, images, seed=0, counter=0, engine="reference"):
        """The distorted copies of ``images`` ((n, 784) or (n, 28, 28),
        float32 or float64) that training step ``counter`` of a network
        with augment seed ``seed`` would see, computed by ``engine`` (a
        name or an engine module).  For pictures and tests."""
        from .engines import get_engine
        x = np.asarray(images)
        shape = x.shape
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        rows = np.ascontiguousarray(x.reshape(-1, PIXELS) if x.size % PIXELS == 0
                                    and x.ndim >= 2 else x)
        if rows.ndim != 2 or rows.shape[1] != PIXELS:
            raise ValueError("%s.apply: images must be (n, 784) or (n, 28, 28), got shape %s"
                             % (type(self).__name__, shape))
        e = get_engine(engine) if isinstance(engine, (str, type(None))) else engine
        out = np.empty_like(rows)
        if getattr(e, "device_resident", False):
            xd = e.to_device(rows)
            od = e.empty(rows.shape, rows.dtype)
            e.augment(xd, self.table(), seed, counter, od)
            e.to_host(od, out=out)
        else:
            e.augment(rows, self.table(), seed, counter, out)
        return out.reshape(shape)


class Shift(Transform):
    """Each image moved by (dy, dx), each drawn uniformly from -max_pixels ..
    max_pixels (so 1 gives the 8 one-pixel shifts, diagonals included, and
    the image itself); zeros where nothing moved in."""

    kind = SHIFT

    def __init__(self, max_pixels=1):
        self.max_pixels = _number("Shift", "max_pixels", max_pixels, 0, SIDE - 1,
                                  integer=True)

    def _identity(self):
        return self.max_pixels == 0

    def _row(self):
        return [SHIFT, float(self.max_pixels)]

    def to_spec(self):
        return {"type": "shift", "max_pixels": self.max_pixels}

    def __repr__(self):
        return "Shift(max_pixels=%d)" % self.max_pixels


class Affine(Transform):
    """Rotation, skew and zoom about the image centre, bilinear sampling.

    Per image: t ~ U(-max_rotation, max_rotation) degrees, k ~ U(-max_shear,
    max_shear), s = 1 + U(-max_scale, max_scale); the output pixel at
    (r, c) takes the input at  centre + A ((r, c) - centre),  centre =
    (13.5, 13.5),  A = R(t) [[1, 0], [k, 1]] / s,  R(t) = [[cos t, -sin t],
    [sin t, cos t]] (rows, columns): k slants the digit like italics.
    """

    kind = AFFINE

    def __init__(self, max_rotation=0.0, max_shear=0.0, max_scale=0.0):
        self.max_rotation = _number("Affine", "max_rotation (degrees)", max_rotation, 0, 180)
        self.max_shear = _number("Affine", "max_shear", max_shear, 0, 2)
        self.max_scale = _number("Affine", "max_scale", max_scale, 0, 0.9)

    def _identity(self):
        return self.max_rotation == 0 and self.max_shear == 0 and self.max_scale == 0

    def _row(self):
        return [AFFINE, math.radians(self.max_rotation), self.max_shear, self.max_scale]

    def to_spec(self):
        return {"type": "affine", "max_rotation": self.max_rotation,
                "max_shear": self.max_shear, "max_scale": self.max_scale}

    def __repr__(self):
        return "Affine(max_rotation=%g, max_shear=%g, max_scale=%g)" % (
            self.max_rotation, self.max_shear, self.max_scale)


def gaussian_weights(sigma):
    """The smoothing kernel's weights w[0] .. w[R] (w[j] for offsets +-j) as
    scipy.ndimage.gaussian_filter1d(sigma, truncate=4.0) makes them: radius
    int(4 sigma + 0.5), exp(-j^2 / (2 sigma^2)) normalised over all 2R+1
    taps; offsets past the image (>= 28) are dropped (they only meet zeros)."""
    radius = int(TRUNCATE * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x ** 2)
    phi = phi / phi.sum()
    return phi[radius:radius + SIDE].copy()


class Elastic(Transform):
    """Elastic distortion (Simard, Steinkraus and Platt 2003): displacement
    fields U(-1, 1) per pixel, smoothed by a Gaussian of width ``sigma``
    (pixels), scaled by ``alpha`` (pixels); bilinear sampling, zeros outside.
    alpha=0 is the identity."""

    kind = ELASTIC

    def __init__(self, alpha=34.0, sigma=4.0):
        self.alpha = _number("Elastic", "alpha", alpha, 0, 1000)
        self.sigma = _number("Elastic", "sigma", sigma, 0, 20, low_open=True)

    def _identity(self):
        return self.alpha == 0

    def _row(self):
        w = gaussian_weights(self.sigma)
        return [ELASTIC, self.alpha, self.sigma, float(len(w)), 0, 0, 0, 0] + list(w)

    def to_spec(self):
        return {"type": "elastic", "alpha": self.alpha, "sigma": self.sigma}

    def __repr__(self):
        return "Elastic(alpha=%g, sigma=%g)" % (self.alpha, self.sigma)


class Compose(Transform):
    """The transforms one after the other (each on the previous output)."""

    def __init__(self, transforms):
        try:
            items = list(transforms)
        except TypeError:
            raise ValueError("Compose: give a list of transforms, got %r" % (transforms,))
        flat = []
        for t in items:
            if not isinstance(t, Transform):
                raise ValueError("Compose: %r is not a fastnet.augment transform" % (t,))
            flat.extend(t.transforms())
        if len(flat) > MAX_TRANSFORMS:
            raise ValueError("Compose: at most %d transforms, got %d"
                             % (MAX_TRANSFORMS, len(flat)))
        self._items = flat

    def transforms(self):
        return list(self._items)

    def to_spec(self):
        return {"type": "compose", "transforms": [t.to_spec() for t in self._items]}

    def __repr__(self):
        return "Compose([%s])" % ", ".join(repr(t) for t in self._items)


_TYPES = {"shift": Shift, "affine": Affine, "elastic": Elastic}


def from_spec(spec):
    """The transform ``to_spec()`` described (plain data; nothing is run)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise ValueError("augment spec must be a dict with a 'type', got %r" % (spec,))
    kind = spec["type"]
    args = {k: v for k, v in spec.items() if k != "type"}
    if kind == "compose":
        if set(args) != {"transforms"} or not isinstance(args["transforms"], list):
            raise ValueError("augment spec: compose takes a list 'transforms', got %r"
                             % (spec,))
        return Compose([from_spec(s) for s in args["transforms"]])
    cls = _TYPES.get(kind)
    if cls is None:
        raise ValueError("augment spec: unknown type %r; expected one of %s"
                         % (kind, ", ".join(sorted(_TYPES) + ["compose"])))
    try:
        return cls(**args)
    except TypeError as exc:
        raise ValueError("augment spec %r: %s" % (spec, exc)) from None


def as_transform(augment, where="SGD"):
    """``augment`` (a Transform, a list of them, or None) as a Transform or None."""
    if augment is None:
        return None
    if isinstance(augment, (list, tuple)):
        return Compose(augment)
    if not isinstance(augment, Transform):
        raise ValueError("%s: augment must be a fastnet.augment transform (Shift, Affine, "
                         "Elastic, Compose or a list of them), got %r" % (where, augment))
    return augment


def check_table(table, where="augment"):
    """A transform table as the kernels read it: float64 (n, TABLE_WIDTH),
    n <= MAX_TRANSFORMS, known kinds, finite sane parameters.  Returns it
    C-contiguous; ValueError naming what is wrong."""
    t = np.asarray(table)
    if t.dtype != np.float64 or t.ndim != 2 or t.shape[1] != TABLE_WIDTH \
            or t.shape[0] > MAX_TRANSFORMS:
        raise ValueError("%s: table must be float64 (n <= %d, %d) from "
                         "fastnet.augment's table(), got %s %s"
                         % (where, MAX_TRANSFORMS, TABLE_WIDTH, t.dtype, t.shape))
    if not np.all(np.isfinite(t)):
        raise ValueError("%s: table holds NaN or Inf" % where)
    for i, row in enumerate(t):
        kind = row[0]
        ok = kind in (SHIFT, AFFINE, ELASTIC)
        if kind == SHIFT:
            ok = row[1] == int(row[1]) and 0 <= row[1] < SIDE
        elif kind == AFFINE:
            ok = 0 <= row[1] <= math.pi and 0 <= row[2] <= 2 and 0 <= row[3] <= 0.9
        elif kind == ELASTIC:
            ok = row[1] >= 0 and row[1] <= 1000 and row[3] == int(row[3]) \
                and 1 <= row[3] <= SIDE
        if not ok:
            raise ValueError("%s: table row %d is not a transform fastnet.augment made: %r"
                             % (where, i, list(row[:4])))
    return np.ascontiguousarray(t)


def preview(path, transform, images, copies=5, seed=0, engine=None, title=None, dpi=100):
    """A PNG grid: each row one of ``images`` ((n, 784)), then ``copies``
    distorted copies of it (copy j: training step j of a network whose
    augment seed is ``seed``).  Needs matplotlib (the ``plot`` extra).
    Returns the path written."""
    from . import plot
    transform = as_transform(transform, "preview")
    if transform is None:
        raise ValueError("preview: give a transform")
    x = np.asarray(images, dtype=np.float32).reshape(-1, PIXELS)
    if x.shape[0] < 1:
        raise ValueError("preview: no images")
    copies = int(copies)
    if copies < 1:
        raise ValueError("preview: copies must be at least 1, got %d" % copies)
    from .engines import get_engine
    if engine is None:
        try:
            engine = get_engine("cpu")
        except ImportError:
            engine = get_engine("reference")
    shown = [transform.apply(x, seed=seed, counter=j, engine=engine) for j in range(copies)]
    tiles, captions = [], []
    for i in range(x.shape[0]):
        tiles.append(x[i].reshape(SIDE, SIDE))
        captions.append("original" if i == 0 else "")
        for j in range(copies):
            tiles.append(shown[j][i].reshape(SIDE, SIDE))
            captions.append("step %d" % j if i == 0 else "")
    cols = copies + 1
    rows = x.shape[0]
    if title is None:
        import textwrap
        title = "\n".join(textwrap.wrap(" + ".join(repr(t) for t in transform.transforms()),
                                        max(30, 14 * cols)))
    return plot._image_grid(tiles, cols, path, (1.1 * cols, 1.1 * rows + 0.6), dpi, "gray_r",
                            captions=captions, title=title)
