"""Recipe -> Plan: every default and every cross-field rule lives here; nothing later reads the recipe.

Rules from the seeds (Amazon's UserProvidedKernels guide and the Japanese field guide) are errors here,
before any work: a 32-bit kernel with 64-bit PV-GRUB (and the reverse), a ramdisk (ARI) with PV-GRUB, GPT with
PV-GRUB <= 1.03, a /boot filesystem PV-GRUB cannot read, root on LVM without a separate /boot, i386 where the
distro's 32-bit kernel has no Xen PV, and an hd00 AKI with a partitionless disk (or hd0 with a partition table).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path
from typing import Literal, NamedTuple

import jinja2

from pvbuild import __version__
from pvbuild.distros import FAMILIES, debian
from pvbuild.distros.profile import (
    INITRD_PACKAGE,
    RD_ZSTD_SINCE,
    Family,
    InitrdTool,
    Kernel,
    Release,
    kernel_refusal,
    series_tuple,
)
from pvbuild.planmodel import (
    AkiChoice,
    AwsPlan,
    BundlePlan,
    DiskPlan,
    DistroPlan,
    FileOverlay,
    FilesystemPlan,
    InitrdPlan,
    KernelPlan,
    LvmPlan,
    MenuEntryPlan,
    MenuPlan,
    OutputPlan,
    Plan,
    PvgrubPlan,
    UserPlan,
)
from pvbuild.pvgrub.profiles import Profile
from pvbuild.recipe import Partition, Problem, Recipe, RecipeError, load_recipe
from pvbuild.resources import TEMPLATES
from pvbuild.yamlsrc import Located, YamlError, load

__all__ = ["Plan", "load_plan", "make_plan", "render_menu"]

MiB = 1024 * 1024
NAMESPACE = uuid.UUID("5d1c6a0e-3f0b-4b5e-9c1d-7e2a8f4b6c3d")  # pvbuild's, for deterministic UUIDs
ROOT_FS_MODULE = {"ext2": "ext4", "ext3": "ext4", "ext4": "ext4", "xfs": "xfs", "btrfs": "btrfs"}
PV_MODULES = ("xen-blkfront", "xen-netfront")
LABEL_MAX = {"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "btrfs": 255, "reiserfs": 16, "jfs": 16}
# GPT partition type GUIDs (the Discoverable Partitions Specification's Linux filesystem data, Linux LVM).
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
# LVM: extents of 4 MiB from 1 MiB into the PV (lvm2's defaults); names as lvm2 accepts them.
LVM_EXTENT = 4 * 1024 * 1024
LVM_PE_START = 1024 * 1024
_LVM_NAME = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,63}")
_LVM_UUID_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# The smallest /boot each filesystem's mkfs makes (reiserfs: its 32 MiB journal; jfs: GRUB's jfs_mount wants 16).
MIN_BOOT = {"reiserfs": 64 * 1024 * 1024, "jfs": 32 * 1024 * 1024}


class _Problems:
    """Collects every problem (with its recipe line) before failing, so the user sees them all at once."""

    def __init__(self, located: Located) -> None:
        self.located = located
        self.items: list[Problem] = []

    def add(self, path: tuple[str | int, ...], message: str, hint: str = "") -> None:
        field = ""
        for part in path:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        self.items.append(Problem(self.located.where(path), field, message, hint))

    def raise_if_any(self) -> None:
        if self.items:
            raise RecipeError(self.items)


def _uuid(name: str, *parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join((name, *parts))))


def _lvm_uuid(name: str, *parts: str) -> str:
    """An LVM UUID (32 characters of lvm2's alphabet, 6-4-4-4-4-4-6) derived from the recipe like the others."""
    n = int.from_bytes(uuid.uuid5(NAMESPACE, "/".join((name, *parts, "lvm"))).bytes
                       + uuid.uuid5(NAMESPACE, "/".join((name, *parts, "lvm2"))).bytes, "big")
    chars = []
    for _ in range(32):
        n, r = divmod(n, len(_LVM_UUID_CHARS))
        chars.append(_LVM_UUID_CHARS[r])
    text = "".join(chars)
    cuts = (6, 4, 4, 4, 4, 4, 6)
    out, at = [], 0
    for c in cuts:
        out.append(text[at:at + c])
        at += c
    return "-".join(out)


def _source_date_epoch(recipe: Recipe, recipe_path: Path, warnings: list[str]) -> int:
    """The recipe's value, then $SOURCE_DATE_EPOCH, then the recipe's lock file, then today (with a warning)."""
    if recipe.source_date_epoch is not None:
        return recipe.source_date_epoch
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env and env.isdigit():
        return int(env)
    lock = recipe_path.with_suffix(".lock")
    if lock.is_file():
        try:
            data = load(lock).data
        except YamlError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("source_date_epoch"), int):
            return int(data["source_date_epoch"])
    today = int(time.time()) // 86400 * 86400
    warnings.append(f"no source_date_epoch in the recipe, $SOURCE_DATE_EPOCH or {lock.name}: using today "
                    f"({today}); builds on another day will differ")
    return today


