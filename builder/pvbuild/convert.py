"""`pvbuild convert`: make a disk image someone else built (Packer's qemu builder, a cloud image, an old AMI's
volume) boot through PV-GRUB — the seeds' "update an existing AMI to use a user-provided kernel", done on the
image instead of on a running instance.

Why each step is the way it is:

- Nothing is mounted on the host: an image from elsewhere is untrusted input, and a loop mount hands it to the
  kernel's filesystem code. ext2/3/4 are read with `debugfs -c` (read-only, through `IMAGE?offset=N` for a
  partition) and edited with `debugfs -w`; a V4 XFS /boot is read with the emulator's XFS reader and edited in a
  libguestfs appliance (its own kernel mounts it); XFS v5 and btrfs are only identified (pvgrub.fs.probe).
- The image is never changed unless `--in-place`: the output is a sparse copy (data ranges only) written under
  a temporary name next to it and renamed when complete, so a failure leaves nothing behind.
- Only what PV-GRUB (GRUB 0.97 with Xen's ext4 patch) cannot read is fixed, and only when that is safe on an
  unmounted filesystem: ext4 `64bit` (every lookup fails with Error 14, pvgrub/fs/ext2.py) is dropped with
  `e2fsck -f -y` + `resize2fs -s`; holes in the kernel and initrd (the ext4 reader misreads them) become
  unwritten extents (`debugfs fallocate`, as the build does); a separate /boot gets `boot -> .` so that
  /boot/grub/menu.lst resolves on it (PV-GRUB <= 1.03 looks only there). metadata_csum is a ro_compat
  feature, which GRUB 0.97 never looks at: it stays. What cannot be fixed safely is refused with the reason:
  XFS v5, V4 with ftype=1 or btrfs /boot, meta_bg, inline_data, blocks above 8 KiB, GPT with PV-GRUB <= 1.03, no
  Xen PV kernel.
- Kernels are found by name (/boot/vmlinuz-VERSION with initrd.img-VERSION, initrd-VERSION.img,
  initramfs-VERSION.img or initrd-VERSION), checked with the emulator's kernel inspector exactly as PV-GRUB's
  loader would see them, and named by version in menu.lst (newest first; the seeds recommend choosing the
  kernel explicitly rather than following whatever the distribution's hooks install next).
- The result is proved by the emulator (`check_image` under the chosen profile) and its report is written as
  boot-report.json next to the output, which `pvbuild register` trusts.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pvbuild.build.run import Log, run
from pvbuild.errors import EnvironmentProblem, UsageError
from pvbuild.pvgrub.blockio import Disk, Volume
from pvbuild.pvgrub.disk import Scheme, read_layout
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.fs import ext2, probe, xfs
from pvbuild.pvgrub.fs.base import S_IFDIR, S_IFREG, FsIdentity, Inode
from pvbuild.pvgrub.kernel import inspect_kernel
from pvbuild.pvgrub.profiles import Profile
from pvbuild.sparse import data_ranges

LINUX_FS = ("ext2", "ext3", "ext4", "xfs", "btrfs")
EXT_FS = ("ext2", "ext3", "ext4")
KERNEL_NAME = re.compile(r"vmlinu[zx]-(\d[A-Za-z0-9._+~-]*)")
INITRD_NAMES = ("initrd.img-{v}", "initramfs-{v}.img", "initrd-{v}.img", "initrd-{v}")
# Names debugfs commands can carry unquoted (the build's rule): anything else in /boot is left alone.
SAFE_NAME = re.compile(r"[A-Za-z0-9._+@%=,~-]+")
MAX_KERNEL = 256 * 1024 * 1024
MAX_SMALL_FILE = 1024 * 1024
QCOW2_MAGIC = b"QFI\xfb"
CONVERT_NOTE = ("# Kernels are named by version (found by `pvbuild convert`): after installing another kernel, run\n"
                "# `pvbuild convert` again (or edit this file), or PV-GRUB keeps booting the one named here.\n")
_TEMPLATE_NOTE = re.compile(r"# The kernel and initrd paths are symlinks.*?\n(#.*?\n)?", re.S)
_FALLOC_FL_KEEP_SIZE = 1
_FALLOC_FL_PUNCH_HOLE = 2


class ConvertRefused(UsageError):
    """The image cannot be made PV-GRUB-ready safely; the message says why and what to do (exit 2)."""


# ---------------------------------------------------------------------------------------------------------
# What the user asked for


@dataclass(frozen=True)
class ExtraEntry:
    """A recipe's `menu.entries` item, appended after the generated entries."""

    title: str
    kernel: str
    initrd: str | None
    args: tuple[str, ...]


@dataclass(frozen=True)
class MenuOptions:
    """menu.lst settings: flags, else the recipe's `menu`/`kernel`/`pvgrub` sections, else the build's defaults."""

    title: str | None = None
    default: int = 0
    fallback: tuple[int, ...] | None = None  # None: [1] when there are two entries or more
    timeout: int | None = 0
    hiddenmenu: bool = True
    cmdline: tuple[str, ...] = ()
    console: str = "hvc0"
    root: Literal["uuid", "label", "device"] = "uuid"
    extra_entries: tuple[ExtraEntry, ...] = ()
    recipe_name: str | None = None
    pvgrub_version: str = "1.05"
    variant: str | None = None  # None: hd0 for a partitionless image, hd00 for a partitioned one
    arch: str = "x86_64"


