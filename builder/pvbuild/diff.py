"""`pvbuild diff A B`: what differs between two raw images, at the file level, read through the emulator.

Nothing is mounted: every filesystem is read by the PV-GRUB emulator's readers (pvgrub/fs/: ext2/3/4 and V4 XFS,
on partitionless, MBR or GPT images), walked with their bounded `walk`, and file contents are compared by SHA-256
(streamed; only files present on both sides with the same size are read). On top of the file lists come the
questions a golden-image pipeline asks: which packages changed (/var/lib/dpkg/status), what menu.lst says now,
which kernels /boot holds and which one PV-GRUB boots (`check_image` on both images, same profile).

Filesystems are paired by mountpoint when the image's /etc/fstab names them, else by partition. An image whose
filesystem holds files but cannot be read (a reader's refusal: ext4 with 64bit, XFS v5 or ftype=1, a filesystem
pvbuild has no reader for, a corrupt structure) is bad input: DiffError, exit 2. A single file whose content
cannot be read is reported under `unreadable`, not counted as a difference.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import posixpath
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

from pvbuild.errors import UsageError
from pvbuild.pvgrub.blockio import SECTOR, Disk, Volume
from pvbuild.pvgrub.disk import Layout, Scheme, read_layout
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.fs.base import S_IFDIR, S_IFLNK, S_IFREG, Filesystem, FsIdentity, Inode
from pvbuild.pvgrub.profiles import Profile

# Bounds on what one diff reads besides the file contents (those are bounded by the images' sizes).
MAX_SMALL_FILE = 64 * 1024 * 1024  # fstab, dpkg status, menu.lst
MAX_LINK_HOPS = 8
# Filesystem types that hold no files to compare: compared by identity only.
_NO_FILES = frozenset({"swap", "LVM2_member", "crypto_LUKS", "linux_raid_member", "jbd"})
_TYPES = {S_IFREG: "file", S_IFDIR: "dir", S_IFLNK: "symlink", 0o020000: "char", 0o060000: "block",
          0o010000: "fifo", 0o140000: "socket"}


class DiffError(UsageError):
    """An input diff cannot read: not an image, or a filesystem that holds files the readers cannot walk."""


# --- one image ------------------------------------------------------------------------------------------------
@dataclass
class FsView:
    """One filesystem (or file-less volume) of an image, walked."""

    device: str  # GRUB's name: (hd0) or (hd0,N)
    index: int | None  # partition index (GRUB numbering), None for the whole disk
    volume: Volume
    identity: FsIdentity | None
    fs: Filesystem | None
    fs_size: int | None
    entries: dict[str, Inode] = field(default_factory=dict)
    mountpoint: str | None = None

    @property
    def key(self) -> str:
        if self.mountpoint:
            return self.mountpoint
        return "whole disk" if self.index is None else f"partition {self.index}"

    def describe(self) -> dict[str, Any]:
        ident = self.identity
        return {"device": self.device, "mountpoint": self.mountpoint, "fstype": ident.fstype if ident else None,
                "uuid": ident.uuid if ident else None, "label": ident.label if ident else None,
                "size": self.fs_size}


@dataclass
class Image:
    path: str
    disk: Disk
    layout: Layout
    views: list[FsView]
    profile: Profile

    def abs_path(self, view: FsView, rel: str) -> str:
        mp = view.mountpoint or "/"
        return posixpath.normpath(posixpath.join(mp, rel.lstrip("/"))) if rel != "/" else mp

    def locate(self, path: str) -> tuple[FsView, str] | None:
        """The filesystem and in-filesystem path of an absolute path, through the mountpoints fstab gave; without
        any, the first filesystem holding the path (or, for /boot/..., a separate /boot holding the rest)."""
        path = posixpath.normpath(path)
        mounted = sorted((v for v in self.views if v.mountpoint and v.fs), key=lambda v: -len(v.mountpoint or ""))
        for v in mounted:
            mp = v.mountpoint or "/"
            if path == mp or path.startswith(mp.rstrip("/") + "/"):
                rel = "/" + path[len(mp):].lstrip("/") if mp != "/" else path
                return (v, posixpath.normpath(rel)) if posixpath.normpath(rel) in v.entries else None
        for v in self.views:
            if v.fs and path in v.entries:
                return v, path
        if path == "/boot" or path.startswith("/boot/"):
            for v in self.views:  # a separate /boot: no /boot inside, or only the `boot -> .` symlink PV-GRUB needs
                boot = v.entries.get("/boot")
                if (v.fs and (path[5:] or "/") in v.entries and "/grub" in v.entries
                        and (boot is None or boot.kind == S_IFLNK)):
                    return v, path[5:] or "/"
        return None

    def resolve(self, path: str) -> tuple[FsView, str, Inode] | None:
        """`locate`, following symlinks (at most MAX_LINK_HOPS) in the image's absolute namespace."""
        for _ in range(MAX_LINK_HOPS + 1):
            found = self.locate(path)
            if found is None:
                return None
            view, rel = found
            st = view.entries[rel]
            if st.kind != S_IFLNK or view.fs is None:
                return view, rel, st
            try:
                target = view.fs.readlink(st.ino).decode("utf-8", "surrogateescape")
            except GrubError:
                return None
            path = posixpath.normpath(posixpath.join(posixpath.dirname(self.abs_path(view, rel)), target))
        return None

    def read_small(self, path: str) -> bytes | None:
        """A small file by absolute path (symlinks followed), or None if absent or unreadable."""
        found = self.resolve(path)
        if found is None:
            return None
        view, _, st = found
        if st.kind != S_IFREG or st.size > MAX_SMALL_FILE or view.fs is None:
            return None
        try:
            return b"".join(view.fs.content(st.ino))
        except GrubError:
            return None


