"""`boot_image()`: boot one image as a Xen PV guest on the prepared test host and report what happened.

Read-only by construction: the guest disk is a qcow2 overlay whose backing file is the image (QEMU opens backing
files read-only), made in a temporary folder and deleted afterwards.

Why the probe is injected by dom0: the probe (a systemd unit that prints the kernel version, command line and
root device on the console) must go into the overlay, never into the image. On the host side that needs a
writable view of a qcow2 file's filesystem: no /dev/nbd here (qemu-nbd), debugfs writes raw files only (a raw
copy costs a read and write of all the image's data on every boot), and libguestfs boots its own appliance. The
dom0 of the test host already sees the overlay as a block device and runs the same Debian kernel as the guests,
so it mounts every filesystem of the disk (whole disk and partitions: partitionless, MBR and GPT alike; ext2/3/4,
XFS, btrfs, and the logical volumes of an LVM physical volume, whose volume group dom0 activates for the
injection and deactivates again), drops the probe into each one that looks like a root filesystem (/etc and an
init), and unmounts before `xl create`. A separate /boot is no problem (the probe goes to the root, wherever it
is). Limitations, reported as such: a root filesystem dom0 cannot mount read-write (squashfs, LUKS), and an init
that is not systemd, leave the guest "userspace not proven" even when it boots.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvbuild.boot import console
from pvbuild.boot import host as host_mod
from pvbuild.boot import vm as vm_mod
from pvbuild.boot.accel import decide_accel
from pvbuild.build.errors import ToolMissing
from pvbuild.build.run import Log, which
from pvbuild.build.workspace import sigterm_as_interrupt, work_dir
from pvbuild.errors import EnvironmentProblem, UsageError

GUEST_ID = "1"
RUNNER_MARGIN_S = 120.0  # injection, xl create and the runner's own grace, on top of the guest timeout


@dataclass(frozen=True)
class BootResult:
    image: str
    variant: str
    accel: str
    outcome: console.Outcome
    console_log: str | None
    dom0: dict[str, Any]
    wall_s: float
    variant_reason: str = ""  # why this loader: given, or chosen from the image's partition table

    @property
    def reached_userspace(self) -> bool:
        return self.outcome.reached_userspace

    @property
    def exit_code(self) -> int:
        return 0 if self.reached_userspace else 1

    def to_json(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "reached_userspace": o.reached_userspace,
            "variant": self.variant,
            "accel": self.accel,
            "entry": o.entry,
            "kernel_version": o.kernel_version,
            "cmdline": o.cmdline,
            "root_device": o.root_device,
            "milestones": o.milestones,
            "failure": o.failure,
            "console_log": self.console_log,
            # beyond the contract, for people reading the report
            "image": self.image,
            "variant_reason": self.variant_reason,
            "menu": o.menu,
            "dom0": self.dom0,
            "wall_s": round(self.wall_s, 2),
        }


def check_input(image: Path, variant: str | None, arch: str, timeout: float) -> None:
    """Bad input is exit 2, before anything starts (`variant` None: chosen from the image later)."""
    if variant is not None and variant not in host_mod.VARIANTS:
        raise UsageError(f"--variant {variant!r}: choose hd0 (partitionless disk) or hd00 (first partition)")
    if arch != "x86_64":
        raise UsageError(f"--arch {arch!r}: the Xen test host boots x86_64 guests only (Linux dropped 32-bit PV "
                         "guests in 5.9)")
    if not timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    if not image.exists():
        raise UsageError(f"{image}: no such file")
    if not image.is_file():
        raise UsageError(f"{image}: not a regular file (give a raw disk image)")
    with open(image, "rb") as f:
        head = f.read(4)
    if image.stat().st_size < 64 * 1024:
        raise UsageError(f"{image}: {image.stat().st_size} bytes is too small to be a disk image")
    if head == b"QFI\xfb":
        raise UsageError(f"{image}: a qcow2 file; pvbuild boots raw images (qemu-img convert -O raw)")


def check_tools() -> None:
    """QEMU is the one thing the host must have (everything else comes from Debian packages): exit 3 if not."""
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils")):
        try:
            which(tool)
        except ToolMissing:
            raise ToolMissing(f"pvbuild boot needs {tool}, which is not installed "
                              f"(apt-get install {package})") from None


def prepare(log: Log, *, cache: Path | None = None, accel: str | None = None) -> dict[str, Any]:
    """Build the Xen test host, decide the accelerator and save a booted dom0: what `boot --prepare` does."""
    check_tools()
    with sigterm_as_interrupt():
        return _prepare(log, cache, accel)


def _prepare(log: Log, cache: Path | None, accel: str | None) -> dict[str, Any]:
    t0 = time.monotonic()
    host, cached = host_mod.ensure_host(log, cache=cache)
    t_host = time.monotonic() - t0
    chosen, why = decide_accel(host, log, force=accel)
    snap, _ = vm_mod.find_snapshot(host, chosen)
    snap_cached = snap is not None
    if snap is None:
        snap = vm_mod.make_snapshot(host, chosen, log)
    return {"host": str(host.folder), "host_cached": cached, "host_s": round(t_host, 1), "accel": chosen,
            "accel_reason": why, "snapshot": str(snap.folder), "snapshot_cached": snap_cached,
            "dom0_cold_boot_s": round(snap.cold_boot_s, 1), "total_s": round(time.monotonic() - t0, 1)}


def console_log_path(image: Path) -> Path:
    return image.with_name(image.name + ".boot-console.log")


def _save_console(image: Path, text: str, log: Log) -> Path:
    """The guest console log next to the image (in pvbuild's cache when that folder is read-only), written under
    a temporary name and renamed."""
    from pvbuild.build.rootfs import user_cache_dir

    for dest in (console_log_path(image), user_cache_dir() / "logs" / console_log_path(image).name):
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, dest)
            return dest
        except OSError as e:
            log.warn(f"cannot write the console log {dest}: {e.strerror or e}")
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    raise EnvironmentProblem("cannot write the guest console log next to the image nor in pvbuild's cache")


def variant_for(image: Path) -> tuple[str, str]:
    """The loader an image needs: hd00 when it has a partition table (MBR or GPT: PV-GRUB's (hd0,0)), hd0 when
    it is one filesystem; with the reason, for the report."""
    from pvbuild.pvgrub.blockio import Disk
    from pvbuild.pvgrub.disk import Scheme, read_layout

    with Disk(image) as disk:
        layout = read_layout(disk)
    if layout.scheme is Scheme.NONE:
        return "hd0", "the image has no partition table"
    return "hd00", f"the image has {'an MBR' if layout.scheme is Scheme.MBR else 'a GPT'} partition table"


def choose_variant(image: Path, variant: str | None, log: Log) -> tuple[str, str]:
    """`variant` when given (with a warning when the image's layout wants the other loader), else the image's."""
    wanted, why = variant_for(image)
    if variant is None:
        log.say(f"boot: {wanted} loader ({why}; --variant chooses another)")
        return wanted, f"chosen: {why}"
    if variant != wanted:
        log.warn(f"--variant {variant} given, but {why}: the {variant} loader "
                 + ("reads the whole disk as one filesystem" if variant == "hd0" else "reads the first partition")
                 + f"; the image most likely needs --variant {wanted}")
        return variant, f"given ({why}: {wanted} expected)"
    return variant, "given"


def boot_image(image: Path, *, variant: str | None = None, arch: str = "x86_64", timeout: float = 300.0,
               log: Log | None = None, cache: Path | None = None, use_snapshot: bool = True,
               accel: str | None = None, work_parent: Path | None = None) -> BootResult:
    """Boot `image` read-only on the Xen test host (prepared first when missing) and report what happened.
    `variant` None: hd00 for a partitioned image, hd0 for a partitionless one (`variant_for`)."""
    image = Path(os.path.abspath(image))
    check_input(image, variant, arch, timeout)
    check_tools()
    log = log or Log()
    chosen, reason = choose_variant(image, variant, log)
    with sigterm_as_interrupt():  # SIGTERM unwinds like Ctrl-C: QEMU stopped, overlays and folders removed
        result = _boot_image(image, chosen, timeout, log, cache, use_snapshot, accel, work_parent)
    return dataclasses.replace(result, variant_reason=reason)


def _boot_image(image: Path, variant: str, timeout: float, log: Log, cache: Path | None, use_snapshot: bool,
                accel: str | None, work_parent: Path | None) -> BootResult:
    t0 = time.monotonic()
    host, _ = host_mod.ensure_host(log, cache=cache)
    chosen, why = decide_accel(host, log, force=accel)
    dom0: dict[str, Any] = {"accel_reason": why}
    snap: vm_mod.Snapshot | None = None
    if use_snapshot:
        snap, missing = vm_mod.find_snapshot(host, chosen)
        if snap is None:
            log.say(f"boot: {missing}; saving a booted dom0 now (once)")
            snap = vm_mod.make_snapshot(host, chosen, log)
            dom0["note"] = f"saved dom0 made for this boot: {missing}"
    else:
        dom0["note"] = "cold dom0 boot (asked for)"
    with work_dir(work_parent, prefix="pvbuild-boot-", log=log) as run_dir:
        guest_disk = vm_mod.qcow2_overlay(image, "raw", run_dir / "guest.qcow2", log)
        serial_name = f"pvb-{variant}-{GUEST_ID}-{int(timeout)}"
        tr: console.Transcript | None = None
        lines: list[str] = []
        restored = False
        if snap is not None:
            try:
                lines = _boot_on(snap.argv, run_dir / "restore", snap.dom0_disk, snap.state, guest_disk,
                                 serial_name, timeout, log, dom0)
                restored = True
            except vm_mod.VmError as e:
                dom0["note"] = f"the saved dom0 did not restore ({e}); booted dom0 cold instead"
                log.warn(dom0["note"])
        if not restored:
            cold_dir = run_dir / "cold"
            cold_dir.mkdir()
            argv, disk = vm_mod.cold_boot(host, chosen, cold_dir, log)
            lines = _boot_on(argv, cold_dir, disk, None, guest_disk, serial_name, timeout, log, dom0)
        dom0["start"] = "restored" if restored else "cold"
        tr = console.split_transcript(lines, GUEST_ID)
    outcome = console.analyse(tr, timeout)
    saved = _save_console(image, console.render_console(tr), log)
    return BootResult(str(image), variant, chosen, outcome, str(saved), dom0, time.monotonic() - t0)


def _boot_on(argv: tuple[str, ...] | list[str], run_dir: Path, dom0_base: Path, state: Path | None,
             guest_disk: Path, serial_name: str, timeout: float, log: Log, dom0: dict[str, Any]) -> list[str]:
    """Start (restore or cold-boot) the host in `run_dir`, hot-plug the guest disk, wait for its result."""
    run_dir.mkdir(exist_ok=True)
    # restore: a fresh overlay over the saved dom0 disk; cold: the overlay cold_boot() made
    disk = vm_mod.qcow2_overlay(dom0_base, "qcow2", run_dir / "dom0.qcow2", log) if state is not None else dom0_base
    t0 = time.monotonic()
    with vm_mod.start(list(argv), run_dir, disk, incoming=state, log=log) as vm:
        if state is not None:
            vm_mod.resume(vm)
            dom0["restore_s"] = round(time.monotonic() - t0, 2)
        else:
            dom0["cold_boot_s"] = round(vm.wait_for(vm_mod.READY, vm_mod.DOM0_BOOT_TIMEOUT, "dom0 runner"), 1)
        vm_mod.hotplug(vm, guest_disk, serial_name, 1)
        try:
            vm.wait_for(f"PVBOOT RESULT {GUEST_ID} ", timeout + RUNNER_MARGIN_S, "the guest's result")
        except vm_mod.VmError as e:
            log.warn(str(e))
        vm.serial.poll()
        return list(vm.serial.lines)


def write_json(result: BootResult, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def render_text(result: BootResult) -> str:
    """The human report of one boot."""
    o = result.outcome
    head = "REACHED USERSPACE" if o.reached_userspace else "DID NOT BOOT"
    entry = (f"{o.entry['index']} {o.entry['title']!r}" if o.entry and o.entry["index"] is not None
             else (repr(o.entry["title"]) if o.entry else "-"))
    ms = o.milestones

    def t(key: str) -> str:
        v = ms.get(key)
        return f"{v:.1f}s" if v is not None else "-"

    out = [f"{head} — {result.image} ({result.variant} loader, {result.accel}, dom0 {result.dom0.get('start')})",
           f"  entry:     {entry}",
           f"  kernel:    {o.kernel_version or '-'}",
           f"  cmdline:   {o.cmdline or '-'}",
           f"  root:      {o.root_device or '-'}",
           f"  times:     loader {t('loader_s')}, kernel {t('kernel_s')}, root mounted {t('root_mounted_s')}, "
           f"userspace {t('userspace_s')} (from xl create); {result.wall_s:.1f}s in all"]
    if o.failure:
        out.append(f"  failure:   {o.failure}")
    if result.dom0.get("note"):
        out.append(f"  note:      {result.dom0['note']}")
    out.append(f"  console:   {result.console_log}")
    return "\n".join(out) + "\n"
