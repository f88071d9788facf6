"""The `pvbuild` command line: subcommands only, no logic."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pvbuild import __version__
from pvbuild.errors import EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_USAGE, PvbuildError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"pvbuild: error: {message}\n")
        sys.exit(EXIT_USAGE)


def _s3_flags(p: argparse.ArgumentParser) -> None:
    """S3 backing for `register` and `packer --register`: the bucket and what the bundle is made with."""
    p.add_argument("--s3-bucket", default=None, help="register S3-backed AMIs from a bundle in this bucket "
                                                     "({region} is replaced by each region)")
    p.add_argument("--s3-prefix", default="")
    p.add_argument("-u", "--user", default=None, help="S3 backing: your 12-digit AWS account number")
    p.add_argument("-c", "--cert", default=None, help="S3 backing: your X.509 certificate (PEM)")
    p.add_argument("-k", "--privatekey", default=None, help="S3 backing: your private key (PEM)")
    p.add_argument("--ec2cert", default=None, help="S3 backing: EC2's certificate (default: pvbuild's, per region)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pvbuild", description="Build, prove and ship Linux images that boot through PV-GRUB.")
    p.add_argument("--version", action="version", version=f"pvbuild {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    c = sub.add_parser("check", help="run the PV-GRUB emulator on a raw disk image",
                       description="Say exactly what PV-GRUB would boot from IMAGE, and why not.")
    c.add_argument("image", metavar="IMAGE", help="raw disk image (partitionless, MBR or GPT)")
    c.add_argument("--pvgrub", default="1.05", choices=["1.03", "1.04", "1.05"], help="PV-GRUB version (1.05)")
    c.add_argument("--variant", default="hd0", choices=["hd0", "hd00"], help="AKI variant (hd0)")
    c.add_argument("--arch", default="x86_64", choices=["x86_64", "i386"], help="PV-GRUB architecture (x86_64)")
    c.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    df = sub.add_parser("diff", help="explain two images' differences file by file (read like the emulator reads)",
                        description="Compare two raw disk images through the PV-GRUB emulator's filesystem readers: "
                                    "layout, added/removed/changed files, packages, menu.lst, kernels and what "
                                    "PV-GRUB boots. Exit 0 identical, 1 different, 2 unreadable input.")
    df.add_argument("a", metavar="A", help="raw disk image (partitionless, MBR or GPT)")
    df.add_argument("b", metavar="B", help="raw disk image to compare with A")
    df.add_argument("--json", action="store_true", help="print the differences as JSON")
    df.add_argument("--all", action="store_true", help="compare mtimes too (reproducible builds clamp them)")
    df.add_argument("--pvgrub", default="1.05", choices=["1.03", "1.04", "1.05"], help="PV-GRUB version (1.05)")
    df.add_argument("--variant", default="hd0", choices=["hd0", "hd00"], help="AKI variant (hd0)")
    df.add_argument("--arch", default="x86_64", choices=["x86_64", "i386"], help="PV-GRUB architecture (x86_64)")
    bo = sub.add_parser("boot", help="really boot a raw image as a Xen PV guest (QEMU, Xen, GRUB 2 legacy loader)",
                        description="Boot IMAGE read-only (through a copy-on-write overlay) as a Xen PV guest on a "
                                    "cached Xen test host under QEMU, and report whether it reached userspace.")
    bo.add_argument("image", metavar="IMAGE", nargs="?", help="raw disk image (partitionless, MBR or GPT)")
    bo.add_argument("--variant", default=None, choices=["hd0", "hd00"],
                    help="loader: hd0 reads (hd0)/boot/grub/menu.lst, hd00 (hd0,0)/boot/grub/menu.lst or "
                         "(hd0,0)/grub/menu.lst (default: hd00 for an image with a partition table, else hd0)")
    bo.add_argument("--arch", default="x86_64", choices=["x86_64"], help="guest architecture (x86_64)")
    bo.add_argument("--timeout", type=float, default=300.0, metavar="S",
                    help="seconds the guest gets to reach userspace (300)")
    bo.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    bo.add_argument("--prepare", action="store_true",
                    help="build the Xen test host and save a booted dom0 ahead of time (IMAGE optional)")
    bo.add_argument("--cold", action="store_true", help="boot dom0 from scratch instead of restoring the saved one")
    bo.add_argument("-v", "--verbose", action="store_true", help="show the commands run")
    b = sub.add_parser("build", help="build the image a recipe describes (also: pvbuild RECIPE.yaml)",
                       description="Build, check and write the image a recipe describes.")
    b.add_argument("recipe", metavar="RECIPE", help="recipe file (YAML)")
    b.add_argument("-v", "--verbose", action="store_true", help="show the commands run")
    b.add_argument("--no-ship", action="store_true", help="do not register the image even if the recipe has aws")
    b.add_argument("--boot", action="store_true", help="after the emulator check, boot the image as a Xen PV guest "
                                                       "(pvbuild boot); fail when the two disagree")
    b.add_argument("--json", action="store_true", help="print a summary (image, sha256, verdict, AMIs) as JSON")
    b.add_argument("--locked", action="store_true", help="install exactly the packages of RECIPE.lock (fails, "
                                                         "listing the differences, when the mirror lost one)")
    lk = sub.add_parser("lock", help="pin every package of a recipe's image in RECIPE.lock",
                        description="Bootstrap the recipe (or reuse its cached bootstrap) and write RECIPE.lock: "
                                    "every installed package with its version, suite and the sha256 the mirror's "
                                    "signed index gives it, the bootstrap inputs and SOURCE_DATE_EPOCH.")
    lk.add_argument("recipe", metavar="RECIPE")
    lk.add_argument("--refresh", action="store_true", help="bootstrap again instead of using the cached rootfs")
    lk.add_argument("--json", action="store_true", help="print a summary as JSON")
    pl = sub.add_parser("plan", help="print every decision for a recipe; writes nothing, needs no root",
                        description="Validate a recipe and print the resolved plan, menu.lst included.")
    pl.add_argument("recipe", metavar="RECIPE")
    pl.add_argument("--json", action="store_true", help="print the plan as JSON")
    m = sub.add_parser("menu", help="print the menu.lst a recipe produces")
    m.add_argument("recipe", metavar="RECIPE")
    sub.add_parser("schema", help="print the recipe JSON Schema (for editors)")
    a = sub.add_parser("aki", help="the PV-GRUB AKI for a region and architecture",
                       description="Pick the PV-GRUB AKI: the embedded table (every AKI in Amazon's guides), or a "
                                   "live describe-images lookup with --live (falls back to the table).")
    a.add_argument("--region", required=True)
    a.add_argument("--arch", default="x86_64", choices=["x86_64", "i386"])
    a.add_argument("--variant", default="hd0", choices=["hd0", "hd00"])
    a.add_argument("--version", default=None, help="PV-GRUB version (default: the latest)")
    a.add_argument("--live", action="store_true", help="ask EC2 (boto3's credential chain)")
    a.add_argument("--json", action="store_true")
    bu = sub.add_parser("bundle", help="bundle an image in the ec2-bundle-image format",
                        description="Bundle IMAGE exactly as ec2-bundle-image does (tar, gzip, AES-128-CBC, 10 MiB "
                                    "parts, signed manifest v2007-10-10); never with a ramdisk.")
    bu.add_argument("image", metavar="IMAGE")
    bu.add_argument("-c", "--cert", required=True, help="your X.509 certificate (PEM)")
    bu.add_argument("-k", "--privatekey", required=True, help="your private key (PEM)")
    bu.add_argument("-u", "--user", required=True, help="your 12-digit AWS account number")
    bu.add_argument("-r", "--arch", default="x86_64", choices=["x86_64", "i386"])
    bu.add_argument("-d", "--destination", default=".", help="folder for the parts and manifest")
    bu.add_argument("-p", "--prefix", default=None, help="file name prefix (default: the image's name)")
    bu.add_argument("--kernel", default=None, help="the PV-GRUB AKI to record (see `pvbuild aki`)")
    bu.add_argument("--region", default="us-east-1",
                    help="the region the bundle is for: picks EC2's shipped certificate (us-east-1)")
    bu.add_argument("--ec2cert", default=None,
                    help="EC2's certificate (PEM) to use instead of the shipped one for --region")
    bu.add_argument("-B", "--block-device-mapping", default=None,
                    help="virtual=device pairs, comma separated (default ami=sda1,root=/dev/sda1)")
    bu.add_argument("--json", action="store_true")
    un = sub.add_parser("unbundle", help="reverse `bundle`, verifying every digest")
    un.add_argument("manifest", metavar="MANIFEST")
    un.add_argument("--user-key", required=True, help="the private key the bundle was made for")
    un.add_argument("--user-cert", default=None, help="verify the manifest signature with this certificate")
    un.add_argument("-o", "--destination", default=".", help="folder for the image")
    up = sub.add_parser("upload", help="upload a bundle to S3 as ec2-upload-bundle does; prints the ImageLocation",
                        description="Upload every part, then the manifest, to s3://BUCKET/PREFIX/ with the "
                                    "aws-exec-read ACL (bucket created if missing, with ACLs allowed); parallel, "
                                    "retried, Content-MD5 on every PUT. Prints bucket/prefix/NAME.manifest.xml.")
    up.add_argument("manifest", metavar="MANIFEST")
    up.add_argument("--bucket", required=True)
    up.add_argument("--prefix", default="", help="key prefix (folder) in the bucket")
    up.add_argument("--region", required=True, help="the bucket's and the AMI's region")
    up.add_argument("--no-create-bucket", action="store_true", help="fail if the bucket does not exist")
    up.add_argument("--json", action="store_true")
    sn = sub.add_parser("snapshot", help="upload an image as an EBS snapshot (EBS direct APIs)",
                        description="Upload IMAGE as a new EBS snapshot: only 512 KiB blocks holding data are sent.")
    sn.add_argument("image", metavar="IMAGE")
    sn.add_argument("--region", required=True)
    sn.add_argument("--description", default="")
    sn.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    sn.add_argument("--no-wait", action="store_true", help="do not wait for EC2 to call it completed")
    sn.add_argument("--json", action="store_true")
    ami = sub.add_parser("ami", help="AMI checks").add_subparsers(dest="ami_command", metavar="ACTION",
                                                                  parser_class=_Parser, required=True)
    v = ami.add_parser("verify", help="is the AMI's kernel the latest matching PV-GRUB AKI?",
                       description="The Japanese guide's check: the AMI's KernelId is a PV-GRUB AKI (its image name "
                                   "starts with pv-grub) of the AMI's arch and variant, and the latest in the region.")
    v.add_argument("ami_id", metavar="AMI_ID")
    v.add_argument("--region", required=True)
    v.add_argument("--variant", choices=["hd0", "hd00"], default=None,
                   help="the variant the image needs (default: accept the kernel's own)")
    v.add_argument("--json", action="store_true")
    r = sub.add_parser("register", help="register IMAGE as a PV-GRUB AMI in one or more regions",
                       description="Check IMAGE under each region's PV-GRUB AKI, upload it (EBS snapshot, or an S3 "
                                   "bundle with --s3-bucket) and register a paravirtual AMI with that AKI.")
    r.add_argument("image", metavar="IMAGE", help="raw disk image (with --snapshot-id: only checked, not sent)")
    r.add_argument("--name", required=True, help="AMI name (unique per region)")
    r.add_argument("--region", action="append", required=True, dest="regions", metavar="REGION",
                   help="repeat for several regions; each gets its own AKI")
    r.add_argument("--arch", default="x86_64", choices=["x86_64", "i386"])
    r.add_argument("--variant", default="hd0", choices=["hd0", "hd00"],
                   help="hd0 for a partitionless image, hd00 for a partitioned one")
    r.add_argument("--pvgrub", default=None, help="PV-GRUB version (default: the latest in each region)")
    r.add_argument("--table", action="store_true", help="pick AKIs from pvbuild's table only, without asking EC2")
    r.add_argument("--description", default="")
    r.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--replace", action="store_true", help="deregister an AMI of the same name first")
    r.add_argument("--report", default=None, help="boot report to trust (default: boot-report.json next to IMAGE)")
    r.add_argument("--root-device", default=None, help="default: /dev/sda1 (hd0) or /dev/sda (hd00)")
    r.add_argument("--snapshot-id", default=None, help="register this EBS snapshot (in the first region) instead "
                                                       "of uploading IMAGE")
    r.add_argument("--volume-size", type=int, default=None, help="root volume GiB (default: the image's size)")
    r.add_argument("--volume-type", default="gp2")
    r.add_argument("--keep-volume", action="store_true", help="keep the root volume when the instance ends")
    _s3_flags(r)
    r.add_argument("--json", action="store_true")
    ins = sub.add_parser("instance", help="instance operations").add_subparsers(
        dest="instance_command", metavar="ACTION", parser_class=_Parser, required=True)
    up = ins.add_parser("upgrade-pvgrub", help="move a PV instance to the latest PV-GRUB AKI",
                        description="The Japanese guide's procedure: stop the instance, wait, set its kernel to the "
                                    "latest PV-GRUB AKI of its arch and variant, start it, wait.")
    up.add_argument("instance_id", metavar="INSTANCE_ID")
    up.add_argument("--region", required=True)
    up.add_argument("--variant", choices=["hd0", "hd00"], default=None, help="default: the instance's current one")
    up.add_argument("--version", default=None, help="PV-GRUB version (default: the latest)")
    up.add_argument("--table", action="store_true", help="pick the AKI from pvbuild's table only")
    up.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    up.add_argument("--json", action="store_true")
    cv = sub.add_parser("convert", help="make an image built elsewhere PV-GRUB-ready (menu.lst, fixes), then check it",
                        description="Find the root and /boot filesystems and the kernels of IMAGE, write "
                                    "/boot/grub/menu.lst, fix what PV-GRUB cannot read when that is safe (ext4 "
                                    "64bit, holes, boot -> . on a separate /boot) without mounting anything, and "
                                    "check the result. IMAGE is never changed unless --in-place.")
    cv.add_argument("image", metavar="IMAGE", help="raw disk image (or qcow2, converted to raw) or block device")
    cv.add_argument("-o", "--output", default=None, help="the converted image (default: IMAGE's stem + .pvgrub.raw)")
    cv.add_argument("--in-place", action="store_true", help="change IMAGE itself (not atomic)")
    _convert_flags(cv)
    cv.add_argument("--json", action="store_true", help="print the boot report (with a `convert` section) as JSON")
    cv.add_argument("-v", "--verbose", action="store_true", help="show the commands run")
    pk = sub.add_parser("packer", help="Packer post-processor: convert, check (and register) the build's image",
                        description="Run from Packer's shell-local post-processor after the manifest "
                                    "post-processor: pick the build of $PACKER_RUN_UUID named $PACKER_BUILD_NAME in "
                                    "the manifest, convert its disk image, check it, optionally register it, and "
                                    "append pvbuild's artifacts to the manifest.")
    pk.add_argument("--manifest", default="packer-manifest.json", help="Packer's manifest (packer-manifest.json)")
    pk.add_argument("--output-manifest", default=None, help="where to append pvbuild's build (default: --manifest)")
    pk.add_argument("--build-name", default=None, help="default: $PACKER_BUILD_NAME")
    pk.add_argument("--run-uuid", default=None, help="default: $PACKER_RUN_UUID")
    pk.add_argument("--image", default=None, help="the build's disk image when its artifact lists no file (null "
                                                  "builder)")
    pk.add_argument("-o", "--output", default=None, help="the converted image (default: the image's stem + "
                                                         ".pvgrub.raw)")
    _convert_flags(pk)
    pk.add_argument("--register", action="store_true", help="register the converted image as a PV-GRUB AMI (an EBS "
                                                            "snapshot; with --s3-bucket, an S3 bundle)")
    pk.add_argument("--region", action="append", default=[], dest="regions", metavar="REGION")
    pk.add_argument("--name", default=None, help="AMI name (with --register)")
    pk.add_argument("--description", default="")
    pk.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    pk.add_argument("--replace", action="store_true", help="deregister an AMI of the same name first")
    pk.add_argument("--table", action="store_true", help="pick AKIs from pvbuild's table only")
    _s3_flags(pk)
    pk.add_argument("--json", action="store_true", help="print the manifest entry as JSON")
    pk.add_argument("-v", "--verbose", action="store_true", help="show the commands run")
    return p


def _convert_flags(p: argparse.ArgumentParser) -> None:
    """menu.lst and profile flags shared by `convert` and `packer` (a flag given wins over --recipe)."""
    p.add_argument("--recipe", default=None, help="take menu, kernel and pvgrub settings from this recipe")
    p.add_argument("--title", default=None, help="entry title (default: the image's PRETTY_NAME + kernel)")
    p.add_argument("--default", type=int, default=None, help="default entry (0: the newest kernel)")
    p.add_argument("--fallback", default=None, help="fallback entries, comma separated, or `none` (default: 1 "
                                                    "when there are two kernels)")
    p.add_argument("--timeout", type=int, default=None, help="menu timeout in seconds (0)")
    p.add_argument("--hiddenmenu", action=argparse.BooleanOptionalAction, default=None, help="hide the menu (yes)")
    p.add_argument("--cmdline", default=None, help="extra kernel arguments (after root=UUID=... ro console=...)")
    p.add_argument("--console", default=None, help="console device (hvc0)")
    p.add_argument("--root", default=None, choices=["uuid", "label", "device"], help="how root= names the root "
                                                                                     "filesystem (uuid)")
    p.add_argument("--pvgrub", default=None, choices=["1.03", "1.04", "1.05"], help="PV-GRUB version (1.05)")
    p.add_argument("--variant", default=None, choices=["hd0", "hd00"],
                   help="default: hd0 for a partitionless image, hd00 for a partitioned one")
    p.add_argument("--arch", default=None, choices=["x86_64", "i386"], help="PV-GRUB architecture (x86_64)")


def _print_json(doc: Any) -> None:
    """--json: one JSON document on stdout (messages go to stderr)."""
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _say(message: str) -> None:
    sys.stderr.write(f"pvbuild: {message}\n")


def _tags(values: list[str]) -> dict[str, str]:
    tags = {}
    for t in values:
        key, sep, value = t.partition("=")
        if not sep or not key:
            raise PvbuildError(f"--tag {t!r}: write KEY=VALUE")
        tags[key] = value
    return tags


def _print_registered(registered: list[Any], as_json: bool) -> None:
    if as_json:
        _print_json({"amis": [r.to_json() for r in registered]})
        return
    for r in registered:
        sys.stdout.write(f"{r.region}\t{r.ami_id}\t{r.kernel_id} ({r.aki_name})\n")
        for note in r.notes:
            sys.stderr.write(f"pvbuild: {r.region}: {note}\n")


def _s3_settings(args: argparse.Namespace) -> Any:
    """`--s3-bucket` with the bundle's credentials (register, packer): an S3Settings, or None for EBS backing."""
    from pathlib import Path

    from pvbuild.aws.register import S3Settings

    if not args.s3_bucket:
        return None
    missing = [flag for flag, v in (("-u/--user", args.user), ("-c/--cert", args.cert),
                                    ("-k/--privatekey", args.privatekey)) if not v]
    if missing:
        raise PvbuildError(f"--s3-bucket needs {', '.join(missing)} to make the bundle")
    return S3Settings(bucket=args.s3_bucket, user=args.user, cert=Path(args.cert), private_key=Path(args.privatekey),
                      prefix=args.s3_prefix, ec2_cert=Path(args.ec2cert) if args.ec2cert else None)


