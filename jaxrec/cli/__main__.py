"""`python -m jaxrec.cli ...`: the same command line as `jaxrec` and `python -m jaxrec`."""

import sys

from jaxrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
