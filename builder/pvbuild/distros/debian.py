"""Debian: releases, the Xen-capable kernel per architecture, and the archive mirror the host already uses.

The mirror is never written in pvbuild's code: it comes from the recipe, $PVBUILD_MIRROR, or the host's apt
sources (deb822 `/etc/apt/sources.list.d/*.sources` or one-line `/etc/apt/sources.list`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pvbuild.distros.profile import CONFIGS, Family, Kernel, Release
from pvbuild.errors import EnvironmentProblem

# Debian 12's linux-image-amd64 is a bzImage with an xz payload and Xen PV notes: tests/test_kernel.py reads the
# real package. Debian 11 is taken to be the same (same packaging; not read by the suite). The 686-pae kernels are
# >= 5.9, so no 32-bit PV. Careful: the *cloud* flavour is lz4 (CONFIG_KERNEL_LZ4=y in /boot/config-5.10.0-28-cloud-
# amd64 and config-6.1.0-18-cloud-amd64 of nyrahul/linux-kernel-configs), which PV-GRUB cannot read. Debian 13's
# kernel is zstd: QubesOS/qubes-core-admin PR #709 ("Debian 13 has kernel compressed with zstd, which isn't
# compatible with pvgrub2").
_SRC = "Debian 12's package read by tests/test_kernel.py"


def _release(codename: str, version: str, series: str, compression: str, source: str = _SRC,
             cloud_config: str = "") -> Release:
    cloud = (Kernel("linux-image-cloud-amd64", series, "lz4", True,
                    f"{CONFIGS}: {cloud_config} CONFIG_KERNEL_LZ4=y"),) if cloud_config else ()
    return Release(codename, version, f"Debian GNU/Linux {version} ({codename})",
                   Kernel("linux-image-amd64", series, compression, True, source),
                   Kernel("linux-image-686-pae", series, compression, False, source),
                   "update-initramfs", "debian-minimal", other_kernels=cloud)


RELEASES: dict[str, Release] = {r.name: r for r in (
    _release("bullseye", "11", "5.10", "xz", cloud_config="config-5.10.0-28-cloud-amd64"),
    _release("bookworm", "12", "6.1", "xz", cloud_config="config-6.1.0-18-cloud-amd64"),
    _release("trixie", "13", "6.12", "zstd", "QubesOS/qubes-core-admin PR #709: Debian 13's kernel is zstd"),
)}
FAMILY = Family("debian", "Debian", tuple(RELEASES.values()), "bookworm", apt=True)
# What a bootable minbase system needs besides the kernel: an init, udev, the initrd tool and its compressor.
BASE_PACKAGES = ("systemd-sysv", "udev", "kmod", "initramfs-tools", "zstd")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def _deb822(text: str) -> list[AptSource]:
    out = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, tuple(fields.get("suites", "").split()),
                                 tuple(fields.get("components", "").split())))
    return out


def _one_line(text: str) -> list[AptSource]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        parts = line.split()
        if len(parts) < 3 or parts[0] != "deb":
            continue
        parts = parts[1:]
        if parts[0].startswith("["):
            while parts and not parts[0].endswith("]"):
                parts = parts[1:]
            parts = parts[1:]
        if len(parts) >= 2:
            out.append(AptSource(parts[0], (parts[1],), tuple(parts[2:])))
    return out


def host_sources(root: Path = Path("/")) -> list[AptSource]:
    sources: list[AptSource] = []
    d = root / "etc/apt/sources.list.d"
    if d.is_dir():
        for f in sorted(d.iterdir()):
            if f.suffix == ".sources":
                sources += _deb822(f.read_text(errors="replace"))
            elif f.suffix == ".list":
                sources += _one_line(f.read_text(errors="replace"))
    main = root / "etc/apt/sources.list"
    if main.is_file():
        sources += _one_line(main.read_text(errors="replace"))
    return sources


def host_mirrors(root: Path = Path("/")) -> tuple[str | None, str | None]:
    """(archive, security archive) URIs from the host's apt sources; either may be None."""
    archive = security = None
    for s in host_sources(root):
        if any(suite.endswith("-security") for suite in s.suites) or s.uri.rstrip("/").endswith("-security"):
            security = security or s.uri
        else:
            archive = archive or s.uri
    return archive, security


def mirrors(recipe_mirror: str | None, recipe_security: str | None) -> tuple[str, str]:
    """The archive and security mirror for a build: recipe, then environment, then the host's apt sources."""
    host_archive, host_security = host_mirrors()
    archive = recipe_mirror or os.environ.get("PVBUILD_MIRROR") or host_archive
    if not archive:
        raise EnvironmentProblem("no Debian mirror is configured: set distro.mirror in the recipe or "
                                 "$PVBUILD_MIRROR, or add a deb source to /etc/apt/sources.list.d")
    security = recipe_security or os.environ.get("PVBUILD_SECURITY_MIRROR") or host_security or ""
    return archive.rstrip("/"), security.rstrip("/")
