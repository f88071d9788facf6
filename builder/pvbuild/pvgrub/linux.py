"""After PV-GRUB hands over: will Linux come up? (PVGRUB.md §6, the `root=`/initrd/console rules.)

PV-GRUB does not care about any of this, but an image whose initrd lacks xen-blkfront or whose `root=` names a
device the guest will never see "boots" into a kernel panic. These checks read only what the kernel itself
would need: its command line, its config file next to it, the initrd's file list and the disk's filesystems.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pvbuild.pvgrub.blockio import Disk, Volume
from pvbuild.pvgrub.disk import Layout, Scheme
from pvbuild.pvgrub.findings import Finding, error, info, warning
from pvbuild.pvgrub.fs.base import FsIdentity

MAX_GUEST_CMDLINE = 1024
XEN_BLOCK_MAJOR = 202

# The module that mounts each root filesystem type, and the kernel option that builds it.
ROOT_FS_MODULE: dict[str, tuple[str, tuple[str, ...]]] = {
    "ext4": ("ext4", ("CONFIG_EXT4_FS",)),
    "ext3": ("ext4", ("CONFIG_EXT3_FS", "CONFIG_EXT4_FS")),
    "ext2": ("ext4", ("CONFIG_EXT2_FS", "CONFIG_EXT4_FS")),
    "xfs": ("xfs", ("CONFIG_XFS_FS",)),
    "btrfs": ("btrfs", ("CONFIG_BTRFS_FS",)),
    "reiserfs": ("reiserfs", ("CONFIG_REISERFS_FS",)),
    "jfs": ("jfs", ("CONFIG_JFS_FS",)),
}


@dataclass(frozen=True)
class Candidate:
    """A block device the guest sees, with what blkid would say about it."""

    linux_names: tuple[str, ...]  # e.g. ("xvda1", "sda1")
    number: int | None  # Linux partition number, None for the whole disk
    identity: FsIdentity | None
    part_uuid: str | None = None


def parse_cmdline(cmdline: str) -> list[str]:
    try:
        return shlex.split(cmdline, posix=True)
    except ValueError:
        return cmdline.split()


def param(tokens: list[str], name: str) -> str | None:
    """The last `name=` wins, as in the kernel's parse_args."""
    value = None
    for t in tokens:
        if t.startswith(name + "="):
            value = t[len(name) + 1:]
    return value


def candidates(disk: Disk, layout: Layout) -> list[Candidate]:
    """What the guest's blkfront shows: xvda (the whole image) and xvdaN for each partition.

    On EC2 a partitionless (hd0) image is attached as sda1 and shows up as xvda1; a local Xen host attaches
    it as xvda. Both names are accepted for the whole image.
    """
    from pvbuild.pvgrub.fs import probe

    whole = Volume(disk, 0, disk.size, None, "(hd0)")
    if layout.scheme == Scheme.NONE:
        return [Candidate(("xvda", "xvda1", "sda", "sda1"), None, probe.identify(whole))]
    out = [Candidate(("xvda", "sda"), None, None)]
    for p in layout.partitions:
        n = p.linux_number
        ident = probe.identify(Volume(disk, p.start, p.length, p.type, f"(hd0,{p.index})")) if p.length else None
        puuid: str | None
        if layout.scheme == Scheme.MBR and layout.disk_signature is not None:
            puuid = f"{layout.disk_signature:08x}-{n:02x}"
        else:
            puuid = p.part_uuid
        out.append(Candidate((f"xvda{n}", f"sda{n}"), n, ident, puuid))
    return out


