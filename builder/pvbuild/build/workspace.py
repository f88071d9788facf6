"""Resources the build acquires, each released by a context manager in reverse order, also on Ctrl-C.

The safety net is `work_dir()`: whatever happens inside it, on the way out every mount below the folder is
unmounted (deepest first) before anything is deleted, and the folder is deleted only when no mount is left
below it — `rm -rf` through a bind-mounted /dev would delete the host's device nodes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from pvbuild.build.errors import BuildInterrupted
from pvbuild.build.run import Log, run


def _unescape(field: str) -> str:
    """/proc/self/mountinfo escapes blanks, tabs, newlines and backslashes as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, in mount order (read from /proc/self/mountinfo)."""
    root = os.path.realpath(path)
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split(" ")
            if len(parts) < 5:
                continue
            mp = _unescape(parts[4])
            if mp == root or mp.startswith(root.rstrip("/") + "/"):
                found.append(Path(mp))
    return found


def unmount_all(path: Path, log: Log | None = None) -> None:
    """Unmount everything at or below `path`, last mounted first; lazily as a last resort."""
    for _attempt in range(3):
        mps = mounts_under(path)
        if not mps:
            return
        for mp in reversed(mps):
            run(["umount", mp], log=log, check=False)
    for mp in reversed(mounts_under(path)):
        run(["umount", "--lazy", mp], log=log, check=False)


def remove_tree(path: Path, log: Log | None = None) -> None:
    """Delete a folder the build made, never through a mount point."""
    if not path.exists():
        return
    unmount_all(path, log)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"refusing to delete {path}: still mounted below it: {', '.join(map(str, left))}")
    shutil.rmtree(path)


@contextmanager
def work_dir(parent: Path | None = None, *, prefix: str = "pvbuild-", log: Log | None = None,
             keep: bool = False) -> Iterator[Path]:
    """A fresh folder for one build (on disk, not tmpfs: trees and images are large), removed afterwards."""
    base = parent or Path(os.environ.get("PVBUILD_WORKDIR") or os.environ.get("TMPDIR") or "/var/tmp")
    base.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    os.chmod(d, 0o755)  # noqa: S103 - apt's _apt sandbox user must reach mmdebstrap's chroot inside it
    try:
        yield d
    finally:
        if keep:
            unmount_all(d, log)
        else:
            remove_tree(d, log)


@contextmanager
def mounted(argv_options: list[str], source: str, target: Path, log: Log | None = None) -> Iterator[Path]:
    """`mount OPTIONS SOURCE TARGET` for the duration of the block."""
    run(["mount", *argv_options, source, target], log=log)
    try:
        yield target
    finally:
        run(["umount", target], log=log, check=False)
        if mounts_under(target):
            run(["umount", "--lazy", target], log=log, check=False)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into an exception in the main thread so the `with` blocks unwind as on Ctrl-C."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise BuildInterrupted("pvbuild: terminated (SIGTERM); everything the build had acquired was released")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def atomic_dir_replace(tmp: Path, final: Path, log: Log | None = None) -> None:
    """Move a completed folder into place; an older folder of the same name goes only once the new one is in."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.rename(final, trash)
        os.rename(tmp, final)
        remove_tree(trash, log)
    else:
        os.rename(tmp, final)


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created with its folder), so two pvbuild processes never write the same cache
    entry or file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
