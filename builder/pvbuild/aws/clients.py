"""boto3 clients for pvbuild's AWS commands: boto3's normal credential chain, endpoints overridable for tests.

Credentials come only from boto3's chain (environment, shared profile, instance role); pvbuild never reads, logs
or writes them. `PVBUILD_EC2_ENDPOINT`, `PVBUILD_EBS_ENDPOINT` and `PVBUILD_S3_ENDPOINT` point a service at
another endpoint (a local moto server in the test suite); one endpoint serves every region.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

ENDPOINT_ENV = {"ec2": "PVBUILD_EC2_ENDPOINT", "ebs": "PVBUILD_EBS_ENDPOINT", "s3": "PVBUILD_S3_ENDPOINT"}


class ClientFactory(Protocol):
    def __call__(self, service: str, region: str) -> Any: ...


def client(service: str, region: str) -> Any:
    """A boto3 client for `service` in `region`, at $PVBUILD_<SERVICE>_ENDPOINT when that is set."""
    import boto3

    env = ENDPOINT_ENV.get(service)
    endpoint = os.environ.get(env) if env else None
    return boto3.client(service, region_name=region, endpoint_url=endpoint or None)
