"""Amazon Linux 1, 2 and 2023: dracut, the stock `kernel` package, and no diskimage-builder element.

Sources (CONFIGS = /boot/config-VERSION files in nyrahul/linux-kernel-configs):
- 2: its default kernel 4.14 is a PV guest, gzip (CONFIGS: config-4.14.252-195.483.amzn2: CONFIG_XEN_PV=y,
  CONFIG_KERNEL_GZIP=y). Careful: the 5.4/5.10/5.15 kernels of amazon-linux-extras are not ("# CONFIG_XEN_PV is not
  set" in config-5.4.226-129.415.amzn2, config-5.10.75-79.358.amzn2, config-5.15.86-53.137.amzn2).
- 1 (2018.03): the same 4.14 line, taken to be configured as Amazon Linux 2's (UNVERIFIED: no amzn1 config was
  read); seed 002 shows an amzn1 kernel (4.1.10-17.31.amzn1) booting under PV-GRUB. Amazon Linux 1 had i386 images.
- 2023: 6.1 with "# CONFIG_XEN_PV is not set" (CONFIGS: config-6.1.19-30.43.amzn2023, config-6.1.141-165.249.
  amzn2023): no PV guest.
- diskimage-builder has no Amazon Linux element (openstack/diskimage-builder at ece6a6e: none in
  diskimage_builder/elements, none in its history).
"""

from __future__ import annotations

from pvbuild.distros.profile import CONFIGS as _CFG
from pvbuild.distros.profile import Family, Kernel, Release

_AL2 = f"{_CFG}: config-4.14.252-195.483.amzn2 XEN_PV=y, gzip"
_AL1 = f"as Amazon Linux 2's 4.14 ({_AL2}); amzn1's own config UNVERIFIED; seed 002 boots an amzn1 kernel"
_AL2023 = f"{_CFG}: config-6.1.19-30.43.amzn2023, config-6.1.141-165.249.amzn2023"

FAMILY = Family("amazon", "Amazon Linux", (
    Release("1", "2018.03", "Amazon Linux AMI 2018.03", Kernel("kernel", "4.14", "gzip", True, _AL1),
            Kernel("kernel", "4.14", "gzip", True, _AL1), "dracut", None, ("2018.03", "amzn1")),
    Release("2", "2", "Amazon Linux 2", Kernel("kernel", "4.14", "gzip", True, _AL2), "x86_64 only", "dracut", None,
            ("amzn2",), note="not the 5.x kernels of amazon-linux-extras: no Xen PV"),
    Release("2023", "2023", "Amazon Linux 2023", Kernel("kernel", "6.1", "gzip", False, _AL2023), "x86_64 only",
            "dracut", None, ("al2023",)),
), "2")
