"""`pvbuild packer`: a Packer post-processor, run by Packer's `shell-local` post-processor after its `manifest`
post-processor.

Why through the manifest: Packer gives shell-local no variable naming the artifact; it exports PACKER_BUILD_NAME
and PACKER_BUILDER_TYPE and inherits PACKER_RUN_UUID. The manifest post-processor, chained before it, has just
appended the build's artifact (its files) to packer-manifest.json: the build whose `packer_run_uuid` is this run's
and whose `name` is this build's is the one to convert. Anything else in the manifest (earlier runs, other builds of
this run) is left alone.

pvbuild then converts the disk image (pvbuild.convert: qcow2 through qemu-img, never in place), checks it, registers
it when asked (pvbuild.aws.register: an EBS snapshot, or an S3 bundle per region), and appends its own artifacts
to a manifest in Packer's format: a `builds` entry with builder_type "pvbuild", the converted image and its boot
report as `files`, the AMIs (or the image) as `artifact_id`, the same `packer_run_uuid`. The manifest is rewritten
whole under a temporary name and renamed, under an flock, because Packer runs builds in parallel and each one's
shell-local may append at the same time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvbuild.aws.register import S3Settings
from pvbuild.build.run import Log
from pvbuild.convert import MenuOptions, convert, default_output
from pvbuild.errors import UsageError

MAX_MANIFEST = 64 * 1024 * 1024
BUILDER_TYPE = "pvbuild"
IMAGE_SUFFIXES = (".raw", ".img", ".qcow2", ".qcow", ".bin")


class PackerError(UsageError):
    """The manifest or the environment does not say which image to take (exit 2)."""


@dataclass(frozen=True)
class PackerRequest:
    manifest: Path
    options: MenuOptions
    output_manifest: Path | None = None  # default: `manifest`
    build_name: str | None = None  # default: $PACKER_BUILD_NAME
    run_uuid: str | None = None  # default: $PACKER_RUN_UUID
    image: Path | None = None  # when the artifact lists no file (null builder)
    output: Path | None = None
    register: bool = False
    regions: tuple[str, ...] = ()
    ami_name: str | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    replace: bool = False
    live_aki: bool = True
    s3: S3Settings | None = None  # S3-backed AMIs (a bundle per region) instead of an EBS snapshot


def read_manifest(path: Path) -> dict[str, Any]:
    """Packer's manifest, checked for the shape Packer writes ({"builds": [...], "last_run_uuid": ...})."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST + 1)
    except FileNotFoundError:
        raise PackerError(f"{path}: no such manifest — chain Packer's `manifest` post-processor before "
                          "shell-local (output = the file given to --manifest)") from None
    if len(raw) > MAX_MANIFEST:
        raise PackerError(f"{path}: larger than {MAX_MANIFEST} bytes; not a Packer manifest")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise PackerError(f"{path}: not JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("builds", []), list):
        raise PackerError(f"{path}: not a Packer manifest (no `builds` list)")
    doc.setdefault("builds", [])
    return doc


def _describe(builds: list[Any]) -> str:
    seen = []
    for b in builds:
        if isinstance(b, dict):
            seen.append(f"{b.get('name')!r} ({b.get('builder_type')}, run {b.get('packer_run_uuid')})")
    return "; ".join(seen) if seen else "no builds"


def pick_build(doc: dict[str, Any], name: str, run_uuid: str) -> dict[str, Any]:
    """The build of this run with this name (the last one, should Packer have written it twice)."""
    builds = doc["builds"]
    found = [b for b in builds if isinstance(b, dict) and b.get("packer_run_uuid") == run_uuid
             and b.get("name") == name and b.get("builder_type") != BUILDER_TYPE]
    if not found:
        raise PackerError(f"no build named {name!r} of run {run_uuid} in the manifest, which holds: "
                          f"{_describe(builds)} — is the `manifest` post-processor chained before shell-local "
                          "in the same post-processors block, writing the file given to --manifest?")
    return found[-1]


def image_of(build: dict[str, Any], req: PackerRequest, manifest: Path) -> Path:
    """The build's disk image: the one image file among its `files`, else custom_data.pvbuild_image, else
    --image."""
    names = [str(f.get("name")) for f in build.get("files") or [] if isinstance(f, dict) and f.get("name")]
    images = [n for n in names if n.lower().endswith(IMAGE_SUFFIXES)] or (names if len(names) == 1 else [])
    custom = build.get("custom_data") if isinstance(build.get("custom_data"), dict) else {}
    chosen: str | None = None
    if req.image is not None:
        chosen = str(req.image)
    elif len(images) == 1:
        chosen = images[0]
    elif isinstance(custom, dict) and isinstance(custom.get("pvbuild_image"), str):
        chosen = custom["pvbuild_image"]
    if chosen is None:
        listed = ", ".join(names) if names else "no files"
        raise PackerError(f"build {build.get('name')!r} ({build.get('builder_type')}) lists {listed}: cannot tell "
                          "which is the disk image — pass --image PATH (or set custom_data.pvbuild_image in the "
                          "manifest post-processor)")
    path = Path(chosen)
    if not path.is_absolute() and not path.exists() and (manifest.parent / path).exists():
        path = manifest.parent / path
    if not path.exists():
        raise PackerError(f"build {build.get('name')!r}: its image {chosen} does not exist (relative names are "
                          f"taken from the current folder, {Path.cwd()}, or the manifest's)")
    return path


def _locked(path: Path) -> AbstractContextManager[None]:
    """The manifest's lock file beside it (`.NAME.lock`)."""
    from pvbuild.build.workspace import file_lock

    return file_lock(path.with_name(f".{path.name}.lock"))


def append_build(path: Path, entry: dict[str, Any]) -> None:
    """Append `entry` to the manifest at `path` (created if missing), atomically and under a lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        doc = read_manifest(path) if path.exists() else {"builds": []}
        doc["builds"].append(entry)
        doc["last_run_uuid"] = entry["packer_run_uuid"]
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _env(value: str | None, var: str, flag: str) -> str:
    got = value or os.environ.get(var)
    if not got:
        raise PackerError(f"${var} is not set: run `pvbuild packer` from Packer's shell-local post-processor (it "
                          f"exports it), or pass {flag}")
    return got


def run_post_processor(req: PackerRequest, *, log: Log | None = None,
                       say: Callable[[str], None] = lambda _m: None) -> tuple[dict[str, Any], int]:
    """Convert, check (and register) this build's image; append pvbuild's build to the manifest.

    Returns the manifest entry and the exit code (0 boots, 1 does not: Packer then fails the build)."""
    log = log or Log()
    name = _env(req.build_name, "PACKER_BUILD_NAME", "--build-name")
    run_uuid = _env(req.run_uuid, "PACKER_RUN_UUID", "--run-uuid")
    if req.register and (not req.regions or not req.ami_name):
        raise PackerError("--register needs --region (repeatable) and --name")
    doc = read_manifest(req.manifest)
    build = pick_build(doc, name, run_uuid)
    image = image_of(build, req, req.manifest)
    output = req.output or default_output(image)
    report = output.with_name(f"{output.stem}.boot-report.json")
    say(f"{name}: converting {image} ({build.get('builder_type')} build of run {run_uuid})")
    result = convert(image, req.options, output=output, log=log, report_path=report)
    prof = result.report["profile"]
    boots = result.exit_code == 0
    say(f"{name}: {output} {'boots' if boots else 'does NOT boot'} under PV-GRUB {prof['version']} "
        f"{prof['variant']} {prof['arch']}")
    custom: dict[str, str] = {
        "source_image": str(image), "source_builder_type": str(build.get("builder_type")),
        "boots": "true" if boots else "false", "outcome": str(result.report["outcome"]),
        "pvgrub": f"{prof['version']} {prof['variant']} {prof['arch']}",
        "menu_lst": f"{result.analysis.boot.grub_device}{result.analysis.menu_path}",
        "kernel": result.analysis.usable[0].version if result.analysis.usable else "",
        "boot_report": str(report),
    }
    artifact = str(output)
    if req.register and boots:
        from pvbuild.aws.register import Request, register

        assert req.ami_name is not None
        registered = register(Request(image=output, name=req.ami_name, regions=req.regions, arch=prof["arch"],
                                      variant=prof["variant"],
                                      pvgrub_version=req.options.pvgrub_version if req.options.pvgrub_version
                                      != MenuOptions().pvgrub_version else None,
                                      description=req.description, tags=req.tags, replace=req.replace,
                                      live_aki=req.live_aki, report=report, backing="s3" if req.s3 else "ebs",
                                      s3=req.s3), say=say, progress=log.progress)
        artifact = ",".join(f"{r.region}:{r.ami_id}" for r in registered)
        custom["amis"] = artifact
        custom["kernel_ids"] = ",".join(f"{r.region}:{r.kernel_id}" for r in registered)
        if req.s3 is not None:
            custom["image_locations"] = ",".join(f"{r.region}:{r.image_location}" for r in registered)
        else:
            custom["snapshots"] = ",".join(f"{r.region}:{r.snapshot_id}" for r in registered)
    entry = {"name": name, "builder_type": BUILDER_TYPE, "build_time": int(time.time()),
             "files": [{"name": str(output), "size": output.stat().st_size},
                       {"name": str(report), "size": report.stat().st_size}],
             "artifact_id": artifact, "packer_run_uuid": run_uuid, "custom_data": custom}
    append_build(req.output_manifest or req.manifest, entry)
    return entry, result.exit_code
