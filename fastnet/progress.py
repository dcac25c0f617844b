"""Training progress on stderr for ``Network.SGD(..., progress=True)``.

On a terminal with tqdm installed (``pip install "fastnet[progress]"``) an
epoch is a tqdm bar.  Otherwise -- stderr redirected to a file or a CI log,
or no tqdm -- it is plain lines: one when an epoch ends and, in a long
epoch, one at each quarter at most, so a log never fills with redraws.
"""

import sys
import time

# a plain progress line at most every this share of an epoch ...
LOG_FRACTION = 0.25
# ... and no more often than this, so short epochs give one line each
LOG_MIN_SECONDS = 5.0


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class EpochProgress(object):
    """Progress of one epoch of ``total`` mini-batches of ``mini_batch_size``.

    ``update(done)`` after each chunk of mini-batches (``done`` counts from
    the start of the epoch, a resumed epoch starts above 0); the epoch's
    line or bar is finished when ``done`` reaches ``total``.  ``t0`` is the
    ``time.perf_counter()`` at which the epoch started (samples/s is
    computed from it).  ``stream`` defaults to ``sys.stderr``;
    ``bar=None`` picks a tqdm bar when the stream is a terminal and tqdm is
    installed, plain lines otherwise.
    """

    def __init__(self, epoch, total, mini_batch_size, t0=None, stream=None, bar=None):
        self.epoch = epoch
        self.total = total
        self.mini_batch_size = mini_batch_size
        self.t0 = time.perf_counter() if t0 is None else t0
        self.stream = sys.stderr if stream is None else stream
        self.finished = False
        self._last_logged = (0, self.t0)   # (done, time) of the last plain line
        tqdm = _tqdm()
        if bar is None:
            isatty = getattr(self.stream, "isatty", None)
            bar = tqdm is not None and bool(isatty and isatty())
        if bar and tqdm is None:
            raise ImportError("a progress bar needs tqdm: pip install 'fastnet[progress]'")
        self._bar = None
        if bar:
            self._bar = tqdm(total=total, file=self.stream, leave=True, dynamic_ncols=True,
                             desc="epoch %d" % epoch, unit="mini-batch",
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                        "mini-batches [{elapsed}<{remaining}{postfix}]")

    def rate(self, done, now=None):
        """Samples per second since ``t0``."""
        now = time.perf_counter() if now is None else now
        return done * self.mini_batch_size / max(now - self.t0, 1e-9)

    def update(self, done):
        if self.finished:
            return
        now = time.perf_counter()
        end = done >= self.total
        if self._bar is not None:
            self._bar.set_postfix_str("%.0f samples/s" % self.rate(done, now), refresh=False)
            self._bar.update(done - self._bar.n)
            if end:
                self._bar.close()
        elif end or self._due(done, now):
            self.stream.write("epoch %d: %d/%d mini-batches (%3.0f%%), %.1f s, %.0f samples/s\n"
                              % (self.epoch, done, self.total, 100.0 * done / self.total,
                                 now - self.t0, self.rate(done, now)))
            self.stream.flush()
            self._last_logged = (done, now)
        self.finished = end

    def _due(self, done, now):
        last_done, last_time = self._last_logged
        return (done - last_done >= LOG_FRACTION * self.total
                and now - last_time >= LOG_MIN_SECONDS)

    def close(self):
        """Ends a bar left open (an epoch stopped by an exception)."""
        if self._bar is not None and not self.finished:
            self._bar.close()
        self.finished = True


class Progress(object):
    """The progress of a whole SGD call: one ``EpochProgress`` per epoch.

    ``Network._progress`` keeps one of these on the network and calls
    ``update(epoch, done, total, t0)`` after each chunk of mini-batches.
    """

    def __init__(self, mini_batch_size, stream=None, bar=None):
        self.mini_batch_size = mini_batch_size
        self.stream = stream
        self.bar = bar
        self.current = None

    def update(self, epoch, done, total, t0):
        cur = self.current
        if cur is None or cur.epoch != epoch or cur.t0 != t0:
            if cur is not None:
                cur.close()
            cur = self.current = EpochProgress(epoch, total, self.mini_batch_size, t0,
                                               self.stream, self.bar)
        cur.update(done)
