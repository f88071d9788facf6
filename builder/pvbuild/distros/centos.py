"""CentOS and RHEL (one kernel lineage, two archives): 5, 6, 7, 8 and the Streams.

Sources (CONFIGS = /boot/config-VERSION files in nyrahul/linux-kernel-configs):
- 5: the Xen-patched `kernel-xen` (seed 002: "CentOS 5.x ... need special ec2 or xen kernel packages"; seed 000:
  "RHEL 5.x kernels", "CentOS 5.x kernels"), initrd by mkinitrd, console xvc0; gzip (2.6.18 knows no other).
- 6: the stock 2.6.32 `kernel` is a pvops PV guest (seed 000: "RHEL 6.x kernels", "CentOS 6.x kernels"), dracut;
  gzip (UNVERIFIED: as RHEL 7 and 8).
- 7: 3.10, CONFIG_XEN=y (before Linux 4.14 split out CONFIG_XEN_PV, CONFIG_XEN is the PV guest), gzip (CONFIGS:
  CentOS 7 config-3.10.0-1160.102.1.el7, RHEL 7.9 config-3.10.0-1160.59.1.el7). x86_64 only.
- 8, 8-stream: 4.18 with "# CONFIG_XEN_PV is not set" (CONFIGS: CentOS 8 config-4.18.0-348.7.1.el8_5, RHEL 8.5
  config-4.18.0-348.el8, Rocky 8.10 config-4.18.0-553.el8_10): no PV guest. gzip.
- 9-stream: 5.14, "# CONFIG_XEN_PV is not set" (CONFIGS: RHEL 9.2 config-5.14.0-284.11.1.el9_2, Rocky 9.0, AlmaLinux
  9.3). gzip.
- i386: 5 and 6 ship i686 PAE kernels; 7 and later ship no i386 kernel in the main archive.
- diskimage-builder: `centos` (cloud image: 7, 8-stream, 9-stream) and `centos-minimal` (8-stream, 9-stream);
  `rhel` (RHEL 8 and 9, from a downloaded guest image). No element builds 5 or 6.
"""

from __future__ import annotations

from pvbuild.distros.profile import CONFIGS as _CFG
from pvbuild.distros.profile import SEED_AWS, SEED_JA, Family, InitrdTool, Kernel, Release

_5 = f"{SEED_JA}; {SEED_AWS}: 'RHEL 5.x kernels', 'CentOS 5.x kernels'"
_6 = f"{SEED_AWS}: 'RHEL 6.x kernels', 'CentOS 6.x kernels'; gzip UNVERIFIED"
_7 = f"{_CFG}: CentOS 7 config-3.10.0-1160.102.1.el7 CONFIG_XEN=y, gzip"
_8 = f"{_CFG}: CentOS 8 config-4.18.0-348.7.1.el8_5, RHEL 8.5 config-4.18.0-348.el8"
_9 = f"{_CFG}: RHEL 9.2 config-5.14.0-284.11.1.el9_2, Rocky 9.0, AlmaLinux 9.3"
_NO_I386 = "no i386 kernel in the main archive since 7"


def _release(distro: str, name: str, x86_64: Kernel, i386: Kernel | str, tool: InitrdTool, dib: str | None,
             aliases: tuple[str, ...] = ()) -> Release:
    version = name.removesuffix("-stream")
    title = (f"CentOS Stream {version}" if name.endswith("-stream") else
             f"{'CentOS' if distro == 'centos' else 'Red Hat Enterprise Linux'} {name}")
    return Release(name, version, title, x86_64, i386, tool, dib, aliases)


def _releases(distro: str) -> tuple[Release, ...]:
    xen5 = Kernel("kernel-xen", "2.6.18", "gzip", True, _5, console="xvc0")
    k6 = Kernel("kernel", "2.6.32", "gzip", True, _6)
    k7 = Kernel("kernel", "3.10", "gzip", True, _7)
    k8 = Kernel("kernel", "4.18", "gzip", False, _8)
    k9 = Kernel("kernel", "5.14", "gzip", False, _9)
    if distro == "centos":
        return (
            _release(distro, "5", xen5, xen5, "mkinitrd", None),
            _release(distro, "6", k6, k6, "dracut", None),
            _release(distro, "7", k7, _NO_I386, "dracut", "centos"),
            _release(distro, "8", k8, _NO_I386, "dracut", None),
            _release(distro, "8-stream", k8, _NO_I386, "dracut", "centos-minimal"),
            _release(distro, "9-stream", k9, _NO_I386, "dracut", "centos-minimal", ("9",)),
        )
    return (
        _release(distro, "5", xen5, xen5, "mkinitrd", None),
        _release(distro, "6", k6, k6, "dracut", None),
        _release(distro, "7", k7, _NO_I386, "dracut", None),
        _release(distro, "8", k8, _NO_I386, "dracut", "rhel"),
        _release(distro, "9", k9, _NO_I386, "dracut", "rhel"),
    )


CENTOS = Family("centos", "CentOS", _releases("centos"), "7")
RHEL = Family("rhel", "Red Hat Enterprise Linux", _releases("rhel"), "7")