def _fs_size(fs: Filesystem) -> int | None:
    from pvbuild.pvgrub.fs import ext2, xfs

    if isinstance(fs, ext2.Ext2Filesystem):
        return fs.sb.blocks_count * fs.block_size
    if isinstance(fs, xfs.XfsFilesystem):
        return fs.sb.dblocks * fs.sb.blocksize
    return None


def _volumes(disk: Disk, layout: Layout) -> list[tuple[str, int | None, Volume]]:
    if layout.scheme == Scheme.NONE:
        return [("(hd0)", None, Volume(disk, 0, disk.size - disk.size % SECTOR, None, "(hd0)"))]
    out: list[tuple[str, int | None, Volume]] = []
    for p in layout.partitions:
        name = f"(hd0,{p.index})"
        length = max(0, min(p.length, disk.size - p.start))
        # part_type None: the diff reads what the partition holds, whatever its MBR type (GRUB's ext2 driver
        # would refuse a non-0x83 one; `pvbuild check` says so).
        out.append((name, p.index, Volume(disk, p.start, length, None, name)))
    return out


def _mount(vol: Volume, arch: str) -> tuple[FsIdentity | None, Filesystem | None]:
    from pvbuild.pvgrub.fs import ext2, probe, xfs

    ident = probe.identify(vol)
    fs: Filesystem | None = None
    try:
        fs = ext2.mount(vol) or xfs.mount(vol, arch=arch)
        if fs is None and ident is not None and ident.fstype in _OTHER_READERS:
            fs = _other_reader(ident.fstype, vol, arch)
    except GrubError:
        fs = None
    if ident is None and fs is not None:
        ident = fs.identity
    return ident, fs


# Readers of the other GRUB drivers, by the identity's (blkid's) name: their `walk` decides whether files can be
# listed.
_OTHER_READERS = {"reiserfs": "reiserfs", "jfs": "jfs", "vfat": "fat", "iso9660": "iso9660", "minix": "minix"}


def _other_reader(fstype: str, vol: Volume, arch: str) -> Filesystem | None:
    module = importlib.import_module(f"pvbuild.pvgrub.fs.{_OTHER_READERS[fstype]}")
    fs = module.mount(vol, arch=arch)
    return fs if isinstance(fs, Filesystem) else None


