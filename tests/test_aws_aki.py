"""PV-GRUB AKI table, live selection, fallback and `ami verify`'s kernel check, against a real moto server.

The moto server (`moto.server.ThreadedMotoServer`) runs in this process on 127.0.0.1 with port 0; boto3 clients
reach it through `endpoint_url` with dummy credentials from the environment. moto ships no AKIs, so the fixture
seeds PV-GRUB kernel images straight into the server's EC2 backend image table
(`moto.ec2.models.ec2_backends[account][region].amis[aki_id] = Ami(..., image_type="kernel", owner_alias="amazon")`)
after the server starts. MOTO_AMIS_PATH is not used: it is read once when moto is imported, so it cannot be set
per test module. Nothing here talks to any address but 127.0.0.1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami
from moto.server import ThreadedMotoServer

from pvbuild.aws import aki
from pvbuild.errors import EXIT_USAGE, UsageError
from pvbuild.pvgrub.findings import Severity
from pvbuild.pvgrub.profiles import Profile

AMAZON = "137112412989"

# region -> (aki id, image name, image type, owner alias)
SEED: dict[str, list[tuple[str, str, str, str | None]]] = {
    "us-east-1": [
        ("aki-88aa75e1", "pv-grub-hd0_1.03-x86_64.gz", "kernel", "amazon"),
        ("aki-b6aa75df", "pv-grub-hd0_1.03-i386.gz", "kernel", "amazon"),
        ("aki-b4aa75dd", "pv-grub-hd00_1.03-x86_64.gz", "kernel", "amazon"),
        ("aki-b2aa75db", "pv-grub-hd00_1.03-i386.gz", "kernel", "amazon"),
        ("aki-5c21674b", "pv-grub-hd0_1.05-x86_64.gz", "kernel", "amazon"),
        ("aki-04206613", "pv-grub-hd0_1.05-i386.gz", "kernel", "amazon"),
        # Not PV-GRUB, or not Amazon's, or not a kernel: selection must ignore all three.
        ("aki-0bad0001", "vmlinuz-2.6.21.7-2.fc8xen.gz", "kernel", "amazon"),
        ("aki-0bad0002", "pv-grub-hd0_1.09-x86_64.gz", "kernel", None),
        ("ami-0bad0003", "pv-grub-hd0_1.08-x86_64.gz", "machine", "amazon"),
    ],
    # The Japanese guide's describe-images output: 1.03 and 1.04 only (live says 1.04 although the table has 1.05).
    "ap-northeast-1": [
        ("aki-176bf516", "pv-grub-hd0_1.04-x86_64.gz", "kernel", "amazon"),
        ("aki-136bf512", "pv-grub-hd0_1.04-i386.gz", "kernel", "amazon"),
        ("aki-1f6bf51e", "pv-grub-hd00_1.04-x86_64.gz", "kernel", "amazon"),
        ("aki-196bf518", "pv-grub-hd00_1.04-i386.gz", "kernel", "amazon"),
        ("aki-3e99283f", "pv-grub-hd00_1.03-i386.gz", "kernel", "amazon"),
        ("aki-40992841", "pv-grub-hd00_1.03-x86_64.gz", "kernel", "amazon"),
        ("aki-42992843", "pv-grub-hd0_1.03-i386.gz", "kernel", "amazon"),
        ("aki-44992845", "pv-grub-hd0_1.03-x86_64.gz", "kernel", "amazon"),
    ],
    # A made-up 1.10 (test-only ID): versions compare numerically, 1.10 > 1.05.
    "eu-west-1": [
        ("aki-dc9ed9af", "pv-grub-hd0_1.05-x86_64.gz", "kernel", "amazon"),
        ("aki-7e57110a", "pv-grub-hd0_1.10-x86_64.gz", "kernel", "amazon"),
    ],
}


def _seed() -> None:
    for region, images in SEED.items():
        backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
        for image_id, name, image_type, alias in images:
            arch = "i386" if "i386" in name else "x86_64"
            backend.amis[image_id] = Ami(backend, image_id, name=name, owner_id=AMAZON if alias else "111122223333",
                                         owner_alias=alias, public=True, architecture=arch, image_type=image_type,
                                         virtualization_type="paravirtual", hypervisor="xen", region_name=region)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE":
           "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            assert host == "127.0.0.1"
            _seed()
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


def ec2(endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.client("ec2", region_name=region, endpoint_url=endpoint)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def unreachable_client(region: str = "us-east-1") -> Any:
    cfg = Config(connect_timeout=0.5, read_timeout=0.5, retries={"max_attempts": 0, "mode": "standard"})
    return boto3.client("ec2", region_name=region, endpoint_url=f"http://127.0.0.1:{closed_port()}", config=cfg,
                        aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106


# --- the table ----------------------------------------------------------------------------------------------

def test_table_has_every_seed_aki() -> None:
    by = {(r.region, r.version, r.variant, r.arch): r for r in aki.TABLE}
    assert len(aki.TABLE) == 8 * 4 + 4 + 10 * 2 == len(by)
    assert len({r.aki_id for r in aki.TABLE}) == len(aki.TABLE)
    assert sum(r.version == "1.03" for r in aki.TABLE) == 32
    assert {r.region for r in aki.TABLE if r.version == "1.03"} == {
        "us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-northeast-1", "sa-east-1",
        "us-gov-west-1"}
    assert len({r.region for r in aki.TABLE if r.version == "1.05"}) == 10
    assert not [r for r in aki.TABLE if r.version == "1.05" and r.variant == "hd00"]  # not given by AWS
    assert by["us-east-1", "1.03", "hd0", "x86_64"].aki_id == "aki-88aa75e1"
    east = by["us-east-1", "1.03", "hd0", "x86_64"]
    assert east.manifest == "ec2-public-images/pv-grub-hd0_1.03-x86_64.gz.manifest.xml"
    assert by["us-gov-west-1", "1.03", "hd00", "i386"].aki_id == "aki-77a4c054"
    eu = by["eu-west-1", "1.03", "hd0", "i386"]
    assert eu.manifest == "ec2-public-images-eu/pv-grub-hd0_1.03-i386.gz.manifest.xml"
    assert by["ap-northeast-1", "1.04", "hd0", "x86_64"].aki_id == "aki-176bf516"
    assert by["ap-northeast-1", "1.04", "hd00", "i386"].aki_id == "aki-196bf518"
    assert by["us-east-1", "1.05", "hd0", "x86_64"].aki_id == "aki-5c21674b"
    assert by["us-west-2", "1.05", "hd0", "i386"].aki_id == "aki-7a69931a"
    for r in aki.TABLE:
        assert r.name == f"pv-grub-{r.variant}_{r.version}-{r.arch}.gz"
        assert aki.parse_name(r.name) == (r.variant, r.version, r.arch)
        if r.manifest is not None:
            assert aki.parse_name(r.manifest) == (r.variant, r.version, r.arch)


def test_table_selection_offline() -> None:
    a = aki.select("us-east-1", "x86_64", live=False)
    assert (a.aki_id, a.version, a.source) == ("aki-5c21674b", "1.05", "table")
    assert a.name == "pv-grub-hd0_1.05-x86_64.gz"
    assert any("table" in n for n in a.notes)
    assert aki.select("us-east-1", "x86_64", version="1.03", live=False).aki_id == "aki-88aa75e1"
    assert aki.select("ap-northeast-1", "i386", "hd00", live=False).aki_id == "aki-196bf518"  # 1.04: newest hd00
    assert aki.select("us-west-1", "i386", "hd00", live=False).version == "1.03"
    assert aki.select("eu-central-1", "x86_64", live=False).aki_id == "aki-931fe3fc"


@pytest.mark.parametrize(("name", "want"), [
    ("pv-grub-hd0_1.05-x86_64.gz", ("hd0", "1.05", "x86_64")),
    ("pv-grub-hd00_1.03-i386.gz", ("hd00", "1.03", "i386")),
    ("ec2-public-images/pv-grub-hd0_1.03-x86_64.gz.manifest.xml", ("hd0", "1.03", "x86_64")),
    ("ec2-public-images-eu/pv-grub-hd00_1.03-i386.gz.manifest.xml", ("hd00", "1.03", "i386")),
    ("pv-grub-hd0_1.10-x86_64.gz", ("hd0", "1.10", "x86_64")),
    ("pv-grub-hd1_1.05-x86_64.gz", None),
    ("pv-grub-hd0_2.00-x86_64.gz", None),
    ("pv-grub-hd0_1.05-arm64.gz", None),
    ("pv-grub-hd0_1.05-x86_64", None),
    ("xpv-grub-hd0_1.05-x86_64.gz", None),
    ("vmlinuz-2.6.21.7-2.fc8xen", None),
    ("", None),
])
def test_parse_name(name: str, want: tuple[str, str, str] | None) -> None:
    assert aki.parse_name(name) == want


@pytest.mark.parametrize(("args", "words"), [
    (("mars-north-1", "x86_64"), ["mars-north-1", "us-east-1: 1.03 hd0,hd00 x86_64,i386; 1.05 hd0 x86_64,i386",
                                  "eu-central-1: 1.05 hd0 x86_64,i386", "ap-northeast-1: 1.03", "1.04 hd0,hd00"]),
    (("us-east-1", "arm64"), ["arm64", "x86_64", "i386"]),
    (("us-east-1", "x86_64", "hd1"), ["hd1", "hd0", "hd00"]),
    (("eu-central-1", "x86_64", "hd00"), ["pv-grub-hd00_*-x86_64.gz", "eu-central-1: 1.05 hd0 x86_64,i386"]),
    (("us-east-1", "x86_64", "hd0", "1.04"), ["pv-grub-hd0_1.04-x86_64.gz", "us-east-1: 1.03"]),
])
def test_unknown_combination_lists_what_exists(args: tuple[str, ...], words: list[str]) -> None:
    with pytest.raises(aki.AkiError) as ei:
        aki.select(*args, live=False)
    assert isinstance(ei.value, UsageError)
    assert ei.value.exit_code == EXIT_USAGE
    for w in words:
        assert w in str(ei.value)


def test_profile_of() -> None:
    a = aki.select("ap-northeast-1", "i386", "hd00", live=False)
    p = aki.profile_of(a)
    assert p == Profile(version="1.04", variant="hd00", arch="i386")
    assert p.gpt
    old = aki.profile_of(aki.select("us-east-1", "x86_64", version="1.03", live=False))
    assert not old.gpt and old.menu_search() == ["(hd0)/boot/grub/menu.lst"]
    future = aki.Aki("eu-west-1", "aki-7e57110a", "1.10", "hd0", "x86_64", "pv-grub-hd0_1.10-x86_64.gz", "live")
    with pytest.raises(aki.AkiError, match=r"1\.10"):
        aki.profile_of(future)


# --- live, against moto -------------------------------------------------------------------------------------

def test_live_picks_highest_version(endpoint: str) -> None:
    a = aki.select("us-east-1", "x86_64", live=True, ec2_client=ec2(endpoint))
    assert (a.aki_id, a.version, a.source) == ("aki-5c21674b", "1.05", "live")
    assert aki.select("us-east-1", "i386", live=True, ec2_client=ec2(endpoint)).aki_id == "aki-04206613"
    hd00 = aki.select("us-east-1", "x86_64", "hd00", live=True, ec2_client=ec2(endpoint))
    assert (hd00.aki_id, hd00.source) == ("aki-b4aa75dd", "live")
    jp = aki.select("ap-northeast-1", "x86_64", live=True, ec2_client=ec2(endpoint, "ap-northeast-1"))
    assert (jp.aki_id, jp.version, jp.source) == ("aki-176bf516", "1.04", "live")
    eu = aki.select("eu-west-1", "x86_64", live=True, ec2_client=ec2(endpoint, "eu-west-1"))
    assert (eu.aki_id, eu.version) == ("aki-7e57110a", "1.10")
    pinned = aki.select("us-east-1", "x86_64", version="1.03", live=True, ec2_client=ec2(endpoint))
    assert (pinned.aki_id, pinned.source) == ("aki-88aa75e1", "live")


def test_live_ignores_other_kernels(endpoint: str) -> None:
    found = aki.live_akis(ec2(endpoint), "us-east-1")
    ids = {a.aki_id for a in found}
    assert ids == {i for i, _n, t, o in SEED["us-east-1"] if t == "kernel" and o == "amazon" and "pv-grub" in _n}
    assert not ids & {"aki-0bad0001", "aki-0bad0002", "ami-0bad0003"}


def test_live_without_match_falls_back_to_table(endpoint: str) -> None:
    # moto's us-west-2 has no AKIs at all.
    a = aki.select("us-west-2", "x86_64", live=True, ec2_client=ec2(endpoint, "us-west-2"))
    assert (a.aki_id, a.source) == ("aki-70cb0e10", "table")
    assert any("found no" in n for n in a.notes)
    # Live has no 1.05 hd0 in ap-northeast-1; the table does.
    b = aki.select("ap-northeast-1", "x86_64", version="1.05", live=True, ec2_client=ec2(endpoint, "ap-northeast-1"))
    assert (b.aki_id, b.source) == ("aki-7077ab11", "table")


def test_unreachable_endpoint_falls_back_to_table() -> None:
    t0 = time.monotonic()
    a = aki.select("us-east-1", "x86_64", live=True, ec2_client=unreachable_client())
    assert time.monotonic() - t0 < 10
    assert (a.aki_id, a.version, a.source) == ("aki-5c21674b", "1.05", "table")
    assert any("failed" in n and "table" in n for n in a.notes)
    with pytest.raises(aki.AkiError, match="us-east-1"):
        aki.select("mars-north-1", "x86_64", live=True, ec2_client=unreachable_client("mars-north-1"))


# --- ami verify's kernel check ------------------------------------------------------------------------------

def codes(findings: list[Any], severity: Severity | None = None) -> set[str]:
    return {f.code for f in findings if severity is None or f.severity == severity}


def test_verify_good_kernel(endpoint: str) -> None:
    f = aki.verify_kernel_id(ec2(endpoint), "aki-5c21674b", arch="x86_64", variant="hd0", region="us-east-1")
    assert not codes(f, Severity.ERROR) and not codes(f, Severity.WARNING)
    assert {"aki-pvgrub", "aki-latest"} <= codes(f)
    jp = aki.verify_kernel_id(ec2(endpoint, "ap-northeast-1"), "aki-176bf516", arch="x86_64", variant="hd0",
                              region="ap-northeast-1")
    assert not codes(jp, Severity.ERROR) and "aki-latest" in codes(jp)


def test_verify_bad_kernels(endpoint: str) -> None:
    c = ec2(endpoint)
    old = aki.verify_kernel_id(c, "aki-88aa75e1", arch="x86_64", variant="hd0", region="us-east-1")
    assert codes(old, Severity.WARNING) == {"aki-not-latest"} and not codes(old, Severity.ERROR)
    assert any("aki-5c21674b" in x.message for x in old)
    wrong = aki.verify_kernel_id(c, "aki-b2aa75db", arch="x86_64", variant="hd0", region="us-east-1")
    assert {"aki-arch-mismatch", "aki-variant-mismatch"} <= codes(wrong, Severity.ERROR)
    notpv = aki.verify_kernel_id(c, "aki-0bad0001", arch="x86_64", variant="hd0", region="us-east-1")
    assert codes(notpv, Severity.ERROR) == {"aki-not-pvgrub"}
    missing = aki.verify_kernel_id(c, "aki-deadbeef", arch="x86_64", variant="hd0", region="us-east-1")
    assert codes(missing, Severity.ERROR) == {"aki-not-found"}


def test_verify_offline_uses_table() -> None:
    f = aki.verify_kernel_id(unreachable_client(), "aki-88aa75e1", arch="x86_64", variant="hd0", region="us-east-1")
    assert "aki-lookup-failed" in codes(f, Severity.WARNING)
    assert "aki-not-latest" in codes(f)
    g = aki.verify_kernel_id(unreachable_client(), "aki-deadbeef", arch="x86_64", variant="hd0", region="us-east-1")
    assert codes(g, Severity.ERROR) == {"aki-lookup-failed"}

