"""Peak memory of a streamed run's data workers: the RSS and PSS of each process the trainer starts,
sampled twice a second, to hold jaxrec.runtime.memory.WORKER_BYTES against (results/streaming_memory/).

    python experiments/worker_memory.py DATA_FOLDER [WORKERS] [--workdir runs/worker_memory]

The run (60 steps, WORKERS data workers, default 2) trains into --workdir with --resume false: each
measurement starts its workers from scratch, and a previous run there is moved aside, not deleted.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux `ps`)."""
    found = []
    for child in map(int, subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                                         text=True).stdout.split()):
        found += [child, *descendants(child)]
    return found


def memory_kib(pid: int) -> tuple[int, int, str] | None:
    """(RSS, PSS, command line) of a process, or None once it has ended."""
    proc = Path("/proc") / str(pid)
    try:
        rss = next(int(line.split()[1]) for line in (proc / "status").open() if line.startswith("VmRSS"))
        pss = next(int(line.split()[1]) for line in (proc / "smaps_rollup").open() if line.startswith("Pss:"))
        return rss, pss, (proc / "cmdline").read_text().replace("\0", " ")[:80]
    except (OSError, StopIteration):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("folder", help="the image folder the run streams")
    parser.add_argument("workers", nargs="?", type=int, default=2, help="--data_workers of the run (default 2)")
    parser.add_argument("--workdir", default="runs/worker_memory", help="where the run writes (default %(default)s)")
    args = parser.parse_args()
    if args.workers < 1:  # no worker process to measure (0: threads in the trainer's own process)
        print(f"error: WORKERS must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "jaxrec", "train", "--dataset", args.folder, "--input", "stream", "--data_workers",
               str(args.workers), "--max_steps", "60", "--progress", "false", "--workdir", args.workdir, "--resume",
               "false"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, tuple[int, int, str]] = {}
    while run.poll() is None:
        for pid in descendants(run.pid):
            now = memory_kib(pid)
            if now is not None:
                rss, pss, _ = peaks.get(pid, (0, 0, ""))
                peaks[pid] = (max(rss, now[0]), max(pss, now[1]), now[2])
        time.sleep(0.5)
    print(run.stdout.read()[-1500:])
    for pid, (rss, pss, line) in peaks.items():
        print(f"{pid}: peak RSS {rss / 1024:.0f} MiB, PSS {pss / 1024:.0f} MiB  {line}")
    return run.returncode  # a refused or failed run is not a measurement


if __name__ == "__main__":
    sys.exit(main())
