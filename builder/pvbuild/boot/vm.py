"""QEMU running the Xen test host: cold boot, save, restore, hot-plug, and the HMP monitor that drives them.

One `Vm` is one QEMU process, with its serial port in a file (Xen's and dom0's console: the runner's transcript)
and its human monitor on a unix socket. The process runs in its own session and is ended (monitor `quit`, then
SIGTERM, then SIGKILL) when the `with` block is left, also on Ctrl-C.

Saved state: after a cold boot reaches `PVBOOT READY`, the VM is stopped and its whole state (RAM, devices) is
migrated into a file; a restore starts QEMU with the very same command line plus `-incoming` and resumes. The
stream loads only into the same QEMU build, machine type and devices, so the snapshot records the command line
and is keyed by the QEMU build (`qemu_key`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pvbuild.boot.host import XenHost, remove_stale
from pvbuild.build.run import Log, run, which
from pvbuild.build.workspace import file_lock, remove_tree
from pvbuild.errors import EnvironmentProblem, PvbuildError

QEMU = "qemu-system-x86_64"
SNAPSHOT_FORMAT = "1"
# One emulated CPU: with two, every event channel round trip between the guest's loader and dom0's block backend
# waits for the host to schedule the other TCG thread, and on a busy 2-core host the GRUB 2 loader then read its
# kernel and initrd at ~40 KB/s instead of ~0.4 MB/s (measured). $PVBUILD_BOOT_VCPUS overrides it.
VCPUS = int(os.environ.get("PVBUILD_BOOT_VCPUS", "1"))
XEN_ARGS = ("console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all dom0_mem=1024M,max:1024M "
            f"dom0_max_vcpus={VCPUS} noreboot")
DOM0_ARGS = "root=/dev/vda ro console=hvc0 earlyprintk=xen quiet init_on_free=1"
READY = "PVBOOT READY"
DOM0_BOOT_TIMEOUT = 900.0
MONITOR_TIMEOUT = 120.0
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./+@=:-]+")


class VmError(PvbuildError):
    """QEMU or the Xen host inside it did not do what it should: an environment problem (exit 3)."""

    exit_code = 3


def _safe(path: Path) -> str:
    """A path that goes into QEMU option strings (commas, spaces) and the monitor: only plain characters."""
    s = os.fspath(path)
    if not _SAFE_PATH.fullmatch(s):
        raise EnvironmentProblem(f"pvbuild boot cannot pass the path {s!r} to QEMU (it has blanks, commas or "
                                 "quotes): set XDG_CACHE_HOME / TMPDIR to a plain path")
    return s


def qemu_version() -> str:
    r = run([QEMU, "--version"], capture=True)
    return r.stdout.decode(errors="replace").splitlines()[0].strip()


def qemu_key() -> str:
    """The QEMU build: its version line and its binary's size and mtime (a rebuilt binary gets a new key)."""
    path = which(QEMU)
    st = os.stat(path)
    doc = f"{qemu_version()}|{st.st_size}|{int(st.st_mtime)}"
    return hashlib.sha256(doc.encode()).hexdigest()[:12]


def machine_type() -> str:
    """The versioned machine type `pc` stands for in this QEMU (saved state needs the exact one)."""
    out = run([QEMU, "-machine", "help"], capture=True).stdout.decode(errors="replace")
    m = re.search(r"^pc\s+.*\(alias of (pc-i440fx-[0-9.]+)\)", out, re.MULTILINE)
    return m.group(1) if m else "pc"


def base_argv(host: XenHost, accel: str, machine: str) -> list[str]:
    """Everything of the command line that must be identical between save and restore."""
    acc = "tcg,thread=multi" if accel == "tcg" else "kvm"
    return [QEMU, "-machine", machine, "-accel", acc, "-cpu", "qemu64", "-smp", str(VCPUS), "-m", "2048",
            "-nodefaults", "-vga", "none", "-display", "none", "-net", "none", "-no-reboot",
            "-kernel", _safe(host.xen), "-append", XEN_ARGS,
            "-initrd", f"{_safe(host.kernel)} {DOM0_ARGS},{_safe(host.initrd)}",
            "-device", "virtio-scsi-pci,id=scsi0"]