def menu_options(recipe: str | os.PathLike[str] | None, **flags: Any) -> MenuOptions:
    """Merge a recipe's sections and the flags (a flag given wins over the recipe; None means not given)."""
    base: dict[str, Any] = {}
    if recipe is not None:
        from pvbuild.recipe import load_recipe

        r, _ = load_recipe(Path(recipe))
        m = r.menu
        base = {"title": m.title, "default": m.default,
                "fallback": tuple(m.fallback) if m.fallback is not None else None, "timeout": m.timeout,
                "hiddenmenu": m.hiddenmenu, "cmdline": tuple(r.kernel.cmdline), "console": r.kernel.console,
                "root": r.kernel.root, "recipe_name": r.name, "pvgrub_version": r.pvgrub.version,
                "variant": r.pvgrub.variant, "arch": r.pvgrub.arch or r.arch,
                "extra_entries": tuple(ExtraEntry(e.title, e.kernel, e.initrd, tuple(e.args)) for e in m.entries)}
    for key, value in flags.items():
        if value is not None:
            base[key] = tuple(value) if isinstance(value, list) else value
    opts = MenuOptions(**base)
    if opts.timeout is not None and opts.timeout < 0:
        raise UsageError("--timeout: a negative timeout means no timeout: PV-GRUB would wait forever (use 0 or more)")
    for text, what in [(opts.title or "", "the title"), (" ".join(opts.cmdline), "--cmdline"),
                       (opts.console, "--console")]:
        if "\n" in text or "\r" in text or text.rstrip().endswith("\\"):
            raise UsageError(f"{what} {text!r}: a menu.lst line cannot hold a line break or end with a backslash")
    Profile(opts.pvgrub_version, opts.variant or "hd0", opts.arch)  # ValueError -> reported by the caller
    return opts


# ---------------------------------------------------------------------------------------------------------
# What the image holds


@dataclass(frozen=True)
class FsInfo:
    """One filesystem of the image: where it is, what it is, how GRUB and Linux name it."""

    grub_device: str  # (hd0) or (hd0,N)
    linux_device: str  # /dev/xvda or /dev/xvdaN
    start: int
    length: int
    part_type: int | None
    identity: FsIdentity

    @property
    def fstype(self) -> str:
        return self.identity.fstype

    def to_json(self) -> dict[str, Any]:
        return {"device": self.grub_device, "linux": self.linux_device, "fstype": self.fstype,
                "uuid": self.identity.uuid, "label": self.identity.label, "offset": self.start,
                "size": self.length}