def resolve_root(value: str, cands: list[Candidate], has_initrd: bool) -> tuple[Candidate | None, list[Finding]]:
    """Which device `root=VALUE` names, and findings when the guest would not find it."""
    findings: list[Finding] = []
    v = value.strip()
    if v.startswith(("LABEL=", "UUID=")):
        key, want = v.split("=", 1)
        if not has_initrd:
            findings.append(error("root-not-found", f"root={v}: only an initramfs resolves {key}=; this entry "
                                                    "boots without an initrd, so the kernel cannot find root"))
        for c in cands:
            ident = c.identity
            if ident is None:
                continue
            got = ident.label if key == "LABEL" else ident.uuid
            if got is not None and (got == want if key == "LABEL" else got.lower() == want.lower()):
                return c, findings
        have = sorted({(c.identity.label if key == "LABEL" else c.identity.uuid) or ""
                       for c in cands if c.identity} - {""})
        findings.append(error("root-not-found", f"root={v}: no filesystem on the disk has that {key.lower()}"
                                                + (f" (found: {', '.join(have)})" if have else "")))
        return None, findings
    if v.startswith("PARTUUID="):
        want = v.split("=", 1)[1].lower()
        for c in cands:
            if c.part_uuid and c.part_uuid.lower() == want:
                return c, findings
        findings.append(error("root-not-found", f"root={v}: no partition has that PARTUUID"))
        return None, findings
    if v.startswith("/dev/"):
        name = v[5:]
        for c in cands:
            if name in c.linux_names:
                if c.number is None and len(cands) > 1:
                    findings.append(error("root-not-found", f"root={v} is the whole disk, which holds a "
                                                            "partition table, not a filesystem: name the "
                                                            "partition (e.g. /dev/xvda1)"))
                    return None, findings
                return c, findings
        if name.startswith(("mapper/", "md")) or name.count("/") == 1:
            findings.append(info("root-unverified", f"root={v} is a device-mapper, md or LVM name; the emulator "
                                                    "does not assemble it (the initrd must)"))
            return None, findings
        m = re.match(r"(hd|vd|nvme\d+n|sd|xvd)([a-z]+)(p?\d*)$", name)
        hint = ""
        if (m and m.group(1) in ("hd", "vd", "nvme0n")) or (m and m.group(1).startswith("nvme")):
            hint = " — Xen PV guests see their disks as /dev/xvd* (blkfront), never as hd*, vd* or nvme*"
        elif m and m.group(2) != "a":
            hint = " — the image is the guest's first disk, xvda"
        names = sorted({n for c in cands for n in c.linux_names})
        findings.append(error("root-not-found", f"root={v}: the guest will have no such device (it will have "
                                                f"{', '.join('/dev/' + n for n in names)}){hint}"))
        return None, findings
    m = re.fullmatch(r"([0-9a-fA-F]+)(?::([0-9]+))?", v)
    if m:
        if m.group(2) is not None:
            major, minor = int(m.group(1)), int(m.group(2))
        else:
            num = int(m.group(1), 16)
            major, minor = num >> 8, num & 0xFF
        if major == XEN_BLOCK_MAJOR and minor < 16:
            part = minor or None
            for c in cands:
                if c.number == part or (part == 1 and c.number is None and len(cands) == 1):
                    return c, findings
        findings.append(error("root-not-found", f"root={v}: device number {major}:{minor} is not a partition "
                                                "of the guest's xvda (major 202)"))
        return None, findings
    findings.append(warning("root-unverified", f"root={v}: a form the emulator cannot check"))
    return None, findings


def parse_kconfig(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, val = line.split("=", 1)
            out[k] = val.strip()
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:].split()[0]] = "n"
    return out


def module_needed(config: dict[str, str], options: tuple[str, ...]) -> bool | None:
    """True when the first option that is set builds the code as a module, False when built in, None unknown."""
    values = [config.get(o) for o in options]
    if any(v == "y" for v in values):
        return False
    if any(v == "m" for v in values):
        return True
    return None


def console_findings(tokens: list[str]) -> list[Finding]:
    consoles = [t.split("=", 1)[1] for t in tokens if t.startswith("console=")]
    if not any(c.split(",")[0] == "hvc0" for c in consoles):
        have = f" (it has console={', console='.join(consoles)})" if consoles else ""
        return [warning("no-hvc0-console", "the kernel command line has no console=hvc0" + have +
                        ": the EC2 console output and `pvbuild boot` will show nothing from Linux")]
    return []


def truncation_findings(raw_args: str) -> list[Finding]:
    n = len(raw_args.encode("latin-1", "replace"))
    if n > MAX_GUEST_CMDLINE - 1:
        return [warning("cmdline-truncated", f"the kernel arguments are {n} bytes; Xen passes only the first "
                                             f"{MAX_GUEST_CMDLINE - 1} to the kernel, the rest is lost")]
    return []
