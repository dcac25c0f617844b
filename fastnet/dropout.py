"""The dropout mask's keep rule, one definition for every engine.

An element is kept when its 32 counter-based random bits (splitmix64; see
fastnet/engines/reference.py's dropout_bits) are below ``keep_threshold(p)``,
so P(keep) = 1 - p.  A leaf module: the compiled kernels import it without
importing an engine.
"""


def keep_threshold(p_dropout):
    """Keep an element when its 32 bits are below this: P(keep) = 1 - p."""
    return int(round((1.0 - p_dropout) * 4294967296.0))
