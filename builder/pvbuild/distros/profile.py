"""What a distro profile says: releases, the kernel each ships per architecture, and the PV-GRUB traps it implies.

Each family module (debian, ubuntu, fedora, centos, opensuse, amazon, gentoo) fills these dataclasses with data
and names the primary source of every claim about a kernel next to it. The rules below are pure: plan.py turns
their answers into recipe errors with a line number.

Why the kernel matters: PV-GRUB hands the kernel to libxc's loaders, which unpack gzip, bzip2, xz, lzma and lzo
payloads only (PVGRUB.md §6; pvgrub/profiles.py); an lz4 or zstd kernel stops with "unknown compression format".
And the kernel must run as a Xen PV guest: CONFIG_XEN_PV (CONFIG_XEN before Linux 4.14 split it), or a
Xen-patched kernel (kernel-xen, kernel-ec2); 32-bit PV guests are gone from Linux 5.9 on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

FamilyName = Literal["debian", "ubuntu", "fedora", "centos", "rhel", "opensuse", "sles", "amazon", "gentoo"]
Arch = Literal["x86_64", "i386"]
InitrdTool = Literal["update-initramfs", "dracut", "mkinitrd"]
# The package that provides each initrd tool on every family that has it.
INITRD_PACKAGE = {"update-initramfs": "initramfs-tools", "dracut": "dracut", "mkinitrd": "mkinitrd"}
# Linux removed 32-bit PV guests in 5.9 (commit "x86/xen: remove 32-bit Xen PV guest support", PVGRUB.md §6).
I386_PV_REMOVED = (5, 9)
# Linux unpacks a zstd initramfs from 5.9 on (CONFIG_RD_ZSTD, "usr: Add support for zstd compressed initramfs").
RD_ZSTD_SINCE = (5, 9)
# Sources cited by several families.
CONFIGS = "nyrahul/linux-kernel-configs"  # /boot/config-VERSION files of running systems (read at 76bbb04)
SEED_AWS = "seed 000 (AWS UserProvidedKernels: distributions known to work with PV-GRUB)"
SEED_JA = "seed 002 (older distros need the special ec2/xen kernel packages)"


def series_tuple(series: str) -> tuple[int, ...]:
    return tuple(int(x) for x in series.split(".")[:2])


@dataclass(frozen=True)
class Kernel:
    """One kernel package of a release on one architecture, as PV-GRUB and the PV guest see it."""

    package: str
    series: str  # the upstream version it ships (the last one in the release's updates for rebasing distros)
    compression: str  # how the x86 image's payload is packed: gzip, xz, lz4, zstd ... ("" = not known)
    xen_pv: bool  # runs as a Xen PV guest
    source: str  # where `compression` and `xen_pv` come from
    console: str = "hvc0"  # the Xen console's name; Xen-patched (non-pvops) kernels call it xvc0


@dataclass(frozen=True)
class Release:
    name: str  # what the archive and DIB_RELEASE call it: "bionic", "31", "7", "15.5"
    version: str  # "18.04"
    title: str  # for menu.lst: "Ubuntu 18.04 LTS (bionic)"
    x86_64: Kernel | str  # the kernel, or why there is none
    i386: Kernel | str
    initrd_tool: InitrdTool
    dib_element: str | None  # the diskimage-builder element that builds it; None: no element does
    aliases: tuple[str, ...] = ()
    note: str = ""  # a trap that is not a refusal (README: Support)
    # Other kernel packages of the release that pvbuild knows (x86_64), checked when a recipe names one.
    other_kernels: tuple[Kernel, ...] = ()

    def kernel(self, arch: Arch, package: str | None = None) -> Kernel | str:
        """The release's kernel on `arch` (or the known one named `package`), or why there is none."""
        default = self.x86_64 if arch == "x86_64" else self.i386
        if package is None or (isinstance(default, Kernel) and default.package == package):
            return default
        found = [k for k in self.other_kernels if k.package == package and arch == "x86_64"]
        return found[0] if found else f"pvbuild does not know {package}"


