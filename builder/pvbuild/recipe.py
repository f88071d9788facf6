"""Recipes: the schema (pydantic), YAML loading with line numbers, and the JSON Schema for editors.

A Recipe is what the user wrote, validated field by field; decisions and cross-field rules live in plan.py.
Every error names the recipe file, the line, the field, and what to write instead.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from pvbuild.errors import UsageError
from pvbuild.yamlsrc import Located, Where, YamlError, load

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
# Plain K/M/G mean binary units, as in sfdisk, truncate and qemu-img.
_BINARY_SHORT = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: Any) -> Any:
    """"2GiB", "512M", "1.5G", 4096 -> bytes; "rest" stays as is (the remaining space)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string such as 2GiB or 512MiB")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text == "rest":
            return text
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text)
        if m:
            unit = m.group(2).lower()
            mult = _BINARY_SHORT.get(unit) or _UNITS.get(unit)
            if mult:
                return int(float(m.group(1)) * mult)
    raise ValueError(f"{value!r} is not a size: write e.g. 2GiB, 512MiB or a number of bytes")


_SIZE_PATTERN = r"^\d+(\.\d+)?\s*[KMGTkmgt]?i?[Bb]?$"
Size = Annotated[int, BeforeValidator(parse_size),
                 WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": _SIZE_PATTERN}],
                                 "description": "bytes, or a string such as 2GiB, 512MiB"})]
PartSize = Annotated[int | Literal["rest"], BeforeValidator(parse_size),
                     WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}],
                                     "description": "bytes, a string such as 512MiB, or `rest`"})]


def _str_list(value: Any) -> Any:
    """Accept a single string where a list of strings is expected ("ro quiet" -> ["ro", "quiet"])."""
    if isinstance(value, str):
        return value.split()
    return value