def open_image(path: str, profile: Profile, stack: ExitStack) -> Image:
    """Open and walk every filesystem of the image at `path`; DiffError when it cannot be read."""
    from pvbuild.pvgrub.errors import ImageError
    from pvbuild.pvgrub.fs import probe

    try:
        disk = stack.enter_context(Disk(path))
    except ImageError as e:
        raise DiffError(str(e)) from None
    layout = read_layout(disk)
    if disk.size < 4 * SECTOR or (layout.scheme == Scheme.NONE and probe.identify(
            Volume(disk, 0, disk.size - disk.size % SECTOR, None, "(hd0)")) is None):
        raise DiffError(f"{path}: no partition table and no filesystem found — not a raw disk image (qcow2/vmdk "
                        "images must be converted with `qemu-img convert -O raw`)")
    views = []
    for device, index, vol in _volumes(disk, layout):
        ident, fs = _mount(vol, profile.arch)
        view = FsView(device, index, vol, ident, fs, _fs_size(fs) if fs else None)
        if fs is None and ident is not None and ident.fstype not in _NO_FILES:
            from pvbuild.pvgrub.fs import xfs

            why = xfs.refusal_reason(vol) if ident.fstype == "xfs" else None
            raise DiffError(f"{path}: {device} holds {ident.fstype}, which the emulator's readers cannot read "
                            "(they read what PV-GRUB reads: ext2/3/4, V4 XFS, ReiserFS, JFS, FAT, ISO 9660, minix v1)"
                            + (f" — {why}" if why else "") + ": its files cannot be compared")
        if fs is not None:
            try:
                view.entries = dict(fs.walk())
            except GrubError as e:
                raise DiffError(f"{path}: {device} ({fs.identity.fstype}) cannot be read: {e}") from None
            except NotImplementedError as e:
                raise DiffError(f"{path}: {device} holds {fs.identity.fstype}: {e}, so its files cannot be "
                                "compared") from None
        views.append(view)
    image = Image(path, disk, layout, views, profile)
    _assign_mountpoints(image)
    return image


# --- fstab ------------------------------------------------------------------------------------------------------
_DEV = re.compile(r"^/dev/(?:(?:xv|s|v|h)d[a-z]+|nvme\d+n\d+p?|mmcblk\d+p?)(\d*)$")


def parse_fstab(text: str) -> list[tuple[str, str, str]]:
    """(spec, mountpoint, type) of each fstab line; comments and short lines skipped, octal escapes decoded."""
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3:
            spec, mp, kind = (re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), f) for f in fields[:3])
            out.append((spec, mp, kind))
    return out


def _resolve_spec(image: Image, spec: str) -> FsView | None:
    by = {"/dev/disk/by-uuid/": "UUID=", "/dev/disk/by-label/": "LABEL=", "/dev/disk/by-partuuid/": "PARTUUID="}
    for prefix, eq in by.items():
        if spec.startswith(prefix):
            spec = eq + spec[len(prefix):]
    key, _, value = spec.partition("=")
    for v in image.views:
        ident = v.identity
        if key == "UUID" and ident and ident.uuid and ident.uuid.lower() == value.strip('"').lower():
            return v
        if key == "LABEL" and ident and ident.label == value.strip('"'):
            return v
        if key == "PARTUUID" and v.index is not None and value.lower() in _partuuids(image, v.index):
            return v
    m = _DEV.match(spec)
    if m:
        number = m.group(1)
        for v in image.views:
            if (not number and v.index is None) or (number and v.index is not None and v.index + 1 == int(number)):
                return v
    return None


def _partuuids(image: Image, index: int) -> set[str]:
    out = set()
    for p in image.layout.partitions:
        if p.index == index:
            if p.part_uuid:
                out.add(p.part_uuid.lower())
            if image.layout.disk_signature is not None:
                out.add(f"{image.layout.disk_signature:08x}-{p.index + 1:02x}")
    return out


