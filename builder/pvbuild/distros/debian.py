"""Debian: releases, the Xen-capable kernel per architecture, and the archive mirror the host already uses.

The mirror is never written in pvbuild's code: it comes from the recipe, $PVBUILD_MIRROR, or the host's apt
sources (deb822 `/etc/apt/sources.list.d/*.sources` or one-line `/etc/apt/sources.list`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pvbuild.errors import EnvironmentProblem


@dataclass(frozen=True)
class Release:
    codename: str
    version: str
    kernel_series: str  # the release's kernel, for the 32-bit Xen PV rule
    # Debian's i386 kernel flavour with PAE, when it still has Xen PV (Linux removed 32-bit PV in 5.9).
    i386_pv_kernel: str | None
    kernel_compression: str  # how the release's x86 kernels are compressed (PV-GRUB reads gzip/bzip2/xz/lzo)


RELEASES: dict[str, Release] = {
    "bullseye": Release("bullseye", "11", "5.10", None, "xz"),
    "bookworm": Release("bookworm", "12", "6.1", None, "xz"),
}
ALIASES = {r.version: r.codename for r in RELEASES.values()}
KERNEL_PACKAGES = {"amd64": "linux-image-amd64", "i386": "linux-image-686-pae"}
DEB_ARCH = {"x86_64": "amd64", "i386": "i386"}
# What a bootable minbase system needs besides the kernel: an init, udev, the initrd tool and its compressor.
BASE_PACKAGES = ("systemd-sysv", "udev", "kmod", "initramfs-tools", "zstd")


def resolve_release(name: str) -> Release | None:
    return RELEASES.get(ALIASES.get(name, name))


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