@dataclass(frozen=True)
class KernelFound:
    version: str
    kernel: str  # path inside the /boot filesystem
    initrd: str | None
    kernel_size: int
    initrd_size: int
    usable: bool
    why: str  # the inspector's summary, or why PV-GRUB cannot start it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Analysis:
    scheme: str
    root: FsInfo
    boot: FsInfo
    separate_boot: bool
    prefix: str  # "/boot" when /boot is on the root filesystem, "" for a separate /boot
    kernels: list[KernelFound]
    os_name: str | None
    boot_names: dict[str, tuple[int, int]]  # name -> (mode, size) in the kernels' folder
    top_names: dict[str, tuple[int, int]]  # name -> (mode, size) at the top of the /boot filesystem
    grub_names: dict[str, tuple[int, int]] | None  # the grub folder, None if missing
    superblock: ext2.Superblock | None  # the /boot filesystem's, when it is ext2/3/4
    profile: Profile
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> list[KernelFound]:
        return [k for k in self.kernels if k.usable]

    @property
    def grub_dir(self) -> str:
        return f"{self.prefix}/grub"

    @property
    def menu_path(self) -> str:
        return f"{self.grub_dir}/menu.lst"


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Order kernel versions as people do: digit runs as numbers ("6.1.0-28" after "6.1.0-9")."""
    return tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in re.split(r"(\d+)", version) if p)


class _ExtReader:
    """Read-only access to one ext filesystem of the image with `debugfs -c` (no mount, no bitmaps read)."""

    def __init__(self, spec: str, log: Log) -> None:
        self.spec = spec
        self.log = log

    def _debugfs(self, request: str) -> tuple[bytes, str]:
        r = run(["debugfs", "-c", "-R", request, self.spec], log=self.log, capture=True, quiet=True,
                env={**os.environ, "LC_ALL": "C"})
        return r.stdout, r.stderr.decode("utf-8", "replace")

    def ls(self, path: str) -> dict[str, tuple[int, int]] | None:
        """name -> (mode, size) of a folder's entries (without . and ..), None if it does not exist."""
        out, err = self._debugfs(f"ls -p {path}")
        if "not found" in err or "Ext2 inode is not a directory" in err:
            return None
        found: dict[str, tuple[int, int]] = {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            parts = line.strip().split("/")
            if len(parts) != 8 or parts[0] or parts[7]:
                continue
            name = parts[5]
            if name in (".", ".."):
                continue
            try:
                found[name] = (int(parts[2], 8), int(parts[6] or 0))
            except ValueError:
                continue
        return found

    def cat(self, path: str, limit: int) -> bytes:
        out, err = self._debugfs(f"cat {path}")
        if not out and "not found" in err:
            raise FileNotFoundError(path)
        return out[:limit]


class _XfsReader:
    """Read-only access to an XFS V4 filesystem (the only XFS PV-GRUB reads) through the emulator's reader."""

    def __init__(self, fs: xfs.XfsFilesystem) -> None:
        self.fs = fs

    def _lookup(self, path: str) -> Inode | None:
        try:
            st = self.fs.stat(self.fs.root_ino)
            for comp in (c for c in path.split("/") if c):
                if st.kind != S_IFDIR:
                    return None
                want = comp.encode("utf-8", "surrogateescape")
                entry = next((e for e in self.fs.listdir(st.ino) if e.name == want), None)
                if entry is None:
                    return None
                st = self.fs.stat(entry.ino)
            return st
        except GrubError as e:
            raise ConvertRefused(f"{self.fs.vol.name}{path}: the XFS filesystem cannot be read: {e}") from None

    def ls(self, path: str) -> dict[str, tuple[int, int]] | None:
        st = self._lookup(path)
        if st is None or st.kind != S_IFDIR:
            return None
        try:
            return {e.name.decode("utf-8", "surrogateescape"): (s.mode, s.size)
                    for e in self.fs.listdir(st.ino) for s in (self.fs.stat(e.ino),)}
        except GrubError as e:
            raise ConvertRefused(f"{self.fs.vol.name}{path}: the XFS folder cannot be read: {e}") from None

    def cat(self, path: str, limit: int) -> bytes:
        st = self._lookup(path)
        if st is None or st.kind != S_IFREG:
            raise FileNotFoundError(path)
        out = bytearray()
        try:
            for chunk in self.fs.content(st.ino):
                out += chunk
                if len(out) >= limit:
                    break
        except GrubError as e:
            raise ConvertRefused(f"{self.fs.vol.name}{path}: cannot be read: {e}") from None
        return bytes(out[:limit])


_Reader = _ExtReader | _XfsReader


@contextlib.contextmanager
def _source_link(image: Path) -> Iterator[Path]:
    """A symlink to the image in a private folder: debugfs reads `NAME?offset=N`, which a '?' in the user's
    path would break."""
    folder = Path(tempfile.mkdtemp(prefix="pvbuild-convert-"))
    if "?" in str(folder):
        shutil.rmtree(folder, ignore_errors=True)
        raise EnvironmentProblem(f"the temporary folder {folder} has a '?' in its path; set TMPDIR elsewhere")
    try:
        link = folder / "image"
        link.symlink_to(image.resolve())
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _spec(link: Path, fs: FsInfo) -> str:
    return f"{link}?offset={fs.start}" if fs.start else str(link)


def _filesystems(disk: Disk, profile_version: str) -> tuple[str, list[FsInfo], list[str]]:
    layout = read_layout(disk)
    if layout.scheme == Scheme.GPT and profile_version < "1.04":
        raise ConvertRefused(f"the image has a GPT partition table, which PV-GRUB {profile_version} cannot read "
                             "(GPT needs PV-GRUB 1.04 or later): use --pvgrub 1.05, or rewrite the table as MBR")
    found: list[FsInfo] = []
    others: list[str] = []
    if layout.scheme == Scheme.NONE:
        vols = [(Volume(disk, 0, disk.size, None, "(hd0)"), "/dev/xvda")]
    else:
        vols = [(Volume(disk, p.start, p.length, p.type if layout.scheme == Scheme.MBR else None,
                        f"(hd0,{p.index})"), f"/dev/xvda{p.linux_number}")
                for p in layout.partitions if p.length]
    for vol, linux in vols:
        ident = probe.identify(vol)
        if ident is None:
            continue
        if ident.fstype in LINUX_FS:
            found.append(FsInfo(vol.name, linux, vol.start, vol.length, vol.part_type, ident))
        else:
            others.append(f"{vol.name} {ident.fstype}")
    return str(layout.scheme), found, others


def _is_root_like(names: dict[str, tuple[int, int]] | None) -> bool:
    return names is not None and "etc" in names and any(n in names for n in ("usr", "bin", "sbin", "lib"))


def _kernel_names(names: dict[str, tuple[int, int]] | None) -> list[str]:
    if not names:
        return []
    return [n for n, (mode, _) in names.items() if stat.S_ISREG(mode) and KERNEL_NAME.fullmatch(n)]


def _fstab_boot(reader: _Reader) -> str | None:
    """The fstab source of /boot ("UUID=...", "LABEL=...", "/dev/..."), if the root's fstab names one."""
    try:
        text = reader.cat("/etc/fstab", MAX_SMALL_FILE).decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 2 and not f[0].startswith("#") and f[1] == "/boot":
            return f[0]
    return None


def _os_name(reader: _Reader) -> str | None:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = reader.cat(path, MAX_SMALL_FILE).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        m = re.search(r'^PRETTY_NAME=["\']?([^"\'\n]*)', text, re.M)
        if m and m.group(1).strip():
            name = m.group(1).strip()
            return name if "\\" not in name else None
    return None


def _unsupported_boot(fs: FsInfo, disk: Disk) -> str:
    """Why PV-GRUB cannot read (or pvbuild cannot safely edit) a non-ext /boot filesystem."""
    vol = Volume(disk, fs.start, fs.length, fs.part_type, fs.grub_device)
    if fs.fstype == "btrfs":
        return (f"/boot is on btrfs ({fs.grub_device}): PV-GRUB has no btrfs driver (it is not compiled into "
                "the PV build): move /boot to an ext4 partition made with -O ^64bit")
    if fs.fstype == "xfs":
        reason = xfs.refusal_reason(vol)
        if reason:
            return f"/boot is on XFS ({fs.grub_device}): PV-GRUB refuses it: {reason}"
        return f"/boot is on XFS ({fs.grub_device}), which PV-GRUB's xfs driver does not mount"
    return f"/boot is on {fs.fstype} ({fs.grub_device}), which pvbuild cannot edit"


def analyse(image: Path, opts: MenuOptions, log: Log) -> Analysis:
    """Find the root and /boot filesystems and the kernels; refuse (ConvertRefused) what cannot be fixed."""
    with Disk(image) as disk:
        scheme, filesystems, others = _filesystems(disk, opts.pvgrub_version)
        if not filesystems:
            extra = f" (found: {', '.join(others)})" if others else ""
            raise ConvertRefused(f"{image}: no Linux filesystem (ext2/3/4, XFS, btrfs) in the image{extra}")
        variant = opts.variant or ("hd0" if scheme == "none" else "hd00")
        profile = Profile(opts.pvgrub_version, variant, opts.arch)
        with _source_link(image) as link:
            readers: dict[str, _Reader] = {}
            for fs in filesystems:
                if fs.fstype in EXT_FS:
                    readers[fs.grub_device] = _ExtReader(_spec(link, fs), log)
                elif fs.fstype == "xfs":
                    mounted = xfs.mount(Volume(disk, fs.start, fs.length, fs.part_type, fs.grub_device),
                                        arch=opts.arch)
                    if mounted is not None:  # V4: the emulator's reader lists it
                        readers[fs.grub_device] = _XfsReader(mounted)
            tops = {dev: r.ls("/") for dev, r in readers.items()}
            roots = [fs for fs in filesystems if _is_root_like(tops.get(fs.grub_device))]
            boots_in_root = {fs.grub_device: readers[fs.grub_device].ls("/boot") for fs in roots}
            notes: list[str] = []
            root: FsInfo | None = None
            if roots:
                root = next((fs for fs in roots if _kernel_names(boots_in_root[fs.grub_device])), roots[0])
                if len(roots) > 1:
                    notes.append(f"several root-like filesystems; chose {root.grub_device}")
            else:
                root = next((fs for fs in filesystems if fs.grub_device not in readers), None)
                if root is None and len(filesystems) == 1:
                    only = filesystems[0]
                    # One ext filesystem without /etc: a root holding /boot, or a separate /boot whose root is
                    # on something pvbuild cannot read (LVM, LUKS): then root= must come from the user.
                    user_root = any(a.startswith("root=") for a in opts.cmdline)
                    if not _kernel_names(tops.get(only.grub_device)) or user_root:
                        root = only
            if root is None:
                extra = f"; also found: {', '.join(others)}" if others else ""
                raise ConvertRefused(f"{image}: no root filesystem found (none of "
                                     f"{', '.join(f.grub_device for f in filesystems)} holds /etc and /usr"
                                     f"{extra}) — if the root is on LVM or LUKS, name it with --cmdline "
                                     "root=/dev/mapper/...")
            separate_candidates = [fs for fs in filesystems if fs is not root and fs.grub_device in readers
                                   and _kernel_names(tops.get(fs.grub_device))]
            boot: FsInfo
            if root.grub_device in readers and _kernel_names(boots_in_root.get(root.grub_device)
                                                       or readers[root.grub_device].ls("/boot")):
                boot, prefix = root, "/boot"
            elif separate_candidates:
                boot = separate_candidates[0]
                if len(separate_candidates) > 1 and root.grub_device in readers:
                    src = _fstab_boot(readers[root.grub_device])
                    for fs in separate_candidates:
                        if src in (f"UUID={fs.identity.uuid}", f"LABEL={fs.identity.label}", fs.linux_device):
                            boot = fs
                prefix = ""
            elif root.grub_device in readers and _kernel_names(tops.get(root.grub_device)):
                boot, prefix = root, ""  # a separate /boot whose root pvbuild cannot read: root= is the user's
                notes.append("the root filesystem is not in a form pvbuild reads; root= is taken from --cmdline")
            else:
                non_ext = [fs for fs in filesystems if fs.grub_device not in readers and fs is not root]
                if non_ext:
                    raise ConvertRefused(_unsupported_boot(non_ext[0], disk))
                if root.grub_device not in readers:
                    raise ConvertRefused(_unsupported_boot(root, disk))
                where = f"{root.grub_device} ({root.fstype})"
                raise ConvertRefused(f"{image}: no kernel: no /boot/vmlinuz-VERSION on the root filesystem {where} "
                                     "and no separate /boot holding one — install a Xen-capable kernel (Debian: "
                                     "linux-image-amd64) in the image first")
            reader = readers[boot.grub_device]
            folder = prefix or "/"
            boot_names = (boots_in_root.get(boot.grub_device) if prefix else tops.get(boot.grub_device)) or {}
            if prefix and not boot_names:
                boot_names = reader.ls("/boot") or {}
            top_names = tops.get(boot.grub_device) or {}
            grub_names = reader.ls(f"{prefix}/grub")
            sb: ext2.Superblock | None = None
            xreader = readers[boot.grub_device]
            if isinstance(xreader, _XfsReader):
                _refuse_xfs(xreader.fs, boot)
            else:
                sb = ext2.Superblock.parse(disk.read(boot.start + ext2.SUPER_OFFSET, ext2.SUPER_SIZE))
                _refuse_features(sb, boot)
            kernels = _find_kernels(reader, prefix, boot_names, profile, folder)
            os_name = _os_name(readers[root.grub_device]) if root.grub_device in readers else None
    analysis = Analysis(scheme, root, boot, prefix == "", prefix, kernels, os_name, boot_names, top_names,
                        grub_names, sb, profile, notes)
    if not analysis.usable:
        why = "; ".join(f"{k.kernel}: {k.why}" for k in kernels)
        raise ConvertRefused(f"{image}: no kernel PV-GRUB ({profile.arch}) can start as a Xen PV guest — {why}. "
                             "Install a Xen-capable kernel (Debian: linux-image-amd64; not -cloud-amd64 before "
                             "bookworm, not 686-pae) and convert again")
    return analysis


def _refuse_xfs(fs: xfs.XfsFilesystem, info: FsInfo) -> None:
    """XFS /boot: V4 without ftype only (what GRUB's xfs driver reads), edited through libguestfs."""
    if fs.sb.has_ftype:
        raise ConvertRefused(f"the /boot filesystem {info.grub_device} is V4 XFS with ftype=1 directory entries, "
                             "which PV-GRUB's xfs driver misreads (and no tool turns off): recreate it with "
                             "mkfs.xfs -m crc=0 -n ftype=0, or as ext4 -O ^64bit, and copy /boot over")
    if not _have("guestfish"):
        raise EnvironmentProblem("editing an XFS /boot without mounting it on the host needs libguestfs "
                                 "(apt-get install libguestfs-tools)")


def _have(tool: str) -> bool:
    return bool(shutil.which(tool) or shutil.which(tool, path="/usr/local/sbin:/usr/sbin:/sbin"))


def _refuse_features(sb: ext2.Superblock, fs: FsInfo) -> None:
    """Features of the /boot filesystem PV-GRUB misreads and that no tool removes in place."""
    bad = []
    if sb.has_incompat(ext2.INCOMPAT_META_BG):
        bad.append("meta_bg (PV-GRUB reads group descriptors linearly)")
    if sb.has_incompat(ext2.INCOMPAT_INLINE_DATA):
        bad.append("inline_data (PV-GRUB cannot read inline files)")
    if sb.log_block_size > 3:
        bad.append(f"{1024 << sb.log_block_size}-byte blocks (PV-GRUB's buffers hold 8 KiB blocks at most)")
    if bad:
        raise ConvertRefused(f"the /boot filesystem {fs.grub_device} ({fs.fstype}) has {', '.join(bad)}, which "
                             "cannot be turned off safely: recreate it with mkfs.ext4 -O ^64bit,^meta_bg,"
                             "^inline_data and copy /boot over")


def _find_kernels(reader: _Reader, prefix: str, names: dict[str, tuple[int, int]], profile: Profile,
                  folder: str) -> list[KernelFound]:
    out: list[KernelFound] = []
    for name in sorted(_kernel_names(names), key=lambda n: version_key(n.split("-", 1)[1]), reverse=True):
        version = name.split("-", 1)[1]
        if not SAFE_NAME.fullmatch(name):
            continue
        initrd = next((n.format(v=version) for n in INITRD_NAMES
                       if n.format(v=version) in names and stat.S_ISREG(names[n.format(v=version)][0])), None)
        size = names[name][1]
        path = f"{prefix}/{name}"
        if size > MAX_KERNEL:
            out.append(KernelFound(version, path, None, size, 0, False, f"{size} bytes: too large for a kernel"))
            continue
        check = inspect_kernel(reader.cat(path, MAX_KERNEL), profile.arch, profile.compressions)
        info = check.info
        errors = [f.message for f in check.findings if str(f.severity) == "error"]
        if check.grub_error is not None and not errors:
            errors.append(check.grub_error.detail)
        if info is not None and not info.inspected:
            usable, why = True, "not inspected (" + "; ".join(f.message for f in check.findings) + ")"
        elif errors or info is None or not info.xen_pv:
            usable, why = False, errors[0] if errors else "no Xen PV support"
        else:
            usable = True
            why = next((f.message for f in check.findings if f.code == "kernel-summary"), "Xen PV kernel")
        isize = names[initrd][1] if initrd else 0
        out.append(KernelFound(version, path, f"{prefix}/{initrd}" if initrd else None, size, isize, usable, why))
    if not out:
        raise ConvertRefused(f"no kernel: no vmlinuz-VERSION in {folder} of the /boot filesystem — install a "
                             "Xen-capable kernel (Debian: linux-image-amd64) in the image first")
    return out


# ---------------------------------------------------------------------------------------------------------
# menu.lst


def _root_arg(a: Analysis, opts: MenuOptions) -> str:
    ident = a.root.identity
    if opts.root == "label":
        if not ident.label:
            raise ConvertRefused(f"root=LABEL= asked for, but the root filesystem {a.root.grub_device} has no label")
        return f"root=LABEL={ident.label}"
    if opts.root == "device" or not ident.uuid:
        return f"root={a.root.linux_device}"
    return f"root=UUID={ident.uuid}"


def render(a: Analysis, opts: MenuOptions) -> str:
    """menu.lst from templates/menu.lst.j2, one entry per usable kernel (newest first), then the recipe's."""
    from pvbuild.plan import render_menu
    from pvbuild.planmodel import MenuEntryPlan

    device = a.boot.grub_device
    extra = list(opts.cmdline)
    user_root = next((x for x in extra if x.startswith("root=")), None)
    base_args = [user_root or _root_arg(a, opts), "ro"]
    if not any(x.startswith("console=") for x in extra):
        base_args.append(f"console={opts.console}")
    args = " ".join([*base_args, *(x for x in extra if x != user_root)])
    title = opts.title or a.os_name or "Linux"
    entries = [MenuEntryPlan(f"{title}, kernel {k.version}", device, k.kernel, k.initrd, args) for k in a.usable]
    root_arg = base_args[0]
    for e in opts.extra_entries:
        more = list(e.args)
        if not any(x.startswith("root=") for x in more):
            more.insert(0, root_arg)
        if not any(x.startswith("console=") for x in more):
            more.append(f"console={opts.console}")
        entries.append(MenuEntryPlan(e.title, device, e.kernel, e.initrd, " ".join(more)))
    n = len(entries)
    fallback = opts.fallback if opts.fallback is not None else ((1,) if n > 1 else ())
    if not 0 <= opts.default < n:
        raise ConvertRefused(f"--default {opts.default}: there are {n} entries (0..{n - 1}): "
                             + "; ".join(e.title for e in entries))
    bad = [f for f in fallback if not 0 <= f < n]
    if bad:
        raise ConvertRefused(f"--fallback {','.join(map(str, bad))}: there are {n} entries (0..{n - 1})")
    if len(set(fallback)) != len(fallback):
        raise ConvertRefused("--fallback lists an entry twice: GRUB 0.97 drops the whole line then")
    name = opts.recipe_name or "`pvbuild convert`"
    text = render_menu(name, opts.default, tuple(fallback), opts.timeout, opts.hiddenmenu, tuple(entries))
    return _TEMPLATE_NOTE.sub(CONVERT_NOTE, text, count=1)


# ---------------------------------------------------------------------------------------------------------
# Copies (sparse) and the edit


def _punch(fd: int, offset: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.fallocate
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    if fn(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        e = ctypes.get_errno()
        if e not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise OSError(e, os.strerror(e))
        _zero_fill(fd, offset, length)


def _zero_fill(fd: int, offset: int, length: int) -> None:
    chunk = bytes(1 << 20)
    while length > 0:
        n = min(len(chunk), length)
        os.pwrite(fd, chunk[:n], offset)
        offset += n
        length -= n


def copy_range(src: Path, dst: Path, start: int, length: int, dst_offset: int, *, holes: bool = False) -> int:
    """Copy the data ranges of src[start:start+length] into dst at dst_offset (dst must exist and be large
    enough); with `holes`, the holes of the source range are punched in dst too. Returns bytes copied."""
    copied = 0
    with open(src, "rb") as s, open(dst, "r+b") as d:
        sfd, dfd = s.fileno(), d.fileno()
        size = min(os.fstat(sfd).st_size if stat.S_ISREG(os.fstat(sfd).st_mode) else start + length,
                   start + length)
        pos = start
        for data, end in data_ranges(sfd, size):
            if end <= start:
                continue
            data = max(data, start)
            if holes and data > pos:
                _punch(dfd, dst_offset + pos - start, data - pos)
            at = data
            while at < end:
                want = min(end - at, 64 << 20)
                try:
                    n = os.copy_file_range(sfd, dfd, want, at, dst_offset + at - start)
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    n = os.pwrite(dfd, os.pread(sfd, want, at), dst_offset + at - start)
                if n <= 0:
                    raise OSError(f"copying {src} stopped at byte {at}")
                at += n
                copied += n
            pos = end
        if holes and pos < start + length:
            _punch(dfd, dst_offset + pos - start, start + length - pos)
    return copied


def _image_size(path: Path) -> int:
    with open(path, "rb") as f:
        return f.seek(0, os.SEEK_END)


def _check_not_in_use(path: Path, log: Log) -> None:
    """An image attached to a loop device (maybe mounted) or a mounted block device is not edited or copied."""
    st = path.stat()
    if stat.S_ISBLK(st.st_mode):
        with open("/proc/self/mountinfo") as f:
            for line in f:
                major, minor = line.split()[2].split(":")
                dev = os.makedev(int(major), int(minor))
                if dev == st.st_rdev or (os.major(dev) == os.major(st.st_rdev) and os.minor(dev) > os.minor(
                        st.st_rdev) and os.minor(dev) < os.minor(st.st_rdev) + 16):
                    raise UsageError(f"{path} (or one of its partitions) is mounted: unmount it first")
        return
    if shutil.which("losetup") or shutil.which("losetup", path="/usr/sbin:/sbin"):
        r = run(["losetup", "-j", path.resolve()], log=log, capture=True, quiet=True, check=False)
        if r.returncode == 0 and r.stdout.strip():
            loop = r.stdout.decode(errors="replace").split(":", 1)[0]
            raise UsageError(f"{path} is attached to {loop} (maybe mounted): detach it (umount, losetup -d) first; "
                             "pvbuild never edits a filesystem in use")


def _image_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
        if head == QCOW2_MAGIC:
            return "qcow2"
        if head == b"KDMV":
            return "vmdk"
        if head == b"conectix"[:4]:
            return "vhd"
    return "raw"


def qcow2_to_raw(src: Path, dst: Path, log: Log) -> None:
    """qemu-img writes the raw image sparse (holes where the qcow2 has no data)."""
    run(["qemu-img", "convert", "-q", "-f", "qcow2", "-O", "raw", src, dst], log=log)


def _epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else int(time.time())


def _edit_ext(work: Path, a: Analysis, menu: str, log: Log, epoch: int) -> list[str]:
    """All edits of the /boot filesystem (in `work`, a file holding exactly it), in the safe order."""
    from pvbuild.build.disk import debugfs_script

    env = {**os.environ, "LC_ALL": "C", "E2FSPROGS_FAKE_TIME": str(epoch)}
    changes: list[str] = []
    sb = a.superblock
    assert sb is not None
    if sb.has_incompat(ext2.INCOMPAT_64BIT) or sb.has_incompat(ext2.INCOMPAT_RECOVER):
        # e2fsck -y replays a journal left by an unclean shutdown; exit 1 = "errors corrected".
        run(["e2fsck", "-f", "-y", work], log=log, env=env, ok=(0, 1), quiet=True)
        if sb.has_incompat(ext2.INCOMPAT_RECOVER):
            changes.append(f"{a.boot.grub_device}: journal replayed (e2fsck -f -y)")
    if sb.has_incompat(ext2.INCOMPAT_64BIT):
        run(["resize2fs", "-s", work], log=log, env=env, quiet=True)
        changes.append(f"{a.boot.grub_device}: ext4 feature 64bit dropped (resize2fs -s): PV-GRUB fails every "
                       "lookup on a 64bit filesystem")
    block = 1024 << sb.log_block_size
    cmds: list[str] = []
    if a.grub_names is None:
        cmds += [f"mkdir {a.grub_dir}", f"sif {a.grub_dir} uid 0", f"sif {a.grub_dir} gid 0"]
    elif "menu.lst" in a.grub_names:
        if stat.S_ISDIR(a.grub_names["menu.lst"][0]):
            raise ConvertRefused(f"{a.boot.grub_device}{a.menu_path} is a folder; remove it first")
        cmds.append(f"rm {a.menu_path}")
    host_menu = work.parent / f".{work.name}.menu.lst"
    host_menu.write_text(menu)
    try:
        cmds += [f"write {host_menu} {a.menu_path}", f"sif {a.menu_path} uid 0", f"sif {a.menu_path} gid 0",
                 f"sif {a.menu_path} mode 0100644"]
        if a.separate_boot:
            have = a.top_names.get("boot")
            if have is None:
                cmds.append("symlink /boot .")
                changes.append(f"{a.boot.grub_device}: boot -> . (so /boot/grub/menu.lst resolves on the separate "
                               "/boot, where PV-GRUB 1.03 looks)")
            elif not stat.S_ISLNK(have[0]):
                changes.append(f"{a.boot.grub_device}: /boot/boot exists and is not a symlink: left alone "
                               "(PV-GRUB 1.03 hd00 will look for /boot/grub/menu.lst in it)")
        # PV-GRUB's ext4 reader cannot read holes: make them unwritten extents (as the build's densify does).
        for k in a.usable:
            for path, size in ((k.kernel, k.kernel_size), (k.initrd, k.initrd_size)):
                if path and size:
                    cmds.append(f"fallocate {path} 0 {math.ceil(size / block) - 1}")
        debugfs_script(work, cmds, epoch, log)
    finally:
        host_menu.unlink(missing_ok=True)
    verb = "replaced" if a.grub_names and "menu.lst" in a.grub_names else "written"
    n = len(a.usable)
    changes.append(f"{a.boot.grub_device}{a.menu_path} {verb} ({n} kernel entr{'y' if n == 1 else 'ies'})")
    run(["e2fsck", "-f", "-n", work], log=log, env=env, quiet=True)
    return changes


def _edit_xfs(work: Path, a: Analysis, menu: str, log: Log, epoch: int) -> list[str]:
    """The same edits on a V4 XFS /boot (in `work`, a file holding exactly it) through a libguestfs appliance:
    the filesystem is mounted inside the appliance's own kernel, never on the host. Files GRUB's xfs driver would
    misread (holes, preallocated space) are rewritten whole from what Linux reads."""
    from pvbuild.build.disk import GUESTFS_ENV

    env = {**os.environ, "LC_ALL": "C"}
    for key, value in GUESTFS_ENV.items():
        env.setdefault(key, value)
    changes: list[str] = []
    host = Path(tempfile.mkdtemp(prefix=".xfs-edit-", dir=work.parent))
    try:
        (host / "menu.lst").write_text(menu)
        cmds = [["mkdir-p", a.grub_dir], ["rm-f", a.menu_path], ["upload", str(host / "menu.lst"), a.menu_path],
                ["chown", "0", "0", a.menu_path], ["chmod", "0644", a.menu_path]]
        if a.separate_boot and "boot" not in a.top_names:
            cmds.append(["ln-s", ".", "/boot"])
            changes.append(f"{a.boot.grub_device}: boot -> . (so /boot/grub/menu.lst resolves on the separate "
                           "/boot, where PV-GRUB 1.03 looks)")
        with Disk(work) as disk:
            fs = xfs.mount(Volume(disk, 0, disk.size, None, a.boot.grub_device), arch=a.profile.arch)
            assert fs is not None
            reader = _XfsReader(fs)
            for i, k in enumerate(a.usable):
                for path in (k.kernel, k.initrd):
                    if path is None:
                        continue
                    try:
                        sparse = fs.open(path).sparse
                    except GrubError:
                        sparse = True
                    if sparse:
                        dense = host / f"file{i}-{len(cmds)}"
                        dense.write_bytes(reader.cat(path, MAX_KERNEL))
                        cmds.append(["upload", str(dense), path])
                        changes.append(f"{a.boot.grub_device}{path} rewritten without holes (GRUB's xfs driver "
                                       "misreads them)")
        argv: list[str] = ["guestfish", "--format=raw", "-a", str(work), "--", "run", ":", "mount", "/dev/sda", "/"]
        for c in cmds:
            argv += [":", *c]
        argv += [":", "umount-all", ":", "sync"]
        run(argv, log=log, env=env)
    finally:
        shutil.rmtree(host, ignore_errors=True)
    verb = "replaced" if a.grub_names and "menu.lst" in a.grub_names else "written"
    n = len(a.usable)
    changes.append(f"{a.boot.grub_device}{a.menu_path} {verb} ({n} kernel entr{'y' if n == 1 else 'ies'}, "
                   "through libguestfs)")
    run(["xfs_repair", "-n", work], log=log, env=env, quiet=True)
    return changes


# ---------------------------------------------------------------------------------------------------------
# The command


@dataclass
class Result:
    source: Path
    output: Path
    report_path: Path
    report: dict[str, Any]
    menu: str
    changes: list[str]
    analysis: Analysis
    exit_code: int


def default_output(image: Path) -> Path:
    return image.with_name(f"{image.stem}.pvgrub.raw")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def convert(image: Path, opts: MenuOptions, *, output: Path | None = None, in_place: bool = False,
            log: Log | None = None, report_path: Path | None = None) -> Result:
    """Convert `image` (see the module docstring); the check's verdict is in `Result.exit_code` (0 or 1)."""
    log = log or Log()
    if not image.exists():
        raise UsageError(f"{image}: no such file")
    st = image.stat()
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise UsageError(f"{image}: not a file or a block device")
    fmt = _image_format(image)
    if fmt in ("vmdk", "vhd"):
        raise UsageError(f"{image} is a {fmt} image: convert it first (qemu-img convert -O raw {image} OUT.raw)")
    if in_place and output is not None:
        raise UsageError("--in-place and -o/--output exclude each other")
    if in_place and fmt == "qcow2":
        raise UsageError(f"{image} is qcow2: it cannot be converted in place; drop --in-place (the output is raw)")
    _check_not_in_use(image, log)
    target = image if in_place else (output or default_output(image))
    if not in_place and target.exists() and target.resolve() == image.resolve():
        raise UsageError(f"the output {target} is the image itself: pass --in-place to change it")
    target.parent.mkdir(parents=True, exist_ok=True)
    epoch = _epoch()
    with contextlib.ExitStack() as stack:
        work_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.work-", dir=target.parent))
        stack.callback(shutil.rmtree, work_dir, True)
        raw_source = image
        if fmt == "qcow2":
            raw_source = work_dir / "source.raw"
            qcow2_to_raw(image, raw_source, log)
        a = analyse(raw_source, opts, log)
        menu = render(a, opts)
        if in_place:
            edited = image
        else:
            edited = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            stack.callback(lambda: edited.unlink(missing_ok=True))
            if raw_source != image:
                os.replace(raw_source, edited)
            else:
                size = _image_size(image)
                with open(edited, "wb") as f:
                    f.truncate(size)
                copy_range(image, edited, 0, size, 0)
        boot = a.boot
        whole = boot.start == 0 and a.scheme == "none"
        edit = _edit_xfs if a.superblock is None else _edit_ext
        if whole:
            changes = edit(edited, a, menu, log, epoch)
        else:
            part = work_dir / "boot.fs"
            with open(part, "wb") as f:
                f.truncate(boot.length)
            copy_range(edited, part, boot.start, boot.length, 0)
            changes = edit(part, a, menu, log, epoch)
            copy_range(part, edited, 0, boot.length, boot.start, holes=True)
            part.unlink()
        if not in_place:
            os.replace(edited, target)
    from pvbuild.pvgrub.check import check_image

    report = check_image(target, a.profile)
    rj = report.to_json()
    rj["image"] = target.name
    rj["convert"] = {"source": str(image), "output": str(target), "in_place": in_place,
                     "scheme": a.scheme, "root": a.root.to_json(), "boot": a.boot.to_json(),
                     "separate_boot": a.separate_boot, "menu_path": a.menu_path, "menu": menu,
                     "kernels": [k.to_json() for k in a.kernels], "changes": changes, "notes": a.notes}
    rpath = report_path or target.parent / "boot-report.json"
    _write_atomic(rpath, json.dumps(rj, indent=2) + "\n")
    return Result(image, target, rpath, rj, menu, changes, a, report.exit_code)


def render_text(result: Result) -> str:
    a = result.analysis
    r = result.report
    prof = r["profile"]
    verdict = "BOOTS" if result.exit_code == 0 else f"does NOT boot ({r['outcome']})"
    lines = [f"{result.output}: {verdict} under PV-GRUB {prof['version']} {prof['variant']} {prof['arch']}",
             f"  root   {a.root.grub_device} {a.root.fstype} UUID={a.root.identity.uuid}",
             f"  /boot  {a.boot.grub_device} {a.boot.fstype}{' (separate)' if a.separate_boot else ''}, "
             f"menu {a.boot.grub_device}{a.menu_path}"]
    for k in a.kernels:
        mark = "+" if k.usable else "-"
        lines.append(f"  {mark} {k.kernel}{' + ' + k.initrd if k.initrd else ''}: {k.why}")
    lines += [f"  changed: {c}" for c in result.changes]
    lines.append(f"  {a.menu_path}:")
    lines += [f"    {ln}" for ln in result.menu.splitlines() if ln.strip() and not ln.startswith("#")]
    lines += [f"  note: {n}" for n in a.notes]
    for f in r.get("findings", []):
        if f.get("severity") in ("error", "warning"):
            lines.append(f"  {f['severity']}: {f['code']}: {f['message']}")
    lines.append(f"  report {result.report_path}")
    return "\n".join(lines) + "\n"
