"""PV-GRUB AKIs: the embedded table, live lookup, selection, and the kernel check of `pvbuild ami verify`.

Sources (see /work/shared/AWS.md): the seeds' 1.03 table (eight regions x hd0/hd00 x x86_64/i386, with the
manifest names), the Japanese guide's 1.04 IDs for ap-northeast-1, and AWS's user guide 1.05 table (ten regions,
hd0 only: its hd00 IDs are not given, so none are listed here). Live lookup is the guide's
`describe_images(Owners=['amazon'], Filters name=pv-grub-*.gz, image-type=kernel)`; the highest version wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pvbuild.errors import UsageError
from pvbuild.pvgrub.findings import Finding, error, info, warning
from pvbuild.pvgrub.profiles import VERSIONS, Profile

ARCHES = ("x86_64", "i386")
VARIANTS = ("hd0", "hd00")
NAME_FILTERS = [{"Name": "name", "Values": ["pv-grub-*.gz"]}, {"Name": "image-type", "Values": ["kernel"]}]

_NAME_RE = re.compile(r"pv-grub-(hd0|hd00)_(1\.\d+)-(i386|x86_64)\.gz(?:\.manifest\.xml)?")

Source = Literal["table", "live"]


class AkiError(UsageError):
    """No AKI for the region, arch, variant or version asked for; the message lists what exists."""


@dataclass(frozen=True)
class Aki:
    region: str
    aki_id: str
    version: str
    variant: str
    arch: str
    name: str
    source: Source
    notes: tuple[str, ...] = field(default=(), compare=False)


def image_name(variant: str, version: str, arch: str) -> str:
    return f"pv-grub-{variant}_{version}-{arch}.gz"


def parse_name(name: str) -> tuple[str, str, str] | None:
    """`pv-grub-hd0_1.05-x86_64.gz` (optionally `bucket/...gz.manifest.xml`) -> (variant, version, arch)."""
    base = name.rsplit("/", 1)[-1]
    m = _NAME_RE.fullmatch(base)
    if m is None:
        return None
    return m.group(1), m.group(2), m.group(3)


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


# --- the embedded table -------------------------------------------------------------------------------------

# 1.03 (seed 000): region -> manifest bucket, then (hd0 x86_64, hd0 i386, hd00 x86_64, hd00 i386).
_T103: dict[str, tuple[str, tuple[str, str, str, str]]] = {
    "us-east-1": ("ec2-public-images", ("aki-88aa75e1", "aki-b6aa75df", "aki-b4aa75dd", "aki-b2aa75db")),
    "us-west-1": ("ec2-public-images-us-west-1", ("aki-f77e26b2", "aki-f57e26b0", "aki-eb7e26ae", "aki-e97e26ac")),
    "us-west-2": ("ec2-public-images-us-west-2", ("aki-fc37bacc", "aki-fa37baca", "aki-f837bac8", "aki-f637bac6")),
    "eu-west-1": ("ec2-public-images-eu", ("aki-71665e05", "aki-75665e01", "aki-8b655dff", "aki-89655dfd")),
    "ap-southeast-1": ("ec2-public-images-ap-southeast-1",
                       ("aki-fe1354ac", "aki-f81354aa", "aki-fa1354a8", "aki-f41354a6")),
    "ap-northeast-1": ("ec2-public-images-ap-northeast-1",
                       ("aki-44992845", "aki-42992843", "aki-40992841", "aki-3e99283f")),
    "sa-east-1": ("ec2-public-images-sa-east-1", ("aki-c48f51d9", "aki-ca8f51d7", "aki-c88f51d5", "aki-ce8f51d3")),
    "us-gov-west-1": ("ec2-public-images-gov-west-1",
                      ("aki-79a4c05a", "aki-7ba4c058", "aki-75a4c056", "aki-77a4c054")),
}
# 1.04 (seed 002, the Japanese guide's describe-images output): ap-northeast-1 only.
_T104: dict[str, tuple[str, str, str, str]] = {
    "ap-northeast-1": ("aki-176bf516", "aki-136bf512", "aki-1f6bf51e", "aki-196bf518"),
}
# 1.05 (AWS user guide, UserProvidedKernels): hd0 x86_64, hd0 i386.
_T105: dict[str, tuple[str, str]] = {
    "ap-northeast-1": ("aki-7077ab11", "aki-f975a998"),
    "ap-southeast-1": ("aki-73a50110", "aki-17a40074"),
    "ap-southeast-2": ("aki-66506305", "aki-ba5665d9"),
    "eu-central-1": ("aki-931fe3fc", "aki-1419e57b"),
    "eu-west-1": ("aki-dc9ed9af", "aki-1c9fd86f"),
    "sa-east-1": ("aki-912fbcfd", "aki-7cd34110"),
    "us-east-1": ("aki-5c21674b", "aki-04206613"),
    "us-gov-west-1": ("aki-9ee55bff", "aki-5ee9573f"),
    "us-west-1": ("aki-59cc8239", "aki-43cf8123"),
    "us-west-2": ("aki-70cb0e10", "aki-7a69931a"),
}

_COMBOS = (("hd0", "x86_64"), ("hd0", "i386"), ("hd00", "x86_64"), ("hd00", "i386"))


@dataclass(frozen=True)
class TableRow:
    region: str
    version: str
    variant: str
    arch: str
    aki_id: str
    name: str  # the image name, pv-grub-{variant}_{version}-{arch}.gz
    manifest: str | None = None  # the manifest location, where the source gives it

    def to_aki(self, notes: Iterable[str] = ()) -> Aki:
        return Aki(self.region, self.aki_id, self.version, self.variant, self.arch, self.name, "table", tuple(notes))


def _build_table() -> tuple[TableRow, ...]:
    rows: list[TableRow] = []
    for region, (bucket, ids) in _T103.items():
        for (variant, arch), aki_id in zip(_COMBOS, ids, strict=True):
            name = image_name(variant, "1.03", arch)
            rows.append(TableRow(region, "1.03", variant, arch, aki_id, name, f"{bucket}/{name}.manifest.xml"))
    for region, ids in _T104.items():
        for (variant, arch), aki_id in zip(_COMBOS, ids, strict=True):
            rows.append(TableRow(region, "1.04", variant, arch, aki_id, image_name(variant, "1.04", arch)))
    for region, ids105 in _T105.items():
        for (variant, arch), aki_id in zip(_COMBOS[:2], ids105, strict=True):
            rows.append(TableRow(region, "1.05", variant, arch, aki_id, image_name(variant, "1.05", arch)))
    return tuple(rows)


TABLE: tuple[TableRow, ...] = _build_table()


def regions() -> list[str]:
    return sorted({r.region for r in TABLE})


def table_by_id(aki_id: str) -> TableRow | None:
    return next((r for r in TABLE if r.aki_id == aki_id), None)


def describe_table(region: str | None = None) -> str:
    """What the table holds, per region: `us-east-1: 1.03 hd0,hd00 x86_64,i386; 1.05 hd0 x86_64,i386`."""
    lines = []
    for reg in regions():
        if region is not None and reg != region:
            continue
        parts = []
        rows = [r for r in TABLE if r.region == reg]
        for ver in sorted({r.version for r in rows}, key=version_key):
            vr = [r for r in rows if r.version == ver]
            variants = ",".join(v for v in VARIANTS if any(r.variant == v for r in vr))
            arches = ",".join(a for a in ARCHES if any(r.arch == a for r in vr))
            parts.append(f"{ver} {variants} {arches}")
        lines.append(f"{reg}: {'; '.join(parts)}")
    return "\n".join(lines)


# --- selection ----------------------------------------------------------------------------------------------

def _check_inputs(arch: str, variant: str, version: str | None) -> None:
    if arch not in ARCHES:
        raise AkiError(f"unknown architecture {arch!r}: PV-GRUB AKIs exist for {', '.join(ARCHES)}")
    if variant not in VARIANTS:
        raise AkiError(f"unknown PV-GRUB variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if version is not None and not re.fullmatch(r"1\.\d+", version):
        raise AkiError(f"bad PV-GRUB version {version!r}: versions look like 1.05")


def live_akis(ec2_client: Any, region: str) -> list[Aki]:
    """Every parseable Amazon-owned PV-GRUB kernel image the client sees. Raises botocore errors as they come."""
    out: list[Aki] = []
    resp = ec2_client.describe_images(Owners=["amazon"], Filters=NAME_FILTERS)
    for img in resp.get("Images", []):
        name = img.get("Name") or ""
        parsed = parse_name(name)
        if parsed is None or not str(img.get("ImageId", "")).startswith("aki-"):
            continue
        variant, version, arch = parsed
        out.append(Aki(region, img["ImageId"], version, variant, arch, name.rsplit("/", 1)[-1], "live"))
    return out


def _live_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return (OSError,)
    return (BotoCoreError, ClientError, OSError)


def _make_client(region: str) -> Any:
    import boto3

    return boto3.client("ec2", region_name=region)


def _best(cands: list[Aki]) -> Aki | None:
    return max(cands, key=lambda a: version_key(a.version), default=None)


def select(region: str, arch: str, variant: str = "hd0", version: str | None = None, *,
           live: bool, ec2_client: Any = None) -> Aki:
    """The AKI for region/arch/variant; `version=None` is the latest available.

    live=True asks EC2 first (`ec2_client`, or a boto3 client for `region`); any botocore or network error, or no
    matching image, falls back to the embedded table. The result's `source` and `notes` say which was used.
    """
    _check_inputs(arch, variant, version)
    notes: list[str] = []
    if live:
        try:
            client = ec2_client if ec2_client is not None else _make_client(region)
            found = live_akis(client, region)
        except _live_errors() as exc:
            notes.append(f"live lookup in {region} failed ({type(exc).__name__}: {exc}); using the embedded table")
        else:
            cands = [a for a in found if a.arch == arch and a.variant == variant
                     and (version is None or a.version == version)]
            best = _best(cands)
            if best is not None:
                return Aki(best.region, best.aki_id, best.version, best.variant, best.arch, best.name, "live",
                           (f"live lookup in {region}: {len(found)} PV-GRUB AKIs, chose {best.name}",))
            want = image_name(variant, version or "*", arch)
            notes.append(f"live lookup in {region} found no {want} among {len(found)} PV-GRUB AKIs;"
                         " using the embedded table")
    rows = [r for r in TABLE if r.region == region]
    if not rows:
        raise AkiError(f"no PV-GRUB AKIs known for region {region!r}; the table has:\n{describe_table()}")
    cands_t = [r for r in rows if r.arch == arch and r.variant == variant
               and (version is None or r.version == version)]
    if not cands_t:
        want = image_name(variant, version or "*", arch)
        raise AkiError(f"no {want} AKI in {region}; the table has:\n{describe_table(region)}")
    row = max(cands_t, key=lambda r: version_key(r.version))
    notes.append(f"from the embedded table: {row.name} in {region}")
    if version is None and variant == "hd00" and row.version != max((r.version for r in TABLE), key=version_key):
        notes.append("AWS's hd00 IDs for newer PV-GRUB versions are not in the table; AWS recommends hd0")
    return row.to_aki(notes)


def profile_of(aki: Aki) -> Profile:
    """The emulator profile the chosen AKI boots with: one source of truth for version, variant and arch."""
    if aki.version not in VERSIONS:
        raise AkiError(f"{aki.aki_id} is PV-GRUB {aki.version}; the emulator knows only {', '.join(VERSIONS)}")
    return Profile(version=aki.version, variant=aki.variant, arch=aki.arch)


# --- pvbuild ami verify -------------------------------------------------------------------------------------

def verify_kernel_id(ec2_client: Any, kernel_id: str, *, arch: str, variant: str, region: str) -> list[Finding]:
    """The Japanese guide's check of an AMI's KernelId: its image name starts with pv-grub, the arch and variant
    match, and it is the latest PV-GRUB version in the region. Failures are errors; an old version is a warning.
    """
    out: list[Finding] = []
    name: str | None = None
    img_arch: str | None = None
    try:
        # By filter, not ImageIds: that works for aki- IDs on AWS and on moto (which rejects aki- in ImageIds).
        resp = ec2_client.describe_images(Filters=[{"Name": "image-id", "Values": [kernel_id]}])
        images = resp.get("Images", [])
        if images:
            name = images[0].get("Name") or images[0].get("ImageLocation") or ""
            img_arch = images[0].get("Architecture")
    except _live_errors() as exc:
        row = table_by_id(kernel_id)
        if row is None:
            return [error("aki-lookup-failed", f"could not look up kernel {kernel_id}: {exc}")]
        out.append(warning("aki-lookup-failed", f"could not look up kernel {kernel_id} ({exc}); "
                                                f"using the embedded table: {row.name}"))
        name = row.name
    if name is None:
        return [error("aki-not-found", f"kernel {kernel_id} not found in {region}")]
    base = name.rsplit("/", 1)[-1]
    if not base.startswith("pv-grub"):
        return [*out, error("aki-not-pvgrub", f"kernel {kernel_id} is {name!r}, not a PV-GRUB AKI "
                                              "(its image name does not start with pv-grub)")]
    parsed = parse_name(base)
    if parsed is None:
        return [*out, error("aki-name-unknown", f"kernel {kernel_id} is {name!r}: not a pv-grub-VARIANT_VERSION-ARCH.gz"
                                                " name pvbuild knows")]
    k_variant, k_version, k_arch = parsed
    out.append(info("aki-pvgrub", f"kernel {kernel_id} is PV-GRUB {k_version} {k_variant} {k_arch} ({base})"))
    if k_arch != arch or (img_arch is not None and img_arch != arch):
        out.append(error("aki-arch-mismatch", f"kernel {kernel_id} is for {k_arch}, the image is {arch}"))
    if k_variant != variant:
        out.append(error("aki-variant-mismatch", f"kernel {kernel_id} is the {k_variant} variant, "
                                                 f"the image needs {variant}"))
    try:
        latest = select(region, k_arch, k_variant, live=True, ec2_client=ec2_client)
    except AkiError as exc:
        out.append(warning("aki-latest-unknown", f"cannot tell the latest PV-GRUB in {region}: {exc}"))
        return out
    if version_key(latest.version) > version_key(k_version):
        out.append(warning("aki-not-latest", f"kernel {kernel_id} is PV-GRUB {k_version}; the latest in {region} "
                                             f"is {latest.version} ({latest.aki_id}, from the {latest.source})"))
    else:
        out.append(info("aki-latest", f"PV-GRUB {k_version} is the latest in {region} ({latest.source})"))
    return out
