"""Register a PV-GRUB AMI: EBS-backed (a snapshot) or S3-backed (a bundle), in one or many regions.

The seeds' last steps, done with boto3 from any machine:
- every region gets its own PV-GRUB AKI, chosen before anything is uploaded (a region without one is an error
  that names it, and nothing is sent anywhere);
- the image must boot under each chosen AKI's profile: the build's boot-report.json must say `boots` (and still
  describe this image), and a profile it does not cover is checked now with the emulator;
- RegisterImage always names Architecture (AWS defaults EBS images to i386), VirtualizationType paravirtual and
  the KernelId; never RamdiskId ("You must not specify an Amazon ramdisk image (ARI) when using a PV-GRUB AKI"),
  SriovNetSupport or EnaSupport (PV instances have neither);
- an AMI of the same name is an error that names it, unless `replace` (then it is deregistered first: AMI names
  are unique per region and account, so there is no way to register the new one beside it);
- EBS: the image is uploaded once as a snapshot (EBS direct APIs) and copied to the other regions with
  CopySnapshot; S3: the image is bundled per region (each region's EC2 certificate and AKI are in the manifest)
  and uploaded to that region's bucket.
Regions are registered in parallel; the result lists one AMI per region.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pvbuild.aws import aki as aki_mod
from pvbuild.aws.clients import ClientFactory, client
from pvbuild.errors import EXIT_CHECK_FAILED, PvbuildError, UsageError
from pvbuild.planmodel import Plan

Backing = Literal["ebs", "s3"]
VOLUME_TYPES = ("standard", "gp2", "gp3", "io1", "io2", "st1", "sc1")
# RegisterImage fields a PV-GRUB AMI must never carry.
FORBIDDEN_PARAMS = ("RamdiskId", "SriovNetSupport", "EnaSupport", "BootMode", "TpmSupport", "UefiData")
_AMI_NAME = re.compile(r"[A-Za-z0-9()\[\]./\-'@_ ]{3,128}")
GiB = 1024**3


class RegisterError(UsageError):
    """The registration cannot go ahead as asked (exit 2): bad name, region without AKI, existing AMI..."""


class RegisterRefused(PvbuildError):
    """The image does not boot under the AKI's profile (exit 1): nothing was uploaded or registered."""

    exit_code = EXIT_CHECK_FAILED


@dataclass(frozen=True)
class Target:
    """One region and the AKI it registers with."""

    region: str
    aki: aki_mod.Aki


@dataclass(frozen=True)
class S3Settings:
    """Where and how bundles are made and uploaded (S3-backed AMIs)."""

    bucket: str  # may contain {region}; required when registering in more than one region
    user: str  # 12-digit account number
    cert: Path
    private_key: Path
    prefix: str = ""
    ec2_cert: Path | None = None  # default: the certificate pvbuild ships for the region
    work_dir: Path | None = None  # default: a temporary folder next to the image

    def bucket_for(self, region: str) -> str:
        return self.bucket.replace("{region}", region)


@dataclass(frozen=True)
class EbsSettings:
    volume_size_gib: int | None = None  # default: the image size rounded up to whole GiB
    volume_type: str = "gp2"
    delete_on_termination: bool = True


@dataclass(frozen=True)
class Registered:
    region: str
    ami_id: str
    name: str
    kernel_id: str
    aki_name: str
    snapshot_id: str | None = None
    image_location: str | None = None
    replaced: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "ami_id": self.ami_id, "name": self.name, "kernel_id": self.kernel_id,
                "aki_name": self.aki_name, "snapshot_id": self.snapshot_id, "image_location": self.image_location,
                "replaced": list(self.replaced), "notes": list(self.notes)}


@dataclass
class Request:
    """Everything `register` needs; the CLI and the recipe's `aws` section both fill one in."""

    image: Path
    name: str
    regions: Sequence[str]
    arch: str = "x86_64"
    variant: str = "hd0"
    pvgrub_version: str | None = None  # None: the latest the region has
    backing: Backing = "ebs"
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    root_device: str | None = None  # default: /dev/sda1 (hd0, partitionless) or /dev/sda (hd00, partitioned)
    replace: bool = False
    live_aki: bool = True
    report: Path | None = None  # default: boot-report.json next to the image, when it describes this image
    ebs: EbsSettings = field(default_factory=EbsSettings)
    s3: S3Settings | None = None
    snapshot_id: str | None = None  # an existing snapshot (in regions[0]) instead of uploading the image