def _boot_fs_rules(p: _Problems, part: Partition, path: tuple[str | int, ...], allow_btrfs: bool,
                   profile: Profile, warnings: list[str]) -> None:
    """The filesystem PV-GRUB reads menu.lst and the kernel from must be one it can read (PVGRUB.md §5)."""
    opts = " ".join(part.mkfs_options)
    if part.fstype in ("ext2", "ext3", "ext4") and any(
            o in ("64bit",) or o.endswith(",64bit") or o.startswith("64bit,") or ",64bit," in o
            for o in " ".join(part.mkfs_options).replace("-O", " ").split()):
        p.add((*path, "mkfs_options"), "ext4 `64bit` on the filesystem PV-GRUB boots from: PV-GRUB's ext4 code "
                                       "fails every file on it (Error 14)", "remove 64bit (pvbuild adds -O ^64bit)")
    if part.fstype == "xfs" and ("crc=1" in opts or "ftype=1" in opts):
        p.add((*path, "mkfs_options"), "XFS v5 (crc=1) or ftype=1 on the filesystem PV-GRUB boots from: its "
                                       "xfs driver reads only v4 without ftype",
              "drop those options (pvbuild makes /boot XFS with -m crc=0 -n ftype=0) or use ext4 for /boot")
    if part.fstype == "btrfs" and not allow_btrfs:
        p.add((*path, "fstype"), "PV-GRUB cannot read btrfs (its driver is not built into the AKIs; AWS calls "
                                 "it beta at best)", "use ext4 for /boot, or set pvgrub.allow_btrfs_beta: true")
    elif part.fstype == "btrfs" and not profile.btrfs:
        # The build's check runs the emulator under this profile: it would fail every such image (Error 17).
        p.add((*path, "fstype"), f"a btrfs /boot cannot boot: AWS lists BTRFS as beta, and PV-GRUB "
                                 f"{profile.version}'s build has no btrfs driver (Xen's stubdom/grub/Makefile does "
                                 "not compile the 61btrfs patch; pvbuild's emulator profile says the same), so the "
                                 "build's check would fail the image with Error 17",
              "use ext4 (or ext2/ext3, XFS v4, ReiserFS, JFS) for /boot; btrfs can stay off /boot")
    elif part.fstype == "btrfs":
        warnings.append("btrfs /boot: AWS marks PV-GRUB's btrfs support beta")
    if part.fstype in MIN_BOOT and isinstance(part.size, int) and part.size < MIN_BOOT[part.fstype]:
        p.add((*path, "size"), f"{part.fstype} needs at least {MIN_BOOT[part.fstype] // MiB} MiB here",
              f"make it {MIN_BOOT[part.fstype] // MiB}MiB or more")
    if part.lvm:
        p.add((*path, "lvm"), "PV-GRUB cannot read LVM: the filesystem it boots from must be a plain partition",
              "add a separate /boot partition outside LVM")


def _mkfs_options(part: Partition, is_boot: bool) -> tuple[str, ...]:
    """PV-GRUB-safe defaults for the filesystem PV-GRUB reads, then the recipe's options."""
    base: list[str] = []
    if is_boot and part.fstype in ("ext2", "ext3", "ext4"):
        base = ["-O", "^64bit"]
    elif is_boot and part.fstype == "xfs":
        base = ["-m", "crc=0", "-n", "ftype=0"]
    return (*base, *part.mkfs_options)


