"""`python -m jaxrec.evaluation` is not a command: say which one is."""

import sys

sys.exit("python -m jaxrec.evaluation is not a command: use `jaxrec evaluate --workdir DIR` (or `jaxrec predict "
         "--workdir DIR IMAGES` to classify new images)")
