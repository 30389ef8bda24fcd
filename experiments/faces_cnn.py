"""Face recognition as the article's worked scenario: train the CNN on a folder of face images, one
sub-folder per person, then evaluate it per person and classify new faces.

    python experiments/faces_cnn.py --data PATH --seed 0
    python experiments/faces_cnn.py --data PATH --image_size 96 --min_images_per_class 20 --test_fraction 0.25

PATH is laid out PATH/<person>/<image> (then a stratified split by person is drawn with the seed,
--test_fraction of each person's images held out) or PATH/train/<person>/<image> +
PATH/test/<person>/<image>. Any size, grayscale or colour, JPEG/PNG/PGM/PPM/BMP: images are resized
to --image_size and converted to --channels (default 3; 1 for an all-grayscale collection). People
with fewer than --min_images_per_class images are dropped, with a message. --data is --dataset
under another name.
No face data set at hand? `python experiments/make_demo_faces.py --out DIR` draws one.

Every flag is a field of jaxrec.config.Config; see --help.
"""

import sys

from jaxrec.cli import run_experiment
from jaxrec.config import Config

# Colour by default: in a folder mixing grayscale and colour pictures, the first file would
# otherwise decide for all of them (grayscale ones are replicated to 3 channels).
FACES = Config(model="cnn", dataset="", image_size=64, channels=3, batch_size=32, eval_batch_size=256, epochs=20,
               min_images_per_class=5, test_fraction=0.2)

if __name__ == "__main__":
    sys.exit(run_experiment(sys.argv[1:], __doc__, FACES, aliases={"data": "dataset"}))
