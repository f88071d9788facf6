"""`pvbuild ami verify`: the Japanese field guide's check that an AMI boots through PV-GRUB.

"Name フィールドが pv-grub で始まるかどうかを確認します": the AMI's KernelId must be a PV-GRUB AKI (its image name
starts with pv-grub), of the AMI's architecture and of the expected variant, and the latest version in the region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pvbuild.aws import aki
from pvbuild.errors import UsageError
from pvbuild.pvgrub.findings import Finding, error, warning


@dataclass(frozen=True)
class AmiCheck:
    ami_id: str
    name: str | None
    architecture: str | None
    virtualization: str | None
    kernel_id: str | None
    ramdisk_id: str | None
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)


def verify_ami(ec2: Any, ami_id: str, region: str, variant: str | None = None) -> AmiCheck:
    """Check one AMI; `variant` (hd0/hd00) is enforced when given, else the kernel's own variant is accepted."""
    from botocore.exceptions import ClientError

    try:
        images = ec2.describe_images(ImageIds=[ami_id]).get("Images", [])
    except ClientError as e:
        err = e.response.get("Error", {})
        raise UsageError(f"{ami_id} in {region}: {err.get('Code', 'error')}: {err.get('Message', e)}") from e
    if not images:
        raise UsageError(f"AMI {ami_id} not found in {region}")
    img = images[0]
    arch = img.get("Architecture")
    virt = img.get("VirtualizationType")
    kernel = img.get("KernelId")
    ramdisk = img.get("RamdiskId")
    found: list[Finding] = []
    if virt and virt != "paravirtual":
        found.append(error("ami-not-paravirtual", f"{ami_id} is {virt}: PV-GRUB boots paravirtual AMIs only"))
    if ramdisk:
        found.append(error("ami-has-ramdisk", f"{ami_id} names ramdisk {ramdisk}: a ramdisk (ARI) must not be "
                                              "given with a PV-GRUB AKI"))
    if not kernel:
        found.append(error("ami-no-kernel", f"{ami_id} has no KernelId: it does not boot through PV-GRUB"))
    else:
        want = variant
        if want is None:
            row = aki.table_by_id(kernel)
            want = row.variant if row else None
            if want is None:
                try:
                    k = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [kernel]}]).get("Images", [])
                    parsed = aki.parse_name((k[0].get("Name") or "").rsplit("/", 1)[-1]) if k else None
                    want = parsed[0] if parsed else "hd0"
                except Exception:
                    want = "hd0"
        found.extend(aki.verify_kernel_id(ec2, kernel, arch=arch or "x86_64", variant=want, region=region))
    if arch is None:
        found.append(warning("ami-no-architecture", f"{ami_id} does not say its architecture"))
    return AmiCheck(ami_id, img.get("Name"), arch, virt, kernel, ramdisk, tuple(found))
