"""XFS test images built with the real xfsprogs, without mounting anything, cached by a hash of their inputs.

Usage (any test module may import this):

    from tests.fixtures_xfs import build_xfs_image, make_xfs
    img = build_xfs_image("v4")            # an XfsImage
    vol = img.volume()                     # a pvbuild Volume over the filesystem (partition or whole disk)
    img.files["/boot/grub/menu.lst"]       # the bytes Linux sees in that file (symlinks in img.links)

    make_xfs(out, tree_dir, ["-m", "crc=0", "-n", "ftype=0"], label="boot")   # any directory tree -> XFS

`make_xfs` turns a directory tree (regular files, directories, symlinks) into an XFS image with
`mkfs.xfs -p protofile`: no loop mount, no root needed. `XFS_ENV` lets mkfs.xfs (xfsprogs >= 5.19) make
filesystems smaller than 300 MB, as fstests does.

Kinds (see `KINDS`):
- `v4`: `-m crc=0 -n ftype=0`, 4 KiB blocks, 256-byte inodes, 64 MiB: the layout PV-GRUB reads. The standard
  tree (`standard_tree()`): /boot with kernel, initrd and symlinks, /links (block directory) with symlink
  chains of 8 and 9 hops, a loop, relative/absolute/directory targets and one GRUB mangles; /sfdir (shortform,
  with a "../" symlink); /blockdir (block directory, 40 entries), /leafdir (leaf directory, 300 entries),
  /nodedir (node directory, 3000 long names, btree format).
- `v4-ftype`: `-m crc=0 -n ftype=1` (mkfs allows it; `-m crc=0` alone also gives ftype=1), same tree.
- `v5`: mkfs.xfs defaults (crc=1, ftype=1), same tree.
- `v4-ftype-block`: `-m crc=0 -n ftype=1`, 16 MiB, `ftype_block_tree()`: only block directories on the way to
  /boot/grub/menu.lst, and /bad with a 5-byte name before the others.
- `v4-1k`: `-m crc=0 -n ftype=0,size=4096 -b size=1024`: 1 KiB blocks, 4 KiB directory blocks, and files whose
  extent maps were rewritten in place (`_surgery`, V4 has no checksums) into shapes mkfs cannot make: a
  6-extent file, 1- and 2-level bmap btrees (300 and 700 extents), a hole, an unwritten extent, a size past
  the last extent, a btree inode with an attribute fork; plus a 1023-byte symlink and a remote symlink.
  `xfs_repair -n` must accept the result (the attribute-fork file is added after that check).
- `mbr-v4`: an MBR disk made with sfdisk: partition 1 (type 0x83) and partition 2 (type 0x07) each hold the
  `v4` filesystem, copied at their byte offsets (mkfs.xfs cannot write at an offset).
- `fuzz-v4`: a 16 MiB `v4` with a small tree for the fuzz test: one directory of each format (node directories
  in extent and in btree format) and a 20-extent bmap btree file (/boot/btree, by surgery).

Images live under `tests.conftest.cache_root()/xfs/<kind>-<hash>/` with a manifest.json; the hash covers the
mkfs arguments, the tree, the surgery recipe and the xfsprogs version. They are rebuilt only when missing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pvbuild.pvgrub.blockio import Disk, Volume
from tests.conftest import cache_root

XFS_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}
MIB = 1 << 20
UUID = "0b1e5a7e-0000-4000-8000-0000000000f5"
LABEL = "pvxfs"
RECIPE_VERSION = "4"  # bump when the builders change in a way the hash does not see

NULLFSBLOCK = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Link:
    target: str


Tree = dict[str, "bytes | Link | None"]  # None: an (empty) directory


def blob(name: str, size: int) -> bytes:
    """Deterministic pseudo-random file content."""
    return random.Random(f"xfs-fixture:{name}").randbytes(size)  # noqa: S311 - test data


# --- make_xfs: directory tree -> protofile -> mkfs.xfs ---------------------------------------------------
def _proto_token(name: str) -> str:
    if not name or any(c.isspace() for c in name) or name in ("$", ":"):
        raise ValueError(f"mkfs.xfs protofiles cannot hold the name {name!r}")
    return name


def protofile(tree: Path) -> str:
    """An mkfs.xfs protofile (see mkfs.xfs(8) -p) describing the directory tree `tree`, in sorted order."""
    lines = ["pvbuild-fixture", "0 0"]

    def perms(p: Path) -> str:
        return f"{p.lstat().st_mode & 0o777:03o}"

    def walk(d: Path, depth: int) -> None:
        ind = " " * depth
        for p in sorted(d.iterdir(), key=lambda x: x.name):
            n = _proto_token(p.name)
            if p.is_symlink():
                lines.append(f"{ind}{n} l--{perms(p)} 0 0 {_proto_token(os.readlink(p))}")
            elif p.is_dir():
                lines.append(f"{ind}{n} d--{perms(p)} 0 0")
                walk(p, depth + 1)
                lines.append(f"{ind}$")
            elif p.is_file():
                lines.append(f"{ind}{n} ---{perms(p)} 0 0 {_proto_token(str(p.resolve()))}")
            else:
                raise ValueError(f"{p}: only files, directories and symlinks are supported")

    lines.append("d--755 0 0")
    walk(tree, 1)
    lines.append("$")
    return "\n".join(lines) + "\n"


def make_xfs(out: Path, tree: Path, options: list[str], *, label: str | None = None,
             uuid: str | None = None) -> None:
    """Make an XFS filesystem in the existing file `out` (its size is the filesystem's) holding `tree`.

    `options` are extra mkfs.xfs arguments (e.g. ["-m", "crc=0", "-n", "ftype=0"]). Nothing is mounted:
    the tree is described in a protofile (mkfs.xfs -p). Names with blanks cannot be expressed.
    """
    with tempfile.TemporaryDirectory() as tmp:
        proto = Path(tmp) / "proto"
        proto.write_text(protofile(tree))
        cmd = [tool("mkfs.xfs"), "-q", "-f", *options]
        if label:
            cmd += ["-L", label]
        if uuid:
            cmd += ["-m", f"uuid={uuid}"]
        cmd += ["-p", str(proto), str(out)]
        _run(cmd)


def write_tree(tree: Tree, root: Path) -> None:
    """Materialise a Tree (absolute paths -> bytes / Link / None for a directory) under root."""
    for path, content in sorted(tree.items()):
        dest = root / path.lstrip("/")
        if content is None:
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            os.symlink(content.target, dest)
        else:
            dest.write_bytes(content)
            os.chmod(dest, 0o644)


# --- the trees -------------------------------------------------------------------------------------------
MENU = b"default 0\ntimeout 0\ntitle pv\nroot (hd0)\nkernel /boot/vmlinuz root=/dev/xvda1 console=hvc0\n"


def standard_tree() -> Tree:
    t: Tree = {
        "/boot/grub/menu.lst": MENU,
        "/boot/grub/default": b"0\n",
        "/boot/vmlinuz-5.10.0-pv": blob("vmlinuz", 600 * 1024),
        "/boot/initrd.img-5.10.0-pv": blob("initrd", 900 * 1024 + 123),
        "/boot/vmlinuz": Link("vmlinuz-5.10.0-pv"),
        "/boot/initrd.img": Link("/boot/initrd.img-5.10.0-pv"),
        "/boot/boot": Link("."),
        "/empty": b"",
        "/links/t1": b"target one\n",
        "/links/up": Link("../boot/grub/menu.lst"),
        "/links/abs": Link("/boot/grub/menu.lst"),
        "/links/dir": Link("/boot"),
        "/links/reldir": Link("../boot"),
        "/links/loop-a": Link("loop-b"),
        "/links/loop-b": Link("loop-a"),
        "/links/m1": Link("m2"),
        "/links/m2": Link("/boot/grub/menu.lst"),
        "/blockdir/up": Link("../boot/grub/menu.lst"),
        "/sfdir/f": b"shortform\n",
        "/sfdir/up": Link("../boot/grub/menu.lst"),
        "/sfdir/self": Link("./f"),
    }
    for i in range(1, 9):
        t[f"/links/c{i}"] = Link(f"c{i + 1}" if i < 8 else "t1")
    for i in range(1, 10):
        t[f"/links/d{i}"] = Link(f"d{i + 1}" if i < 9 else "t1")
    for i in range(40):
        t[f"/blockdir/entry-{i:02d}"] = f"block entry {i}\n".encode()
    for i in range(300):
        t[f"/leafdir/leaf-entry-{i:04d}"] = f"leaf {i}\n".encode() if i % 50 == 0 else b""
    for i in range(3000):
        t[f"/nodedir/a-rather-long-file-name-to-fill-directory-blocks-{i:05d}"] = (
            f"node {i}\n".encode() if i % 500 == 0 else b"")
    return t


def fuzz_tree() -> Tree:
    t: Tree = {
        "/boot/grub/menu.lst": MENU,
        "/boot/vmlinuz": blob("fuzz-kernel", 20 * 1024),
        "/boot/link": Link("vmlinuz"),
        "/sf/a": b"a\n",
        "/sf/b": Link("/boot/link"),
    }
    for i in range(20):
        t[f"/block/entry-{i:02d}"] = f"{i}\n".encode()
    for i in range(150):
        t[f"/leaf/leaf-entry-{i:04d}"] = b""
    t["/leaf/leaf-entry-0149"] = b"last\n"
    for i in range(700):
        t[f"/node/a-long-name-for-a-node-directory-{i:04d}"] = b""
    t["/node/a-long-name-for-a-node-directory-0699"] = b"last\n"
    for i in range(1500):
        t[f"/bnode/a-long-name-for-a-btree-format-node-directory-{i:04d}"] = b""
    t["/bnode/a-long-name-for-a-btree-format-node-directory-1499"] = b"last\n"
    t["/boot/btree"] = blob("fuzz-btree", 20 * 4096)
    t["/boot/donor"] = blob("fuzz-donor", 4096)
    return t


def ftype_block_tree() -> Tree:
    """Every directory on the way to /boot/grub/menu.lst big enough to be a block directory; /bad holds a name
    of 5 bytes (an entry GRUB sizes 8 bytes short when it carries a file-type byte)."""
    t: Tree = {"/boot/grub/menu.lst": MENU, "/boot/vmlinuz-5.10": blob("ftype-kernel", 40 * 1024),
               "/bad/aaaaa": b"five\n", "/bad/zz-target": b"after\n"}
    for i in range(30):
        t[f"/r-{i:02d}"] = b""
        t[f"/boot/bootfile-{i:02d}"] = b""
        t[f"/boot/grub/grubfile-{i:02d}"] = b""
        t[f"/bad/badfile-{i:02d}"] = b""
    return t


def geometry_tree() -> Tree:
    t: Tree = {
        "/boot/grub/menu.lst": MENU,
        "/geo/multi": blob("multi", 24 * 1024),
        "/geo/btree1": blob("btree1", 300 * 1024),
        "/geo/donor1": blob("donor1", 5 * 1024),
        "/geo/btree2": blob("btree2", 700 * 1024),
        "/geo/donor2": blob("donor2", 13 * 1024),
        "/geo/attrbtree": blob("attrbtree", 300 * 1024),
        "/geo/donor3": blob("donor3", 5 * 1024),
        "/geo/holes": blob("holes", 8 * 1024),
        "/geo/unwritten": blob("unwritten", 4 * 1024),
        "/geo/tail": blob("tail", 4 * 1024),
        "/links/long": Link("x" * 1023),
        "/links/remote": Link("/" * 181 + "boot/grub/menu.lst"),
    }
    for i in range(100):
        t[f"/blockdir/e{i:03d}"] = b""
    for i in range(400):
        t[f"/leafdir/leaf-entry-{i:04d}"] = b""
    for i in range(1500):
        t[f"/nodedir/a-rather-long-file-name-to-fill-directory-blocks-{i:05d}"] = b""
    t["/nodedir/a-rather-long-file-name-to-fill-directory-blocks-01499"] = b"last\n"
    return t


# --- image kinds ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    tree: str  # "standard", "fuzz", "geometry"
    options: tuple[str, ...]
    size_mb: int
    surgery: str | None = None  # "geometry" (_surgery) or "fuzz" (_fuzz_surgery)
    mbr: bool = False


V4 = ("-m", "crc=0", "-n", "ftype=0")
KINDS: dict[str, Spec] = {
    "v4": Spec("standard", V4, 64),
    "v4-ftype": Spec("standard", ("-m", "crc=0", "-n", "ftype=1"), 64),
    "v5": Spec("standard", (), 64),
    "v4-ftype-block": Spec("ftype-block", ("-m", "crc=0", "-n", "ftype=1"), 16),
    "v4-1k": Spec("geometry", ("-m", "crc=0", "-n", "ftype=0,size=4096", "-b", "size=1024"), 64, surgery="geometry"),
    "mbr-v4": Spec("standard", V4, 64, mbr=True),
    "fuzz-v4": Spec("fuzz", V4, 16, surgery="fuzz"),
}
TREES = {"standard": standard_tree, "fuzz": fuzz_tree, "geometry": geometry_tree, "ftype-block": ftype_block_tree}


@dataclass
class XfsImage:
    kind: str
    path: Path
    files: dict[str, bytes]  # regular files as Linux sees them (after surgery)
    links: dict[str, str]
    manifest: dict[str, object]
    part_offset: int = 0  # byte offset of the filesystem (first partition for mbr kinds)
    part_size: int = 0

    def volume(self, part: int = 0) -> Volume:
        """The filesystem as GRUB's device: the whole disk, or partition `part` (0-based) of an mbr kind."""
        disk = Disk(self.path)
        if not self.manifest.get("mbr"):
            return Volume(disk, 0, disk.size - disk.size % 512, None, "(hd0)")
        parts = self.manifest["partitions"]
        assert isinstance(parts, list)
        start, size, ptype = parts[part]
        return Volume(disk, start, size, ptype, f"(hd0,{part})")

    @property
    def fs_path(self) -> Path:
        """The bare filesystem image (for xfs_db / blkid)."""
        return self.path.parent / "fs.raw" if self.manifest.get("mbr") else self.path


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise FileNotFoundError(f"{name} is not installed (apt-get install xfsprogs)")
    return path


def _run(cmd: list[str], *, ok: tuple[int, ...] = (0,), input: str | None = None) -> str:
    env = dict(os.environ, **XFS_ENV)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, input=input, check=False)
    if res.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd[:6])} failed ({res.returncode}): {res.stderr.strip()[:2000]}")
    return res.stdout


