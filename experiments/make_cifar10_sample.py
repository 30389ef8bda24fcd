"""Draw the small CIFAR-10 sample that ships inside the package (`--dataset cifar10_sample`).

The JPEG files are copied byte for byte from an unpacked CIFAR-10 image folder (for instance the
JPEG q75 copy), a fixed random subset per class and split, so the sample is real data with the
original labels. The new sample is drawn into a folder of its own and replaces --out (default: the
package's sample) only once it is complete. Usage:

    python experiments/make_cifar10_sample.py ~/data/cifar10-jpeg --train_per_class 40 --test_per_class 10
"""

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from jaxrec.data.sources import SAMPLE_ROOT


def draw(source: Path, out: Path, per_split: dict[str, int], seed: int) -> dict[str, int]:
    """Copies `per_split[split]` images of each class of each split of `source` into `out`; the counts by class."""
    rng, counts = random.Random(seed), {}
    for split, per_class in per_split.items():
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            files = sorted(class_dir.glob("*.jpg"))
            if len(files) < per_class:  # checked before the old sample is touched
                raise ValueError(f"{class_dir} has {len(files)} JPEG images, fewer than {per_class}; pass a smaller "
                                 f"--{split}_per_class")
            (out / split / class_dir.name).mkdir(parents=True)
            for f in sorted(rng.sample(files, per_class)):
                shutil.copyfile(f, out / split / class_dir.name / f.name)
            counts[f"{split}/{class_dir.name}"] = per_class
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="image folder laid out <root>/<split>/<class>/<image>")
    parser.add_argument("--out", type=Path, default=SAMPLE_ROOT, help="the sample's folder (default: the package's)")
    parser.add_argument("--train_per_class", type=int, default=40)
    parser.add_argument("--test_per_class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source, out = args.source.expanduser().resolve(), args.out.expanduser().resolve()
    problem = (f"{source} has no train/ and test/ folders" if not all((source / s).is_dir() for s in ("train", "test"))
               else f"--out {out} is the source or inside it" if out == source or source in out.parents
               else f"{source} is inside --out {out}, which is replaced" if out in source.parents
               else "--train_per_class and --test_per_class must be >= 1" if min(args.train_per_class,
                                                                                    args.test_per_class) < 1 else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    drawn = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        counts = draw(source, drawn, {"train": args.train_per_class, "test": args.test_per_class}, args.seed)
    except ValueError as err:
        shutil.rmtree(drawn)
        print(f"error: {err}", file=sys.stderr)
        return 2
    (drawn / "SOURCE.json").write_text(json.dumps(
        {"source": "CIFAR-10 (JPEG q75 copy)", "seed": args.seed, "counts": counts}, indent=1))
    if out.exists():  # moved into a folder of its own: a leftover of an interrupted run cannot block it
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        out.rename(old / out.name)
        drawn.rename(out)
        shutil.rmtree(old)
    else:
        drawn.rename(out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {sum(counts.values())} images, {size / 1e6:.2f} MB, to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
