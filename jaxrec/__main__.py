"""`python -m jaxrec ...`: the same command line as the `jaxrec` console script."""

import sys

from jaxrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
