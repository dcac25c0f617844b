"""Plan: a network compiled once for one engine, one mini-batch size and one
optimizer.

A Plan holds
  * the parameters in flat engine arrays, one per group: ``decayed`` (the
    weights: network3's L2 term applies) and ``plain`` (the biases), their
    gradients likewise, and the optimizer's state arrays beside them; every
    layer's ``w`` / ``b`` ``Shared`` value is a view of the host copy, so
    ``get_value`` / ``set_value`` keep working;
  * one activation arena per dtype (the float type and uint8 for dropout
    masks): every buffer a layer asks for is a view of it;
  * three op lists: ``train`` (forward, ending with the cost op), ``backward``
    (the layers' gradients, last layer first) and ``update`` (the optimizer's
    ops over the flat groups), and per layer its ``infer`` ops.

An op is a kernel name and its arguments in the reference engine's
signatures (fastnet/engines/reference.py).  Arguments that change from step
to step are tokens the interpreter fills in: the mini-batch rows
(``StepRows``), its labels (``LABELS``), the dropout counter (``COUNTER``)
and the optimizer's hyper-parameters (``Hyper``).  Every engine runs the same
lists: ``run_ops`` calls the engine's kernels one by one, and an engine with
a compiled loop (``engine.compile_program``) runs the *fused* list (see
``fuse``) without Python per mini-batch.  Each fused op carries its
unfused ``expansion``; tests run both.
"""

import numpy as np

# arena offsets are rounded up to this many bytes (a cache line)
ALIGN = 64


class Op(object):
    """One kernel call: ``kernel`` (a name every engine defines) and its
    arguments.  A fused op (an engine's compiled fusion of several ops)
    also has ``expansion``: the unfused ops it computes."""

    __slots__ = ("kernel", "args", "expansion")

    def __init__(self, kernel, *args, expansion=None):
        self.kernel = kernel
        self.args = args
        self.expansion = expansion

    def unfused(self):
        if self.expansion is None:
            return [self]
        return [o for op in self.expansion for o in op.unfused()]

    def __repr__(self):
        return "Op(%s)" % self.kernel


class Token(object):
    """An argument filled in per step by the interpreter."""

    __slots__ = ("name", "shape")

    def __init__(self, name, shape=None):
        self.name = name
        self.shape = shape

    def reshape(self, shape):
        return Token(self.name, tuple(shape))

    def __repr__(self):
        return "<%s%s>" % (self.name, "" if self.shape is None else self.shape)


def StepRows(shape):
    """The step's mini-batch of input rows, as an array of ``shape``."""
    return Token("rows", tuple(shape))


LABELS = Token("labels")
COUNTER = Token("counter")


def Hyper(name):
    """A hyper-parameter of the update, from the optimizer, per SGD call."""
    return Token("hyper:" + name)


class LayerContext(object):
    """What a layer's ``ops`` gets: its input, its parameters and gradients
    (engine views by name), its buffers, and the gradient arrays around it."""

    def __init__(self, index, mbs, x, param, grad, buf, dout, dx, dropout_seed):
        self.index = index
        self.mbs = mbs
        self.x = x
        self.param = param
        self.grad = grad
        self.buf = buf
        self.dout = dout
        self.dx = dx
        self.dropout_seed = dropout_seed
        self.labels = LABELS
        self.counter = COUNTER

    def input(self, shape):
        """The layer's input as an array (or step token) of ``shape``."""
        return self.x.reshape(shape)