def _assign_mountpoints(image: Image) -> None:
    """Mountpoints from the first filesystem that holds /etc/fstab (it is "/" unless fstab says otherwise)."""
    for view in image.views:
        if view.fs is None or "/etc/fstab" not in view.entries:
            continue
        st = view.entries["/etc/fstab"]
        if st.kind != S_IFREG or st.size > MAX_SMALL_FILE:
            continue
        try:
            text = b"".join(view.fs.content(st.ino)).decode("utf-8", "replace")
        except GrubError:
            continue
        view.mountpoint = "/"
        for spec, mp, kind in parse_fstab(text):
            if kind == "swap" or not mp.startswith("/") or posixpath.normpath(mp) == "/":
                continue
            target = _resolve_spec(image, spec)
            if target is not None and target is not view and target.fs is not None and target.mountpoint is None:
                target.mountpoint = posixpath.normpath(mp)
        return


# --- comparison -----------------------------------------------------------------------------------------------
def _kind(st: Inode) -> str:
    return _TYPES.get(st.kind, f"type {st.kind:o}")


def _entry(path: str, st: Inode) -> dict[str, Any]:
    return {"path": path, "type": _kind(st), "size": st.size if st.kind == S_IFREG else None,
            "mode": f"{st.mode & 0o7777:04o}"}


