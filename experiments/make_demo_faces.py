"""Writes a demo faces folder (drawn cartoon faces, one sub-folder per person) for the faces walkthrough.

    python experiments/make_demo_faces.py --out ~/data/demo_faces
    python experiments/faces_cnn.py --data ~/data/demo_faces --seed 0
    python experiments/make_demo_faces.py --out ~/data/new_faces --images_per_person 2 --photo_seed 1

No installed package ships real face photographs and there may be no download at hand, so the faces
are drawn: each person has a fixed face (head shape, skin and hair tone, eye spacing, nose, mouth),
each image of them a new position, scale, tilt, lighting and noise, a size (48-100 px), colour or
grayscale, and a format (JPEG, PNG, PGM, PPM, BMP), like a folder collected by hand. It exercises the
pipeline; it is not a benchmark. --photo_seed draws new pictures of the same people, to classify with
the trained model. With a real collection (e.g. LFW's lfw-deepfunneled/ folder), pass that folder
to faces_cnn.py instead. The tests import `write_faces` from here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FORMATS = (".jpg", ".png", ".pgm", ".ppm", ".bmp")


def random_person(rng: np.random.Generator) -> dict:
    """The fixed traits of one made-up person."""
    return {"skin": rng.integers(90, 240, 3), "hair": rng.integers(0, 120, 3), "width": rng.uniform(0.55, 0.8),
            "height": rng.uniform(0.75, 0.95), "eye_gap": rng.uniform(0.18, 0.34), "eye_y": rng.uniform(0.36, 0.48),
            "eye_size": rng.uniform(0.04, 0.08), "nose": rng.uniform(0.08, 0.2), "mouth": rng.uniform(0.15, 0.4),
            "mouth_y": rng.uniform(0.66, 0.78), "hair_len": rng.uniform(0.1, 0.35)}


def draw_face(person: dict, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of `person`, size x size, with random pose, lighting and noise."""
    scale = 4  # draw large, then downsample: smooth edges
    s = size * scale
    image = Image.new("RGB", (s, s), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    zoom = rng.uniform(0.85, 1.1)
    cx, cy = s * (0.5 + rng.uniform(-0.06, 0.06)), s * (0.52 + rng.uniform(-0.06, 0.06))
    w, h = s * person["width"] * zoom / 2, s * person["height"] * zoom / 2
    draw.ellipse([cx - w * 1.05, cy - h * 1.05, cx + w * 1.05, cy - h + 2 * h * person["hair_len"] + h * 0.3],
                 fill=tuple(int(v) for v in person["hair"]))
    draw.ellipse([cx - w, cy - h + h * person["hair_len"], cx + w, cy + h], fill=tuple(int(v) for v in person["skin"]))
    top = cy - h
    eye_y, gap, eye = top + 2 * h * person["eye_y"], s * person["eye_gap"] * zoom, s * person["eye_size"] * zoom
    for side in (-1, 1):
        draw.ellipse([cx + side * gap / 2 - eye, eye_y - eye * 0.6, cx + side * gap / 2 + eye, eye_y + eye * 0.6],
                     fill=(250, 250, 250))
        draw.ellipse([cx + side * gap / 2 - eye / 2, eye_y - eye / 2, cx + side * gap / 2 + eye / 2, eye_y + eye / 2],
                     fill=(20, 20, 40))
    nose = s * person["nose"] * zoom
    draw.line([cx, eye_y + eye, cx - nose / 4, eye_y + eye + nose, cx + nose / 6, eye_y + eye + nose],
              fill=(60, 40, 30), width=max(1, s // 64))
    mouth_y, mouth = top + 2 * h * person["mouth_y"], s * person["mouth"] * zoom / 2
    draw.arc([cx - mouth, mouth_y - mouth / 2, cx + mouth, mouth_y + mouth / 2], 20, 160, fill=(150, 30, 40),
             width=max(1, s // 40))
    image = image.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, center=(cx, cy))
    image = image.resize((size, size), Image.LANCZOS).filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))
    pixels = np.asarray(image, np.float32) * rng.uniform(0.7, 1.2) + rng.normal(0, 6, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_faces(root: str | Path, people: int = 8, images_per_person: Sequence[int] | int = 30,
                sizes: Sequence[int] = (48, 64, 80, 100), formats: Sequence[str] = FORMATS,
                gray_fraction: float = 0.3, seed: int = 0, photo_seed: int = 0) -> Path:
    """Writes root/person_XX/NNN.<ext>: `people` people with `images_per_person` images each (a number,
    or one per person), of random size from `sizes`, format from `formats`, and grayscale with
    probability `gray_fraction` (always grayscale for PGM). Returns root.

    `seed` decides who the people are, `photo_seed` which pictures of them are drawn: another
    photo_seed gives new pictures of the same people (to classify with a model trained on the first).
    """
    root = Path(root).expanduser()
    counts = [images_per_person] * people if isinstance(images_per_person, int) else list(images_per_person)
    for p, count in enumerate(counts):
        person, folder = random_person(np.random.default_rng([seed, p])), root / f"person_{p:02d}"
        rng = np.random.default_rng([seed, p, photo_seed, 1])
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            suffix = formats[int(rng.integers(len(formats)))]
            image = draw_face(person, int(rng.choice(sizes)), rng)
            if suffix == ".pgm" or rng.random() < gray_fraction:
                image = image.convert("L").convert("RGB") if suffix == ".ppm" else image.convert("L")
            image.save(folder / f"{i:03d}{suffix}")
    return root


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to create (one sub-folder per person)")
    parser.add_argument("--people", type=int, default=8, help="number of people")
    parser.add_argument("--images_per_person", type=int, default=40, help="images of each person")
    parser.add_argument("--seed", type=int, default=0, help="who the people are")
    parser.add_argument("--photo_seed", type=int, default=0, help="which pictures of them are drawn")
    args = parser.parse_args()
    out = Path(args.out).expanduser()
    problem = ("--people and --images_per_person must be >= 1" if min(args.people, args.images_per_person) < 1 else
               f"--out {out} already holds files; pass a new folder (pictures mixed into a data set would change it)"
               if out.exists() and any(out.iterdir()) else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    root = write_faces(out, people=args.people, images_per_person=args.images_per_person, seed=args.seed,
                       photo_seed=args.photo_seed)
    print(f"wrote {args.people} people x {args.images_per_person} images to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