def _aligned(n_bytes):
    return -(-n_bytes // ALIGN) * ALIGN


class _Arena(object):
    """Carves named buffers out of one engine array per dtype."""

    def __init__(self):
        self.requests = []      # (key, shape, dtype)

    def request(self, key, shape, dtype):
        self.requests.append((key, tuple(int(s) for s in shape), np.dtype(dtype)))

    def allocate(self, engine):
        views = {}
        for dtype in sorted({d for _, _, d in self.requests}, key=str):
            mine = [(k, s) for k, s, d in self.requests if d == dtype]
            offsets, at = [], 0
            for _, shape in mine:
                offsets.append(at)
                at += _aligned(int(np.prod(shape)) * dtype.itemsize)
            block = engine.empty((max(at, ALIGN) // dtype.itemsize,), dtype)
            for (key, shape), off in zip(mine, offsets):
                first = off // dtype.itemsize
                views[key] = block[first:first + int(np.prod(shape))].reshape(shape)
        return views


class ParamGroup(object):
    """The parameters of one kind in one flat array: ``values`` (engine),
    ``host`` (what the Shared objects view), ``grads`` (engine) and the
    optimizer's ``state`` arrays, with each parameter's slice."""

    def __init__(self, name, decayed, shapes, engine, dtype, host_is_engine):
        self.name = name
        self.decayed = decayed
        self.slices = []
        at = 0
        for shape in shapes:
            n = int(np.prod(shape))
            self.slices.append((at, at + n, tuple(shape)))
            at += n
        self.size = at
        self.host = np.zeros(max(at, 1), dtype=dtype)[:at]
        self.values = self.host if host_is_engine else engine.empty((at,), dtype)
        self.grads = engine.empty((at,), dtype)
        self.state = []

    def view(self, array, k):
        a, b, shape = self.slices[k]
        return array[a:b].reshape(shape)


class Plan(object):
    """The network's layers compiled for ``engine`` at ``mini_batch_size``
    with ``optimizer``.  See the module's docstring."""

    def __init__(self, layers, mini_batch_size, engine, dtype, optimizer, seeds):
        self.layers = list(layers)
        self.mbs = int(mini_batch_size)
        self.engine = engine
        self.dtype = np.dtype(dtype)
        self.host_is_engine = not getattr(engine, "device_resident", False)
        self.seeds = tuple(seeds)
        self.on_engine = False
        self._build_groups()
        self._build_ops(seeds)
        self.set_optimizer(optimizer)
        self.program = None

    # ------------------------------------------------------------------
    # parameters
    # ------------------------------------------------------------------
    def _build_groups(self):
        shapes = {True: [], False: []}
        self.param_index = []          # per net.params entry: (group, k)
        for i, layer in enumerate(self.layers):
            declared = layer.param_shapes()
            if len(declared) != len(layer.params):
                raise ValueError("layer %d declares %d parameters but has %d"
                                 % (i, len(declared), len(layer.params)))
            for (name, shape, decayed), p in zip(declared, layer.params):
                if tuple(shape) != p.shape:
                    raise ValueError("layer %d: parameter %s has shape %s, declared %s"
                                     % (i, name, p.shape, tuple(shape)))
                self.param_index.append((bool(decayed), len(shapes[bool(decayed)])))
                shapes[bool(decayed)].append(tuple(shape))
        self.groups = {
            True: ParamGroup("decayed", True, shapes[True], self.engine, self.dtype,
                             self.host_is_engine),
            False: ParamGroup("plain", False, shapes[False], self.engine, self.dtype,
                              self.host_is_engine)}
        self.params = [p for layer in self.layers for p in layer.params]
        self.adopt(force=True)

    def adopt(self, force=False):
        """Make every layer parameter a view of this plan's flat host arrays.

        A layer may be shared with another Network (network3 shares its
        Theano variables): whichever network runs last takes the current
        values over, so training one and using the other sees one set of
        parameters.
        """
        for p, (decayed, k) in zip(self.params, self.param_index):
            if force or p._owner is not self:
                group = self.groups[decayed]
                view = group.view(group.host, k)
                if view is not p._value:
                    np.copyto(view, p._value)
                    p._value = view
                p._owner = self
                self.on_engine = False

    def to_engine(self):
        """Copy the host parameters to the engine (a no-op on the host)."""
        self.adopt()
        if not self.host_is_engine:
            for group in self.groups.values():
                if group.size:
                    self.engine.to_device(group.host, out=group.values)
            self.on_engine = True

    def to_host(self):
        """Copy the engine's parameters back to the host arrays."""
        if not self.host_is_engine and self.on_engine:
            for group in self.groups.values():
                if group.size:
                    self.engine.to_host(group.values, out=group.host)

    def grads_of(self, i):
        """Engine views of the gradients of ``self.params[i]``."""
        decayed, k = self.param_index[i]
        group = self.groups[decayed]
        return group.view(group.grads, k)

    # ------------------------------------------------------------------
    # buffers and ops
    # ------------------------------------------------------------------
    def _build_ops(self, seeds):
        arena = _Arena()
        mbs, dt = self.mbs, self.dtype
        for i, layer in enumerate(self.layers):
            for name, spec in layer.buffers(mbs).items():
                shape, dtype = spec if isinstance(spec[-1], type) else (spec, dt)
                arena.request((i, name), shape, dtype)
            if i > 0:
                arena.request((i, "dx"), (mbs, layer.n_in_flat), dt)
        self._views = arena.allocate(self.engine)
        self._passes = {}
        full = self.passes(mbs)
        self.train, self.backward = full.train, full.backward
        self.layer_infer, self.infer_out = full.layer_infer, full.infer_out
        self.layer_ops, self.evaluate = full.layer_ops, full.evaluate
        self.output_layer = self.layers[-1]

    def passes(self, n):
        """The op lists for a mini-batch of ``n`` rows (1 <= n <= the plan's
        mini-batch size): every buffer's first n rows, the same parameters,
        gradients and optimizer state."""
        n = int(n)
        if not 1 <= n <= self.mbs:
            raise ValueError("a batch of %d rows; this network takes 1 to %d"
                             % (n, self.mbs))
        p = self._passes.get(n)
        if p is None:
            p = self._passes[n] = _Passes(self, n)
        return p

    def set_optimizer(self, optimizer):
        """Allocate ``optimizer``'s state and build the update ops."""
        self.optimizer = optimizer
        self.opt_step = 0          # updates taken: the optimizer's t - 1
        for group in self.groups.values():
            group.state = [self._filled(group.size, v) for v in optimizer.state_init()]
        self.update = [op for group in self.groups.values() if group.size
                       for op in optimizer.ops(group.values, group.grads, group.state,
                                               group.decayed)]
        self.program = None

    def _filled(self, n, value):
        z = np.full(n, value, dtype=self.dtype)
        return z if self.host_is_engine else self.engine.to_device(z)

    def state_to_host(self):
        """The optimizer's state as host arrays: {(group name, k): array}."""
        out = {}
        for group in self.groups.values():
            for k, a in enumerate(group.state):
                out[(group.name, k)] = (np.array(a, copy=True) if self.host_is_engine
                                        else self.engine.to_host(a))
        return out

    def state_from_host(self, arrays, opt_step):
        """Put saved optimizer state back (``state_to_host``'s layout)."""
        for group in self.groups.values():
            for k, a in enumerate(group.state):
                self.engine.to_device(arrays[(group.name, k)], out=a)
        self.opt_step = int(opt_step)

    # ------------------------------------------------------------------
    # the fused list an engine compiles
    # ------------------------------------------------------------------
    def fused_ops(self, n=None):
        """The step as an engine with a compiled loop runs it: ``train``,
        ``backward``, ``update`` with two fusions -- a run of conv layers is
        one ``conv_run_forward`` / ``conv_run_backward`` op (each sample
        carried through all of them), and a dense layer's backward op is
        followed by its parameters' update (``backward_update``), while w
        and its gradient are in cache.  Each fused op's ``expansion`` is the
        unfused list it replaces."""
        return fuse(self, self.passes(self.mbs if n is None else n).layer_ops)

    # ------------------------------------------------------------------
    # interpretation, one kernel call per op
    # ------------------------------------------------------------------
    def run_step(self, rows, labels, counter, hyper):
        """One training step on the engine, op by op, on the rows given (any
        count up to the mini-batch size); returns the cost."""
        p = self.passes(rows.shape[0])
        self.opt_step += 1
        env = _Env(rows, labels, counter, dict(hyper, step=self.opt_step))
        cost = run_ops(self.engine, p.train, env)
        run_ops(self.engine, p.backward, env)
        run_ops(self.engine, self.update, env)
        return cost

    def forward_backward(self, rows, labels, counter):
        """The training forward and backward passes (no update); the cost."""
        p = self.passes(rows.shape[0])
        env = _Env(rows, labels, counter, {})
        cost = run_ops(self.engine, p.train, env)
        run_ops(self.engine, p.backward, env)
        return cost

    def infer(self, rows, upto=None):
        """The inference pass of layers 0..upto-1 on one mini-batch; returns
        the last layer's output buffer (of rows.shape[0] rows)."""
        p = self.passes(rows.shape[0])
        upto = len(self.layers) if upto is None else upto
        env = _Env(rows, None, 0, {})
        for ops in p.layer_infer[:upto]:
            run_ops(self.engine, ops, env)
        return p.infer_out[upto - 1]

    def evaluate_batch(self, rows, labels):
        """The inference pass and the cost of ``labels`` on one batch;
        returns (cost, the output layer's predictions buffer)."""
        p = self.passes(rows.shape[0])
        cost = run_ops(self.engine, p.evaluate, _Env(rows, labels, 0, {}))
        return cost, p.infer_out[-1]


class _Passes(object):
    """The op lists of a Plan at one batch size (see Plan.passes)."""

    def __init__(self, plan, n):
        views = {key: v[:n] for key, v in plan._views.items()}
        self.layer_ops, self.layer_infer, self.infer_out = [], [], []
        x = StepRows((n, plan.layers[0].n_in_flat))
        p = 0
        for i, layer in enumerate(plan.layers):
            param, grad = {}, {}
            for j, (name, _, _) in enumerate(layer.param_shapes()):
                decayed, k = plan.param_index[p + j]
                group = plan.groups[decayed]
                param[name] = group.view(group.host if plan.host_is_engine
                                         else group.values, k)
                grad[name] = group.view(group.grads, k)
            p += len(layer.params)
            buf = {name: v for (j, name), v in views.items() if j == i}
            ctx = LayerContext(i, n, x, param, grad, buf, views.get((i + 1, "dx")),
                               views.get((i, "dx")), plan.seeds[i])
            ops = layer.ops(ctx)
            if not layer.is_output and ops.out is not ops.infer_out:
                raise ValueError("layer %d: a hidden layer's training and inference "
                                 "outputs must be one buffer" % i)
            self.layer_ops.append(ops)
            self.layer_infer.append(ops.infer)
            self.infer_out.append(ops.infer_out)
            x = ops.out
        self.train = [op for ops in self.layer_ops for op in ops.train]
        self.backward = [op for ops in reversed(self.layer_ops) for op in ops.backward]
        self.evaluate = [op for ops in self.layer_ops[:-1] for op in ops.infer] + \
            self.layer_ops[-1].evaluate


class _Env(object):
    __slots__ = ("rows", "labels", "counter", "hyper")

    def __init__(self, rows, labels, counter, hyper):
        self.rows = rows
        self.labels = labels
        self.counter = counter
        self.hyper = hyper

    def resolve(self, token):
        name = token.name
        if name == "rows":
            return self.rows.reshape(token.shape)
        if name == "labels":
            return self.labels
        if name == "counter":
            return self.counter
        return self.hyper[name[6:]]


def run_ops(engine, ops, env):
    """Call each op's kernel on ``engine``; returns the last non-None result
    (the cost of a training pass)."""
    result = None
    for op in ops:
        args = [env.resolve(a) if type(a) is Token else a for a in op.args]
        r = getattr(engine, op.kernel)(*args)
        if r is not None:
            result = r
    return result


# ---------------------------------------------------------------------------
# fusion
# ---------------------------------------------------------------------------
CONV_PAIR = ("conv_forward", "pool_forward")


def fuse(plan, layer_ops):
    """(train, backward, update) with the two fusions of ``Plan.fused_ops``,
    from the layers' op lists ``layer_ops`` (at one batch size)."""
    n = len(layer_ops)
    train, backward = [], []
    is_conv = [tuple(o.kernel for o in ops.train) == CONV_PAIR for ops in layer_ops]
    i = 0
    while i < n:
        if is_conv[i]:
            j = i
            while j < n and is_conv[j]:
                j += 1
            train.append(Op("conv_run_forward", *[layer_ops[k].train for k in range(i, j)],
                            expansion=[o for k in range(i, j) for o in layer_ops[k].train]))
            i = j
        else:
            train.extend(layer_ops[i].train)
            i += 1
    # backward, last layer first; dense backward ops take their update along
    fused_params = set()
    i = n - 1
    starts = []
    at = 0
    for layer in plan.layers:
        starts.append(at)
        at += len(layer.params)
    while i >= 0:
        if is_conv[i]:
            j = i
            while j > 0 and is_conv[j - 1]:
                j -= 1
            runs = [layer_ops[k].backward for k in range(j, i + 1)]
            backward.append(Op("conv_run_backward", *runs,
                               expansion=[o for k in range(i, j - 1, -1)
                                          for o in layer_ops[k].backward]))
            i = j - 1
            continue
        for op in layer_ops[i].backward:
            if op.kernel == "dense_backward" and plan.optimizer.fusable:
                upd = []
                for q in range(starts[i], starts[i] + len(plan.layers[i].params)):
                    decayed, k = plan.param_index[q]
                    group = plan.groups[decayed]
                    a, b, _ = group.slices[k]
                    upd.extend(plan.optimizer.ops(
                        group.values[a:b], group.grads[a:b],
                        [s[a:b] for s in group.state], decayed))
                    fused_params.add(q)
                backward.append(Op("backward_update", op, *upd, expansion=[op] + upd))
            else:
                backward.append(op)
        i -= 1
    # the update ops for what no backward op updated: runs of each flat array
    update = []
    for decayed in (True, False):
        group = plan.groups[decayed]
        runs = []
        for q in range(len(plan.params)):
            if plan.param_index[q][0] != decayed:
                continue
            a, b, _ = group.slices[plan.param_index[q][1]]
            if q in fused_params:
                continue
            if runs and runs[-1][1] == a:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        for a, b in runs:
            update.extend(plan.optimizer.ops(group.values[a:b], group.grads[a:b],
                                             [s[a:b] for s in group.state], decayed))
    return train, backward, update