def _tool_version() -> str:
    return _run([tool("mkfs.xfs"), "-V"]).strip()


def _key(kind: str, spec: Spec) -> str:
    tree = TREES[spec.tree]()
    h = hashlib.sha256()
    h.update(repr((RECIPE_VERSION, kind, spec, _tool_version(), UUID, LABEL)).encode())
    for path, content in sorted(tree.items()):
        h.update(path.encode() + b"\0")
        h.update(repr(content).encode() if not isinstance(content, bytes) else hashlib.sha256(content).digest())
    return h.hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_xfs_image(kind: str) -> XfsImage:
    """The image of `kind` (see KINDS), built once and cached."""
    spec = KINDS[kind]
    d = cache_root() / "xfs" / f"{kind}-{_key(kind, spec)}"
    with _locked(cache_root() / "xfs" / f".{kind}.lock"):
        if not (d / "manifest.json").exists():
            if d.exists():
                shutil.rmtree(d)
            with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
                work = Path(tmp) / "out"
                work.mkdir()
                _build(spec, work)
                os.replace(work, d)
    manifest = json.loads((d / "manifest.json").read_text())
    tree = TREES[spec.tree]()
    files = {p: c for p, c in tree.items() if isinstance(c, bytes)}
    links = {p: c.target for p, c in tree.items() if isinstance(c, Link)}
    img = XfsImage(kind, d / ("disk.raw" if spec.mbr else "fs.raw"), files, links, manifest)
    if spec.surgery:
        for p in manifest["rewritten"]:
            img.files[p] = linux_view(img.fs_path, p)
    if spec.mbr:
        img.part_offset, img.part_size = manifest["partitions"][0][0], manifest["partitions"][0][1]
    return img


