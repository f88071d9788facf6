"""Fedora: releases from the Xen kernels of 8-9 to today, built by DIB's fedora-minimal.

Fedora rebases every supported release to new kernels, so a release's kernel is the last one its updates carry.
Sources (CONFIGS = /boot/config-VERSION files in nyrahul/linux-kernel-configs):
- 8, 9: the separate `kernel-xen` package (seed 000: "Fedora 8-9 Xen kernels"), made with mkinitrd (dracut came
  with Fedora 12). A Xen-patched kernel: its console is xvc0.
- 13 and later: the stock `kernel` is a pvops PV guest (seed 000: "Fedora 13 (2.6.33.6-147 and higher)",
  "Fedora 14 and later"); CONFIG_XEN_PV=y stays in Fedora's config (OpenVZ/vzkernel
  redhat/configs/fedora/generic/x86/CONFIG_XEN_PV; CONFIGS: Fedora CoreOS 35 config-5.15.6-200.fc35: XEN_PV=y).
- zstd: Fedora's x86_64 kernel is zstd-compressed from the 5.9/5.10 kernels of late 2020 on
  (QubesOS/qubes-core-admin PR #380, 2020-12-31: "Fedora compresses the kernel with zstd now"; CONFIGS:
  config-5.15.6-200.fc35 CONFIG_KERNEL_ZSTD=y; kernel-ark's spec: "Kernel EFI/Compression set by
  CONFIG_KERNEL_ZSTD"). Fedora 32 and 33 received such kernels in their updates; 31's last kernel is 5.8, before
  zstd existed. Before that, gzip: Linux's default, and what RHEL 7 and 8 (forked from Fedora 19 and 28) ship
  (CONFIGS: config-3.10.0-1160.59.1.el7, config-4.18.0-348.el8: CONFIG_KERNEL_GZIP=y).
- i386: Fedora builds no i686 kernel from 31 on (Fedora change "Stop Building i686 Kernels"); before, the PAE
  kernel (`kernel-PAE`) is the one Xen can run (32-bit PV needs PAE), and its last series is < 5.9.
"""

from __future__ import annotations

from pvbuild.distros.profile import CONFIGS as _CFG
from pvbuild.distros.profile import SEED_AWS, Family, Kernel, Release

_XEN = f"{SEED_AWS}: 'Fedora 8-9 Xen kernels'; gzip: Linux's default (UNVERIFIED)"
_PVOPS = (f"{SEED_AWS}: 'Fedora 13 (2.6.33.6-147 and higher)', 'Fedora 14 and later'; gzip derived: RHEL 7/8 are "
          f"({_CFG})")
_ZSTD = f"QubesOS/qubes-core-admin PR #380 (Fedora's kernel is zstd since late 2020); {_CFG}: config-5.15.6-200.fc35"
_NO_I686 = "Fedora builds no i686 kernel since Fedora 31"

# Release -> the kernel line its updates end with (Fedora's release history; for the maintained releases, the
# line at the time of writing: they keep rebasing). Only two thresholds decide anything: 5.9 (no 32-bit PV; zstd
# exists) and Fedora 32 (zstd).
_SERIES = {"8": "2.6.21", "9": "2.6.25", "13": "2.6.34", "14": "2.6.35", "20": "3.19", "25": "4.13", "28": "5.0",
           "30": "5.6", "31": "5.8", "32": "5.11", "33": "5.14", "34": "5.17", "35": "6.0", "36": "6.2",
           "37": "6.5", "38": "6.8", "39": "6.11", "40": "6.14", "41": "6.17", "42": "6.17"}


def _release(v: str) -> Release:
    n = int(v)
    series = _SERIES[v]
    if n <= 9:
        x86_64: Kernel | str = Kernel("kernel-xen", series, "gzip", True, _XEN, console="xvc0")
        i386: Kernel | str = Kernel("kernel-xen", series, "gzip", True, _XEN, console="xvc0")
    else:
        compression, source = ("zstd", _ZSTD) if n >= 32 else ("gzip", _PVOPS)
        x86_64 = Kernel("kernel", series, compression, True, source)
        i386 = Kernel("kernel-PAE", series, compression, True, source) if n < 31 else _NO_I686
    return Release(v, v, f"Fedora {v}", x86_64, i386, "mkinitrd" if n <= 9 else "dracut", "fedora-minimal")


FAMILY = Family("fedora", "Fedora", tuple(_release(v) for v in _SERIES), "31")
