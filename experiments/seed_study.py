"""A seed study: train one config over many seeds and report the spread (`jaxrec study`, see jaxrec.studies.study).

    python experiments/seed_study.py --seeds 0-9 --workdir runs/study_all                  # vary everything
    python experiments/seed_study.py --seeds 0-4 --vary init --workdir runs/study_init     # only the init
    python experiments/seed_study.py --seeds 0-4 --augment --vary augment --workdir runs/study_aug
    jaxrec compare runs/study_aug runs/study_all                                            # A better than B?

Every training flag applies to every seed. Rerun the same command to continue a stopped study.
"""

import sys

from jaxrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["study", *sys.argv[1:]]))