def _layout(recipe: Recipe, p: _Problems, warnings: list[str]) -> tuple[DiskPlan | None, bool]:
    disk = recipe.disk
    parts = list(disk.partitions) or [Partition.model_validate({"mountpoint": "/"})]
    mounts = [x.mountpoint for x in parts]
    ok = True
    for i, part in enumerate(parts):
        if part.mountpoint not in ("/", "/boot"):
            p.add(("disk", "partitions", i, "mountpoint"), f"{part.mountpoint!r} is not supported yet",
                  "use / and optionally /boot")
            ok = False
    if mounts.count("/") != 1:
        p.add(("disk", "partitions"), "exactly one partition must be mounted at /")
        return None, False
    if mounts.count("/boot") > 1:
        p.add(("disk", "partitions"), "at most one /boot")
        return None, False
    separate_boot = "/boot" in mounts
    if disk.table == "none" and len(parts) > 1:
        p.add(("disk", "table"), "a partitionless disk holds exactly one filesystem; a separate /boot needs a "
                                 "partition table", "write `table: mbr` (and use the hd00 AKI)")
        return None, False
    if disk.table == "mbr" and len(parts) > 4:
        p.add(("disk", "partitions"), "more than 4 partitions needs logical partitions, which pvbuild does not "
                                      "lay out yet", "use at most 4")
        return None, False
    root_part = parts[mounts.index("/")]
    if root_part.lvm and not separate_boot:
        p.add(("disk", "partitions", mounts.index("/"), "lvm"),
              "root on LVM without a separate /boot: PV-GRUB cannot read LVM (AWS: \"you need a separate boot "
              "partition outside of the LVM\")", "add a /boot partition (ext4) before the LVM root")
        return None, False
    boot_index = mounts.index("/boot") if separate_boot else mounts.index("/")
    profile = Profile(recipe.pvgrub.version)
    for i, part in enumerate(parts):
        if i == boot_index:
            _boot_fs_rules(p, part, ("disk", "partitions", i), recipe.pvgrub.allow_btrfs_beta, profile, warnings)
        if part.fstype == "btrfs" and i != boot_index:
            p.add(("disk", "partitions", i, "fstype"), "btrfs is not built yet", "use ext4 or xfs")
        if part.fstype in ("reiserfs", "jfs") and i != boot_index:
            p.add(("disk", "partitions", i, "fstype"), f"{part.fstype} is built for /boot only (PV-GRUB reads it); "
                                                       "a root filesystem on it is not built", "use ext4 or xfs")
        if (part.vg is not None or part.lv is not None) and not part.lvm:
            p.add(("disk", "partitions", i, "vg" if part.vg is not None else "lv"), "names a volume group or "
                                                                                    "logical volume without lvm",
                  "add `lvm: true`, or remove it")
        for key in ("vg", "lv"):
            value = getattr(part, key)
            if value is not None and (not _LVM_NAME.fullmatch(value) or value in (".", "..")):
                p.add(("disk", "partitions", i, key), f"{value!r} is not an LVM name",
                      "letters, digits, + _ . - (not first), at most 64 characters")
        label_max = LABEL_MAX[part.fstype]
        if part.label is not None and len(part.label) > label_max:
            p.add(("disk", "partitions", i, "label"), f"{part.fstype} labels are at most {label_max} characters")
    # Sizes: partitions start at 1 MiB, aligned to 1 MiB; one of them may take the rest.
    fixed = [x.size for x in parts if x.size != "rest"]
    rests = [i for i, x in enumerate(parts) if x.size == "rest"]
    if len(rests) > 1:
        p.add(("disk", "partitions", rests[1], "size"), "only one partition can take the rest of the disk",
              "give the others a size such as 512MiB")
        return None, False
    start = MiB if disk.table != "none" else 0
    # GPT keeps its backup header and entries (33 sectors) at the end of the disk: leave the last MiB free.
    usable = disk.size - start - (MiB if disk.table == "gpt" else 0)
    aligned = [((s + MiB - 1) // MiB) * MiB for s in fixed if isinstance(s, int)]
    rest = usable - sum(aligned)
    if rest <= 0 or (rests and rest < 64 * MiB):
        p.add(("disk", "size"), f"{disk.size // MiB} MiB cannot hold the partitions "
                                f"({sum(aligned) // MiB} MiB fixed, the rest needs at least 64 MiB)",
              "make disk.size larger")
        return None, False
    if disk.table == "none" and root_part.size not in ("rest", disk.size):
        p.add(("disk", "partitions", 0, "size"), "a partitionless filesystem is the whole disk",
              "remove the size or make it equal to disk.size")
    name = recipe.name
    filesystems = []
    offset = start
    for i, part in enumerate(parts):
        size = rest if part.size == "rest" else ((int(part.size) + MiB - 1) // MiB) * MiB
        if disk.table == "none":
            size = disk.size
        is_root = part.mountpoint == "/"
        default_label = "rootfs" if is_root else "boot"
        lvm = None
        if part.lvm and part.mountpoint == "/":
            extents = (size - LVM_PE_START) // LVM_EXTENT
            lvm = LvmPlan(part.vg or name, part.lv or "root", _lvm_uuid(name, "/", "pv"), _lvm_uuid(name, "/", "vg"),
                          _lvm_uuid(name, "/", "lv"), LVM_EXTENT, LVM_PE_START, extents)
            if lvm.lv_bytes < 64 * MiB:
                p.add(("disk", "partitions", i, "size"), "the LVM root needs at least 64 MiB of extents")
        part_type = ""
        if disk.table == "mbr":
            part_type = part.type or ("8e" if part.lvm else "83")
        elif disk.table == "gpt":
            part_type = (part.type or (GPT_LVM if part.lvm else GPT_LINUX)).upper()
            try:
                uuid.UUID(part_type)
            except ValueError:
                p.add(("disk", "partitions", i, "type"), f"{part.type!r} is not a GPT type GUID",
                      f"e.g. {GPT_LINUX} (Linux filesystem)")
        filesystems.append(FilesystemPlan(
            mountpoint=part.mountpoint,
            fstype=part.fstype,
            label=part.label or default_label,
            uuid=part.uuid or _uuid(name, part.mountpoint, "fs"),
            hash_seed=_uuid(name, part.mountpoint, "hash-seed") if part.fstype.startswith("ext") else None,
            mkfs_options=_mkfs_options(part, i == boot_index),
            size_bytes=size,
            part_type=part_type,
            offset_bytes=offset,
            # GPT: GRUB's partition number is the GPT entry index, as the emulator numbers them (UNVERIFIED for
            # Amazon's 1.04+ builds: pvgrub/disk.py, profiles.py).
            grub_device="(hd0)" if disk.table == "none" else f"(hd0,{i})",
            linux_device=(f"/dev/mapper/{lvm.dm_name}" if lvm else
                          "/dev/xvda" if disk.table == "none" else f"/dev/xvda{i + 1}"),
            part_uuid=_uuid(name, part.mountpoint, "gpt-partition").upper() if disk.table == "gpt" else "",
            lvm=lvm,
        ))
        offset += size
    disk_id = None
    if disk.table == "mbr":
        disk_id = f"0x{uuid.uuid5(NAMESPACE, name + '/disk').hex[:8]}"
    elif disk.table == "gpt":
        disk_id = str(uuid.uuid5(NAMESPACE, name + "/gpt-disk")).upper()
        warnings.append("GPT: PV-GRUB numbers the partitions (hd0,N) by GPT entry index here, as pvbuild's "
                        "emulator does; Amazon's 1.04+ numbering is UNVERIFIED (no source found)")
    return DiskPlan(disk.table, disk.size, disk_id, tuple(filesystems)), ok


def render_menu(recipe_name: str, default: int, fallback: tuple[int, ...], timeout: int | None,
                hiddenmenu: bool, entries: tuple[MenuEntryPlan, ...]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, autoescape=False)  # noqa: S701 - not HTML
    return env.get_template("menu.lst.j2").render(
        recipe_name=recipe_name, default=default, fallback=fallback, timeout=timeout, hiddenmenu=hiddenmenu,
        entries=entries)


def _menu_text_rules(p: _Problems, path: tuple[str | int, ...], text: str, what: str) -> None:
    """A menu.lst line is one line to GRUB: no newline, and no trailing backslash (it would join lines)."""
    if "\n" in text or "\r" in text:
        p.add(path, f"{what} contains a line break, which would end the menu.lst line")
    if text.rstrip().endswith("\\"):
        p.add(path, f"{what} ends with a backslash, which GRUB reads as a line continuation")


def _menu(recipe: Recipe, disk: DiskPlan, kernel: KernelPlan, release: Release,
          p: _Problems, warnings: list[str]) -> MenuPlan:
    m = recipe.menu
    boot = disk.boot
    prefix = "" if boot.mountpoint == "/boot" else "/boot"
    title = m.title or release.title
    _menu_text_rules(p, ("menu", "title"), title, "the title")
    args = kernel.cmdline
    entries = [MenuEntryPlan(title, boot.grub_device, f"{prefix}/vmlinuz", f"{prefix}/initrd.img", args)]
    if kernel.pinned_fallback:
        ver = kernel.pinned_fallback
        entries.append(MenuEntryPlan(f"{title}, kernel {ver} (known good)", boot.grub_device,
                                     f"{prefix}/vmlinuz-{ver}", f"{prefix}/initrd.img-{ver}", args))
    else:
        entries.append(MenuEntryPlan(f"{title} (previous kernel)", boot.grub_device, f"{prefix}/vmlinuz.old",
                                     f"{prefix}/initrd.img.old", args))
    for i, e in enumerate(m.entries):
        _menu_text_rules(p, ("menu", "entries", i, "title"), e.title, "the title")
        extra = list(e.args)
        if not any(a.startswith("root=") for a in extra):
            extra.insert(0, kernel.root_arg)
        if not any(a.startswith("console=") for a in extra):
            extra.append(f"console={kernel.console}")
        line = " ".join(extra)
        _menu_text_rules(p, ("menu", "entries", i, "args"), line, "the arguments")
        for key in ("kernel", "initrd"):
            value = getattr(e, key)
            if value is not None and not value.startswith(("/", "(")):
                p.add(("menu", "entries", i, key), f"{value!r} is neither an absolute path nor a GRUB device "
                                                   "path: PV-GRUB fails it with Error 1", f"write /boot/{value}")
        entries.append(MenuEntryPlan(e.title, boot.grub_device, e.kernel, e.initrd, line))
    fallback = tuple(m.fallback) if m.fallback is not None else ((1,) if len(entries) > 1 else ())
    if not 0 <= m.default < len(entries):
        p.add(("menu", "default"), f"entry {m.default} does not exist (there are {len(entries)})",
              f"use 0..{len(entries) - 1}")
    for j, f in enumerate(fallback):
        if not 0 <= f < len(entries):
            p.add(("menu", "fallback", j), f"entry {f} does not exist (there are {len(entries)})")
    if len(set(fallback)) != len(fallback):
        p.add(("menu", "fallback"), "a repeated entry: GRUB 0.97 drops the whole fallback line when a duplicate "
                                    "is followed by more values", "list each entry once")
    if len(fallback) > 8:
        p.add(("menu", "fallback"), "GRUB keeps at most 8 fallback entries")
    if m.timeout is None:
        warnings.append("menu.timeout is null: PV-GRUB will wait at the menu forever and the instance never "
                        "boots on EC2 (nobody can press a key); the build's check will fail")
    elif m.timeout < 0:
        p.add(("menu", "timeout"), "a negative timeout means no timeout: PV-GRUB waits forever",
              "use 0 (boot at once) or more")
    text = render_menu(recipe.name, m.default, fallback, m.timeout, m.hiddenmenu, tuple(entries))
    path = f"{prefix}/grub/menu.lst" if prefix else "/grub/menu.lst"
    return MenuPlan(m.default, fallback, m.timeout, m.hiddenmenu, tuple(entries), text, path)


class _DistroChoice(NamedTuple):
    kernel_package: str
    kernel_compression: str  # "" when the recipe names a kernel pvbuild knows nothing about
    console: str
    initrd_tool: InitrdTool
    initrd_compression: str
    backend: Literal["mmdebstrap", "diskimage-builder"]


def _distro_choice(recipe: Recipe, family: Family, release: Release, p: _Problems) -> _DistroChoice:
    """The distro profile's answers for this recipe, and its refusals (distros/profile.py says why each one)."""
    d = recipe.distro
    known = release.kernel(recipe.arch, recipe.kernel.package)
    # A kernel the recipe names and the profile does not know is trusted: the build's check reads it.
    custom = recipe.kernel.package is not None and isinstance(known, str)
    kernel = known if isinstance(known, Kernel) else None
    if not custom:
        from pvbuild.pvgrub.profiles import Profile as PvgrubProfile

        readable = PvgrubProfile(recipe.pvgrub.version).compressions
        refusal = kernel_refusal(release, recipe.arch, readable, recipe.kernel.package)
        if refusal is not None:
            where = ("kernel", "package") if recipe.kernel.package else ("distro", "release")
            p.add(("arch",) if refusal.field == "arch" else where, refusal.message, refusal.hint)
    console = recipe.kernel.console
    if "console" not in recipe.kernel.model_fields_set and kernel is not None:
        console = kernel.console
    tool: InitrdTool = release.initrd_tool
    if recipe.initrd.tool not in ("auto", release.initrd_tool):
        if recipe.initrd.tool == "dracut" and family.apt:
            p.add(("initrd", "tool"), f"dracut initrds are not built yet on {family.title}",
                  f"use {release.initrd_tool} (auto)")
        else:
            p.add(("initrd", "tool"), f"{release.title} makes its initrd with {release.initrd_tool}; "
                                      f"{recipe.initrd.tool} is not its tool", f"use {release.initrd_tool} (auto)")
    series = series_tuple(kernel.series) if kernel is not None else None
    compression = recipe.initrd.compression
    if compression is None:
        # Debian's kernels (and any the recipe names there) are >= 5.9; elsewhere an unknown kernel gets gzip.
        zstd_ok = series >= RD_ZSTD_SINCE if series is not None else family.name == "debian"
        compression = "zstd" if zstd_ok else "gzip"
    elif compression == "zstd" and series is not None and series < RD_ZSTD_SINCE:
        assert kernel is not None
        p.add(("initrd", "compression"), f"Linux {kernel.series} ({kernel.package}) cannot unpack a zstd initramfs "
                                         "(CONFIG_RD_ZSTD came with 5.9): the kernel would find no root",
              "use gzip (or remove it: gzip is the default for this release)")
    backend = d.backend or ("mmdebstrap" if family.name == "debian" else "diskimage-builder")
    if backend == "mmdebstrap" and not family.apt:
        p.add(("distro", "backend"), f"mmdebstrap bootstraps apt archives (Debian, Ubuntu), not {family.title}",
              "use diskimage-builder (the default for this family)")
    if not family.apt:
        for key in ("components", "security_mirror"):
            if key in d.model_fields_set:
                p.add(("distro", key), f"{key} is for apt archives (Debian, Ubuntu), not {family.title}",
                      "remove it")
    if family.name != "debian" and family.mirror(d.mirror) is None:
        p.add(("distro", "mirror"), f"no {family.title} archive to install from: give distro.mirror (the "
                                    f"archive's URL) or set ${family.mirror_variable}",
              "pvbuild writes no archive host of its own")
    package = recipe.kernel.package or (known.package if isinstance(known, Kernel) else "")
    return _DistroChoice(package, kernel.compression if kernel is not None else "", console, tool, compression,
                         backend)


def make_plan(recipe: Recipe, located: Located, recipe_path: Path) -> Plan:
    """All decisions for `recipe`; RecipeError lists every rule it breaks, with its line."""
    p = _Problems(located)
    warnings: list[str] = []
    family = FAMILIES[recipe.distro.family]
    release = family.resolve(recipe.distro.release or family.default_release)
    if release is None:
        p.add(("distro", "release"), f"unknown {family.title} release {recipe.distro.release!r}",
              f"known {family.title} releases: {family.known()}")
        p.raise_if_any()
    assert release is not None
    # --- AKI profile rules (seeds) ---
    pvgrub_arch = recipe.pvgrub.arch or recipe.arch
    if pvgrub_arch != recipe.arch:
        p.add(("pvgrub", "arch"), f"{'64' if pvgrub_arch == 'x86_64' else '32'}-bit PV-GRUB cannot start a "
                                  f"{'64' if recipe.arch == 'x86_64' else '32'}-bit kernel (seed: \"You cannot "
                                  "use the 64-bit version of PV-GRUB to start a 32-bit kernel or vice versa\")",
              f"remove pvgrub.arch or set it to {recipe.arch}")
    variant: Literal["hd0", "hd00"] = recipe.pvgrub.variant or ("hd0" if recipe.disk.table == "none" else "hd00")
    if recipe.disk.table == "none" and variant == "hd00":
        p.add(("pvgrub", "variant"), "the hd00 AKI is for images with a partition table; this disk is "
                                     "partitionless", "use variant hd0, or disk.table: mbr")
    if recipe.disk.table != "none" and variant == "hd0":
        p.add(("pvgrub", "variant"), "the hd0 AKI is for partitionless images (seed: choose hd00 for an image "
                                     "that has a partition table)", "use variant hd00, or disk.table: none")
    if recipe.disk.table == "gpt" and recipe.pvgrub.version <= "1.03":
        p.add(("disk", "table"), f"PV-GRUB {recipe.pvgrub.version} does not support GPT (1.03 and earlier "
                                 "read only MBR partition tables)", "use table: mbr, or pvgrub.version 1.05")
    for key in ("ramdisk_id", "ramdisk", "ari"):
        if recipe.aws is not None and getattr(recipe.aws, key) is not None:
            p.add(("aws", key), "a ramdisk (ARI) must not be given with a PV-GRUB AKI (seed: \"You must not "
                                "specify an Amazon ramdisk image (ARI) when using a PV-GRUB AKI\"); PV-GRUB "
                                "would take it for its menu", "remove it: the initrd is named in menu.lst")
    deb_arch: Literal["amd64", "i386"] = "amd64" if recipe.arch == "x86_64" else "i386"
    choice = _distro_choice(recipe, family, release, p)
    disk, _ = _layout(recipe, p, warnings)
    p.raise_if_any()
    assert disk is not None
    # --- distro and packages ---
    if family.name == "debian":
        mirror, security = debian.mirrors(recipe.distro.mirror, recipe.distro.security_mirror)
    else:
        mirror, security = family.mirror(recipe.distro.mirror) or "", recipe.distro.security_mirror or ""
    kernel_package = choice.kernel_package
    tool = choice.initrd_tool
    base_packages = debian.BASE_PACKAGES if family.name == "debian" else ()
    packages = {*base_packages, kernel_package, INITRD_PACKAGE[tool]}
    if any(f.fstype == "xfs" for f in disk.filesystems):
        packages.add("xfsprogs")
    if disk.root.lvm is not None:
        packages.add("lvm2")  # its initramfs-tools hook activates the root LV (root=/dev/mapper/...)
    if recipe.ssh_authorized_keys or any(u.ssh_authorized_keys for u in recipe.users):
        packages.add("openssh-server")
    if any(u.sudo for u in recipe.users):
        packages.add("sudo")
    # The family's own names for what pvbuild adds (the recipe's packages are taken as written).
    packages = {family.package(x) for x in packages} | set(recipe.packages)
    distro = DistroPlan(family.name, release.name, release.version, mirror, security,
                        tuple(recipe.distro.components) if family.apt else (), deb_arch, choice.backend,
                        "minbase" if choice.backend == "mmdebstrap" else "", tuple(sorted(packages)),
                        release.dib_element, choice.kernel_compression)
    # --- kernel, initrd, menu ---
    root = disk.root
    root_arg = {"uuid": f"root=UUID={root.uuid}", "label": f"root=LABEL={root.label}",
                "device": f"root={root.linux_device}"}[recipe.kernel.root]
    if root.lvm is not None:
        # The initrd (lvm2's initramfs-tools hook: lvm, its udev rules, dm-mod) activates the VG when the PV
        # appears; root= waits for the LV by its /dev/mapper path, as Debian's installer writes it (older lvm2
        # local-top scripts activate only the LV root= names that way).
        root_arg = f"root={root.linux_device}"
        if recipe.kernel.root != "uuid":
            warnings.append(f"kernel.root: {recipe.kernel.root} is ignored for an LVM root: root= names "
                            f"{root.linux_device}, which is what the initrd activates")
    if recipe.kernel.root == "device" and disk.table == "none":
        warnings.append("root=/dev/xvda names the whole disk as a local Xen host attaches it; EC2 attaches a "
                        "partitionless root as sda1 (xvda1): kernel.root: uuid works on both")
    for i, a in enumerate(recipe.kernel.cmdline):
        if a.startswith(("root=", "console=")):
            p.add(("kernel", "cmdline", i), f"{a.split('=')[0]}= is set by pvbuild",
                  "use kernel.root / kernel.console instead")
    boot_prefix = "" if disk.boot.mountpoint == "/boot" else "/boot"
    kernel = KernelPlan(kernel_package, root_arg, choice.console, tuple(recipe.kernel.cmdline),
                        f"{boot_prefix}/vmlinuz", f"{boot_prefix}/initrd.img", f"{boot_prefix}/vmlinuz.old",
                        f"{boot_prefix}/initrd.img.old", recipe.kernel.fallback_version)
    _menu_text_rules(p, ("kernel", "cmdline"), kernel.cmdline, "the kernel command line")
    if len(kernel.cmdline.encode()) > 1023:
        p.add(("kernel", "cmdline"), f"the kernel command line is {len(kernel.cmdline.encode())} bytes; Xen "
                                     "passes only 1023", "shorten it")
    lvm_modules = ["dm-mod"] if root.lvm is not None else []
    modules = list(dict.fromkeys([*PV_MODULES, ROOT_FS_MODULE[root.fstype], *lvm_modules, *recipe.initrd.modules]))
    initrd = InitrdPlan(tool, tuple(modules), choice.initrd_compression)
    menu = _menu(recipe, disk, kernel, release, p, warnings)
    # --- files, users ---
    base = recipe_path.parent
    files = []
    for i, f in enumerate(recipe.files):
        if not f.dest.startswith("/"):
            p.add(("files", i, "dest"), f"{f.dest!r} is not an absolute path", f"write /{f.dest}")
        if (f.src is None) == (f.content is None):
            p.add(("files", i), "give exactly one of src and content")
            continue
        src = ""
        if f.src is not None:
            src_path = (base / f.src).resolve()
            if not src_path.is_file():
                p.add(("files", i, "src"), f"{src_path} does not exist", "paths are relative to the recipe")
            src = str(src_path)
        mode = None
        if f.mode is not None:
            try:
                mode = int(f.mode, 8)
            except ValueError:
                p.add(("files", i, "mode"), f"{f.mode!r} is not an octal mode", "write e.g. \"0644\"")
        files.append(FileOverlay(src, f.dest, mode, f.content))
    users = []
    for i, u in enumerate(recipe.users):
        if not u.name.isidentifier() and not all(c.isalnum() or c in "_-" for c in u.name):
            p.add(("users", i, "name"), f"{u.name!r} is not a valid user name")
        if u.password_hash is not None and not u.password_hash.startswith(("$", "!", "*")):
            p.add(("users", i, "password_hash"), "expected a crypt(3) hash such as $6$...",
                  "generate one with `mkpasswd -m sha-512`, never a clear-text password")
        for j, key in enumerate(u.ssh_authorized_keys):
            if not key.startswith(("ssh-", "ecdsa-", "sk-")):
                p.add(("users", i, "ssh_authorized_keys", j), "not an OpenSSH public key")
        users.append(UserPlan(u.name, tuple(u.groups), u.shell, u.password_hash, tuple(u.ssh_authorized_keys),
                              u.sudo))
    for j, key in enumerate(recipe.ssh_authorized_keys):
        if not key.startswith(("ssh-", "ecdsa-", "sk-")):
            p.add(("ssh_authorized_keys", j), "not an OpenSSH public key")
    p.raise_if_any()
    out_dir = Path(recipe.output.directory) if recipe.output.directory else Path("out") / recipe.name
    if not out_dir.is_absolute():
        out_dir = (base / out_dir) if recipe.output.directory else (Path.cwd() / out_dir)
    output = OutputPlan(str(out_dir.resolve()), f"{recipe.name}.raw", tuple(recipe.output.formats))
    sde = _source_date_epoch(recipe, recipe_path, warnings)
    aws = _aws_plan(recipe, base, variant, pvgrub_arch, p)
    p.raise_if_any()
    return Plan(str(recipe_path.resolve()), recipe.name, recipe.hostname or recipe.name, sde, distro, kernel,
                initrd, disk, menu, PvgrubPlan(recipe.pvgrub.version, variant, pvgrub_arch),
                tuple(files), tuple(users), tuple(recipe.ssh_authorized_keys), output, aws, tuple(warnings),
                __version__, boot=recipe.boot)


def _aws_plan(recipe: Recipe, base: Path, variant: str, arch: str, p: _Problems) -> AwsPlan | None:
    """The `aws` section resolved: regions with PV-GRUB AKIs, bundle files that exist, a valid AMI name."""
    from pvbuild.aws import aki
    from pvbuild.aws.register import _AMI_NAME, root_device_for

    a = recipe.aws
    if a is None:
        return None
    if not a.regions:
        p.add(("aws", "regions"), "no region to register in", "list at least one, e.g. regions: [us-east-1]")
    if len(set(a.regions)) != len(a.regions):
        p.add(("aws", "regions"), "a region is listed twice")
    choices: list[AkiChoice] = []
    for i, region in enumerate(a.regions):
        try:
            chosen = aki.select(region, arch, variant, None, live=False)
        except aki.AkiError as e:
            p.add(("aws", "regions", i), str(e).splitlines()[0],
                  "PV-GRUB AKIs exist in: " + ", ".join(aki.regions()))
            continue
        choices.append(AkiChoice(region, chosen.aki_id, chosen.name))
    name = a.ami_name or recipe.name
    if not _AMI_NAME.fullmatch(name):
        p.add(("aws", "ami_name"), f"{name!r} is not a valid AMI name",
              "3-128 characters: letters, digits, ( ) [ ] . / - ' @ _ and space")
    bundle: BundlePlan | None = None
    if a.backing == "s3":
        if a.bundle is None:
            p.add(("aws", "backing"), "an S3-backed AMI needs aws.bundle (bucket, user, cert, private_key)")
        else:
            b = a.bundle
            if len(a.regions) > 1 and "{region}" not in b.bucket:
                p.add(("aws", "bundle", "bucket"), f"one bucket {b.bucket!r} for {len(a.regions)} regions: a "
                                                   "bucket lives in one region", "put {region} in the name")
            paths: dict[str, str | None] = {}
            for key in ("cert", "private_key", "ec2_cert"):
                value = getattr(b, key)
                if value is None:
                    paths[key] = None
                    continue
                resolved = (base / value).resolve()
                if not resolved.is_file():
                    p.add(("aws", "bundle", key), f"{resolved} does not exist", "paths are relative to the recipe")
                paths[key] = str(resolved)
            bundle = BundlePlan(b.bucket, b.prefix, b.user.replace("-", ""), paths["cert"] or "",
                                paths["private_key"] or "", paths["ec2_cert"])
    elif a.bundle is not None:
        p.add(("aws", "bundle"), "aws.bundle is only used with backing: s3", "remove it, or set backing: s3")
    root_device = a.root_device or root_device_for(variant)
    if not re.fullmatch(r"/dev/(sd|xvd)[a-z]\d*", root_device):
        p.add(("aws", "root_device"), f"{root_device!r} is not a device name", "e.g. /dev/sda1")
    return AwsPlan(tuple(a.regions), name, a.description, a.backing, a.ebs.volume_size, a.ebs.volume_type,
                   a.ebs.delete_on_termination, bundle, tuple(sorted(a.tags.items())), a.aki, a.replace,
                   root_device, tuple(choices))


def load_plan(path: str | Path) -> Plan:
    """Read, validate and plan a recipe file."""
    recipe_path = Path(path)
    recipe, located = load_recipe(recipe_path)
    return make_plan(recipe, located, recipe_path)
