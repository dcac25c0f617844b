"""keras.callbacks.History: what ``fit`` returns (callbacks are not supported)."""

__all__ = ["History"]


class History(object):
    """``history``: {metric name: [one value per epoch]} -- ``loss``,
    ``accuracy`` (with metrics=['accuracy']) and their ``val_`` twins;
    ``epoch``: the epoch indices; ``params``: verbose, epochs, steps."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.params = {}
        self.model = None

    def _append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        return "History(epochs=%d, keys=%s)" % (len(self.epoch), sorted(self.history))