class _Contents:
    """File contents, compared in lockstep (no hashing for equal files: memcmp is far faster than SHA-256) and
    hashed (SHA-256) only where they differ, with one bound on the bytes read over the whole diff."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.read = 0
        self.errors: dict[tuple[int, int], str] = {}
        self.compared: dict[tuple[int, int, int, int], bool | None] = {}

    def _chunks(self, fs: Filesystem, st: Inode) -> Iterator[bytes]:
        for chunk in fs.content(st.ino):
            self.read += len(chunk)
            if self.read > self.budget:
                raise DiffError(f"more than {self.budget} bytes of file contents to read (sparse files claiming "
                                "more than the images hold?); the diff stops there")
            yield chunk

    def equal(self, fa: Filesystem, sa: Inode, fb: Filesystem, sb: Inode) -> bool | None:
        """Whether two files of the same size hold the same bytes; None if either cannot be read. Hard links
        (the same pair of inodes again) are compared once."""
        key = (id(fa), sa.ino, id(fb), sb.ino)
        if key not in self.compared:
            self.compared[key] = self._equal(fa, sa, fb, sb)
        return self.compared[key]

    def _equal(self, fa: Filesystem, sa: Inode, fb: Filesystem, sb: Inode) -> bool | None:
        xa, xb = self._chunks(fa, sa), self._chunks(fb, sb)
        bufa = bufb = memoryview(b"")
        try:
            while True:
                if not bufa:
                    bufa = memoryview(next(xa, b""))
                if not bufb:
                    bufb = memoryview(next(xb, b""))
                if not bufa or not bufb:
                    return not bufa and not bufb
                n = min(len(bufa), len(bufb))
                if bufa[:n] != bufb[:n]:
                    return False
                bufa, bufb = bufa[n:], bufb[n:]
        except GrubError as e:
            self.errors[(id(fa), sa.ino)] = str(e)
            return None

    def digest(self, fs: Filesystem, st: Inode) -> str | None:
        h = hashlib.sha256()
        try:
            for chunk in self._chunks(fs, st):
                h.update(chunk)
        except GrubError as e:
            self.errors[(id(fs), st.ino)] = str(e)
            return None
        return h.hexdigest()


def _compare_fs(a: FsView, b: FsView, *, with_mtime: bool, contents: _Contents) -> dict[str, Any]:
    assert a.fs is not None and b.fs is not None
    fa, fb = a.fs, b.fs
    # Paths as the running system sees them when both sides are mounted at the same place (/boot/grub/...).
    mount = a.mountpoint if a.mountpoint == b.mountpoint and a.mountpoint not in (None, "/") else None

    def shown(p: str) -> str:
        return p if mount is None else mount if p == "/" else mount + p

    added = [_entry(shown(p), st) for p, st in sorted(b.entries.items()) if p not in a.entries]
    removed = [_entry(shown(p), st) for p, st in sorted(a.entries.items()) if p not in b.entries]
    common = sorted(set(a.entries) & set(b.entries))
    changed = []
    unreadable = []
    for p in common:
        sa, sb = a.entries[p], b.entries[p]
        ch: dict[str, list[Any]] = {}
        if sa.kind != sb.kind:
            ch["type"] = [_kind(sa), _kind(sb)]
        if sa.mode & 0o7777 != sb.mode & 0o7777:
            ch["mode"] = [f"{sa.mode & 0o7777:04o}", f"{sb.mode & 0o7777:04o}"]
        if sa.uid != sb.uid:
            ch["uid"] = [sa.uid, sb.uid]
        if sa.gid != sb.gid:
            ch["gid"] = [sa.gid, sb.gid]
        if sa.kind == sb.kind == S_IFREG:
            if sa.size != sb.size:
                ch["size"] = [sa.size, sb.size]
            else:
                same = contents.equal(fa, sa, fb, sb)
                da = db = None
                if same is False:
                    da, db = contents.digest(fa, sa), contents.digest(fb, sb)
                if same is None or (same is False and (da is None or db is None)):
                    why = contents.errors.get((id(fa), sa.ino)) or contents.errors.get((id(fb), sb.ino))
                    unreadable.append({"path": shown(p), "error": why})
                elif same is False:
                    ch["content"] = [da, db]
        if sa.kind == sb.kind == S_IFLNK:
            try:
                ta, tb = fa.readlink(sa.ino), fb.readlink(sb.ino)
                if ta != tb:
                    ch["target"] = [ta.decode("utf-8", "surrogateescape"), tb.decode("utf-8", "surrogateescape")]
            except GrubError as e:
                unreadable.append({"path": shown(p), "error": str(e)})
        if with_mtime and sa.mtime != sb.mtime:
            ch["mtime"] = [sa.mtime, sb.mtime]
        if ch:
            changed.append({"path": shown(p), "changes": ch})
    return {"key": a.key, "a": a.describe(), "b": b.describe(), "added": added, "removed": removed,
            "changed": changed, "unreadable": unreadable}


def _pair(va: list[FsView], vb: list[FsView]) -> tuple[list[tuple[FsView, FsView]], list[FsView], list[FsView]]:
    """Pairs by mountpoint/partition key, then leftovers by device; the rest is only on one side."""
    pairs: list[tuple[FsView, FsView]] = []
    left_a, left_b = list(va), list(vb)
    matchers: list[Callable[[FsView, FsView], bool]] = [lambda x, y: x.key == y.key,
                                                         lambda x, y: x.device == y.device]
    for match in matchers:
        for x in list(left_a):
            y = next((y for y in left_b if match(x, y)), None)
            if y is not None:
                pairs.append((x, y))
                left_a.remove(x)
                left_b.remove(y)
    return pairs, left_a, left_b


def _layout_changes(a: Image, b: Image, pairs: list[tuple[FsView, FsView]], only_a: list[FsView],
                    only_b: list[FsView]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def diff(what: str, field_: str, x: Any, y: Any) -> None:
        if x != y:
            out.append({"what": what, "field": field_, "a": x, "b": y})

    diff("disk", "size", a.disk.size, b.disk.size)
    diff("disk", "partition table", str(a.layout.scheme), str(b.layout.scheme))
    diff("disk", "MBR disk signature", _hex(a.layout.disk_signature), _hex(b.layout.disk_signature))
    diff("disk", "GPT disk GUID", a.layout.gpt_disk_guid, b.layout.gpt_disk_guid)
    pa = {p.index: p for p in a.layout.partitions}
    pb = {p.index: p for p in b.layout.partitions}
    for i in sorted(set(pa) | set(pb)):
        what = f"partition (hd0,{i})"
        x, y = pa.get(i), pb.get(i)
        if x is None or y is None:
            diff(what, "present", x is not None, y is not None)
            continue
        diff(what, "type", x.type_guid or f"0x{x.type:02x}", y.type_guid or f"0x{y.type:02x}")
        diff(what, "start", x.start, y.start)
        diff(what, "size", x.length, y.length)
        diff(what, "bootable", x.bootable, y.bootable)
        diff(what, "PARTUUID", x.part_uuid, y.part_uuid)
    for fx, fy in pairs:
        da, db = fx.describe(), fy.describe()
        for k in ("device", "fstype", "uuid", "label", "size"):
            diff(f"filesystem {fx.key}", k, da[k], db[k])
    for v in only_a:
        out.append({"what": f"filesystem {v.key}", "field": "present", "a": v.describe(), "b": None})
    for v in only_b:
        out.append({"what": f"filesystem {v.key}", "field": "present", "a": None, "b": v.describe()})
    return out


def _hex(v: int | None) -> str | None:
    return None if v is None else f"0x{v:08x}"


# --- packages ---------------------------------------------------------------------------------------------------
def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed packages: name (name:arch when a name has several architectures) -> version."""
    found: list[tuple[str, str, str]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        status = fields.get("status", "").split()
        if "package" in fields and status[-1:] in (["installed"], ["half-configured"], ["unpacked"],
                                                     ["triggers-awaited"], ["triggers-pending"], ["half-installed"]):
            found.append((fields["package"], fields.get("architecture", ""), fields.get("version", "")))
    names: dict[str, int] = {}
    for name, _, _ in found:
        names[name] = names.get(name, 0) + 1
    return {(f"{n}:{arch}" if names[n] > 1 else n): ver for n, arch, ver in found}


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's verrevcmp (lib/dpkg/version.c): letters sort before non-letters, `~` before everything."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) else 0
            bc = _order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def compare_versions(a: str, b: str) -> int:
    """dpkg --compare-versions: <0, 0, >0 (epoch, upstream version, revision)."""

    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        upstream, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch) if epoch.isdigit() else 0, upstream, rev

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return ea - eb
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