def cmd_register(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pvbuild.aws.register import EbsSettings, Request, register

    s3 = _s3_settings(args)
    req = Request(image=Path(args.image), name=args.name, regions=args.regions, arch=args.arch,
                  variant=args.variant, pvgrub_version=args.pvgrub, backing="s3" if s3 else "ebs",
                  description=args.description, tags=_tags(args.tag), root_device=args.root_device,
                  replace=args.replace, live_aki=not args.table,
                  report=Path(args.report) if args.report else None,
                  ebs=EbsSettings(args.volume_size, args.volume_type, not args.keep_volume), s3=s3,
                  snapshot_id=args.snapshot_id)
    from pvbuild.build.run import Log

    registered = register(req, say=_say, progress=Log().progress)
    _print_registered(registered, args.json)
    return 0


def cmd_instance(args: argparse.Namespace) -> int:
    from pvbuild.aws.clients import client
    from pvbuild.aws.instance import plan_upgrade, upgrade

    ec2 = client("ec2", args.region)
    plan = plan_upgrade(ec2, args.instance_id, args.region, variant=args.variant, version=args.version,
                        live=not args.table)
    if args.json:
        _print_json({**plan.to_json(), "dry_run": args.dry_run})
    else:
        head = "would" if args.dry_run else "will"
        sys.stdout.write(f"{plan.instance_id} ({plan.state}, {plan.architecture}): {head}\n")
        for i, step in enumerate(plan.steps, 1):
            sys.stdout.write(f"  {i}. {step}\n")
    if not args.dry_run:
        upgrade(ec2, plan, say=_say)
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pvbuild.aws.bundle import bundle
    from pvbuild.aws.certs import ec2_cert_for

    mapping = None
    if args.block_device_mapping:
        mapping = {}
        for pair in args.block_device_mapping.split(","):
            virtual, sep, device = pair.partition("=")
            if not sep or not virtual or not device:
                raise PvbuildError(f"--block-device-mapping: {pair!r} is not virtual=device (e.g. ami=sda1)")
            mapping[virtual.strip()] = device.strip()
    Path(args.destination).mkdir(parents=True, exist_ok=True)
    ec2_cert = Path(args.ec2cert) if args.ec2cert else ec2_cert_for(args.region)
    result = bundle(Path(args.image), user_cert=Path(args.cert), user_key=Path(args.privatekey),
                    ec2_cert=ec2_cert, user=args.user, arch=args.arch, destination=Path(args.destination),
                    prefix=args.prefix, kernel_id=args.kernel, block_device_mapping=mapping)
    if args.json:
        _print_json({"manifest": str(result.manifest), "parts": [str(p) for p in result.parts],
                     "digest_sha1": result.digest_sha1, "size": result.size, "bundled_size": result.bundled_size})
        return 0
    sys.stdout.write(f"{result.manifest}\n")
    sys.stderr.write(f"pvbuild: {len(result.parts)} parts, {result.bundled_size} bytes bundled from "
                     f"{result.size}; image digest (SHA-1 of the tar stream) {result.digest_sha1}\n")
    return 0


def cmd_unbundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pvbuild.aws.bundle import unbundle

    Path(args.destination).mkdir(parents=True, exist_ok=True)
    image = unbundle(Path(args.manifest), user_key=Path(args.user_key), destination=Path(args.destination),
                     user_cert=Path(args.user_cert) if args.user_cert else None)
    sys.stdout.write(f"{image}\n")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    from pathlib import Path

    import boto3

    from pvbuild.aws.upload import upload_bundle

    s3 = boto3.client("s3", region_name=args.region, endpoint_url=os.environ.get("PVBUILD_S3_ENDPOINT"))
    result = upload_bundle(s3, Path(args.manifest), args.bucket, args.prefix, region=args.region,
                           create_bucket=not args.no_create_bucket)
    if args.json:
        _print_json({"bucket": result.bucket, "manifest_key": result.manifest_key,
                     "image_location": result.image_location, "parts": result.parts, "bytes": result.bytes})
    else:
        sys.stdout.write(f"{result.image_location}\n")
        sys.stderr.write(f"pvbuild: {result.parts} parts and the manifest, {result.bytes} bytes, uploaded to "
                         f"s3://{result.bucket}/{result.manifest_key.rpartition('/')[0]}\n")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from pathlib import Path

    import boto3

    from pvbuild.aws.snapshot import snapshot_image

    tags = _tags(args.tag)
    ebs = boto3.client("ebs", region_name=args.region, endpoint_url=os.environ.get("PVBUILD_EBS_ENDPOINT"))
    ec2 = None if args.no_wait else boto3.client("ec2", region_name=args.region,
                                                 endpoint_url=os.environ.get("PVBUILD_EC2_ENDPOINT"))
    from pvbuild.aws.snapshot import data_blocks
    from pvbuild.build.run import Log

    image = Path(args.image)
    total = sum(1 for _ in data_blocks(image)) if image.is_file() else None
    with Log().progress("EBS blocks", total) as advance:
        result = snapshot_image(ebs, image, description=args.description, tags=tags, ec2=ec2,
                                progress=lambda _n: advance(1))
    if args.json:
        _print_json({"snapshot_id": result.snapshot_id, "volume_size_gib": result.volume_size_gib,
                     "blocks_sent": result.blocks_sent, "blocks_skipped": result.blocks_skipped,
                     "checksum": result.checksum})
        return 0
    sys.stdout.write(f"{result.snapshot_id}\n")
    sys.stderr.write(f"pvbuild: {result.volume_size_gib} GiB snapshot: {result.blocks_sent} blocks sent, "
                     f"{result.blocks_skipped} empty blocks skipped\n")
    return 0


def cmd_ami(args: argparse.Namespace) -> int:
    import boto3

    from pvbuild.aws.ami import verify_ami

    ec2 = boto3.client("ec2", region_name=args.region, endpoint_url=os.environ.get("PVBUILD_EC2_ENDPOINT"))
    result = verify_ami(ec2, args.ami_id, args.region, args.variant)
    if args.json:
        _print_json({"ami_id": result.ami_id, "name": result.name, "architecture": result.architecture,
                     "kernel_id": result.kernel_id, "ok": result.ok,
                     "findings": [f.to_json() for f in result.findings]})
    else:
        head = "OK" if result.ok else "NOT OK"
        sys.stdout.write(f"{head} — {result.ami_id} ({result.name}), {result.architecture}, kernel "
                         f"{result.kernel_id}\n")
        for f in result.findings:
            sys.stdout.write(f"  {f.severity:<7} {f.code}: {f.message}\n")
    return 0 if result.ok else 1


def cmd_aki(args: argparse.Namespace) -> int:
    from pvbuild.aws import aki

    chosen = aki.select(args.region, args.arch, args.variant, args.version, live=args.live)
    if args.json:
        _print_json({"region": chosen.region, "aki_id": chosen.aki_id, "version": chosen.version,
                     "variant": chosen.variant, "arch": chosen.arch, "name": chosen.name, "source": chosen.source,
                     "notes": list(chosen.notes)})
    else:
        sys.stdout.write(f"{chosen.aki_id}  {chosen.name}  ({chosen.region}, from the {chosen.source})\n")
        for note in chosen.notes:
            sys.stderr.write(f"pvbuild: {note}\n")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from pvbuild.distros import FAMILIES
    from pvbuild.plan import load_plan

    plan = load_plan(args.recipe)
    if args.json:
        _print_json(plan.to_json())
        return 0
    d = plan.distro
    out = [f"recipe:   {plan.recipe}",
           f"image:    {plan.output.directory}/{plan.output.image_name} ({plan.disk.size_bytes // 2**20} MiB, "
           f"table {plan.disk.table})",
           f"distro:   {FAMILIES[d.family].title} {d.version} ({d.release}) {d.deb_arch} from {d.mirror} via "
           + (f"mmdebstrap {d.variant}".rstrip() if d.backend == "mmdebstrap"
              else f"diskimage-builder (element {d.dib_element or 'none'})"),
           f"packages: {' '.join(d.packages)}",
           f"kernel:   {plan.kernel.package}, cmdline: {plan.kernel.cmdline}",
           f"initrd:   {plan.initrd.tool}, modules {', '.join(plan.initrd.modules)}, {plan.initrd.compression}",
           f"pvgrub:   {plan.pvgrub.version} {plan.pvgrub.variant} {plan.pvgrub.arch}",
           f"epoch:    SOURCE_DATE_EPOCH={plan.source_date_epoch}"]
    for f in plan.disk.filesystems:
        out.append(f"fs:       {f.mountpoint:<6} {f.fstype} label={f.label} uuid={f.uuid} "
                   f"{f.size_bytes // 2**20} MiB at {f.offset_bytes // 2**20} MiB {f.grub_device} "
                   f"{f.linux_device} mkfs {' '.join(f.mkfs_options) or '(defaults)'}")
    out.append(f"menu.lst: {plan.disk.boot.grub_device}{plan.menu.path_in_boot_fs}")
    out += ["    " + line for line in plan.menu.text.splitlines()]
    out += [f"warning:  {w}" for w in plan.warnings]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def cmd_menu(args: argparse.Namespace) -> int:
    from pvbuild.plan import load_plan

    sys.stdout.write(load_plan(args.recipe).menu.text)
    return 0


def cmd_schema(_: argparse.Namespace) -> int:
    from pvbuild.recipe import json_schema

    _print_json(json_schema())
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pvbuild.build.pipeline import build
    from pvbuild.plan import load_plan

    plan = load_plan(args.recipe)
    for w in plan.warnings:
        sys.stderr.write(f"pvbuild: warning: {w}\n")
    if args.locked:
        from pvbuild.lock import locked_plan

        plan = locked_plan(plan)
        _say(f"locked: {len(plan.locked)} packages pinned from {Path(plan.recipe).with_suffix('.lock')}")
    built = build(plan, verbose=args.verbose, boot=args.boot)
    registered: list[Any] = []
    if plan.aws is not None and not args.no_ship:
        from pvbuild.aws.register import ship_built
        from pvbuild.build.run import Log

        registered = ship_built(plan, built.image, say=_say, progress=Log().progress)
    if args.json:
        _print_json({"image": str(built.image), "directory": str(built.directory), "sha256": built.sha256,
                     "boots": built.boots, "outcome": built.report.get("outcome"), "image_bytes": built.image_bytes,
                     "allocated_bytes": built.allocated_bytes, "initrd_bytes": built.initrd_bytes,
                     "rootfs_cached": built.rootfs_cached, "seconds": round(built.seconds, 1),
                     "locked_packages": len(plan.locked), "amis": [r.to_json() for r in registered]})
        return 0
    sys.stdout.write(f"{built.image}\n")
    _print_registered(registered, False)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from pvbuild.lock import lock_recipe
    from pvbuild.plan import load_plan

    plan = load_plan(args.recipe)
    path, doc = lock_recipe(plan, refresh=args.refresh)
    if args.json:
        _print_json({"lock": str(path), "packages": len(doc["packages"]),
                     "source_date_epoch": doc["source_date_epoch"]})
    else:
        sys.stdout.write(f"{path}\n")
        _say(f"{len(doc['packages'])} packages pinned, SOURCE_DATE_EPOCH={doc['source_date_epoch']}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from pvbuild.pvgrub.check import check_image
    from pvbuild.pvgrub.profiles import Profile
    from pvbuild.pvgrub.render import render_text

    report = check_image(args.image, Profile(args.pvgrub, args.variant, args.arch))
    if args.json:
        _print_json(report.to_json())
    else:
        sys.stdout.write(render_text(report))
    return report.exit_code


def cmd_diff(args: argparse.Namespace) -> int:
    from pvbuild.diff import diff_images, render_text
    from pvbuild.pvgrub.profiles import Profile

    report = diff_images(args.a, args.b, Profile(args.pvgrub, args.variant, args.arch), with_mtime=args.all)
    if args.json:
        _print_json(report.to_json())
    else:
        sys.stdout.write(render_text(report))
    return report.exit_code


def cmd_boot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pvbuild.boot.run import boot_image, prepare, render_text
    from pvbuild.build.run import Log

    log = Log(verbose=args.verbose)
    if args.prepare:
        summary = prepare(log)
        if args.image is None:
            if args.json:
                json.dump(summary, sys.stdout, indent=2)
            else:
                sys.stdout.write(f"Xen test host ready: {summary['snapshot']} ({summary['accel']}: "
                                 f"{summary['accel_reason']})")
            sys.stdout.write("\n")
            return 0
    if args.image is None:
        raise PvbuildError("boot: give the IMAGE to boot (or --prepare to only prepare the Xen test host)")
    result = boot_image(Path(args.image), variant=args.variant, arch=args.arch, timeout=args.timeout, log=log,
                        use_snapshot=not args.cold)
    if args.json:
        _print_json(result.to_json())
    else:
        sys.stdout.write(render_text(result))
    return result.exit_code


def _menu_options(args: argparse.Namespace) -> Any:
    from pvbuild.convert import menu_options

    fallback: list[int] | None = None
    if args.fallback is not None:
        text = args.fallback.strip()
        try:
            fallback = [] if text in ("", "none") else [int(x) for x in text.split(",")]
        except ValueError:
            raise PvbuildError(f"--fallback {args.fallback!r}: write entry numbers separated by commas, or none") \
                from None
    try:
        return menu_options(args.recipe, title=args.title, default=args.default, fallback=fallback,
                            timeout=args.timeout, hiddenmenu=args.hiddenmenu,
                            cmdline=args.cmdline.split() if args.cmdline is not None else None,
                            console=args.console, root=args.root, pvgrub_version=args.pvgrub,
                            variant=args.variant, arch=args.arch)
    except ValueError as e:
        raise PvbuildError(str(e)) from None


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pvbuild.build.run import Log
    from pvbuild.convert import convert, render_text

    result = convert(Path(args.image), _menu_options(args), output=Path(args.output) if args.output else None,
                     in_place=args.in_place, log=Log(verbose=args.verbose))
    if args.json:
        _print_json(result.report)
    else:
        sys.stdout.write(render_text(result))
    return result.exit_code


def cmd_packer(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pvbuild.build.run import Log
    from pvbuild.packer import PackerRequest, run_post_processor

    s3 = _s3_settings(args)
    req = PackerRequest(manifest=Path(args.manifest),
                        output_manifest=Path(args.output_manifest) if args.output_manifest else None,
                        build_name=args.build_name, run_uuid=args.run_uuid,
                        image=Path(args.image) if args.image else None,
                        output=Path(args.output) if args.output else None, options=_menu_options(args),
                        register=args.register, regions=tuple(args.regions), ami_name=args.name,
                        description=args.description, tags=_tags(args.tag), replace=args.replace,
                        live_aki=not args.table, s3=s3)
    entry, code = run_post_processor(req, log=Log(verbose=args.verbose), say=_say)
    if args.json:
        _print_json(entry)
    else:
        sys.stdout.write(f"{entry['files'][0]['name']}\n")
        if entry.get("artifact_id"):
            _say(f"artifact {entry['artifact_id']}")
    return code


def _is_aws_environment_error(e: Exception) -> bool:
    """No credentials, no endpoint, no network: an environment problem (exit 3), not a bug."""
    try:
        from botocore.exceptions import BotoCoreError, NoCredentialsError
    except ImportError:
        return False
    return isinstance(e, (BotoCoreError, NoCredentialsError))


COMMANDS = {"check": cmd_check, "build": cmd_build, "plan": cmd_plan, "menu": cmd_menu, "schema": cmd_schema,
            "convert": cmd_convert, "packer": cmd_packer,
            "aki": cmd_aki, "ami": cmd_ami, "bundle": cmd_bundle, "unbundle": cmd_unbundle,
            "snapshot": cmd_snapshot, "upload": cmd_upload, "register": cmd_register, "instance": cmd_instance,
            "lock": cmd_lock,
            "boot": cmd_boot, "diff": cmd_diff}


def main(argv: Sequence[str] | None = None) -> int:
    from pvbuild.pvgrub.errors import ImageError

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `pvbuild recipe.yaml` is `pvbuild build recipe.yaml`.
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS and first.endswith((".yaml", ".yml")):
        argv.insert(argv.index(first), "build")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](args)
    except ImageError as e:
        sys.stderr.write(f"pvbuild: {e}\n")
        return EXIT_USAGE
    except PvbuildError as e:
        sys.stderr.write(f"pvbuild: {e}\n")
        return e.exit_code
    except BrokenPipeError:
        # `pvbuild schema | head`: the reader left; nothing is wrong.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        sys.stderr.write(f"pvbuild: cannot read {e.filename or 'the input'}: {e.strerror or e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("pvbuild: interrupted\n")
        return 130
    except Exception as e:
        if _is_aws_environment_error(e):
            sys.stderr.write(f"pvbuild: AWS: {e} (credentials come from boto3's normal chain: environment, "
                             "profile or instance role)\n")
            return EXIT_ENVIRONMENT
        if os.environ.get("PVBUILD_DEBUG"):
            raise
        sys.stderr.write(f"pvbuild: internal error ({type(e).__name__}: {e}); this is a bug in pvbuild — please "
                         "report it; PVBUILD_DEBUG=1 shows the traceback\n")
        return EXIT_INTERNAL
