"""Draw the small CIFAR-10 sample that ships inside the package (`--dataset cifar10_sample`).

The JPEG files are copied byte for byte from an unpacked CIFAR-10 image folder (for instance the
JPEG q75 copy), a fixed random subset per class and split, so the sample is real data with the
original labels. Usage:

    python experiments/make_cifar10_sample.py ~/data/cifar10-jpeg --train_per_class 40 --test_per_class 10
"""

import argparse
import json
import random
import shutil
from pathlib import Path

from jaxrec.data.sources import SAMPLE_ROOT


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="image folder laid out <root>/<split>/<class>/<image>")
    parser.add_argument("--train_per_class", type=int, default=40)
    parser.add_argument("--test_per_class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    if SAMPLE_ROOT.exists():
        shutil.rmtree(SAMPLE_ROOT)
    counts = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        for class_dir in sorted(p for p in (args.source / split).iterdir() if p.is_dir()):
            files = sorted(class_dir.glob("*.jpg"))
            chosen = sorted(rng.sample(files, per_class))
            out = SAMPLE_ROOT / split / class_dir.name
            out.mkdir(parents=True)
            for f in chosen:
                shutil.copyfile(f, out / f.name)
            counts[f"{split}/{class_dir.name}"] = len(chosen)
    (SAMPLE_ROOT / "SOURCE.json").write_text(json.dumps(
        {"source": "CIFAR-10 (JPEG q75 copy)", "seed": args.seed, "counts": counts}, indent=1))
    size = sum(f.stat().st_size for f in SAMPLE_ROOT.rglob("*") if f.is_file())
    print(f"wrote {sum(counts.values())} images, {size / 1e6:.2f} MB, to {SAMPLE_ROOT}")


if __name__ == "__main__":
    main()