def _packages(a: Image, b: Image) -> dict[str, Any] | None:
    raw_a = a.read_small("/var/lib/dpkg/status")
    raw_b = b.read_small("/var/lib/dpkg/status")
    if raw_a is None and raw_b is None:
        return None
    pa = parse_dpkg_status(raw_a.decode("utf-8", "replace")) if raw_a is not None else {}
    pb = parse_dpkg_status(raw_b.decode("utf-8", "replace")) if raw_b is not None else {}
    changed = []
    for n in sorted(set(pa) & set(pb)):
        if pa[n] != pb[n]:
            direction = "upgraded" if compare_versions(pa[n], pb[n]) < 0 else "downgraded"
            changed.append({"name": n, "a": pa[n], "b": pb[n], "change": direction})
    return {"a_present": raw_a is not None, "b_present": raw_b is not None,
            "added": [{"name": n, "version": pb[n]} for n in sorted(set(pb) - set(pa))],
            "removed": [{"name": n, "version": pa[n]} for n in sorted(set(pa) - set(pb))],
            "changed": changed}


# --- menu.lst and kernels ---------------------------------------------------------------------------------------
MENU_LST = "/boot/grub/menu.lst"


def _menu(a: Image, b: Image) -> dict[str, Any]:
    from pvbuild.pvgrub.files import gunzip

    texts = []
    for img in (a, b):
        raw = img.read_small(MENU_LST)
        if raw is not None:
            with suppress(GrubError):
                raw = gunzip(raw, limit=MAX_SMALL_FILE)[0]
        texts.append(None if raw is None else raw.decode("utf-8", "replace"))
    ta, tb = texts
    diff = None
    if ta != tb:
        diff = "".join(difflib.unified_diff((ta or "").splitlines(keepends=True), (tb or "").splitlines(keepends=True),
                                            fromfile=f"{a.path}:{MENU_LST}", tofile=f"{b.path}:{MENU_LST}"))
        if diff and not diff.endswith("\n"):
            diff += "\n"
    return {"path": MENU_LST, "a_present": ta is not None, "b_present": tb is not None, "diff": diff}


_KERNEL_NAME = re.compile(r"^(?:vmlinuz|vmlinux|kernel|bzImage)-(.+)$")


def _kernel_versions(img: Image) -> list[str]:
    found = img.resolve("/boot")
    if found is None:
        return []
    view, rel, _ = found
    prefix = rel.rstrip("/") + "/"
    out = set()
    for p, st in view.entries.items():
        if p.startswith(prefix) and "/" not in p[len(prefix):] and st.kind == S_IFREG:
            m = _KERNEL_NAME.match(p[len(prefix):])
            if m:
                out.add(m.group(1))
    return sorted(out)


