"""`pvbuild ami verify` against a real moto server on 127.0.0.1 (AKIs and AMIs seeded into moto's EC2 backend:
moto's RegisterImage drops KernelId, so the AMIs are put in its image table with kernel_id set)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami

from pvbuild.aws.ami import verify_ami
from tests.motoserver import ENV, REGION, moto_endpoint

AMAZON = "137112412989"


def _image(backend: Any, image_id: str, name: str, *, owner: str, alias: str | None, image_type: str, arch: str,
           kernel: str | None = None, virt: str = "paravirtual") -> None:
    ami = Ami(backend, image_id, name=name, owner_id=owner, owner_alias=alias, public=alias is not None,
              architecture=arch, image_type=image_type, virtualization_type=virt, hypervisor="xen",
              region_name=REGION)
    ami.kernel_id = kernel
    backend.amis[image_id] = ami


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        b = ec2_backends[DEFAULT_ACCOUNT_ID][REGION]
        for aki_id, name in (("aki-88aa75e1", "pv-grub-hd0_1.03-x86_64.gz"),
                             ("aki-5c21674b", "pv-grub-hd0_1.05-x86_64.gz"),
                             ("aki-04206613", "pv-grub-hd0_1.05-i386.gz"),
                             ("aki-b4aa75dd", "pv-grub-hd00_1.03-x86_64.gz")):
            _image(b, aki_id, name, owner=AMAZON, alias="amazon", image_type="kernel",
                   arch="i386" if "i386" in name else "x86_64")
        _image(b, "aki-00000001", "vmlinuz-custom", owner=AMAZON, alias="amazon", image_type="kernel",
               arch="x86_64")
        mine = DEFAULT_ACCOUNT_ID
        _image(b, "ami-00000001", "good", owner=mine, alias=None, image_type="machine", arch="x86_64",
               kernel="aki-5c21674b")
        _image(b, "ami-00000002", "old", owner=mine, alias=None, image_type="machine", arch="x86_64",
               kernel="aki-88aa75e1")
        _image(b, "ami-00000003", "wrongarch", owner=mine, alias=None, image_type="machine", arch="x86_64",
               kernel="aki-04206613")
        _image(b, "ami-00000004", "custom", owner=mine, alias=None, image_type="machine", arch="x86_64",
               kernel="aki-00000001")
        _image(b, "ami-00000005", "hvm", owner=mine, alias=None, image_type="machine", arch="x86_64",
               virt="hvm")
        yield url


def codes(endpoint: str, ami: str, variant: str | None = None) -> set[str]:
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION)
    return {f.code for f in verify_ami(ec2, ami, REGION, variant).findings}


def test_latest_pvgrub_kernel_passes(endpoint: str) -> None:
    got = codes(endpoint, "ami-00000001")
    assert {"aki-pvgrub", "aki-latest"} <= got
    assert not {c for c in got if c.startswith(("ami-", "aki-not", "aki-arch", "aki-var"))}


def test_old_wrong_arch_custom_and_hvm(endpoint: str) -> None:
    """The Japanese guide: the KernelId's image name starts with pv-grub; upgrade old PV-GRUB versions."""
    assert "aki-not-latest" in codes(endpoint, "ami-00000002")
    assert "aki-arch-mismatch" in codes(endpoint, "ami-00000003")
    assert "aki-not-pvgrub" in codes(endpoint, "ami-00000004")
    assert {"ami-not-paravirtual", "ami-no-kernel"} <= codes(endpoint, "ami-00000005")
    assert "aki-variant-mismatch" in codes(endpoint, "ami-00000001", "hd00")


def test_cli_exit_codes(endpoint: str) -> None:
    env = {**os.environ, **ENV, "PVBUILD_EC2_ENDPOINT": endpoint}
    run = [sys.executable, "-m", "pvbuild", "ami", "verify", "--region", REGION]
    good = subprocess.run([*run, "ami-00000001", "--json"], capture_output=True, text=True, env=env, check=False)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["kernel_id"] == "aki-5c21674b"
    bad = subprocess.run([*run, "ami-00000004"], capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 1 and bad.stdout.startswith("NOT OK")
    missing = subprocess.run([*run, "ami-0000dead"], capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_no_endpoint_is_an_environment_error() -> None:
    """No reachable EC2 (or no credentials) is exit 3 with a sentence, never a traceback."""
    env = {**os.environ, **ENV, "PVBUILD_EC2_ENDPOINT": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1",
           "AWS_RETRY_MODE": "standard"}
    out = subprocess.run([sys.executable, "-m", "pvbuild", "ami", "verify", "ami-00000001", "--region", REGION],
                         capture_output=True, text=True, env=env, check=False, timeout=120)
    assert out.returncode == 3 and "Traceback" not in out.stderr and "AWS" in out.stderr
