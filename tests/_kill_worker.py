"""A training run to be killed: the child process of the checkpoint tests.

    python tests/_kill_worker.py ENGINE CHECKPOINT OUT.npz WORKDIR [--hang-in-write]

Trains a small conv + dropout net (every layer type) for EPOCHS epochs with
``checkpoint=CHECKPOINT`` and writes the final weights to OUT.npz.

The run stops itself once, at a known point, so that the parent can kill it
there: the first time it reaches the middle of epoch HANG_EPOCH (after a
checkpoint exists), it creates WORKDIR/ready and sleeps.  A restart with the
same command finds WORKDIR/ready and runs through -- so "killed and
restarted with the same command" is literally the same command line.
With ``--hang-in-write`` it stops instead halfway through writing the
checkpoint of epoch HANG_EPOCH (half the temporary file on disk, not yet
renamed), to test that a kill during a write loses nothing.
The parent makes fastnet importable through PYTHONPATH (the same copy as its
own).  The never-interrupted reference run is the same command with a WORKDIR whose
``ready`` file already exists.
"""

import io
import json
import os
import signal
import sys
import time

import numpy as np

from fastnet import (ConvPoolLayer, FullyConnectedLayer, Network,  # noqa: E402
                     ReLU, SoftmaxLayer)
from fastnet import network as network_module  # noqa: E402
from fastnet import persist  # noqa: E402

EPOCHS = 3
HANG_EPOCH = 1
MBS = 5
N_TRAIN = 200           # 40 mini-batches per epoch
network_module.CHUNK = 7   # several engine calls per epoch, so there is a "middle"
REAL_SAVEZ = np.savez


def data(seed, n):
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 64).astype(np.float32)
    # labels learnable from the image, so training moves the weights
    y = (x[:, :32].sum(axis=1) > x[:, 32:].sum(axis=1)).astype(np.int64)
    y += (x[:, 0] > 0.8)
    return x, y


def build(engine):
    np.random.seed(1234)
    layers = [ConvPoolLayer(filter_shape=(3, 1, 3, 3), image_shape=(MBS, 1, 8, 8),
                            poolsize=(2, 2), activation_fn=ReLU),
              FullyConnectedLayer(n_in=3 * 3 * 3, n_out=12, p_dropout=0.25),
              SoftmaxLayer(n_in=12, n_out=3, p_dropout=0.1)]
    return Network(layers, MBS, engine=engine)


def hang(ready, until_sigint=True):
    """Signal the parent, then wait: for SIGKILL, or for SIGINT to reach
    SGD's Ctrl-C flag (then training goes on to the next mini-batch
    boundary, where SGD saves and raises KeyboardInterrupt)."""
    flag = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    if not until_sigint:
        flag = None
    with open(ready, "w") as f:
        f.write(str(os.getpid()))
    while not getattr(flag, "raised", False):
        time.sleep(0.02)


def main(argv):
    engine, checkpoint, out, workdir = argv[:4]
    in_write = "--hang-in-write" in argv[4:]
    ready = os.path.join(workdir, "ready")
    net = build(engine)
    n_batches = N_TRAIN // MBS

    if not os.path.exists(ready) and not in_write:
        # stop in the middle of epoch HANG_EPOCH, after its first chunk
        real_train = net._train_batches

        def train_batches(x_e, y_e, first, stop, hyper):
            epoch = net.step_count // n_batches
            real_train(x_e, y_e, first, stop, hyper)
            if epoch == HANG_EPOCH and first == 0:
                hang(ready)
        net._train_batches = train_batches

    if not os.path.exists(ready) and in_write:
        # stop halfway through writing the checkpoint at the end of HANG_EPOCH
        def savez(f, **arrays):
            meta = json.loads(str(arrays["meta_json"]))
            if meta["state"]["epoch"] != HANG_EPOCH + 1:
                return REAL_SAVEZ(f, **arrays)
            buf = io.BytesIO()
            REAL_SAVEZ(buf, **arrays)
            data_bytes = buf.getvalue()
            f.write(data_bytes[:len(data_bytes) // 2])
            f.flush()
            os.fsync(f.fileno())
            hang(ready, until_sigint=False)
        persist.np.savez = savez

    net.SGD(data(1, N_TRAIN), EPOCHS, MBS, 0.5, data(2, 50), data(3, 50),
            lmbda=0.1, checkpoint=checkpoint)
    REAL_SAVEZ(out, *[p.get_value() for p in net.params])


if __name__ == "__main__":
    main(sys.argv[1:])