def _build(spec: Spec, work: Path) -> None:
    fs = work / "fs.raw"
    with open(fs, "wb") as f:
        f.truncate(spec.size_mb * MIB)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tree"
        root.mkdir()
        write_tree(TREES[spec.tree](), root)
        make_xfs(fs, root, list(spec.options), label=LABEL, uuid=UUID)
    manifest: dict[str, object] = {"options": list(spec.options), "mbr": spec.mbr}
    if spec.surgery == "geometry":
        manifest["rewritten"] = _surgery(fs)
    elif spec.surgery == "fuzz":
        manifest["rewritten"] = _fuzz_surgery(fs)
    if spec.mbr:
        disk = work / "disk.raw"
        size = spec.size_mb * MIB
        with open(disk, "wb") as f:
            f.truncate(1 * MIB + 2 * size + 1 * MIB)
        table = (f"label: dos\nlabel-id: 0x5eedf00d\nunit: sectors\n"
                 f"start=2048, size={size // 512}, type=83\n"
                 f"start={2048 + size // 512}, size={size // 512}, type=7\n")
        _run([tool("sfdisk"), "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=table)
        for start in (1 * MIB, 1 * MIB + size):
            _run(["dd", f"if={fs}", f"of={disk}", "bs=1M", f"seek={start // MIB}", "conv=notrunc,sparse",
                  "status=none"])
        manifest["partitions"] = [[1 * MIB, size, 0x83], [1 * MIB + size, size, 0x07]]
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


# --- reading an image with xfs_db (the reference view) --------------------------------------------------
def xfs_db(img: Path, *commands: str) -> str:
    cmd = [tool("xfs_db"), "-r"]
    for c in commands:
        cmd += ["-c", c]
    return _run([*cmd, str(img)])


@dataclass(frozen=True)
class Geometry:
    bsize: int
    agblocks: int
    agblklog: int
    inopblog: int
    isize: int

    @staticmethod
    def read(img: Path) -> Geometry:
        with open(img, "rb") as f:
            sb = f.read(256)
        return Geometry(int.from_bytes(sb[4:8], "big"), int.from_bytes(sb[84:88], "big"), sb[124], sb[123],
                        int.from_bytes(sb[104:106], "big"))

    def fsb_offset(self, fsb: int) -> int:
        agno, agbno = fsb >> self.agblklog, fsb & ((1 << self.agblklog) - 1)
        return (agno * self.agblocks + agbno) * self.bsize

    def ino_offset(self, ino: int) -> int:
        k = self.agblklog + self.inopblog
        agno, agino = ino >> k, ino & ((1 << k) - 1)
        agbno, slot = agino >> self.inopblog, agino & ((1 << self.inopblog) - 1)
        return (agno * self.agblocks + agbno) * self.bsize + slot * self.isize


def inode_number(img: Path, path: str) -> int:
    """The inode number of `path`, from xfs_db's directory listing."""
    parent, name = path.rsplit("/", 1)
    out = xfs_db(img, f"ls {parent or '/'}")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5] == name:
            return int(parts[1])
    raise KeyError(path)


_BMAP = re.compile(r"data offset (\d+) startblock (\d+) \(\d+/\d+\) count (\d+) flag (\d)")


def bmap(img: Path, path: str) -> list[tuple[int, int, int, int]]:
    """xfs_db's extent map of a file: (file block, filesystem block, count, unwritten flag)."""
    out = xfs_db(img, f"path {path}", "bmap")
    return [tuple(int(x) for x in m.groups()) for m in _BMAP.finditer(out)]  # type: ignore[misc]


def linux_view(img: Path, path: str) -> bytes:
    """A file's content as Linux reads it, from xfs_db's extent map and the raw image (holes and unwritten
    extents read as zeros)."""
    geo = Geometry.read(img)
    ino = inode_number(img, path)
    with open(img, "rb") as f:
        f.seek(geo.ino_offset(ino) + 56)
        size = int.from_bytes(f.read(8), "big")
        out = bytearray(size)
        for off, start, count, flag in bmap(img, path):
            if flag:
                continue
            f.seek(geo.fsb_offset(start))
            data = f.read(count * geo.bsize)
            lo = off * geo.bsize
            if lo < size:
                out[lo:min(size, lo + len(data))] = data[:size - lo]
    return bytes(out)


def blkid(path: Path) -> dict[str, str]:
    out = _run([tool("blkid"), "-p", "-o", "export", str(path)], ok=(0, 2))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


# --- surgery: extent maps mkfs cannot make ----------------------------------------------------------------
def _rec(offset: int, start: int, count: int, flag: int = 0) -> bytes:
    v = (flag << 127) | (offset << 73) | (start << 21) | count
    return v.to_bytes(16, "big")


def _single_extent(img: Path, path: str) -> tuple[int, int, int]:
    ext = bmap(img, path)
    assert len(ext) == 1 and ext[0][0] == 0, (path, ext)
    return inode_number(img, path), ext[0][1], ext[0][2]


def _swap_pairs(n: int) -> list[int]:
    """Logical block i lives in physical block perm[i]: neighbours swapped, so no two records merge."""
    perm = list(range(n))
    for i in range(0, n - 1, 2):
        perm[i], perm[i + 1] = perm[i + 1], perm[i]
    return perm


class _Patcher:
    def __init__(self, img: Path) -> None:
        self.img = img
        self.geo = Geometry.read(img)
        self.f = open(img, "r+b")  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        self.f.close()

    def write(self, off: int, data: bytes) -> None:
        self.f.seek(off)
        self.f.write(data)

    def inode(self, ino: int, field_off: int, data: bytes) -> None:
        self.write(self.geo.ino_offset(ino) + field_off, data)

    def set_core(self, ino: int, *, fmt: int | None = None, size: int | None = None, nblocks: int | None = None,
                 nextents: int | None = None) -> None:
        if fmt is not None:
            self.inode(ino, 5, bytes((fmt,)))
        if size is not None:
            self.inode(ino, 56, size.to_bytes(8, "big"))
        if nblocks is not None:
            self.inode(ino, 64, nblocks.to_bytes(8, "big"))
        if nextents is not None:
            self.inode(ino, 76, nextents.to_bytes(4, "big"))

    def clear_fork(self, ino: int) -> None:
        self.inode(ino, 100, bytes(self.geo.isize - 100))

    def block(self, fsb: int, data: bytes) -> None:
        self.write(self.geo.fsb_offset(fsb), data.ljust(self.geo.bsize, b"\0"))

    def extents_inline(self, ino: int, recs: list[bytes]) -> None:
        self.clear_fork(ino)
        self.inode(ino, 100, b"".join(recs))
        self.set_core(ino, fmt=2, nextents=len(recs))

    def btree(self, ino: int, recs: list[bytes], blocks: list[int], levels: int, dsize: int) -> None:
        """Write `recs` as a bmap btree of `levels` levels below the inode root, in `blocks` (fs block numbers:
        the leaves, then the node for levels == 2)."""
        bs = self.geo.bsize
        leafmax = (bs - 24) // 16
        nleaves = (len(recs) + leafmax - 1) // leafmax
        leaves = blocks[:nleaves]
        assert len(blocks) == nleaves + (1 if levels == 2 else 0)
        first_keys = []
        bounds = [len(recs) * i // nleaves for i in range(nleaves + 1)]  # even split: every leaf >= maxrecs/2
        for i, fsb in enumerate(leaves):
            chunk = recs[bounds[i]:bounds[i + 1]]
            left = leaves[i - 1] if i else NULLFSBLOCK
            right = leaves[i + 1] if i + 1 < nleaves else NULLFSBLOCK
            self.block(fsb, b"BMAP" + struct.pack(">HHQQ", 0, len(chunk), left, right) + b"".join(chunk))
            first_keys.append(int.from_bytes(chunk[0], "big") >> 73 & ((1 << 54) - 1))
        root_max = (dsize - 4) // 16
        self.clear_fork(ino)
        if levels == 1:
            assert nleaves <= root_max
            keys, ptrs = first_keys, leaves
        else:
            node = blocks[-1]
            nodemax = (bs - 24) // 16
            assert nleaves <= nodemax
            body = bytearray(bs - 24)
            for i, (k, p) in enumerate(zip(first_keys, leaves, strict=True)):
                body[i * 8:i * 8 + 8] = k.to_bytes(8, "big")
                body[nodemax * 8 + i * 8:nodemax * 8 + i * 8 + 8] = p.to_bytes(8, "big")
            self.block(node, b"BMAP" + struct.pack(">HHQQ", 1, nleaves, NULLFSBLOCK, NULLFSBLOCK) + bytes(body))
            keys, ptrs = [first_keys[0]], [node]
        root = bytearray(dsize)
        root[0:4] = struct.pack(">HH", levels, len(keys))
        for i, (k, p) in enumerate(zip(keys, ptrs, strict=True)):
            root[4 + i * 8:12 + i * 8] = k.to_bytes(8, "big")
            root[4 + root_max * 8 + i * 8:12 + root_max * 8 + i * 8] = p.to_bytes(8, "big")
        self.inode(ino, 100, bytes(root))
        self.set_core(ino, fmt=3, nextents=len(recs))


def _fuzz_surgery(img: Path) -> dict[str, str]:
    """/boot/btree of the `fuzz-v4` image: 20 single-block extents under a 1-level bmap btree (one leaf, the
    block of /boot/donor)."""
    geo = Geometry.read(img)
    p = _Patcher(img)
    try:
        ino, start, n = _single_extent(img, "/boot/btree")
        dino, dstart, _ = _single_extent(img, "/boot/donor")
        perm = _swap_pairs(n)
        p.btree(ino, [_rec(i, start + perm[i], 1) for i in range(n)], [dstart], 1, geo.isize - 100)
        p.set_core(ino, nblocks=n + 1)
        p.clear_fork(dino)
        p.set_core(dino, size=0, nblocks=0, nextents=0)
    finally:
        p.close()
    _run([tool("xfs_repair"), "-n", "-o", "force_geometry", str(img)])  # a 16 MiB XFS has a single AG
    return {"/boot/btree": f"{n} extents, 1-level bmap btree", "/boot/donor": "emptied"}


def _surgery(img: Path) -> dict[str, str]:
    """Rewrite the extent maps of the /geo files of the `v4-1k` image. Returns {path: what was done}."""
    geo = Geometry.read(img)
    bs = geo.bsize
    p = _Patcher(img)
    done: dict[str, str] = {}
    try:
        # 6 extents of 4 blocks, physical order of the pieces swapped pairwise (extent format)
        ino, start, n = _single_extent(img, "/geo/multi")
        perm = _swap_pairs(6)
        p.extents_inline(ino, [_rec(4 * i, start + 4 * perm[i], 4) for i in range(6)])
        done["/geo/multi"] = "6 extents"

        # bmap btrees made of single-block extents; the btree blocks are the donor file's blocks
        for path, donor, levels in (("/geo/btree1", "/geo/donor1", 1), ("/geo/btree2", "/geo/donor2", 2)):
            ino, start, n = _single_extent(img, path)
            dino, dstart, dn = _single_extent(img, donor)
            perm = _swap_pairs(n)
            recs = [_rec(i, start + perm[i], 1) for i in range(n)]
            p.btree(ino, recs, list(range(dstart, dstart + dn)), levels, geo.isize - 100)
            p.set_core(ino, nblocks=n + dn)
            p.clear_fork(dino)
            p.set_core(dino, size=0, nblocks=0, nextents=0)
            done[path] = f"{n} extents, {levels}-level bmap btree"
            done[donor] = f"emptied: its blocks hold the bmap btree of {path}"

        # a hole of 2 blocks after the 4th block
        ino, start, n = _single_extent(img, "/geo/holes")
        p.extents_inline(ino, [_rec(0, start, 4), _rec(6, start + 4, 4)])
        p.set_core(ino, size=10 * bs)
        done["/geo/holes"] = "hole at blocks 4-5"

        # one unwritten (preallocated) extent: Linux reads zeros, the blocks hold the original data
        ino, start, n = _single_extent(img, "/geo/unwritten")
        p.extents_inline(ino, [_rec(0, start, 2), _rec(2, start + 2, 2, flag=1)])
        done["/geo/unwritten"] = "blocks 2-3 unwritten"

        # the size runs 4 blocks past the only extent
        ino, start, n = _single_extent(img, "/geo/tail")
        p.set_core(ino, size=8 * bs)
        done["/geo/tail"] = "size past the last extent"
    finally:
        p.close()
    _run([tool("xfs_repair"), "-n", str(img)])

    # A 1-level btree in an inode that also has a (shortform) attribute fork at forkoff 15: Linux finds the
    # btree root's pointers at 4 + 7*8 (maxrecs from the 120-byte data fork); GRUB looks at 4 + 1*8.
    p = _Patcher(img)
    try:
        ino, start, n = _single_extent(img, "/geo/attrbtree")
        dino, dstart, dn = _single_extent(img, "/geo/donor3")
        forkoff = 15
        perm = _swap_pairs(n)
        p.btree(ino, [_rec(i, start + perm[i], 1) for i in range(n)], list(range(dstart, dstart + dn)), 1,
                forkoff * 8)
        p.set_core(ino, nblocks=n + dn)
        name, value = b"pvbuild", b"1"
        entry = bytes((len(name), len(value), 0)) + name + value
        attr = struct.pack(">HBB", 4 + len(entry), 1, 0) + entry
        p.inode(ino, 100 + forkoff * 8, attr)
        p.inode(ino, 82, bytes((forkoff, 1)))  # di_forkoff, di_aformat = local
        p.clear_fork(dino)
        p.set_core(dino, size=0, nblocks=0, nextents=0)
        done["/geo/donor3"] = "emptied: its blocks hold the bmap btree of /geo/attrbtree"
        done["/geo/attrbtree"] = "1-level bmap btree + shortform attribute fork (forkoff 15)"
    finally:
        p.close()
    return done
