"""openSUSE and SLES: the Xen and EC2 kernels of 10.x/11.x, and the pvops kernel-default of Leap 15 and SLES 12+.

Sources (CONFIGS = /boot/config-VERSION files in nyrahul/linux-kernel-configs):
- openSUSE 11.0/11.1, SLES 10 and 11: the Xen-patched `kernel-xen` (seed 000: "SLES/openSUSE 10.x, 11.0, 11.1
  Xen"); openSUSE 11.2-11.4 and SLES 11 SP1+: `kernel-ec2` (seed 000: "SLES/openSUSE 11.x EC2 Variant"; its
  openSUSE 11.2 walk-through installs kernel-ec2 and runs mkinitrd). Initrd by mkinitrd; console xvc0 (Xen-patched);
  the image is a gzipped vmlinux ELF (UNVERIFIED: no package was read; PV-GRUB gunzips any file it loads).
- SLES 12 SP5 and 15 SP3: `kernel-default` 4.12 / 5.3 with CONFIG_XEN_PV=y and gzip (CONFIGS:
  config-4.12.14-122.54-default, config-5.3.18-59.24-default); dracut. Leap 15.x shares SLES 15's kernel
  (Leap 15.5/15.6: the 5.14 of SLE 15 SP5/SP6; its config is taken to match SP3's, UNVERIFIED).
- i386: Leap and SLES 12+ are x86_64 only; the 11.x/SLES 10-11 Xen and EC2 kernels are PAE.
- diskimage-builder: `opensuse-minimal` builds Leap 15.5 and 15.6 only (its environment.d refuses the rest);
  no element builds SLES.
"""

from __future__ import annotations

from pvbuild.distros.profile import CONFIGS as _CFG
from pvbuild.distros.profile import SEED_AWS, Family, InitrdTool, Kernel, Release

_XEN = f"{SEED_AWS}: 'SLES/openSUSE 10.x, 11.0, 11.1 Xen'; gzip UNVERIFIED"
_EC2 = f"{SEED_AWS}: 'SLES/openSUSE 11.x EC2 Variant'; gzip UNVERIFIED"
_SLE12 = f"{_CFG}: SLES 12 SP5 config-4.12.14-122.54-default XEN_PV=y, gzip"
_SLE15 = f"{_CFG}: SLES 15 SP3 config-5.3.18-59.24-default XEN_PV=y, gzip"
_NO_I386 = "x86_64 only"


def _xen(series: str, package: str = "kernel-xen") -> Kernel:
    return Kernel(package, series, "gzip", True, _XEN if package == "kernel-xen" else _EC2, console="xvc0")


def _r(title: str, name: str, x86_64: Kernel, i386: Kernel | str, tool: InitrdTool, dib: str | None = None,
       aliases: tuple[str, ...] = ()) -> Release:
    return Release(name, name, f"{title} {name}", x86_64, i386, tool, dib, aliases)


_leap15 = Kernel("kernel-default", "5.14", "gzip", True, f"{_SLE15}; Leap's 5.14 UNVERIFIED")
OPENSUSE = Family("opensuse", "openSUSE", (
    _r("openSUSE", "11.0", _xen("2.6.25"), _xen("2.6.25"), "mkinitrd"),
    _r("openSUSE", "11.1", _xen("2.6.27"), _xen("2.6.27"), "mkinitrd"),
    _r("openSUSE", "11.2", _xen("2.6.31", "kernel-ec2"), _xen("2.6.31", "kernel-ec2"), "mkinitrd"),
    _r("openSUSE", "11.3", _xen("2.6.34", "kernel-ec2"), _xen("2.6.34", "kernel-ec2"), "mkinitrd"),
    _r("openSUSE", "11.4", _xen("2.6.37", "kernel-ec2"), _xen("2.6.37", "kernel-ec2"), "mkinitrd"),
    _r("openSUSE Leap", "15.5", _leap15, _NO_I386, "dracut", "opensuse-minimal", ("leap-15.5",)),
    _r("openSUSE Leap", "15.6", _leap15, _NO_I386, "dracut", "opensuse-minimal", ("leap-15.6",)),
), "15.6", rename={"openssh-server": "openssh"})
SLES = Family("sles", "SUSE Linux Enterprise Server", (
    _r("SLES", "10", _xen("2.6.16"), _xen("2.6.16"), "mkinitrd"),
    _r("SLES", "11", _xen("3.0", "kernel-ec2"), _xen("3.0", "kernel-ec2"), "mkinitrd"),
    _r("SLES", "12", Kernel("kernel-default", "4.12", "gzip", True, _SLE12), _NO_I386, "dracut"),
    _r("SLES", "15", Kernel("kernel-default", "5.3", "gzip", True, _SLE15), _NO_I386, "dracut"),
), "15", rename={"openssh-server": "openssh"})
