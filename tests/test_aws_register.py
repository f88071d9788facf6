"""`pvbuild register` and `pvbuild instance upgrade-pvgrub` against a real moto server on 127.0.0.1.

moto's RegisterImage keeps only the name, so every test captures the request pvbuild sends (a botocore
`before-call` hook sees the wire parameters) and asserts on that: KernelId, Architecture, paravirtual, the root
device and snapshot, and the fields a PV-GRUB AMI must never carry. Images are the emulator tests' real mkfs images
with synthetic Xen kernels; whether one boots is decided by the emulator, not by the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami

from pvbuild.aws.instance import InstanceError, plan_upgrade, upgrade
from pvbuild.aws.register import (
    FORBIDDEN_PARAMS,
    EbsSettings,
    RegisterError,
    RegisterRefused,
    Request,
    S3Settings,
    register,
    register_params,
)
from tests.imagebuild import Fs, Part
from tests.motoserver import ENV, moto_endpoint
from tests.test_machine import boot_files, mbr, whole

AMAZON = "137112412989"
REPO = Path(__file__).resolve().parent.parent


class Recorder:
    """A client factory for the moto endpoint that records every call's wire parameters, per region."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.calls: list[tuple[str, str, dict[str, Any]]] = []  # (region, operation, wire params)

    def __call__(self, service: str, region: str) -> Any:
        c = boto3.client(service, region_name=region, endpoint_url=self.endpoint)

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            body = params.get("body")
            wire = dict(body) if isinstance(body, dict) else {}
            self.calls.append((region, model.name, wire))

        c.meta.events.register("before-call", record)
        return c

    def ops(self, name: str, region: str | None = None) -> list[dict[str, Any]]:
        return [p for r, op, p in self.calls if op == name and (region is None or r == region)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture()
def rec(endpoint: str) -> Recorder:
    return Recorder(endpoint)


@pytest.fixture(scope="module")
def good_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A partitionless ext4 image the emulator says boots (copied: tests write reports next to it)."""
    dest = tmp_path_factory.mktemp("good") / "good.raw"
    shutil.copyfile(whole(boot_files()), dest)
    return dest


@pytest.fixture(scope="module")
def hang_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """menu.lst without `timeout`: PV-GRUB waits at the menu forever — never registered."""
    dest = tmp_path_factory.mktemp("hang") / "hang.raw"
    menu = boot_files()["/boot/grub/menu.lst"]
    assert isinstance(menu, bytes)
    shutil.copyfile(whole(boot_files(menu.replace(b"timeout 0\n", b""))), dest)
    return dest


def _req(image: Path, name: str, regions: list[str], **kw: Any) -> Request:
    return Request(image=image, name=name, regions=regions, live_aki=kw.pop("live_aki", False), **kw)


def test_register_params_never_carry_ramdisk_sriov_ena() -> None:
    p = register_params(name="x-1", description="", arch="x86_64", kernel_id="aki-5c21674b",
                        root_device="/dev/sda1", snapshot_id="snap-1", volume_size_gib=2)
    assert p["Architecture"] == "x86_64" and p["VirtualizationType"] == "paravirtual"
    assert not set(FORBIDDEN_PARAMS) & set(p)
    with pytest.raises(ValueError):
        register_params(name="x-1", description="", arch="x86_64", kernel_id="aki-1", root_device="/dev/sda1")


def test_ebs_registration_sends_the_pv_grub_request(rec: Recorder, good_image: Path) -> None:
    """EBS-backed: one snapshot upload, then RegisterImage with the region's PV-GRUB AKI (us-east-1: 1.05 hd0)."""
    out = register(_req(good_image, "pvbuild-ebs-one", ["us-east-1"], tags={"team": "images"},
                        description="test image"), clients=rec)
    assert len(out) == 1
    r = out[0]
    assert r.kernel_id == "aki-5c21674b" and r.aki_name == "pv-grub-hd0_1.05-x86_64.gz"
    [wire] = rec.ops("RegisterImage")
    assert wire["Name"] == "pvbuild-ebs-one"
    assert wire["KernelId"] == "aki-5c21674b"
    assert wire["Architecture"] == "x86_64"
    assert wire["VirtualizationType"] == "paravirtual"
    assert wire["RootDeviceName"] == "/dev/sda1"
    assert wire["BlockDeviceMapping.1.DeviceName"] == "/dev/sda1"
    assert wire["BlockDeviceMapping.1.Ebs.SnapshotId"] == r.snapshot_id
    assert str(wire["BlockDeviceMapping.1.Ebs.VolumeSize"]) == "1"
    assert wire["TagSpecification.1.ResourceType"] == "image"
    assert wire["TagSpecification.1.Tag.1.Key"] == "team"
    assert not [k for k in wire if k.startswith(("RamdiskId", "SriovNetSupport", "EnaSupport"))]
    assert len(rec.ops("StartSnapshot")) == 1 and not rec.ops("CopySnapshot")
    ec2 = rec("ec2", "us-east-1")
    [img] = ec2.describe_images(ImageIds=[r.ami_id])["Images"]
    assert img["Name"] == "pvbuild-ebs-one"
    blocks = rec("ebs", "us-east-1").list_snapshot_blocks(SnapshotId=r.snapshot_id)["Blocks"]
    assert blocks, "the snapshot holds the image's data blocks"


def test_many_regions_each_with_its_own_aki_one_upload(rec: Recorder, good_image: Path) -> None:
    """aws.regions: one snapshot upload, CopySnapshot to the others, each region's own AKI."""
    out = register(_req(good_image, "pvbuild-ebs-many", ["us-east-1", "eu-west-1", "ap-northeast-1"]), clients=rec)
    by = {r.region: r for r in out}
    assert [r.region for r in out] == ["us-east-1", "eu-west-1", "ap-northeast-1"]
    assert by["eu-west-1"].kernel_id == "aki-dc9ed9af" and by["ap-northeast-1"].kernel_id == "aki-7077ab11"
    assert len(rec.ops("StartSnapshot")) == 1
    for region in ("eu-west-1", "ap-northeast-1"):
        [copy] = rec.ops("CopySnapshot", region)
        assert copy["SourceRegion"] == "us-east-1" and copy["SourceSnapshotId"] == by["us-east-1"].snapshot_id
        [wire] = rec.ops("RegisterImage", region)
        assert wire["KernelId"] == by[region].kernel_id
        assert wire["BlockDeviceMapping.1.Ebs.SnapshotId"] == by[region].snapshot_id != by["us-east-1"].snapshot_id


def test_region_without_pvgrub_is_an_error_before_any_upload(rec: Recorder, good_image: Path) -> None:
    with pytest.raises(RegisterError) as e:
        register(_req(good_image, "pvbuild-nowhere", ["us-east-1", "eu-north-1", "me-south-1"]), clients=rec)
    assert "eu-north-1" in str(e.value) and "me-south-1" in str(e.value) and "nothing was uploaded" in str(e.value)
    assert not rec.ops("StartSnapshot") and not rec.ops("RegisterImage")


def test_image_that_does_not_boot_is_refused(rec: Recorder, hang_image: Path) -> None:
    with pytest.raises(RegisterRefused) as e:
        register(_req(hang_image, "pvbuild-hangs", ["us-east-1"]), clients=rec)
    assert e.value.exit_code == 1 and "nothing was uploaded" in str(e.value)
    assert not rec.ops("StartSnapshot") and not rec.ops("RegisterImage")


def test_last_boot_report_must_say_boots_and_match_the_image(rec: Recorder, good_image: Path,
                                                              tmp_path: Path) -> None:
    """The build's boot-report.json next to the image is the last word; a stale one (the image changed) is not."""
    img = tmp_path / "img.raw"
    shutil.copyfile(good_image, img)
    report = {"outcome": "hang-menu", "profile": {"version": "1.05", "variant": "hd0", "arch": "x86_64"},
              "findings": [{"code": "menu-no-timeout", "severity": "error", "message": "waits"}], "image": img.name}
    (tmp_path / "boot-report.json").write_text(json.dumps(report))
    with pytest.raises(RegisterRefused, match="menu-no-timeout"):
        register(_req(img, "pvbuild-report-bad", ["us-east-1"]), clients=rec)
    report.update(outcome="boots", findings=[])
    (tmp_path / "boot-report.json").write_text(json.dumps(report))
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  {img.name}\n")
    with pytest.raises(RegisterRefused, match="changed since"):
        register(_req(img, "pvbuild-report-stale", ["us-east-1"]), clients=rec)
    assert not rec.ops("StartSnapshot")


def test_profile_not_covered_is_checked_again(rec: Recorder, good_image: Path) -> None:
    """A profile no report covers (here i386: the AKI's arch) is checked again with the emulator under the AKI's
    own profile — and a 64-bit kernel does not boot on 32-bit PV-GRUB, so nothing is sent."""
    with pytest.raises(RegisterRefused, match=r"pv-grub-hd0_1\.05-i386\.gz"):
        register(_req(good_image, "pvbuild-i386", ["sa-east-1"], arch="i386"), clients=rec)


def test_existing_name_is_an_error_or_replaced(rec: Recorder, good_image: Path) -> None:
    first = register(_req(good_image, "pvbuild-same-name", ["us-east-1"]), clients=rec)[0]
    with pytest.raises(RegisterError) as e:
        register(_req(good_image, "pvbuild-same-name", ["us-east-1"]), clients=rec)
    assert first.ami_id in str(e.value) and "--replace" in str(e.value)
    second = register(_req(good_image, "pvbuild-same-name", ["us-east-1"], replace=True), clients=rec)[0]
    assert second.replaced == (first.ami_id,) and second.ami_id != first.ami_id
    assert [p["ImageId"] for p in rec.ops("DeregisterImage")] == [first.ami_id]
    names = rec("ec2", "us-east-1").describe_images(Owners=["self"], Filters=[
        {"Name": "name", "Values": ["pvbuild-same-name"]}])["Images"]
    assert [i["ImageId"] for i in names] == [second.ami_id]


def test_hd00_image_registers_whole_disk_with_hd00_aki(rec: Recorder, tmp_path: Path) -> None:
    """A partitioned image: hd00 AKI (the table has 1.03 hd00 in us-east-1), root device /dev/sda, and the
    emulator checks it under 1.03 hd00 — the AKI's profile — before anything is sent."""
    menu = boot_files()["/boot/grub/menu.lst"]
    assert isinstance(menu, bytes)
    img = tmp_path / "mbr.raw"
    src = mbr([Part(Fs.of(boot_files(menu.replace(b"root (hd0)", b"root (hd0,0)")), label="rootfs"))])
    shutil.copyfile(src, img)
    [r] = register(_req(img, "pvbuild-hd00", ["us-east-1"], variant="hd00"), clients=rec)
    assert r.kernel_id == "aki-b4aa75dd"
    [wire] = rec.ops("RegisterImage")
    assert wire["RootDeviceName"] == "/dev/sda" and wire["KernelId"] == "aki-b4aa75dd"


def test_existing_snapshot_is_registered_without_upload(rec: Recorder, good_image: Path) -> None:
    snap = register(_req(good_image, "pvbuild-snap-src", ["us-east-1"]), clients=rec)[0].snapshot_id
    rec.calls.clear()
    [r] = register(_req(good_image, "pvbuild-snap-reuse", ["us-east-1"], snapshot_id=snap,
                        ebs=EbsSettings(volume_size_gib=8, volume_type="gp3")), clients=rec)
    assert not rec.ops("StartSnapshot")
    [wire] = rec.ops("RegisterImage")
    assert wire["BlockDeviceMapping.1.Ebs.SnapshotId"] == snap
    assert str(wire["BlockDeviceMapping.1.Ebs.VolumeSize"]) == "8"
    assert wire["BlockDeviceMapping.1.Ebs.VolumeType"] == "gp3"
    assert r.snapshot_id == snap


def test_s3_backed_registration_bundles_per_region(rec: Recorder, good_image: Path, tmp_path: Path) -> None:
    """S3-backed: a bundle per region (its AKI in the manifest), uploaded to that region's bucket, registered
    with ImageLocation and the region's KernelId; no snapshot, no block device mapping."""
    from tests.test_aws_bundle import _identity

    user = _identity(tmp_path, "user")
    s3 = S3Settings(bucket="pvbuild-amis-{region}", user="123456789012", cert=user.cert, private_key=user.key,
                    prefix="images/v1")
    out = register(_req(good_image, "pvbuild-s3", ["us-east-1", "eu-west-1"], backing="s3", s3=s3), clients=rec)
    assert not rec.ops("StartSnapshot") and not rec.ops("CopySnapshot")
    for r, kernel in zip(out, ("aki-5c21674b", "aki-dc9ed9af"), strict=True):
        bucket = f"pvbuild-amis-{r.region}"
        assert r.image_location == f"{bucket}/images/v1/{good_image.name}.manifest.xml"
        [wire] = rec.ops("RegisterImage", r.region)
        assert wire["ImageLocation"] == r.image_location and wire["KernelId"] == kernel
        assert wire["Architecture"] == "x86_64" and wire["VirtualizationType"] == "paravirtual"
        assert not [k for k in wire if k.startswith(("BlockDeviceMapping", "RootDeviceName", "RamdiskId"))]
        body = rec("s3", r.region).get_object(Bucket=bucket, Key=f"images/v1/{good_image.name}.manifest.xml")
        manifest = body["Body"].read().decode()
        assert f"<kernel_id>{kernel}</kernel_id>" in manifest and "ramdisk" not in manifest
    assert not list(good_image.parent.glob(".bundle-*")), "the bundles' work folders are removed"


def test_bad_requests(good_image: Path, rec: Recorder) -> None:
    for req, words in ((_req(good_image, "x", ["us-east-1"]), "3-128"),
                       (_req(good_image, "pvbuild-ok", []), "no region"),
                       (_req(good_image, "pvbuild-ok", ["us-east-1", "us-east-1"]), "twice"),
                       (_req(good_image.with_name("missing.raw"), "pvbuild-ok", ["us-east-1"]), "no such file"),
                       (_req(good_image, "pvbuild-ok", ["us-east-1"], backing="s3"), "bucket"),
                       (_req(good_image, "pvbuild-ok", ["us-east-1"], ebs=EbsSettings(volume_type="io9")), "io9"),
                       (_req(good_image, "pvbuild-ok", ["us-east-1"], root_device="sda1"), "root device")):
        with pytest.raises(RegisterError, match=words):
            register(req, clients=rec)
    assert not rec.calls


def test_live_aki_lookup_prefers_what_ec2_says(endpoint: str, rec: Recorder, good_image: Path) -> None:
    """With live lookup, the region's own PV-GRUB images (seeded into moto as Amazon's) decide the AKI."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID]["us-west-2"]
    aki = Ami(backend, "aki-70cb0e10", name="pv-grub-hd0_1.05-x86_64.gz", owner_id=AMAZON, owner_alias="amazon",
              public=True, architecture="x86_64", image_type="kernel", virtualization_type="paravirtual",
              hypervisor="xen", region_name="us-west-2")
    backend.amis[aki.id] = aki
    [r] = register(_req(good_image, "pvbuild-live", ["us-west-2"], live_aki=True), clients=rec)
    assert r.kernel_id == "aki-70cb0e10"
    assert any(op == "DescribeImages" and p.get("Owner.1") == "amazon" for _, op, p in rec.calls)


def _cli(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "PVBUILD_EC2_ENDPOINT": endpoint, "PVBUILD_EBS_ENDPOINT": endpoint,
           "PVBUILD_S3_ENDPOINT": endpoint}
    return subprocess.run([sys.executable, "-m", "pvbuild", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, check=False)


def test_cli_register_exit_codes_and_json(endpoint: str, good_image: Path, hang_image: Path) -> None:
    out = _cli(endpoint, "register", str(good_image), "--name", "pvbuild-cli", "--region", "us-east-1",
               "--region", "eu-west-1", "--table", "--tag", "a=b", "--json")
    assert out.returncode == 0, out.stderr
    amis = json.loads(out.stdout)["amis"]
    assert [(a["region"], a["kernel_id"]) for a in amis] == [("us-east-1", "aki-5c21674b"),
                                                             ("eu-west-1", "aki-dc9ed9af")]
    assert all(a["ami_id"].startswith("ami-") for a in amis)
    again = _cli(endpoint, "register", str(good_image), "--name", "pvbuild-cli", "--region", "us-east-1", "--table")
    assert again.returncode == 2 and amis[0]["ami_id"] in again.stderr and "Traceback" not in again.stderr
    hang = _cli(endpoint, "register", str(hang_image), "--name", "pvbuild-cli-hang", "--region", "us-east-1",
                "--table")
    assert hang.returncode == 1 and "does not boot" in hang.stderr
    bad_tag = _cli(endpoint, "register", str(good_image), "--name", "pvbuild-x", "--region", "us-east-1", "--tag", "x")
    assert bad_tag.returncode == 2 and "KEY=VALUE" in bad_tag.stderr
    s3_missing = _cli(endpoint, "register", str(good_image), "--name", "pvbuild-x", "--region", "us-east-1",
                      "--s3-bucket", "b")
    assert s3_missing.returncode == 2 and "-u/--user" in s3_missing.stderr


# ---------------------------------------------------------------- instance upgrade-pvgrub

def _instance(endpoint: str, region: str, kernel: str | None, *, virt: str = "paravirtual",
              ami_id: str = "ami-0000000a") -> str:
    """A running instance whose AMI (seeded into moto's table: RegisterImage drops KernelId) names `kernel`."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    if ami_id not in backend.amis:
        ami = Ami(backend, ami_id, name=f"base-{ami_id}", owner_id=DEFAULT_ACCOUNT_ID, owner_alias=None,
                  public=False, architecture="x86_64", image_type="machine", virtualization_type=virt,
                  hypervisor="xen", region_name=region)
        ami.kernel_id = kernel
        backend.amis[ami_id] = ami
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
    iid: str = ec2.run_instances(ImageId=ami_id, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    inst = backend.get_instance(iid)
    inst.virtualization_type = virt
    return iid


def test_upgrade_pvgrub_stops_sets_kernel_starts(endpoint: str, rec: Recorder) -> None:
    """The Japanese guide: stop, wait, modify the kernel attribute to the latest PV-GRUB, start, wait."""
    iid = _instance(endpoint, "us-east-1", "aki-88aa75e1")  # PV-GRUB hd0 1.03
    ec2 = rec("ec2", "us-east-1")
    plan = plan_upgrade(ec2, iid, "us-east-1", live=False)
    assert plan.needed and plan.current_kernel == "aki-88aa75e1" and plan.target.aki_id == "aki-5c21674b"
    assert plan.steps[0] == f"stop {iid}" and plan.steps[-1] == f"wait until {iid} is running"
    upgrade(ec2, plan, wait_delay=1, wait_attempts=30)
    order = [op for _, op, _ in rec.calls if op in ("StopInstances", "ModifyInstanceAttribute", "StartInstances")]
    assert order == ["StopInstances", "ModifyInstanceAttribute", "StartInstances"]
    [mod] = rec.ops("ModifyInstanceAttribute")
    assert mod["Kernel.Value"] == "aki-5c21674b" and mod["InstanceId"] == iid
    # moto answers DescribeInstanceAttribute(kernel) under a key botocore does not parse: read its table.
    assert ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_instance(iid).kernel == "aki-5c21674b"
    state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"


def test_upgrade_pvgrub_dry_run_changes_nothing(endpoint: str) -> None:
    iid = _instance(endpoint, "us-east-1", "aki-88aa75e1")
    out = _cli(endpoint, "instance", "upgrade-pvgrub", iid, "--region", "us-east-1", "--table", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "would" in out.stdout and f"stop {iid}" in out.stdout and "aki-5c21674b" in out.stdout
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)
    state = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("running", "pending")
    js = _cli(endpoint, "instance", "upgrade-pvgrub", iid, "--region", "us-east-1", "--table", "--dry-run", "--json")
    assert json.loads(js.stdout)["target_kernel"] == "aki-5c21674b" and json.loads(js.stdout)["needed"] is True


def test_upgrade_pvgrub_refusals(endpoint: str, rec: Recorder) -> None:
    ec2 = rec("ec2", "us-east-1")
    latest = _instance(endpoint, "us-east-1", "aki-5c21674b", ami_id="ami-0000000b")
    plan = plan_upgrade(ec2, latest, "us-east-1", live=False)
    assert not plan.needed and plan.steps[0].startswith("nothing to do")
    upgrade(ec2, plan)
    assert not rec.ops("StopInstances")
    hvm = _instance(endpoint, "us-east-1", None, virt="hvm", ami_id="ami-0000000c")
    with pytest.raises(InstanceError, match="hvm"):
        plan_upgrade(ec2, hvm, "us-east-1", live=False)
    with pytest.raises(InstanceError, match=r"not found|InvalidInstanceID"):
        plan_upgrade(ec2, "i-0123456789abcdef0", "us-east-1", live=False)
    wrong_variant = _instance(endpoint, "us-east-1", "aki-b4aa75dd", ami_id="ami-0000000d")  # hd00 1.03
    with pytest.raises(InstanceError, match="hd00"):
        plan_upgrade(ec2, wrong_variant, "us-east-1", variant="hd0", live=False)
    out = _cli(endpoint, "instance", "upgrade-pvgrub", "i-0123456789abcdef0", "--region", "us-east-1", "--table")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_requests_are_plain_dataclasses() -> None:
    """Request is what the CLI and the recipe fill in; `replace` keeps it immutable-friendly."""
    r = Request(image=Path("x.raw"), name="abc", regions=["us-east-1"])
    assert replace(r, replace=True).replace is True and r.backing == "ebs" and r.live_aki is True


# ---------------------------------------------------------------- the recipe's aws section

def _plan_problems(tmp_path: Path, body: str) -> list[tuple[int, str, str]]:
    from pvbuild.plan import load_plan
    from pvbuild.recipe import RecipeError

    path = tmp_path / "r.yaml"
    path.write_text("name: t-aws\n" + body)
    with pytest.raises(RecipeError) as e:
        load_plan(path)
    return [(pr.where.line, pr.field, pr.message) for pr in e.value.problems]


@pytest.mark.parametrize(("body", "line", "field", "words"), [
    ("aws:\n  regions: [us-east-1, mars-1]\n", 2, "aws.regions[1]", "no PV-GRUB AKIs"),
    ("aws:\n  regions: []\n", 2, "aws.regions", "no region"),
    ("aws:\n  regions: [us-east-1]\n  backing: s3\n", 3, "aws.backing", "aws.bundle"),
    ("aws:\n  regions: [us-east-1, eu-west-1]\n  backing: s3\n  bundle:\n    bucket: amis\n    user: '123456789012'"
     "\n    cert: c.pem\n    private_key: k.pem\n", 5, "aws.bundle.bucket", "one region"),
    ("aws:\n  regions: [us-east-1]\n  backing: s3\n  bundle:\n    bucket: amis\n    user: '123456789012'"
     "\n    cert: nothere.pem\n    private_key: k.pem\n", 7, "aws.bundle.cert", "does not exist"),
    ("aws:\n  regions: [us-east-1]\n  ami_name: 'no'\n", 3, "aws.ami_name", "not a valid AMI name"),
    ("aws:\n  regions: [us-east-1]\n  bundle:\n    bucket: b\n    user: '123456789012'\n    cert: c.pem\n"
     "    private_key: k.pem\n", 3, "aws.bundle", "backing: s3"),
    ("aws:\n  regions: [us-east-1]\n  ramdisk_id: ari-1234\n", 3, "aws.ramdisk_id", "ARI"),
])
def test_recipe_aws_rules(tmp_path: Path, body: str, line: int, field: str, words: str) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    got = _plan_problems(tmp_path, body)
    match = [g for g in got if g[1] == field]
    assert match and any(words in m for _, _, m in match), got
    assert match[0][0] == line + 1


def test_recipe_aws_plan_and_request(tmp_path: Path, good_image: Path) -> None:
    """A valid aws section: the plan names each region's table AKI and the root device; the build's
    registration request is filled from it."""
    from pvbuild.aws.register import request_from_plan
    from pvbuild.plan import load_plan

    path = tmp_path / "r.yaml"
    path.write_text("name: t-aws\naws:\n  regions: [us-east-1, eu-west-1]\n  tags: {team: images}\n"
                    "  ebs: {volume_size: 4, volume_type: gp3}\n  aki: table\n")
    plan = load_plan(path)
    assert plan.aws is not None
    assert [(c.region, c.aki_id) for c in plan.aws.table_akis] == [("us-east-1", "aki-5c21674b"),
                                                                    ("eu-west-1", "aki-dc9ed9af")]
    assert plan.aws.root_device == "/dev/sda1" and plan.to_json()["aws"]["ami_name"] == "t-aws"
    req = request_from_plan(plan, good_image)
    assert req.regions == ("us-east-1", "eu-west-1") and req.tags == {"team": "images"}
    assert req.live_aki is False and req.ebs == EbsSettings(4, "gp3", True) and req.backing == "ebs"