class Monitor:
    """QEMU's human monitor (HMP) on a unix socket: one command at a time, reply up to the next prompt."""

    PROMPT = b"(qemu) "

    def __init__(self, path: Path, timeout: float = MONITOR_TIMEOUT) -> None:
        deadline = time.monotonic() + 30
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                self._sock.connect(os.fspath(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    self._sock.close()
                    raise VmError(f"QEMU's monitor socket {path} did not come up within 30 s") from None
                time.sleep(0.05)
            except OSError as e:
                self._sock.close()
                raise VmError(f"cannot connect to QEMU's monitor {path}: {e}") from None
        self._sock.settimeout(timeout)
        self._until_prompt()

    def _until_prompt(self) -> str:
        buf = b""
        while not buf.endswith(self.PROMPT):
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise VmError("QEMU's monitor did not answer") from None
            except OSError as e:  # QEMU exited with the monitor open (a reset, not an orderly close)
                raise VmError(f"QEMU's monitor closed (QEMU exited: {e.strerror or e})") from None
            if not chunk:
                raise VmError("QEMU's monitor closed (QEMU exited)")
            buf += chunk
            if len(buf) > 1 << 20:
                raise VmError("QEMU's monitor sent more than 1 MiB without a prompt")
        return buf[: -len(self.PROMPT)].decode(errors="replace")

    def cmd(self, line: str) -> str:
        """Run one HMP command; its reply without the echoed command line."""
        if "\n" in line:
            raise ValueError("one monitor command per call")
        try:
            self._sock.sendall(line.encode() + b"\n")
        except OSError as e:
            raise VmError(f"QEMU's monitor closed (QEMU exited: {e.strerror or e})") from None
        out = self._until_prompt().replace("\r", "")
        # HMP echoes the command (with terminal escapes); the reply starts on the next line.
        return out.split("\n", 1)[1] if "\n" in out else ""

    def quit(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.sendall(b"quit\n")
            self._sock.settimeout(10)
            while self._sock.recv(65536):
                pass

    def close(self) -> None:
        self._sock.close()


class SerialLog:
    """QEMU's serial output file, read incrementally (it only grows)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pos = 0
        self._partial = b""
        self.lines: list[str] = []

    def poll(self) -> list[str]:
        """New complete lines since the last call."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                data = f.read(8 << 20)
        except FileNotFoundError:
            return []
        self._pos += len(data)
        data = self._partial + data
        parts = data.split(b"\n")
        self._partial = parts.pop()
        new = [p.decode("utf-8", "replace").rstrip("\r") for p in parts]
        self.lines.extend(new)
        return new


@dataclass
class Vm:
    proc: subprocess.Popen[bytes]
    monitor: Monitor
    serial: SerialLog
    stderr_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-2000:].strip()
        except OSError:
            return ""

    def wait_for(self, predicate: str, timeout: float, what: str) -> float:
        """Wait until a serial line contains `predicate`; seconds waited. VmError when QEMU dies or time is up."""
        t0 = time.monotonic()
        seen = any(predicate in line for line in self.serial.lines)
        while not seen:
            if any(predicate in line for line in self.serial.poll()):
                break
            if not self.alive():
                raise VmError(f"QEMU exited while waiting for {what} (exit code {self.proc.returncode}): "
                              f"{self.stderr_tail() or 'it printed nothing'}; serial log {self.serial.path}")
            if time.monotonic() - t0 > timeout:
                raise VmError(f"no {what} after {timeout:.0f} s; serial log {self.serial.path}")
            time.sleep(0.2)
        return time.monotonic() - t0


@contextmanager
def start(argv: Sequence[str], run_dir: Path, dom0_disk: Path, *, incoming: Path | None = None,
          log: Log | None = None) -> Iterator[Vm]:
    """Start QEMU with `argv` plus the dom0 disk, serial file and monitor; quit it when the block ends."""
    which(QEMU)
    serial = run_dir / "serial.log"
    # A unix socket path has at most 107 bytes: the monitor lives in a short folder of its own.
    mon_dir = Path(tempfile.mkdtemp(prefix="pvbmon-", dir="/tmp"))
    mon = mon_dir / "monitor.sock"
    full = [*argv, "-drive", f"file={_safe(dom0_disk)},if=virtio,format=qcow2",
            "-serial", f"file:{_safe(serial)}", "-monitor", f"unix:{_safe(mon)},server,nowait"]
    if incoming is not None:
        full += ["-incoming", f"exec:cat {shlex.quote(_safe(incoming))}"]
    full[0] = which(full[0])
    if log is not None:
        log.command(full)
    stderr_path = run_dir / "qemu.stderr"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
    monitor: Monitor | None = None
    try:
        try:
            monitor = Monitor(mon)
        except VmError as e:
            tail = stderr_path.read_text(errors="replace")[-2000:].strip()
            raise VmError(f"QEMU did not start: {tail or e}") from None
        yield Vm(proc, monitor, SerialLog(serial), stderr_path)
    finally:
        if monitor is not None:
            monitor.quit()
            monitor.close()
        _stop(proc)
        shutil.rmtree(mon_dir, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, grace in ((None, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def qcow2_overlay(backing: Path, backing_format: str, out: Path, log: Log | None = None) -> Path:
    """A copy-on-write qcow2 file over `backing`: reads come from it, writes stay in `out`."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", os.path.abspath(backing), out],
        log=log)
    return out


# --- saved state --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    folder: Path
    argv: tuple[str, ...]
    dom0_disk: Path
    state: Path
    cold_boot_s: float


def snapshot_dir(host: XenHost, accel: str, qkey: str) -> Path:
    """Keyed by the accelerator, the QEMU build and the command line the state must be restored with."""
    argv = base_argv(host, accel, machine_type())
    digest = hashlib.sha256(json.dumps([SNAPSHOT_FORMAT, argv]).encode()).hexdigest()[:10]
    return host.folder / f"snapshot-{accel}-{qkey}-{digest}"


def find_snapshot(host: XenHost, accel: str) -> tuple[Snapshot | None, str]:
    """The usable snapshot of this host for this accelerator and QEMU build, or (None, why not)."""
    qkey = qemu_key()
    folder = snapshot_dir(host, accel, qkey)
    meta = folder / "snapshot.json"
    if not meta.is_file():
        others = [p.name for p in host.folder.glob(f"snapshot-{accel}-*") if p.is_dir()]
        if others:
            return None, (f"the saved dom0 was made by another QEMU build or command line ({', '.join(others)}; "
                          f"this QEMU is {qemu_version()}): a saved state only loads into the QEMU that saved it, "
                          "started the same way")
        return None, "no saved dom0 yet (run `pvbuild boot --prepare`)"
    doc = json.loads(meta.read_text())
    return Snapshot(folder, tuple(doc["argv"]), folder / "dom0.qcow2", folder / "state.bin",
                    float(doc.get("cold_boot_s", 0.0))), ""


def cold_boot(host: XenHost, accel: str, run_dir: Path, log: Log | None = None) -> tuple[list[str], Path]:
    """The command line and a fresh dom0 overlay for a cold boot of the host (used by save and by fallback)."""
    argv = base_argv(host, accel, machine_type())
    disk = qcow2_overlay(host.dom0_image, "raw", run_dir / "dom0.qcow2", log)
    return argv, disk


def make_snapshot(host: XenHost, accel: str, log: Log) -> Snapshot:
    """Boot the host cold, wait for the runner, and save the running VM (atomically: complete or absent)."""
    qkey = qemu_key()
    final = snapshot_dir(host, accel, qkey)
    with file_lock(host.folder / "snapshot.lock"):
        if (final / "snapshot.json").is_file():
            found, _ = find_snapshot(host, accel)
            if found is not None:
                return found
        remove_stale(host.folder)
        tmp = host.folder / f".{final.name}.tmp-{os.getpid()}"
        remove_tree(tmp)
        tmp.mkdir()
        try:
            argv, disk = cold_boot(host, accel, tmp, log)
            state = tmp / "state.bin"
            with start(argv, tmp, disk, log=log) as vm:
                with log.stage(f"xen host: cold boot of dom0 ({accel})"):
                    boot_s = vm.wait_for(READY, DOM0_BOOT_TIMEOUT, "dom0 runner (PVBOOT READY)")
                time.sleep(3)  # let the runner enter its wait loop, so the saved VM is idle
                with log.stage("xen host: save the running dom0"):
                    vm.monitor.cmd("stop")
                    vm.monitor.cmd(f'migrate "exec:cat > {shlex.quote(_safe(state))}"')
                    wait_migration(vm.monitor, 600)
            for name in ("serial.log", "qemu.stderr", "monitor.sock"):
                (tmp / name).unlink(missing_ok=True)
            os.chmod(disk, 0o444)
            os.chmod(state, 0o444)
            (tmp / "snapshot.json").write_text(json.dumps({
                "argv": argv, "accel": accel, "qemu": qemu_version(), "qemu_key": qkey, "cold_boot_s": boot_s,
                "saved": time.time()}, indent=2) + "\n")
            os.rename(tmp, final)
        finally:
            remove_tree(tmp)
    found, why = find_snapshot(host, accel)
    if found is None:
        raise VmError(f"the saved dom0 could not be read back: {why}")
    return found


def wait_migration(monitor: Monitor, timeout: float) -> None:
    """Until `info migrate` says completed; VmError when it failed or took too long."""
    t0 = time.monotonic()
    while True:
        out = monitor.cmd("info migrate")
        m = re.search(r"Migration status:\s*(\S+)", out)
        status = m.group(1) if m else ""
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise VmError(f"QEMU migration {status}: {out.strip()[:500]}")
        if time.monotonic() - t0 > timeout:
            raise VmError(f"QEMU migration not completed after {timeout:.0f} s ({status or 'no status'})")
        time.sleep(0.1)


def resume(vm: Vm, timeout: float = 120.0) -> None:
    """After `-incoming`: wait until the saved state is loaded, then run the VM."""
    t0 = time.monotonic()
    while True:
        if not vm.alive():
            raise VmError(f"QEMU exited while loading the saved dom0: {vm.stderr_tail() or 'no message'}")
        info = vm.monitor.cmd("info migrate")
        if "Migration status: completed" in info:
            break
        if "Migration status: failed" in info:
            raise VmError(f"loading the saved dom0 failed: {info.strip()[:300]} {vm.stderr_tail()}")
        if time.monotonic() - t0 > timeout:
            raise VmError(f"the saved dom0 did not load within {timeout:.0f} s")
        time.sleep(0.05)
    vm.monitor.cmd("cont")
    status = vm.monitor.cmd("info status")
    if "running" not in status:
        raise VmError(f"the restored dom0 does not run ({status.strip()}): {vm.stderr_tail()}")


def hotplug(vm: Vm, disk: Path, serial: str, n: int) -> None:
    """Add `disk` (qcow2) as a SCSI disk with serial `serial`; the dom0 runner picks it up by that serial."""
    out = vm.monitor.cmd(f"drive_add 0 if=none,id=pvbd{n},file={_safe(disk)},format=qcow2")
    if "OK" not in out:
        raise VmError(f"QEMU refused the guest disk: {out.strip()[:300]}")
    out = vm.monitor.cmd(f"device_add scsi-hd,bus=scsi0.0,drive=pvbd{n},id=pvbdev{n},serial={serial}")
    if out.strip():
        raise VmError(f"QEMU refused the guest disk device: {out.strip()[:300]}")