@dataclass(frozen=True)
class Family:
    name: FamilyName  # the recipe's distro.family
    title: str
    releases: tuple[Release, ...]
    default_release: str
    apt: bool = False  # components and security_mirror mean something (apt archives)
    # Package names where the family's differ from Debian's (the plan speaks Debian's names elsewhere).
    rename: dict[str, str] = field(default_factory=dict)

    @property
    def mirror_variable(self) -> str:
        """The environment variable that gives the archive when the recipe does not (never a built-in host)."""
        return "PVBUILD_MIRROR" if self.name == "debian" else f"PVBUILD_{self.name.upper()}_MIRROR"

    def resolve(self, name: str) -> Release | None:
        for r in self.releases:
            if name in (r.name, r.version, *r.aliases):
                return r
        return None

    def known(self) -> str:
        return ", ".join(r.name if r.name == r.version else f"{r.name} ({r.version})" for r in self.releases)

    def package(self, name: str) -> str:
        return self.rename.get(name, name)

    def mirror(self, recipe_mirror: str | None) -> str | None:
        value = recipe_mirror or os.environ.get(self.mirror_variable)
        return value.rstrip("/") if value else None


@dataclass(frozen=True)
class Refusal:
    field: Literal["arch", "release"]  # which recipe field the cause sits on
    message: str
    hint: str
    short: str  # in a few words, for the README's table


def kernel_refusal(release: Release, arch: Arch, readable: frozenset[str], package: str | None = None
                   ) -> Refusal | None:
    """Why the release's kernel (or the known `package`) cannot boot under PV-GRUB on `arch`; None when nothing is
    known against it. `readable` is the PV-GRUB profile's list of kernel compressions (pvgrub/profiles.py).
    """
    found = _refusal(release, arch, readable, package)
    if found is None:
        return None
    other: Arch = "x86_64" if arch == "i386" else "i386"
    if found.field == "arch":
        hint = f"build {other}" if _refusal(release, other, readable) is None else "choose another release"
        return Refusal(found.field, found.message, hint, found.short)
    return found


def _refusal(release: Release, arch: Arch, readable: frozenset[str], package: str | None = None) -> Refusal | None:
    kernel = release.kernel(arch, package)
    if isinstance(kernel, str):
        return Refusal("arch", f"{release.title} has no {arch} kernel: {kernel}", "", f"no {arch} kernel")
    if arch == "i386" and series_tuple(kernel.series) >= I386_PV_REMOVED:
        return Refusal("arch", f"{release.title}'s 32-bit kernel ({kernel.package}, Linux {kernel.series}) has no "
                               "Xen PV support: Linux removed 32-bit PV guests in 5.9, so PV-GRUB i386 has "
                               "nothing to boot", "", f"Linux {kernel.series} >= 5.9: no 32-bit PV")
    if not kernel.xen_pv:
        return Refusal("release", f"{release.title}'s kernel ({kernel.package}, Linux {kernel.series}) is not "
                                  f"built to run as a Xen PV guest (CONFIG_XEN_PV is not set: {kernel.source})",
                       "choose a release whose kernel has Xen PV (README: Support), or give kernel.package a "
                       "kernel that has it", "kernel without Xen PV")
    if kernel.compression and kernel.compression not in readable:
        return Refusal("release", f"{release.title}'s kernel ({kernel.package}, Linux {kernel.series}) is "
                                  f"{kernel.compression}-compressed ({kernel.source}); PV-GRUB's libxc loader "
                                  f"reads {', '.join(sorted(readable - {'none'}))} only and stops with \"unknown "
                                  "compression format\"",
                       "pvbuild does not recompress kernels: choose an older release with a gzip/xz kernel, or "
                       "give kernel.package a kernel built with CONFIG_KERNEL_XZ or CONFIG_KERNEL_GZIP (the "
                       "build's check reads it)", f"{kernel.compression} kernel")
    return None


def short_reason(release: Release, arch: Arch, readable: frozenset[str], package: str | None = None) -> str:
    """The refusal in a few words, for the README's table ("" when the plan is made)."""
    found = _refusal(release, arch, readable, package)
    return found.short if found else ""
