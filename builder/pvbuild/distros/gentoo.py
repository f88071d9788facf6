"""Gentoo: rolling, built by diskimage-builder's `gentoo` element (profile default/linux/amd64/23.0), dracut.

The distribution kernels are built from Fedora's configuration: sys-kernel/gentoo-kernel(-bin) fetch
kernel-x86_64-fedora.config from Fedora's package sources (the ebuild's SRC_URI), so they are zstd-compressed like
Fedora's (fedora.py) — derived, UNVERIFIED for Gentoo's own config additions. Seed 000 lists "Gentoo (see FAQ)":
the usual way is a kernel configured by the user. sys-kernel/gentoo-kernel (built on the image) merges the
snippets in /etc/kernel/config.d/*.config: a recipe can ship one with CONFIG_KERNEL_XZ=y and CONFIG_XEN_PV=y and
name that package (recipes/gentoo.yaml). Current Gentoo kernels are >= 5.9: no 32-bit PV.
"""

from __future__ import annotations

from pvbuild.distros.profile import Family, Kernel, Release

_BIN = ("gentoo-kernel(-bin) build from Fedora's kernel-x86_64-fedora.config (ebuild SRC_URI), Fedora's is zstd "
        "(fedora.py); derived")
_KERNEL = Kernel("sys-kernel/gentoo-kernel-bin", "6.12", "zstd", True, _BIN)

FAMILY = Family("gentoo", "Gentoo", (
    Release("rolling", "23.0", "Gentoo Linux", _KERNEL, _KERNEL, "dracut", "gentoo", ("current", "default")),
), "rolling", rename={"openssh-server": "net-misc/openssh", "sudo": "app-admin/sudo", "xfsprogs": "sys-fs/xfsprogs",
                      "lvm2": "sys-fs/lvm2", "dracut": "sys-kernel/dracut", "zstd": "app-arch/zstd"})
