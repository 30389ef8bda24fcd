"""An image folder of larger images made from a small one, for measuring the streaming input.

Each image of SRC (laid out <split>/<class>/<image>) is resized (bicubic) to --size x --size and saved
as a JPEG under DST in the same layout. --copies K then adds K - 1 hard links of every training file,
under other names: a folder that decodes to K times the pixels at almost no disk cost (for the
larger-than-memory run in results/streaming.md). --limit N takes the first N images (in name order)
of each class of each split, --test_limit M the first M of each class of the other splits. --link
hard-links the chosen files as they are instead of resizing them: a subset of SRC.

    python experiments/upscaled_folder.py CIFAR_JPEG_DIR /tmp/cifar128 --size 128
    python experiments/upscaled_folder.py CIFAR_JPEG_DIR /tmp/big224 --size 224 --limit 100 --copies 80
    python experiments/upscaled_folder.py CIFAR_JPEG_DIR /tmp/cifar10k --link --limit 1000 --test_limit 200
"""

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image


def convert(source: Path, target: Path, size: int, quality: int) -> None:
    with Image.open(source) as image:
        image.convert("RGB").resize((size, size), Image.BICUBIC).save(target, quality=quality)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--limit", type=int, default=0, help="images per class and split (0: all)")
    parser.add_argument("--test_limit", type=int, default=None, help="images per class of the splits but train "
                        "(default: --limit)")
    parser.add_argument("--link", action="store_true", help="hard-link the files as they are (no --size)")
    parser.add_argument("--copies", type=int, default=1, help="hard links per training image, the file included")
    args = parser.parse_args()
    chosen = []  # (class folder, its files to take), before anything is written
    for class_dir in sorted(p for p in args.source.glob("*/*") if p.is_dir()):
        limit = args.limit if class_dir.parent.name == "train" or args.test_limit is None else args.test_limit
        chosen.append((class_dir, sorted(p for p in class_dir.iterdir() if p.is_file())[:limit or None]))
    problem = (f"{args.source} does not exist; pass the image folder to copy" if not args.source.exists() else
               f"{args.source} holds no images laid out <split>/<class>/<image>; pass the image folder to copy"
               if not any(files for _, files in chosen) else
               f"{args.target} exists; pass a new folder" if args.target.exists() else None)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    jobs = []
    for class_dir, files in chosen:
        out = args.target / class_dir.parent.name / class_dir.name
        out.mkdir(parents=True)
        jobs += [(f, out / (f.name if args.link else f"{f.stem}.jpg")) for f in files]
    start = time.time()
    if args.link:
        for source, target in jobs:
            os.link(source, target)
    else:
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(lambda job: convert(*job, args.size, args.quality), jobs))
    links = 0
    for _, target in jobs:
        if target.parent.parent.name == "train":
            for copy in range(1, args.copies):
                os.link(target, target.with_name(f"{target.stem}_{copy}.jpg"))
                links += 1
    made = "linked" if args.link else f"at {args.size}x{args.size}"
    print(f"{len(jobs)} images {made} and {links} links in {args.target} "
          f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
