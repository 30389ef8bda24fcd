"""Compare two seed studies: is A better than B, and how sure can we be? `jaxrec compare`, kept as a script for
the commands in results/ that name it.

    python experiments/compare_studies.py runs/study_augment runs/study_plain
    python experiments/compare_studies.py W_A W_B --metric test_macro_f1 --json
"""

import sys

from jaxrec.cli import main as jaxrec


def main() -> int:
    return jaxrec(["compare", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