def _boot_summary(path: str, profile: Profile) -> dict[str, Any]:
    from pvbuild.pvgrub.check import check_image

    j = check_image(path, profile).to_json()
    k, i = j["kernel"], j["initrd"]
    return {
        "outcome": j["outcome"],
        "menu": f"{j['menu']['device']}{j['menu']['path']}" if j["menu"] else None,
        "entry": f"{j['entry']['index']}: {j['entry']['title']}" if j["entry"] else None,
        "kernel": f"{k['device']}{k['path']}" if k else None,
        "kernel_version": k["version"] if k else None,
        "initrd": f"{i['device']}{i['path']}" if i else None,
        "cmdline": j["cmdline"],
        "grub_error": f"Error {j['grub_error']['number']}: {j['grub_error']['message']}" if j["grub_error"] else None,
        "errors": sorted(f["code"] for f in j["findings"] if f["severity"] == "error"),
    }


def _kernel(a: Image, b: Image) -> dict[str, Any]:
    va, vb = _kernel_versions(a), _kernel_versions(b)
    ba, bb = _boot_summary(a.path, a.profile), _boot_summary(b.path, b.profile)
    return {"profile": a.profile.to_json(), "a": {"versions": va, "boots": ba}, "b": {"versions": vb, "boots": bb},
            "versions_added": sorted(set(vb) - set(va)), "versions_removed": sorted(set(va) - set(vb)),
            "boot_changes": {k: [ba[k], bb[k]] for k in ba if ba[k] != bb[k]}}


# --- the whole diff ---------------------------------------------------------------------------------------------
@dataclass
class DiffReport:
    a: str
    b: str
    layout: list[dict[str, Any]]
    filesystems: list[dict[str, Any]]
    packages: dict[str, Any] | None
    menu: dict[str, Any]
    kernel: dict[str, Any]
    with_mtime: bool
    bytes_read: int = 0

    @property
    def identical(self) -> bool:
        if self.layout or self.menu["diff"] or self.kernel["versions_added"] or self.kernel["versions_removed"]:
            return False
        if self.kernel["boot_changes"]:
            return False
        if self.packages and (self.packages["added"] or self.packages["removed"] or self.packages["changed"]):
            return False
        return not any(f["added"] or f["removed"] or f["changed"] for f in self.filesystems)

    @property
    def exit_code(self) -> int:
        return 0 if self.identical else 1

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "identical": self.identical, "mtime_compared": self.with_mtime,
                "layout": self.layout, "filesystems": self.filesystems, "packages": self.packages,
                "menu_lst": self.menu, "kernel": self.kernel, "bytes_read": self.bytes_read}


def diff_images(path_a: str, path_b: str, profile: Profile | None = None, *, with_mtime: bool = False) -> DiffReport:
    """Compare the images at `path_a` and `path_b`; DiffError (exit 2) when either cannot be read."""
    profile = profile or Profile()
    with ExitStack() as stack:
        a = open_image(path_a, profile, stack)
        b = open_image(path_b, profile, stack)
        pairs, only_a, only_b = _pair(a.views, b.views)
        layout = _layout_changes(a, b, pairs, only_a, only_b)
        contents = _Contents(4 * (a.disk.size + b.disk.size) + (1 << 30))
        filesystems = []
        for x, y in pairs:
            if x.fs is not None and y.fs is not None:
                filesystems.append(_compare_fs(x, y, with_mtime=with_mtime, contents=contents))
        packages = _packages(a, b)
        menu = _menu(a, b)
        kernel = _kernel(a, b)
        return DiffReport(path_a, path_b, layout, filesystems, packages, menu, kernel, with_mtime, contents.read)


# --- text -------------------------------------------------------------------------------------------------------
def _show(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_show(x)}" for k, x in v.items() if x is not None)
    return str(v)


