"""`pvbuild check`: run the emulator over one image and check what the loaded kernel needs to come up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from pvbuild.pvgrub import linux
from pvbuild.pvgrub.blockio import SECTOR, Disk, Volume
from pvbuild.pvgrub.disk import Layout, Scheme, read_layout
from pvbuild.pvgrub.errors import GrubError, ImageError
from pvbuild.pvgrub.files import EmulatorLimit, FileLayer
from pvbuild.pvgrub.findings import Finding, Severity, error, info, warning
from pvbuild.pvgrub.initrd import InitrdInfo, inspect_initrd
from pvbuild.pvgrub.kernel import KernelCheck
from pvbuild.pvgrub.machine import Machine, Outcome, Run
from pvbuild.pvgrub.profiles import Profile

MAX_INITRD = 512 * 1024 * 1024


@dataclass
class BootReport:
    """What `pvbuild check` reports: the JSON contract of the emulator (see README, "pvbuild check")."""

    image: str
    run: Run
    layout: Layout
    kernel_check: KernelCheck | None
    initrd_info: InitrdInfo | None
    findings: list[Finding] = field(default_factory=list)
    bytes_read: int = 0
    image_size: int = 0

    @property
    def boots(self) -> bool:
        return self.run.outcome == Outcome.BOOTS and not any(f.severity == Severity.ERROR for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 0 if self.boots else 1

    def to_json(self) -> dict[str, Any]:
        r = self.run
        kernel = None
        if r.kernel is not None:
            ki = self.kernel_check.info if self.kernel_check is not None else None
            kernel = {
                "device": str(r.kernel.device),
                "path": r.kernel.path,
                "format": ki.format if ki else None,
                "compression": ki.compression if ki else None,
                "machine": ki.machine if ki else None,
                "xen_pv": bool(ki.xen_pv) if ki else False,
                "pae": ki.pae if ki else None,
                "version": ki.version if ki else None,
            }
        initrd = None
        if r.initrd is not None:
            ii = self.initrd_info
            initrd = {
                "device": str(r.initrd.device),
                "path": r.initrd.path,
                # GRUB gunzips a gzip initrd while loading it; report the file as it is on disk.
                "compression": "gzip" if r.initrd.opened.gzipped else (ii.compression if ii else None),
                "has_blkfront": (ii.has_module("xen-blkfront") if ii and ii.files is not None else None),
            }
        return {
            "outcome": str(r.outcome),
            "profile": r.profile.to_json(),
            "menu": {"device": str(r.menu[0]), "path": r.menu[1]} if r.menu else None,
            "tried": [{"index": t.index, "title": t.title, "error": t.error} for t in r.tried],
            "entry": {"index": r.entry[0], "title": r.entry[1]} if r.entry else None,
            "grub_error": ({"number": r.grub_error.number, "message": r.grub_error.grub_message}
                           if r.grub_error else None),
            "kernel": kernel,
            "initrd": initrd,
            "cmdline": r.cmdline,
            "findings": [f.to_json() for f in self.findings],
            # Additions beyond the contract's keys, for people reading the report.
            "image": self.image,
            "layout": {
                "scheme": str(self.layout.scheme),
                "partitions": [{"index": p.index, "linux": p.linux_number, "type": f"0x{p.type:02x}",
                                "start": p.start, "length": p.length} for p in self.layout.partitions],
            },
            "search": [{"location": loc, "result": why} for loc, why in r.search],
            "unverified": r.profile.unverified(),
            "bytes_read": self.bytes_read,
        }


def _looks_like_disk(disk: Disk, layout: Layout) -> bool:
    """Reject inputs that are not disk images at all (exit 2) rather than report "no menu"."""
    if disk.size < 4 * SECTOR:
        return False
    if layout.scheme != Scheme.NONE:
        return True
    from pvbuild.pvgrub.fs import probe

    return probe.identify(Volume(disk, 0, disk.size, None, "(hd0)")) is not None


def check_image(path: str | os.PathLike[str], profile: Profile) -> BootReport:
    """Run PV-GRUB's logic over the image at `path`; raises ImageError for input that is not a disk image."""
    with Disk(path) as disk:
        return check_disk(disk, profile, os.fspath(path))