# ---------------------------------------------------------------- inputs

def validate(req: Request) -> None:
    """Everything that can be wrong before talking to AWS, each with what to do."""
    if not _AMI_NAME.fullmatch(req.name):
        raise RegisterError(f"AMI name {req.name!r}: 3-128 characters of letters, digits and ( ) [ ] . / - ' @ _ "
                            "or space — choose another --name")
    if not req.regions:
        raise RegisterError("no region given — pass --region (repeatable) or set aws.regions in the recipe")
    if len(set(req.regions)) != len(req.regions):
        raise RegisterError(f"regions {list(req.regions)}: a region is listed twice")
    if req.snapshot_id is None and not req.image.is_file():
        raise RegisterError(f"image {req.image}: no such file")
    if req.backing == "s3":
        if req.s3 is None:
            raise RegisterError("S3-backed registration needs a bucket, account number, certificate and key "
                                "(--s3-bucket, -u, -c, -k; or aws.bundle in the recipe)")
        if len(req.regions) > 1 and "{region}" not in req.s3.bucket:
            raise RegisterError(f"bucket {req.s3.bucket!r} for {len(req.regions)} regions: a bucket lives in one "
                                "region — put {region} in its name (e.g. my-amis-{region})")
        if req.snapshot_id is not None:
            raise RegisterError("--snapshot-id registers an EBS-backed AMI; it cannot be used with S3 backing")
    if req.ebs.volume_type not in VOLUME_TYPES:
        raise RegisterError(f"volume type {req.ebs.volume_type!r}: choose one of {', '.join(VOLUME_TYPES)}")
    if req.ebs.volume_size_gib is not None and req.snapshot_id is None:
        need = -(-req.image.stat().st_size // GiB)
        if req.ebs.volume_size_gib < need:
            raise RegisterError(f"volume size {req.ebs.volume_size_gib} GiB is smaller than the image ({need} GiB "
                                "rounded up) — give at least that, or leave it out")
    if req.root_device is not None and not re.fullmatch(r"/dev/(sd|xvd)[a-z]\d*", req.root_device):
        raise RegisterError(f"root device {req.root_device!r}: expected /dev/sda1 (partitionless, hd0) or /dev/sda "
                            "(partitioned, hd00)")


def resolve_targets(req: Request, clients: ClientFactory = client) -> list[Target]:
    """Each region's AKI, all before any upload; every region without a matching AKI is named in one error."""
    targets: list[Target] = []
    problems: list[str] = []
    for region in req.regions:
        try:
            ec2 = clients("ec2", region) if req.live_aki else None
            chosen = aki_mod.select(region, req.arch, req.variant, req.pvgrub_version, live=req.live_aki,
                                    ec2_client=ec2)
        except aki_mod.AkiError as e:
            problems.append(f"{region}: {str(e).splitlines()[0]}")
            continue
        targets.append(Target(region, chosen))
    if problems:
        raise RegisterError("no PV-GRUB AKI to register with (nothing was uploaded):\n  " + "\n  ".join(problems)
                            + "\nregions with PV-GRUB AKIs:\n  " + aki_mod.describe_table().replace("\n", "\n  "))
    return targets


def _report_for(req: Request) -> Path | None:
    if req.report is not None:
        if not req.report.is_file():
            raise RegisterError(f"boot report {req.report}: no such file")
        return req.report
    candidate = req.image.parent / "boot-report.json"
    if candidate.is_file():
        try:
            data = json.loads(candidate.read_text())
        except (OSError, ValueError):
            return None
        if isinstance(data, dict) and data.get("image") == req.image.name:
            return candidate
    return None


def require_boots(req: Request, targets: Sequence[Target]) -> list[str]:
    """Refuse (RegisterRefused, exit 1) unless the image boots under every target AKI's profile."""
    from pvbuild.build.pipeline import sha256_file
    from pvbuild.pvgrub.check import check_image

    notes: list[str] = []
    covered: set[tuple[str, str, str]] = set()
    report = _report_for(req)
    if report is not None:
        try:
            data = json.loads(report.read_text())
            outcome = data["outcome"]
            prof = data["profile"]
            key = (prof["version"], prof["variant"], prof["arch"])
            errors = [f for f in data.get("findings", []) if f.get("severity") == "error"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RegisterError(f"boot report {report}: not a pvbuild boot report ({e}) — run `pvbuild check "
                                f"--json IMAGE > boot-report.json` or rebuild") from e
        if outcome != "boots" or errors:
            why = ", ".join(f"{f.get('code')}: {f.get('message')}" for f in errors[:3]) or outcome
            raise RegisterRefused(f"{req.image} does not boot under PV-GRUB {key[0]} {key[1]} {key[2]} (boot report "
                                  f"{report}: {why}); nothing was uploaded — fix the image (pvbuild check shows why)")
        real = data.get("real_boot")
        if isinstance(real, dict) and real.get("reached_userspace") is False:
            raise RegisterRefused(f"{req.image}: the real Xen boot in {report} did not reach userspace "
                                  f"({real.get('failure')}); nothing was uploaded")
        sums = report.parent / "SHA256SUMS"
        if sums.is_file() and report.parent == req.image.parent:
            want = next((line.split()[0] for line in sums.read_text().splitlines()
                         if line.split()[1:] == [req.image.name]), None)
            if want is not None and want != sha256_file(req.image):
                raise RegisterRefused(f"{req.image} changed since {report} was written (its sha256 is not the one in "
                                      f"{sums}); run `pvbuild check` on it again or rebuild")
        covered.add(key)
        notes.append(f"boot report {report}: boots under PV-GRUB {' '.join(key)}")
    for t in targets:
        profile = aki_mod.profile_of(t.aki)
        key = (profile.version, profile.variant, profile.arch)
        if key in covered:
            continue
        result = check_image(req.image, profile)
        if not result.boots:
            first = next((f for f in result.findings if str(f.severity) == "error"), None)
            why = f"{first.code}: {first.message}" if first else str(result.run.outcome)
            raise RegisterRefused(f"{req.image} does not boot under {t.aki.name} ({t.aki.aki_id} in {t.region}): "
                                  f"{why}; nothing was uploaded — `pvbuild check --pvgrub {profile.version} --variant "
                                  f"{profile.variant} --arch {profile.arch} {req.image}` shows why")
        covered.add(key)
        notes.append(f"checked now under PV-GRUB {' '.join(key)} ({t.aki.name}): boots")
    return notes


# ---------------------------------------------------------------- RegisterImage

def root_device_for(variant: str) -> str:
    """EC2 attaches a partitionless root as sda1 (the guest's xvda1); a partitioned one as the whole disk sda."""
    return "/dev/sda1" if variant == "hd0" else "/dev/sda"


def register_params(*, name: str, description: str, arch: str, kernel_id: str, root_device: str,
                    snapshot_id: str | None = None, volume_size_gib: int | None = None, volume_type: str = "gp2",
                    delete_on_termination: bool = True, image_location: str | None = None,
                    tags: dict[str, str] | None = None) -> dict[str, Any]:
    """The RegisterImage parameters of a PV-GRUB AMI (exactly one of snapshot_id / image_location)."""
    if (snapshot_id is None) == (image_location is None):
        raise ValueError("register_params: give a snapshot (EBS) or an image location (S3), not both or neither")
    params: dict[str, Any] = {"Name": name, "Architecture": arch, "VirtualizationType": "paravirtual",
                              "KernelId": kernel_id}
    if description:
        params["Description"] = description
    if snapshot_id is not None:
        ebs: dict[str, Any] = {"SnapshotId": snapshot_id, "DeleteOnTermination": delete_on_termination,
                               "VolumeType": volume_type}
        if volume_size_gib is not None:
            ebs["VolumeSize"] = volume_size_gib
        params["RootDeviceName"] = root_device
        params["BlockDeviceMappings"] = [{"DeviceName": root_device, "Ebs": ebs}]
    else:
        params["ImageLocation"] = image_location
    if tags:
        params["TagSpecifications"] = [{"ResourceType": "image",
                                        "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}]
    bad = [k for k in FORBIDDEN_PARAMS if k in params]
    assert not bad, f"PV-GRUB AMIs never carry {bad}"
    return params


def existing_images(ec2: Any, name: str) -> list[dict[str, Any]]:
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}]).get("Images", [])
    return [i for i in images if i.get("Name") == name]


def _client_error(region: str, action: str, e: Exception) -> RegisterError:
    err = getattr(e, "response", {}).get("Error", {})
    return RegisterError(f"{region}: {action} failed: {err.get('Code', type(e).__name__)}: {err.get('Message', e)}")


# ---------------------------------------------------------------- the whole job

Progress = Callable[[str, float | None], AbstractContextManager[Callable[[float], None]]]


def register(req: Request, *, clients: ClientFactory = client, say: Callable[[str], None] = lambda _m: None,
             progress: Progress | None = None) -> list[Registered]:
    """Check, upload and register `req.image` in every region; one Registered per region, in region order.

    `progress(description, total)` (e.g. build.run.Log.progress) shows the snapshot upload, in blocks."""
    from botocore.exceptions import ClientError

    validate(req)
    targets = resolve_targets(req, clients)
    for t in targets:
        say(f"{t.region}: {t.aki.aki_id} ({t.aki.name}, from the {t.aki.source})")
    checked: list[str] = []
    if req.snapshot_id is None:
        checked = require_boots(req, targets)
        for n in checked:
            say(n)
    # Name clashes first, in every region: nothing is uploaded if one would fail.
    clashes: dict[str, list[str]] = {}
    for t in targets:
        try:
            found = existing_images(clients("ec2", t.region), req.name)
        except ClientError as e:
            raise _client_error(t.region, "DescribeImages", e) from e
        if found:
            clashes[t.region] = [i["ImageId"] for i in found]
    if clashes and not req.replace:
        listed = "; ".join(f"{r}: {', '.join(ids)}" for r, ids in clashes.items())
        raise RegisterError(f"an AMI named {req.name!r} already exists ({listed}) — choose another name, or pass "
                            "--replace (aws.replace: true) to deregister it and register the new image")
    root_device = req.root_device or root_device_for(req.variant)
    base_snapshot: str | None = req.snapshot_id
    size_gib: int | None = req.ebs.volume_size_gib
    if req.backing == "ebs" and base_snapshot is None:
        from pvbuild.aws.snapshot import data_blocks, snapshot_image

        first = targets[0].region
        say(f"{first}: uploading {req.image} as an EBS snapshot")
        bar = progress or (lambda _d, _t: nullcontext(lambda _n: None))
        with bar(f"{first}: EBS blocks", sum(1 for _ in data_blocks(req.image))) as advance:
            snap = snapshot_image(clients("ebs", first), req.image, description=f"{req.name}: {req.image.name}",
                                  tags=req.tags, ec2=clients("ec2", first), progress=lambda _n: advance(1))
        base_snapshot = snap.snapshot_id
        say(f"{first}: {snap.snapshot_id}: {snap.blocks_sent} blocks sent, {snap.blocks_skipped} empty skipped")
        if size_gib is None:
            size_gib = snap.volume_size_gib

    def one(t: Target) -> Registered:
        ec2 = clients("ec2", t.region)
        notes: list[str] = []
        snapshot_id: str | None = None
        location: str | None = None
        try:
            if req.backing == "ebs":
                assert base_snapshot is not None
                snapshot_id = base_snapshot
                if t.region != targets[0].region:
                    snapshot_id = ec2.copy_snapshot(SourceRegion=targets[0].region, SourceSnapshotId=base_snapshot,
                                                    Description=f"{req.name}: copy of {base_snapshot} from "
                                                                f"{targets[0].region}")["SnapshotId"]
                    ec2.get_waiter("snapshot_completed").wait(SnapshotIds=[snapshot_id],
                                                              WaiterConfig={"Delay": 10, "MaxAttempts": 360})
                    notes.append(f"snapshot {base_snapshot} copied from {targets[0].region} as {snapshot_id}")
            else:
                location = _bundle_and_upload(req, t, clients)
                notes.append(f"bundle uploaded to {location}")
            replaced = tuple(clashes.get(t.region, ()))
            for old in replaced:
                ec2.deregister_image(ImageId=old)
                notes.append(f"deregistered {old} (same name); its snapshots are kept")
            params = register_params(name=req.name, description=req.description, arch=req.arch,
                                     kernel_id=t.aki.aki_id, root_device=root_device, snapshot_id=snapshot_id,
                                     volume_size_gib=size_gib, volume_type=req.ebs.volume_type,
                                     delete_on_termination=req.ebs.delete_on_termination, image_location=location,
                                     tags=req.tags)
            ami_id = ec2.register_image(**params)["ImageId"]
        except ClientError as e:
            raise _client_error(t.region, "registration", e) from e
        return Registered(t.region, ami_id, req.name, t.aki.aki_id, t.aki.name, snapshot_id, location, replaced,
                          tuple(notes))

    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=min(len(targets), 8), thread_name_prefix="register") as pool:
        return list(pool.map(one, targets))


