"""A run's workdir: claimed by one training run at a time, never someone else's folder or a study's, writable.
The lock and --resume=false's move aside: "One run per workdir" and "Resume" in docs/checkpoints.md."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

from jaxrec.errors import InputError, os_error_cause

try:  # POSIX (Linux, macOS, Colab, Kaggle); elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".lock"
PREVIOUS_PREFIX = "replaced-"
STUDY_SPEC_FILE = "study_spec.json"  # what a seed study asked for (jaxrec.studies.study); it marks a study's workdir
# Files that mark a folder as a jaxrec workdir: a run's config (with jaxrec's own keys) or a study's spec.
CONFIG_KEYS = {"model", "dataset", "epochs", "batch_size", "learning_rate", "seed"}


def _only_folders(path: Path) -> bool:
    """Whether `path` is a folder holding no file at any depth."""
    return path.is_dir() and not any(p.is_file() or p.is_symlink() for p in path.rglob("*"))


def workdir_kind(path: Path) -> str | None:
    """What `path` holds: nothing ('empty'), a jaxrec 'run' (or what one stopped before writing its config.json
    leaves: the lock, an empty checkpoints folder, the runs it replaced), a seed 'study', or other files (None)."""
    names = {p.name for p in path.iterdir()} - {LOCK_FILE}
    if not names:
        return "empty"
    if STUDY_SPEC_FILE in names:
        return "study"
    entries = {name for name in names if not name.startswith(PREVIOUS_PREFIX)}
    if not entries or (entries == {"checkpoints"} and _only_folders(path / "checkpoints")):
        return "run"
    try:
        return "run" if CONFIG_KEYS <= set(json.loads((path / "config.json").read_text())) else None
    except (OSError, ValueError, TypeError):
        return None


def writable_folder(folder: str | Path, flag: str = "--workdir") -> Path:
    """Creates `folder` if needed; raises InputError, naming `flag` and the cause, if it is a file or unwritable."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path} is a file, not a folder; choose another {flag}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        cause = os_error_cause(err.errno) if err.errno else str(err)
        raise InputError(f"cannot write to {flag} {path}: {cause}; choose a writable {flag}") from None
    return path


def check_workdir(workdir: str | Path, force: bool = False, kind: str = "run") -> Path:
    """A writable workdir (`writable_folder`) that is empty or holds a jaxrec `kind` ('run' or 'study'), unless
    `force`: never someone else's folder, and never a run and a study in one."""
    path = writable_folder(workdir)
    found = "empty" if force else workdir_kind(path)
    if found is None:
        raise InputError(f"--workdir {path} holds files that are not a jaxrec run (no jaxrec config.json); "
                         f"choose another --workdir, or pass --force_workdir to write into it anyway")
    if found not in ("empty", kind):
        raise InputError(f"--workdir {path} holds a jaxrec {found}, and a {kind} is written into a folder of its "
                         f"own; choose another --workdir")
    return path


@contextlib.contextmanager
def removed_if_failed(folder: str | Path) -> Iterator[None]:
    """Runs the block; if it fails, removes `folder` and the parents it lacked before, those still empty: a command
    refused before it wrote anything leaves no folder of its making."""
    path = Path(folder).expanduser().absolute()
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        yield
    except BaseException:
        for made in missing:  # the deepest first
            with contextlib.suppress(OSError):
                made.rmdir()
        raise


@contextlib.contextmanager
def claim(workdir: str | Path, force: bool = False) -> Iterator[Path]:
    """Checks the workdir (`check_workdir`) and holds its lock while the block runs. A run refused before it wrote
    anything leaves no lock file, nor the workdir if it was made here."""
    with removed_if_failed(workdir):
        path = check_workdir(workdir, force)
        if fcntl is None:  # pragma: no cover
            yield path
            return
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # the holder's lock file stays: removing it would let a third run in beside the holder
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InputError(f"--workdir {path} is in use by another training run (pid {holder}); wait for it to "
                             f"finish or stop it, or use another --workdir") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield path
        except BaseException:
            if workdir_kind(path) == "empty":  # refused before writing: nothing of the run's is left
                (path / LOCK_FILE).unlink()
            raise
        finally:
            os.close(fd)  # releases the lock


def move_previous_run(workdir: Path) -> Path | None:
    """Moves every file of the workdir (but the lock and earlier moved runs) into
    WORKDIR/replaced-<time>/; returns that folder, or None if there was nothing to move."""
    entries = [p for p in workdir.iterdir() if p.name != LOCK_FILE and not p.name.startswith(PREVIOUS_PREFIX)]
    if not entries:
        return None
    stamp = time.strftime('%Y%m%d-%H%M%S')
    aside, n = workdir / f"{PREVIOUS_PREFIX}{stamp}", 1
    while aside.exists():  # two restarts within a second
        n += 1
        aside = workdir / f"{PREVIOUS_PREFIX}{stamp}-{n}"
    aside.mkdir()
    for entry in entries:
        entry.rename(aside / entry.name)
    return aside
