"""``python -m fastnet``: the command line of the ``fastnet`` script (fastnet/cli.py)."""

import sys

from fastnet.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m fastnet"))