Args = Annotated[list[str], BeforeValidator(_str_list)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distro(_Model):
    family: Literal["debian", "ubuntu", "fedora", "centos", "rhel", "opensuse", "sles", "amazon", "gentoo"] = Field(
        "debian", description="distribution family (README: Support)")
    release: str | None = Field(None, description="codename or version: bookworm, 12, jammy, 22.04, 9-stream; "
                                                  "default: the family's (bookworm for debian)")
    mirror: str | None = Field(None, description="archive URL; default: debian: the host's apt sources (or "
                                                 "$PVBUILD_MIRROR); other families: $PVBUILD_<FAMILY>_MIRROR")
    security_mirror: str | None = Field(None, description="security archive URL (apt families); default: the "
                                                          "host's")
    components: list[str] = Field(default_factory=lambda: ["main"], description="apt components (debian, ubuntu)")
    backend: Literal["mmdebstrap", "diskimage-builder"] | None = Field(
        None, description="default: mmdebstrap for debian, diskimage-builder for the others")


class Kernel(_Model):
    package: str | None = Field(None, description="kernel package; default: the distro's Xen-capable one")
    cmdline: Args = Field(default_factory=list, description="extra kernel arguments")
    console: str = Field("hvc0", description="console device; PV guests print on hvc0 (unless set here, pvbuild "
                                             "uses xvc0 for the Xen-patched kernel-xen/kernel-ec2 of old releases)")
    root: Literal["uuid", "label", "device"] = Field("uuid", description="how root= names the root filesystem")
    fallback_version: str | None = Field(None, description="a known-good kernel version for the fallback entry "
                                                           "(default: the previous kernel, /boot/vmlinuz.old)")


class Initrd(_Model):
    tool: Literal["auto", "update-initramfs", "dracut", "mkinitrd"] = "auto"
    modules: list[str] = Field(default_factory=list, description="modules forced into the initrd, besides "
                                                                 "xen-blkfront, xen-netfront and the root fs")
    compression: Literal["zstd", "gzip", "xz", "lz4", "lzma", "bzip2", "lzop"] | None = Field(
        None, description="default: zstd where the kernel unpacks it (Linux >= 5.9), else gzip")


class Partition(_Model):
    mountpoint: str = Field(description="/ or /boot")
    fstype: Literal["ext2", "ext3", "ext4", "xfs", "btrfs", "reiserfs", "jfs"] = "ext4"
    size: PartSize = "rest"
    label: str | None = None
    uuid: str | None = None
    mkfs_options: Args = Field(default_factory=list)
    type: str | None = Field(None, description="MBR partition type (hex), default 83 (8e with lvm); with "
                                                "table: gpt a type GUID, default Linux filesystem (LVM with lvm)")
    lvm: bool = Field(False, description="put this filesystem on an LVM logical volume (the root only, with a "
                                         "separate /boot)")
    vg: str | None = Field(None, description="with lvm: the volume group's name; default: the recipe name")
    lv: str | None = Field(None, description="with lvm: the logical volume's name; default: root")


class Disk(_Model):
    size: Size = Field(2 * 1024**3, description="image size")
    table: Literal["none", "mbr", "gpt"] = Field("none", description="none = partitionless (hd0 AKI), "
                                                                     "mbr = partitioned (hd00 AKI), gpt = "
                                                                     "partitioned, PV-GRUB 1.04+ only (hd00 AKI)")
    partitions: list[Partition] = Field(default_factory=list, description="default: one ext4 root")


class MenuEntry(_Model):
    title: str
    kernel: str = Field(description="kernel path on the /boot filesystem, e.g. /boot/vmlinuz-6.1.0-28-amd64")
    initrd: str | None = None
    args: Args = Field(default_factory=list, description="kernel arguments (root= and console= are added "
                                                         "unless given)")


class Menu(_Model):
    title: str | None = Field(None, description="title of the main entry")
    default: int = 0
    fallback: list[int] | None = Field(None, description="default: [1] (the previous kernel's entry)")
    timeout: int | None = Field(0, description="seconds; null means wait forever, which PV-GRUB on EC2 never "
                                               "gets past")
    hiddenmenu: bool = True
    entries: list[MenuEntry] = Field(default_factory=list, description="extra entries after the generated ones")


class Pvgrub(_Model):
    version: Literal["1.03", "1.04", "1.05"] = "1.05"
    variant: Literal["hd0", "hd00"] | None = Field(None, description="default: hd0 for a partitionless disk, "
                                                                     "hd00 for a partitioned one")
    arch: Literal["x86_64", "i386"] | None = Field(None, description="default: the recipe's arch")
    allow_btrfs_beta: bool = False


class FileEntry(_Model):
    dest: str = Field(description="absolute path in the image")
    src: str | None = Field(None, description="file on the build host, relative to the recipe")
    content: str | None = None
    mode: str | None = Field(None, description="octal, e.g. \"0644\"")


class User(_Model):
    name: str
    groups: list[str] = Field(default_factory=list)
    shell: str = "/bin/bash"
    password_hash: str | None = Field(None, description="crypt(3) hash; default: password locked")
    ssh_authorized_keys: list[str] = Field(default_factory=list)
    sudo: bool = False


class Output(_Model):
    directory: str | None = Field(None, description="default: out/NAME in the current directory; a relative "
                                                          "path is relative to the recipe")
    formats: list[Literal["raw"]] = Field(default_factory=lambda: list[Literal["raw"]](["raw"]))


class AwsEbs(_Model):
    volume_size: int | None = Field(None, ge=1, le=16384, description="root volume GiB; default: the image size "
                                                                      "rounded up")
    volume_type: Literal["standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"] = "gp2"
    delete_on_termination: bool = True


class AwsBundle(_Model):
    bucket: str = Field(description="S3 bucket; put {region} in it when registering in several regions")
    prefix: str = Field("", description="key prefix inside the bucket")
    user: str = Field(pattern=r"^\d{4}-?\d{4}-?\d{4}$", description="your 12-digit AWS account number")
    cert: str = Field(description="your X.509 certificate (PEM), relative to the recipe")
    private_key: str = Field(description="its private key (PEM), relative to the recipe")
    ec2_cert: str | None = Field(None, description="EC2's certificate; default: the one pvbuild ships per region")


class Aws(_Model):
    regions: list[str] = Field(default_factory=list, description="register in each (each with its own PV-GRUB AKI)")
    ami_name: str | None = Field(None, description="AMI name; default: the recipe name")
    description: str = ""
    backing: Literal["ebs", "s3"] = Field("ebs", description="ebs: snapshot (EBS direct APIs); s3: a bundle")
    ebs: AwsEbs = Field(default_factory=lambda: AwsEbs.model_validate({}))
    bundle: AwsBundle | None = Field(None, description="needed for backing: s3")
    tags: dict[str, str] = Field(default_factory=dict, description="on the AMI (and the snapshot)")
    aki: Literal["live", "table"] = Field("live", description="live: ask EC2 for the latest PV-GRUB AKI (falls "
                                                               "back to the table); table: pvbuild's table only")
    replace: bool = Field(False, description="deregister an existing AMI of the same name first")
    root_device: str | None = Field(None, description="default: /dev/sda1 (partitionless) or /dev/sda (MBR)")
    # Accepted only to be refused with the seed's reason (plan.py): never a ramdisk with PV-GRUB.
    ramdisk_id: str | None = Field(None, description="never: PV-GRUB AMIs must not name a ramdisk (ARI)")
    ramdisk: str | None = Field(None, description="never (see ramdisk_id)")
    ari: str | None = Field(None, description="never (see ramdisk_id)")


class Recipe(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    hostname: str | None = None
    source_date_epoch: int | None = Field(None, description="for reproducible builds; default: "
                                                            "$SOURCE_DATE_EPOCH or the recipe's lock")
    distro: Distro = Field(default_factory=lambda: Distro.model_validate({}))
    arch: Literal["x86_64", "i386"] = "x86_64"
    kernel: Kernel = Field(default_factory=lambda: Kernel.model_validate({}))
    initrd: Initrd = Field(default_factory=lambda: Initrd.model_validate({}))
    disk: Disk = Field(default_factory=lambda: Disk.model_validate({}))
    menu: Menu = Field(default_factory=lambda: Menu.model_validate({}))
    pvgrub: Pvgrub = Field(default_factory=lambda: Pvgrub.model_validate({}))
    packages: list[str] = Field(default_factory=list)
    files: list[FileEntry] = Field(default_factory=list)
    users: list[User] = Field(default_factory=list)
    ssh_authorized_keys: list[str] = Field(default_factory=list, description="for root")
    output: Output = Field(default_factory=lambda: Output.model_validate({}))
    aws: Aws | None = Field(None, description="ship it: register an AMI in each region after the build")
    boot: bool = Field(False, description="after the emulator check, boot the image as a Xen PV guest (pvbuild "
                                          "boot); the build fails when the two verdicts differ")


class Problem:
    """One thing wrong with a recipe: where, which field, what is wrong, what to write instead."""

    def __init__(self, where: Where, field: str, message: str, hint: str = "") -> None:
        self.where = where
        self.field = field
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.field}: {self.message}" if self.field else f"{self.where}: {self.message}"
        return text + (f" — {self.hint}" if self.hint else "")


class RecipeError(UsageError):
    """A recipe that cannot be used as written (exit 2). Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.where.file, p.where.line, p.where.column))
        file = self.problems[0].where.file if self.problems else "the recipe"
        head = f"{file}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}:"
        super().__init__("\n".join([head, *("  " + str(p) for p in self.problems)]))


def _field_name(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class a location points into (for suggesting field names)."""
    model: type[BaseModel] | None = Recipe
    for part in loc:
        if model is None or isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return model
        ann = info.annotation
        nxt = None
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                nxt = cand
        model = nxt
    return model


def _problems(err: ValidationError, located: Located) -> list[Problem]:
    out: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        # Union branches add the branch name to loc ("int", "literal['rest']"): drop them.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in ("int", "str"))))
        where = located.where(loc)
        hint = ""
        if e["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            name = str(loc[-1])
            if parent is not None:
                close = difflib.get_close_matches(name, list(parent.model_fields), n=1)
                known = ", ".join(parent.model_fields)
                hint = (f"did you mean `{close[0]}`?" if close else f"known fields here: {known}")
            out.append(Problem(where, _field_name(loc), "unknown field", hint))
            continue
        if e["type"] == "missing":
            out.append(Problem(where, _field_name(loc), "is required", "add it"))
            continue
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(Problem(where, _field_name(loc), msg, hint))
    return out


def load_recipe(path: str | Path) -> tuple[Recipe, Located]:
    """Read and validate a recipe file; RecipeError lists every problem with its file:line."""
    try:
        located = load(path)
    except YamlError as e:
        raise RecipeError([Problem(e.where, "", e.message)]) from e
    if not isinstance(located.data, dict):
        raise RecipeError([Problem(located.where(()), "", "a recipe is a YAML mapping (name: ..., disk: ...)",
                                   "see recipes/debian-12-minimal.yaml")])
    try:
        recipe = Recipe.model_validate(located.data)
    except ValidationError as e:
        raise RecipeError(_problems(e, located)) from e
    return recipe, located


def json_schema() -> dict[str, Any]:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pvbuild recipe"
    return schema