def _bundle_and_upload(req: Request, t: Target, clients: ClientFactory) -> str:
    """Bundle the image for this region (its EC2 certificate, its AKI) and upload it; returns the ImageLocation."""
    import shutil
    import tempfile

    from pvbuild.aws.bundle import bundle
    from pvbuild.aws.certs import ec2_cert_for
    from pvbuild.aws.upload import upload_bundle

    s3 = req.s3
    assert s3 is not None
    parent = s3.work_dir or req.image.parent
    work = Path(tempfile.mkdtemp(prefix=f".bundle-{t.region}-", dir=parent))
    try:
        made = bundle(req.image, user_cert=s3.cert, user_key=s3.private_key,
                      ec2_cert=s3.ec2_cert or ec2_cert_for(t.region), user=s3.user, arch=req.arch,
                      destination=work, prefix=req.image.name, kernel_id=t.aki.aki_id)
        up = upload_bundle(clients("s3", t.region), made.manifest, s3.bucket_for(t.region), s3.prefix,
                           region=t.region)
        return str(up.image_location)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def request_from_plan(plan: Plan, image: Path) -> Request:
    """The registration a recipe's `aws` section asks for, for the image its build produced."""
    a = plan.aws
    if a is None:
        raise RegisterError(f"{plan.recipe} has no aws section: nothing to register")
    s3 = None
    if a.bundle is not None:
        b = a.bundle
        s3 = S3Settings(bucket=b.bucket, user=b.user, cert=Path(b.cert), private_key=Path(b.private_key),
                        prefix=b.prefix, ec2_cert=Path(b.ec2_cert) if b.ec2_cert else None)
    return Request(image=image, name=a.ami_name, regions=a.regions, arch=plan.pvgrub.arch,
                   variant=plan.pvgrub.variant, backing="s3" if a.backing == "s3" else "ebs",
                   description=a.description, tags=dict(a.tags), root_device=a.root_device, replace=a.replace,
                   live_aki=a.aki_lookup == "live",
                   ebs=EbsSettings(a.volume_size_gib, a.volume_type, a.delete_on_termination), s3=s3)


def ship_built(plan: Plan, image: Path, *, clients: ClientFactory = client,
               say: Callable[[str], None] = lambda _m: None, progress: Progress | None = None) -> list[Registered]:
    """The build's last stage: register the image as its recipe's `aws` section says, write `amis.json` next to
    it (written whole, under a temporary name first) and return the AMIs."""
    import os
    import tempfile

    registered = register(request_from_plan(plan, image), clients=clients, say=say, progress=progress)
    fd, tmp = tempfile.mkstemp(prefix=".amis-", suffix=".json", dir=image.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"amis": [r.to_json() for r in registered]}, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, image.parent / "amis.json")
    return registered
