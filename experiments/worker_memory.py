"""Peak memory of a streamed run's data workers: the RSS and PSS of each process the trainer starts,
sampled twice a second, to hold jaxrec.runtime.memory.WORKER_BYTES against (results/streaming_memory/).

    python experiments/worker_memory.py DATA_FOLDER [WORKERS]
"""

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


def main() -> None:
    folder, workers = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "2"
    command = [sys.executable, "-m", "jaxrec", "train", "--dataset", folder, "--input", "stream", "--data_workers",
               workers, "--max_steps", "60", "--progress", "false", "--workdir", "runs/worker_memory", "--resume",
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


if __name__ == "__main__":
    main()
