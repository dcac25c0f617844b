"""Learning-rate schedules for ``net.SGD(..., eta_schedule=...)``.

A schedule gives the learning rate of each epoch from the history so far
(the epoch records SGD keeps), so it holds no state of its own and a run
resumed from a checkpoint continues exactly.  ``eta_schedule`` may also be a
plain function ``f(epoch) -> eta``.
"""


class ReduceOnPlateau(object):
    """Chapter 6's problem: hold eta while the validation accuracy improves;
    after ``patience`` epochs in a row without a new best, divide it by
    ``factor``; stop training once it would fall below ``min_eta`` (by
    default the starting eta / 128, as the book suggests).  network3 counts
    an equal accuracy as a new best; so does this."""

    def __init__(self, factor=2.0, patience=10, min_eta=None):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
            raise ValueError("ReduceOnPlateau: factor must be a number > 1, got %r" % (factor,))
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError("ReduceOnPlateau: patience must be an integer >= 1, got %r"
                             % (patience,))
        if min_eta is not None and (isinstance(min_eta, bool)
                                    or not isinstance(min_eta, (int, float)) or not min_eta > 0):
            raise ValueError("ReduceOnPlateau: min_eta must be a number > 0, got %r"
                             % (min_eta,))
        self.factor = float(factor)
        self.patience = patience
        self.min_eta = None if min_eta is None else float(min_eta)

    def eta(self, eta0, records):
        """The learning rate of the next epoch after ``records`` (one dict
        per finished epoch with its 'validation_accuracy'), or None: stop."""
        floor = eta0 / 128.0 if self.min_eta is None else self.min_eta
        eta, best, since = eta0, None, 0
        for r in records:
            v = r["validation_accuracy"]
            if best is None or v >= best:
                best, since = v, 0
            else:
                since += 1
                if since >= self.patience:
                    eta, since = eta / self.factor, 0
        return None if eta < floor * (1 - 1e-12) else eta

    def describe(self):
        return {"name": "ReduceOnPlateau", "factor": self.factor, "patience": self.patience,
                "min_eta": self.min_eta}

    def __repr__(self):
        return "ReduceOnPlateau(factor=%r, patience=%r, min_eta=%r)" % (
            self.factor, self.patience, self.min_eta)


def eta_for_epoch(schedule, eta0, epoch, records):
    """The learning rate of ``epoch`` under ``schedule`` (None: network3's
    constant eta0); None means stop."""
    if schedule is None:
        return eta0
    if hasattr(schedule, "eta"):
        return schedule.eta(eta0, records)
    eta = schedule(epoch)
    try:
        eta = float(eta)
    except (TypeError, ValueError):
        raise ValueError("eta_schedule(%d) returned %r, not a number" % (epoch, eta)) from None
    if not eta > 0 or eta == float("inf"):
        raise ValueError("eta_schedule(%d) returned %r; a learning rate must be finite and > 0"
                         % (epoch, eta))
    return eta


def describe(schedule):
    """What a checkpoint records of a schedule (a resumed call must match)."""
    if schedule is None:
        return None
    if hasattr(schedule, "describe"):
        return schedule.describe()
    return {"name": getattr(schedule, "__qualname__", type(schedule).__name__)}