def check_disk(disk: Disk, profile: Profile, name: str) -> BootReport:
    """`check_image` on an open disk (files or in-memory images alike)."""
    layout = read_layout(disk)
    if not _looks_like_disk(disk, layout):
        raise ImageError(f"{name}: no partition table and no filesystem found — not a raw disk image "
                         "(qcow2/vmdk images must be converted with `qemu-img convert -O raw`)")
    machine = Machine(disk, profile)
    run = machine.run()
    findings = list(run.findings)
    check = machine.kernel_check
    initrd_info: InitrdInfo | None = None
    if check is not None and run.kernel is not None:
        findings.extend(check.findings)
    for fs in machine.files.mounted():
        findings.extend(fs.findings())
    if run.outcome == Outcome.BOOTS:
        initrd_info, more = _linux_side(disk, layout, machine.files, run, check)
        findings.extend(more)
    for note in layout.problems:
        findings.append(warning("partition-table-invalid", note))
    return BootReport(name, run, layout, check, initrd_info, _dedupe(findings), disk.bytes_read, disk.size)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        if (f.code, f.message) not in seen:
            seen.add((f.code, f.message))
            out.append(f)
    return out


def _linux_side(disk: Disk, layout: Layout, files: FileLayer, run: Run,
                check: KernelCheck | None) -> tuple[InitrdInfo | None, list[Finding]]:
    findings: list[Finding] = []
    tokens = linux.parse_cmdline(run.cmdline or "")
    raw_args = run.kernel.command_line if run.kernel else ""
    findings += linux.truncation_findings(raw_args)
    findings += linux.console_findings(tokens)
    version = check.info.version if check and check.info else None

    # Kernel config next to the kernel: does the initrd have to carry the block driver and the root fs?
    config: dict[str, str] | None = None
    if run.kernel is not None and version:
        kdir = run.kernel.path.rsplit("/", 1)[0] or ""
        for cand in dict.fromkeys([f"{kdir}/config-{version}", f"/boot/config-{version}", f"/config-{version}"]):
            try:
                opened = files.open(str(run.kernel.device) + cand, run.kernel.device, limit=16 << 20)
                config = linux.parse_kconfig(opened.data.decode("latin-1"))
                break
            except (GrubError, EmulatorLimit):
                continue
    initrd_info: InitrdInfo | None = None
    if run.initrd is not None:
        fut = run.initrd.inspection
        initrd_info = fut.result() if fut is not None and not fut.cancelled() else inspect_initrd(
            run.initrd.opened.data)
        if initrd_info.files is None:
            findings.append(warning("initrd-unreadable", f"{run.initrd.device}{run.initrd.path}: compressed with "
                                                         f"{initrd_info.compression}, which the emulator cannot "
                                                         "unpack; its modules were not checked"))
    if run.multiboot_modules:
        findings.append(warning("initrd-as-module", "the entry uses `module`: the kernel gets a multiboot module "
                                                    "list instead of an initrd"))
    cands = linux.candidates(disk, layout)
    root_value = linux.param(tokens, "root")
    root: linux.Candidate | None = None
    if root_value is None:
        findings.append(error("root-not-found", "the kernel command line has no root=: add root=/dev/xvda1 "
                                                "(partitionless) or root=LABEL=... / UUID=..."))
    else:
        root, more = linux.resolve_root(root_value, cands, run.initrd is not None)
        findings += more
    if config is None:
        if version:
            findings.append(info("kernel-config-not-found", f"no config-{version} next to the kernel: whether the "
                                                            "initrd must carry xen-blkfront was not checked"))
        return initrd_info, findings
    blk = linux.module_needed(config, ("CONFIG_XEN_BLKDEV_FRONTEND",))
    if blk is None:
        findings.append(error("initrd-no-blkfront", f"config-{version} does not build CONFIG_XEN_BLKDEV_FRONTEND: "
                                                    "the guest will have no disk"))
    elif blk:
        if run.initrd is None:
            findings.append(error("initrd-no-blkfront", f"config-{version} builds xen-blkfront as a module and the "
                                                        "entry loads no initrd: the root disk never appears"))
        elif initrd_info is not None and initrd_info.files is not None and not initrd_info.has_module(
                "xen-blkfront"):
            findings.append(error("initrd-no-blkfront", f"{run.initrd.path} lacks xen-blkfront.ko, which "
                                                        f"config-{version} builds as a module: the root disk "
                                                        "never appears (add xen-blkfront to the initramfs "
                                                        "modules list)"))
    fstype = root.identity.fstype if root and root.identity else None
    if fstype in linux.ROOT_FS_MODULE:
        module, options = linux.ROOT_FS_MODULE[fstype]
        need = linux.module_needed(config, options)
        if need and (run.initrd is None or (initrd_info is not None and initrd_info.files is not None
                                            and not initrd_info.has_module(module))):
            where = "the entry loads no initrd" if run.initrd is None else f"{run.initrd.path} lacks {module}.ko"
            findings.append(error("initrd-no-rootfs-module", f"the root filesystem is {fstype}, config-{version} "
                                                             f"builds it as a module and {where}"))
    return initrd_info, findings
