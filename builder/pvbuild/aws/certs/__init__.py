"""EC2's public certificates for ec2-bundle-image bundles, as ec2-ami-tools ships them (origin: README.txt here).

ec2-ami-tools picks the certificate by partition: GovCloud and China have their own, every other region uses
cert-ec2.pem. The standard certificate is only given for the regions that existed enabled-by-default: the opt-in
regions launched since 2019 have certificates of their own that this source does not have, and a bundle encrypted
for the wrong key is one EC2 cannot read — better an error that asks for `--ec2cert` than a useless upload.
"""

from __future__ import annotations

import re
from pathlib import Path

from pvbuild.errors import UsageError

HERE = Path(__file__).resolve().parent
STANDARD = "cert-ec2.pem"
GOVCLOUD = "cert-ec2-gov.pem"
CHINA = "cert-ec2-cn-north-1.pem"
CERT_FILES = (STANDARD, GOVCLOUD, CHINA)

# The standard partition's regions that are enabled by default (every region opened before the opt-in scheme).
STANDARD_REGIONS = frozenset({
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1",
    "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1",
    "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-south-1",
})
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


class NoEc2Certificate(UsageError):
    """No shipped certificate is known to be EC2's for this region (exit 2): the user passes --ec2cert."""


def ec2_cert_for(region: str) -> Path:
    """The shipped EC2 certificate a bundle for `region` must be encrypted with."""
    if not _REGION.fullmatch(region):
        raise NoEc2Certificate(f"region {region!r}: not an AWS region name (e.g. us-east-1)")
    if region.startswith("us-gov-"):
        name = GOVCLOUD
    elif region.startswith("cn-"):
        name = CHINA
    elif region in STANDARD_REGIONS:
        name = STANDARD
    else:
        raise NoEc2Certificate(
            f"region {region}: no shipped EC2 certificate is known to be right for it (opt-in regions have their "
            f"own, and pvbuild ships only ec2-ami-tools' standard, GovCloud and China ones); pass --ec2cert with "
            f"the certificate from the newest ec2-ami-tools (etc/ec2/amitools/cert-ec2-{region}.pem)")
    return HERE / name
