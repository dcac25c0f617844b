"""Ensembles of trained networks: the chapter's vote of five nets.

    ens = fastnet.Ensemble([net1, net2, net3, net4, net5])
    ens.predict(x)              plurality vote of the members' predictions
    ens.accuracy((x, y))        a fraction, as net.accuracy
    ens.save("ens/"); fastnet.Ensemble.load("ens/")

``vote="plurality"`` (the chapter's): each member votes for its predicted
class and the class with most votes wins; a tie goes to the lowest class
index.  ``vote="average"``: the argmax of the members' mean softmax
probabilities.  Saving writes one ``.npz`` per member (``net.save``: no
pickle) and a small JSON manifest, ``ensemble.json``.
"""

import json
import os

import numpy as np

VOTES = ("plurality", "average")
MANIFEST = "ensemble.json"
MANIFEST_FORMAT = "fastnet-ensemble"
MANIFEST_VERSION = 1
_MAX_MANIFEST_BYTES = 1 << 20


def _check_vote(vote):
    if vote not in VOTES:
        raise ValueError("Ensemble: vote must be one of %s, got %r"
                         % (", ".join(repr(v) for v in VOTES), vote))
    return vote


def plurality(predictions, n_classes):
    """The winning class of each row of ``predictions`` (members x rows):
    most votes, ties to the lowest class index."""
    predictions = np.asarray(predictions)
    counts = np.zeros((predictions.shape[1], n_classes), dtype=np.int64)
    rows = np.arange(predictions.shape[1])
    for member_predictions in predictions:
        np.add.at(counts, (rows, member_predictions), 1)
    # argmax returns the first maximum: the lowest class index wins a tie
    return np.argmax(counts, axis=1)


class Ensemble(object):
    """Networks that vote: ``Ensemble(nets, vote="plurality")``.

    The members must agree on their input size and number of classes; they
    may differ in everything else (layers, mini-batch size, engine).
    """

    def __init__(self, nets, vote="plurality"):
        self.nets = list(nets)
        if not self.nets:
            raise ValueError("Ensemble: no networks given")
        for i, net in enumerate(self.nets):
            if not all(hasattr(net, a) for a in ("output", "n_in", "n_classes", "save")):
                raise ValueError("Ensemble: member %d is %r, not a fastnet Network"
                                 % (i, net))
        first = self.nets[0]
        for i, net in enumerate(self.nets[1:], 1):
            if (net.n_in, net.n_classes) != (first.n_in, first.n_classes):
                raise ValueError(
                    "Ensemble: member %d takes %d inputs and gives %d classes but "
                    "member 0 takes %d and gives %d"
                    % (i, net.n_in, net.n_classes, first.n_in, first.n_classes))
        self.vote = _check_vote(vote)

    def __len__(self):
        return len(self.nets)

    def __repr__(self):
        return "Ensemble(%d members, vote=%r)" % (len(self.nets), self.vote)

    @property
    def n_classes(self):
        return self.nets[0].n_classes

    def output(self, x):
        """The members' mean softmax probabilities for every row of x."""
        return np.mean([np.asarray(net.output(x), dtype=np.float64)
                        for net in self.nets], axis=0)

    def member_predictions(self, x):
        """Each member's predicted class for every row: (members, rows)."""
        return np.stack([np.argmax(net.output(x), axis=1) for net in self.nets])

    def predict(self, x, vote=None):
        """The ensemble's class for every row of x (``vote`` overrides the
        ensemble's rule for this call)."""
        vote = _check_vote(self.vote if vote is None else vote)
        if vote == "average":
            return np.argmax(self.output(x), axis=1)
        return plurality(self.member_predictions(x), self.n_classes)

    def accuracy(self, data, vote=None):
        """The fraction of ``data = (x, y)`` classified right.

        As ``net.accuracy``, the rows of a partial last mini-batch (of the
        members' mini-batch size, when they share one) are left out, so the
        number compares with the members' own accuracies.
        """
        from .checks import as_xy
        x, y = as_xy(data, "Ensemble.accuracy", n_in=self.nets[0].n_in,
                     n_classes=self.n_classes, dtype=self.nets[0].dtype)
        sizes = {net.mini_batch_size for net in self.nets}
        if len(sizes) == 1:
            mbs = sizes.pop()
            used = x.shape[0] // mbs * mbs
            if used == 0:
                raise ValueError("Ensemble.accuracy: %d rows is less than one "
                                 "mini-batch of %d" % (x.shape[0], mbs))
            x, y = x[:used], y[:used]
        return float(np.mean(self.predict(x, vote) == y))

    # ------------------------------------------------------------------
    # saving: one .npz per member and a JSON manifest, no pickle
    # ------------------------------------------------------------------
    def save(self, directory):
        """Write the members and ``ensemble.json`` into ``directory``."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        members = []
        for i, net in enumerate(self.nets):
            name = "member-%02d.npz" % i
            net.save(os.path.join(directory, name))
            members.append(name)
        manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
                    "vote": self.vote, "members": members}
        write_json_atomic(os.path.join(directory, MANIFEST), manifest)

    @classmethod
    def load(cls, directory, engine=None):
        """The Ensemble saved in ``directory`` by ``save``."""
        from .persist import load
        directory = os.fspath(directory)
        path = os.path.join(directory, MANIFEST)
        with open(path, "rb") as f:
            text = f.read(_MAX_MANIFEST_BYTES + 1)
        if len(text) > _MAX_MANIFEST_BYTES:
            raise ValueError("%s: manifest larger than %d bytes" % (path, _MAX_MANIFEST_BYTES))
        try:
            manifest = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError("%s: not a JSON manifest (%s)" % (path, exc)) from None
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError("%s: not a fastnet ensemble manifest" % path)
        if manifest.get("version") != MANIFEST_VERSION:
            raise ValueError("%s: manifest version %r; this fastnet reads version %d"
                             % (path, manifest.get("version"), MANIFEST_VERSION))
        members = manifest.get("members")
        if not isinstance(members, list) or not members:
            raise ValueError("%s: 'members' must be a non-empty list of file names" % path)
        nets = []
        for name in members:
            # member files live in the directory itself: no paths from the file
            if not isinstance(name, str) or os.path.basename(name) != name \
                    or name in ("", ".", "..") or not name.endswith(".npz"):
                raise ValueError("%s: member %r is not a .npz file name in the "
                                 "ensemble's directory" % (path, name))
            nets.append(load(os.path.join(directory, name), engine=engine))
        try:
            return cls(nets, vote=manifest.get("vote", "plurality"))
        except ValueError as exc:
            raise ValueError("%s: %s" % (path, exc)) from None


def write_json_atomic(path, obj):
    """Write ``obj`` as JSON to ``path`` atomically (persist.write_atomic:
    a reader sees the old file or the new one, never half)."""
    from .persist import write_atomic
    text = json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))
