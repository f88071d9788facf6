"""Ubuntu: LTS releases 10.04-24.04 (and 11.04, the first whose stock kernel AWS lists), built by DIB's
ubuntu-minimal (debootstrap), initrd by update-initramfs.

Kernels, with the source of each claim (CONFIGS = /boot/config-VERSION files in nyrahul/linux-kernel-configs):
- 10.04: the stock kernel is not a PV guest; the Xen-patched `linux-image-ec2` flavour is (seed 002: "Ubuntu
  10.04 LTS ... need special ec2 or xen kernel packages"; seed 000's menu.lst boots "Ubuntu EC2 2.6.32.302-EC").
- 11.04 and later: the stock virtual kernel (seed 000: "Ubuntu 11.04 and later"); seed 002 shows 14.04's
  3.13.0-48-generic booting under PV-GRUB.
- 16.04, 18.04: gzip, CONFIG_XEN_PV=y (CONFIGS: config-4.15.0-142-generic of 16.04.7, config-4.15.0-163-generic
  of 18.04.6).
- The AWS flavour: 18.04's linux-image-aws (5.4) is gzip with CONFIG_XEN_PV=y (CONFIGS: config-5.4.0-1060-aws),
  20.04's (5.11 then) lz4 (CONFIGS: config-5.11.0-1022-aws).
- 20.04: lz4 (CONFIGS: config-5.4.0-204-generic; Ubuntu's focal tree debian.master/config/amd64/
  config.common.amd64 has CONFIG_KERNEL_LZ4=y, read in proxmox/mirror_ubuntu-focal-kernel). Ubuntu switched
  amd64 to lz4 in 19.10 and to zstd in 21.10 (TuxInvader/focal-mainline-builder#7: "5.12.14 and 5.13 are now using
  ZSTD").
- 22.04, 24.04: zstd (CONFIGS: config-5.15.0-144-generic, config-6.8.0-52-generic; the jammy annotations file sets
  every other CONFIG_KERNEL_* to n for amd64, balabit-deps/balabit-os-9-linux).
- i386: 19.10 and later build no i386 kernel (i386 is a compatibility userspace only since 19.10). Before, the
  i386 kernels are PAE and < 5.9; that they have Xen PV is taken from the amd64 configs (same config tree),
  UNVERIFIED for i386 itself.
- Compression before 16.04: gzip, Linux's default and the only one Ubuntu's x86 configs chose before lz4
  (UNVERIFIED for 10.04-14.04: no config of them was read).
"""

from __future__ import annotations

from pvbuild.distros.profile import CONFIGS as _CFG
from pvbuild.distros.profile import SEED_AWS, SEED_JA, Family, Kernel, Release

_NO_I386 = "Ubuntu builds no i386 kernel since 19.10 (i386 is a compatibility userspace only)"


def _k(package: str, series: str, compression: str, source: str) -> Kernel:
    return Kernel(package, series, compression, True, source)


def _lts(name: str, version: str, x86_64: Kernel | str, i386: Kernel | str, lts: bool = True,
         aws: Kernel | None = None) -> Release:
    title = f"Ubuntu {version}{' LTS' if lts else ''} ({name})"
    return Release(name, version, title, x86_64, i386, "update-initramfs", "ubuntu-minimal",
                   other_kernels=(aws,) if aws else ())


_EC2 = f"{SEED_JA}; {SEED_AWS}: 'Ubuntu EC2 2.6.32.302-EC'; gzip UNVERIFIED"
_STOCK = f"{SEED_AWS}: 'Ubuntu 11.04 and later'; gzip UNVERIFIED"
_TRUSTY = "seed 002 boots 3.13.0-48-generic under PV-GRUB; gzip UNVERIFIED"
_XENIAL = f"{_CFG}: Ubuntu 16.04.7 config-4.15.0-142-generic (HWE) gzip, XEN_PV=y; GA 4.4 UNVERIFIED"
_BIONIC = f"{_CFG}: Ubuntu 18.04.6 config-4.15.0-163-generic gzip, XEN_PV=y"
_FOCAL = f"{_CFG}: Ubuntu 20.04.4 config-5.4.0-204-generic CONFIG_KERNEL_LZ4=y"
_JAMMY = f"{_CFG}: Ubuntu 22.04.5 config-5.15.0-144-generic CONFIG_KERNEL_ZSTD=y"
_NOBLE = f"{_CFG}: Ubuntu 24.04.1 config-6.8.0-52-generic CONFIG_KERNEL_ZSTD=y"

RELEASES = (
    _lts("lucid", "10.04", _k("linux-image-ec2", "2.6.32", "gzip", _EC2),
         _k("linux-image-ec2", "2.6.32", "gzip", _EC2)),
    _lts("natty", "11.04", _k("linux-image-virtual", "2.6.38", "gzip", _STOCK),
         _k("linux-image-generic-pae", "2.6.38", "gzip", _STOCK), lts=False),
    _lts("precise", "12.04", _k("linux-image-virtual", "3.2", "gzip", _STOCK),
         _k("linux-image-generic-pae", "3.2", "gzip", _STOCK)),
    _lts("trusty", "14.04", _k("linux-image-virtual", "3.13", "gzip", _TRUSTY),
         _k("linux-image-generic", "3.13", "gzip", _TRUSTY)),
    _lts("xenial", "16.04", _k("linux-image-virtual", "4.4", "gzip", _XENIAL),
         _k("linux-image-generic", "4.4", "gzip", _XENIAL)),
    _lts("bionic", "18.04", _k("linux-image-virtual", "4.15", "gzip", _BIONIC),
         _k("linux-image-generic", "4.15", "gzip", _BIONIC),
         aws=_k("linux-image-aws", "5.4", "gzip", f"{_CFG}: Ubuntu 18.04.6 config-5.4.0-1060-aws gzip, XEN_PV=y")),
    _lts("focal", "20.04", _k("linux-image-virtual", "5.4", "lz4", _FOCAL), _NO_I386,
         aws=_k("linux-image-aws", "5.11", "lz4", f"{_CFG}: Ubuntu 20.04.3 config-5.11.0-1022-aws KERNEL_LZ4=y")),
    _lts("jammy", "22.04", _k("linux-image-virtual", "5.15", "zstd", _JAMMY), _NO_I386),
    _lts("noble", "24.04", _k("linux-image-virtual", "6.8", "zstd", _NOBLE), _NO_I386),
)
FAMILY = Family("ubuntu", "Ubuntu", RELEASES, "bionic", apt=True)