def _collapse(entries: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], int]]:
    """Entries with those below an added/removed directory folded into it (with their count)."""
    i = 0
    while i < len(entries):
        e = entries[i]
        below = 0
        if e["type"] == "dir":
            prefix = e["path"].rstrip("/") + "/"
            while i + 1 + below < len(entries) and entries[i + 1 + below]["path"].startswith(prefix):
                below += 1
        yield e, below
        i += 1 + below


def _describe_change(key: str, pair: list[Any]) -> str:
    x, y = pair
    if key == "content":
        return f"content sha256 {x[:12]}… → {y[:12]}…"
    return f"{key} {_show(x)} → {_show(y)}"


def render_text(r: DiffReport) -> str:
    lines: list[str] = []
    if r.identical:
        lines.append(f"identical: {r.a} and {r.b} hold the same files" + (", mtimes included" if r.with_mtime
                                                                           else " (mtimes not compared; --all)"))
    else:
        lines.append(f"{r.a} → {r.b}: differ")
    if r.layout:
        lines.append("")
        lines.append("Layout")
        for c in r.layout:
            lines.append(f"  {c['what']}: {c['field']} {_show(c['a'])} → {_show(c['b'])}")
    for f in r.filesystems:
        if not (f["added"] or f["removed"] or f["changed"] or f["unreadable"]):
            continue
        lines.append("")
        lines.append(f"Filesystem {f['key']} ({f['a']['device']} {f['a']['fstype']} → {f['b']['device']} "
                     f"{f['b']['fstype']}): {len(f['added'])} added, {len(f['removed'])} removed, "
                     f"{len(f['changed'])} changed" + (f", {len(f['unreadable'])} not compared (unreadable)"
                                                        if f["unreadable"] else ""))
        for sign, group in (("+", f["added"]), ("-", f["removed"])):
            for e, below in _collapse(group):
                extra = f", {below} {'entry' if below == 1 else 'entries'} below" if below else ""
                size = f", {e['size']} bytes" if e["size"] is not None else ""
                lines.append(f"  {sign} {e['path']}{'/' if e['type'] == 'dir' else ''} ({e['type']}{size}{extra})")
        for c in f["changed"]:
            lines.append(f"  ~ {c['path']}: " + "; ".join(_describe_change(k, v) for k, v in c["changes"].items()))
        for u in f["unreadable"]:
            lines.append(f"  ? {u['path']}: contents not compared ({u['error']})")
    p = r.packages
    if p and (p["added"] or p["removed"] or p["changed"]):
        lines.append("")
        lines.append(f"Packages (/var/lib/dpkg/status): {len(p['changed'])} changed, {len(p['added'])} added, "
                     f"{len(p['removed'])} removed")
        for c in p["changed"]:
            lines.append(f"  {c['change']:<10} {c['name']} {c['a']} → {c['b']}")
        for e in p["added"]:
            lines.append(f"  {'added':<10} {e['name']} {e['version']}")
        for e in p["removed"]:
            lines.append(f"  {'removed':<10} {e['name']} {e['version']}")
    m = r.menu
    if m["diff"]:
        lines.append("")
        lines.append(f"menu.lst ({m['path']})")
        lines.extend("  " + ln for ln in m["diff"].rstrip("\n").split("\n"))
    k = r.kernel
    if k["versions_added"] or k["versions_removed"] or k["boot_changes"]:
        lines.append("")
        prof = k["profile"]
        lines.append(f"Kernel (in /boot: {', '.join(k['a']['versions']) or 'none'} → "
                     f"{', '.join(k['b']['versions']) or 'none'})")
        for v in k["versions_added"]:
            lines.append(f"  + {v}")
        for v in k["versions_removed"]:
            lines.append(f"  - {v}")
        if k["boot_changes"]:
            lines.append(f"  what PV-GRUB {prof['version']} {prof['variant']} {prof['arch']} boots (emulator):")
            for key, (x, y) in k["boot_changes"].items():
                lines.append(f"    {key}: {_show(x)} → {_show(y)}")
    return "\n".join(lines) + "\n"


def render_json(r: DiffReport) -> dict[str, Any]:
    return r.to_json()


__all__ = ["DiffError", "DiffReport", "compare_versions", "diff_images", "parse_dpkg_status", "parse_fstab",
           "render_text"]
