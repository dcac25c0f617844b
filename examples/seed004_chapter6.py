"""Chapter 6 of Nielsen's book: the results ladder, from a shallow network
to an ensemble of five dropout conv nets, on the bundled MNIST digits.

    python examples/seed004_chapter6.py [--quick] [--out DIR]

Prints each rung's test accuracy beside the book's (the book trained 60
epochs on 50,000 digits; this runs 5 epochs -- 1 with --quick, on 200
training digits -- on the bundled 8,000) and the ladder as a Markdown table;
writes ladder.json, the learning curves, the first conv layer's filters and
the ensemble's errors into DIR.  The same as `fastnet chapter6`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args  # noqa: E402

from fastnet.chapter6 import run_ladder  # noqa: E402


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    if args.quick:
        run_ladder(epochs=1, out=args.out, members=2, train_limit=200)
    else:
        run_ladder(epochs=5, out=args.out, members=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
