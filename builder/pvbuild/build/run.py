"""The one subprocess wrapper of the build, and its log.

Why one wrapper: every command is logged the same way (the full build log gets the command and all it printed,
`-v` shows the commands on the console), a failure is always a typed `CommandFailed` carrying the end of stderr,
and an interrupt is handled in one place. Commands are argv lists, never shell strings built from input.

Interrupts: each child runs in its own session, so a Ctrl-C reaches pvbuild only; `run()` then forwards SIGINT
to the child's whole process group, waits for it to clean up (mmdebstrap unmounts what it mounted), escalates
to SIGTERM and SIGKILL, and only then lets the KeyboardInterrupt unwind pvbuild's own context managers. So no
process outlives the build.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from pvbuild.build.errors import CommandFailed, ToolMissing

STDERR_TAIL = 8192  # bytes of stderr an error carries; the build log has everything
GRACE_SIGINT = 20.0  # seconds a child gets to clean up after SIGINT (mmdebstrap unmounts, dpkg finishes a step)
GRACE_SIGTERM = 5.0

# Debian package of each tool the build runs, for the "install it" message.
TOOL_PACKAGES = {
    "mmdebstrap": "mmdebstrap", "tar": "tar", "mke2fs": "e2fsprogs", "debugfs": "e2fsprogs",
    "dumpe2fs": "e2fsprogs", "e2fsck": "e2fsprogs", "sfdisk": "fdisk", "mkfs.xfs": "xfsprogs",
    "xfs_db": "xfsprogs", "xfs_repair": "xfsprogs", "mount": "mount", "umount": "mount", "chroot": "coreutils",
}


def which(tool: str) -> str:
    """The path of `tool`, also looking in the sbin folders a non-login root shell may lack."""
    found = shutil.which(tool) or shutil.which(tool, path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        pkg = TOOL_PACKAGES.get(tool)
        hint = f" (apt-get install {pkg})" if pkg else ""
        raise ToolMissing(f"pvbuild needs the command {tool!r}, which is not installed{hint}")
    return found


class Log:
    """The full build log (a file) and the console: one line per stage with its elapsed time.

    Console lines go to `console` (stderr by default, so stdout stays free for machine output). A rich progress
    bar is shown for long steps when the console is a terminal; plain lines otherwise.
    """

    def __init__(self, path: Path | None = None, *, verbose: bool = False, console: TextIO | None = None) -> None:
        self.path = path
        self.verbose = verbose
        self.console = console if console is not None else sys.stderr
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed in close()

    @property
    def is_tty(self) -> bool:
        try:
            return self.console.isatty()
        except (AttributeError, ValueError):
            return False

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, text: str) -> None:
        """Into the log file only."""
        with self._lock:
            if self._file is not None:
                self._file.write(text if text.endswith("\n") else text + "\n")
                self._file.flush()

    def say(self, text: str) -> None:
        """On the console and into the log."""
        self.write(text)
        with self._lock:
            self.console.write(text + "\n")
            self.console.flush()

    def info(self, text: str) -> None:
        """Into the log; on the console with -v."""
        if self.verbose:
            self.say(text)
        else:
            self.write(text)

    def warn(self, text: str) -> None:
        self.say(f"warning: {text}")

    def command(self, argv: Sequence[str]) -> None:
        self.info("$ " + shlex.join(argv))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """One console line per stage, with its elapsed time (and 'failed'/'interrupted' when it did)."""
        self.write(f"=== {name}")
        t = time.monotonic()
        status = "failed"
        try:
            yield
            status = "done"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            self.say(f"{name:<34} {status:<11} {time.monotonic() - t:7.1f}s")

    @contextmanager
    def progress(self, description: str, total: float | None) -> Iterator[Callable[[float], None]]:
        """A progress bar on a terminal (nothing otherwise): yields `advance(amount)`."""
        if not self.is_tty:
            yield lambda _amount: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("  {task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=Console(file=self.console), transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda amount: bar.advance(task, amount)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child and everything in its process group: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, GRACE_SIGINT), (signal.SIGTERM, GRACE_SIGTERM), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure none of its group lingers (e.g. a dpkg it started).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return


@contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while a child runs: the handler only records them, and the caller stops the child's
    group before the interrupt is raised, when leaving this block, by the handler that was there before.

    Without this, a Ctrl-C that lands inside Popen() (after the fork, before Python knows the pid) leaves the
    child running unseen, writing into a folder the clean-up is deleting.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    pending: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old = signal.getsignal(sig)
        if old in (signal.SIG_IGN, None):
            continue
        previous[sig] = old
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield pending
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if pending:
        first = signal.Signals(pending[0])
        old = previous.get(first)
        if callable(old):
            old(first, None)
        if old == signal.SIG_DFL:
            os.kill(os.getpid(), first)
        raise KeyboardInterrupt


def run(argv: Sequence[str | os.PathLike[str]], *, log: Log | None = None, env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None, input: bytes | None = None, capture: bool = False,
        check: bool = True, ok: Sequence[int] = (0,), quiet: bool = False,
        on_line: Callable[[str], None] | None = None, shown: Sequence[str] | None = None) -> Result:
    """Run a command (an argv list): log it and everything it prints, raise `CommandFailed` when it fails.

    `capture` keeps stdout in the result (instead of logging it); `env` replaces the environment (pass
    `{**os.environ, ...}` to extend it); `ok` lists the exit codes that are success; `on_line` sees each line of
    output (for progress bars); `quiet` keeps even the command line out of the console with -v; `shown` is
    what the log shows instead of argv (e.g. without a long environment).
    """
    args = [os.fspath(a) for a in argv]
    if not args:
        raise ValueError("run() needs a command")
    if os.sep not in args[0]:
        args[0] = which(args[0])
    if log is not None and not quiet:
        log.command(list(shown) if shown is not None else args)
    stdout_chunks: list[bytes] = []
    stderr_tail = bytearray()

    with _deferred_signals() as pending:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True)

        def pump(stream: IO[bytes], is_err: bool) -> None:
            for raw in iter(stream.readline, b""):
                if is_err:
                    stderr_tail.extend(raw)
                    if len(stderr_tail) > STDERR_TAIL:
                        del stderr_tail[: len(stderr_tail) - STDERR_TAIL]
                elif capture:
                    stdout_chunks.append(raw)
                    continue
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if log is not None:
                    log.write(("! " if is_err else "  ") + line)
                if on_line is not None:
                    on_line(line)

        assert proc.stdout is not None and proc.stderr is not None
        pumps = [threading.Thread(target=pump, args=(proc.stdout, False), daemon=True),
                 threading.Thread(target=pump, args=(proc.stderr, True), daemon=True)]
        for t in pumps:
            t.start()
        try:
            if input is not None:
                assert proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.write(input)
                    proc.stdin.close()
            while proc.poll() is None and not pending:
                time.sleep(0.05)
            if pending:
                _stop_group(proc)
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            for t in pumps:
                t.join(timeout=5)
    # The leader exited; a child it left behind in its group would keep mounts or files busy: end it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    result = Result(tuple(args), proc.returncode, b"".join(stdout_chunks), bytes(stderr_tail))
    if check and proc.returncode not in ok:
        if log is not None:
            log.write(f"! exit code {proc.returncode}")
        raise CommandFailed(args, proc.returncode, result.stderr.decode("utf-8", "replace"))
    return result
