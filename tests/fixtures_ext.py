"""ext2/ext3/ext4 test images built with the real e2fsprogs tools (mkfs.ext2/3/4 -d, e2fsck -D, sfdisk).

Usage (any test module may import this):

    from tests.fixtures_ext import build_ext_image, tree_files
    img = build_ext_image("ext4")          # an ExtImage
    vol = img.volume()                     # a pvbuild Volume over the filesystem (partition or whole disk)
    expected = tree_files(img.tree)        # {"/boot/grub/menu.lst": b"...", ...}

Kinds (see `KINDS`): ext2 (1 KiB blocks, 128-byte inodes, block maps up to triple indirect), ext3 (1 KiB, 256-byte
inodes, journal), ext4 (4 KiB, 256-byte inodes, -O ^64bit, metadata_csum, flex_bg), ext4-1k (1 KiB blocks,
128-byte inodes: a 400-extent sparse file gets a depth-2 extent tree), ext4-frag (1 KiB blocks, 1 MiB groups,
no flex_bg: a 6 MiB file is split into > 4 extents, depth-1 tree without holes), ext4-64bit (-O 64bit),
ext4-inode1024 (1024-byte inodes), ext4-metabg (meta_bg with 48 groups, files whose inodes sit in groups >= 32),
ext4-inline (inline_data), fuzz-ext2 / fuzz-ext4 (2 MiB images for the fuzz test), and mbr-83 / mbr-fd /
mbr-8e / mbr-07 (an MBR disk made with sfdisk, one partition of that type at 1 MiB holding an ext4 made with
`mkfs.ext4 -E offset=`).

Images are cached under `tests.conftest.cache_root()/ext/<kind>-<hash>/`, the hash covering the mkfs arguments,
the generated tree (paths, contents, symlink targets), the e2fsprogs version and the pinned mke2fs.conf; they are
rebuilt only when missing. Builds are reproducible as far as e2fsprogs allows: E2FSPROGS_FAKE_TIME, fixed -U and
-E hash_seed, fixed file mtimes, a fixed MBR label-id (inode ctimes come from the host and still vary).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pvbuild.pvgrub.blockio import Disk, Volume
from tests.conftest import cache_root

FAKE_TIME = "1600000000"
UUID = "0b1e5a7e-0000-4000-8000-00000000e2f5"
HASH_SEED = "0b1e5a7e-0000-4000-8000-0000000005ee"
LABEL = "pvboot"
MIB = 1 << 20

# Debian 12's /etc/mke2fs.conf, pinned so that defaults do not drift with the host.
MKE2FS_CONF = """[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text3 = {
\t\tfeatures = has_journal
\t}
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tsmall = {
\t\tblocksize = 1024
\t\tinode_ratio = 4096
\t}
"""

# --------------------------------------------------------------------------------------------------------------
# Trees


def _rand(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)  # noqa: S311 - deterministic test data


MENU_LST = (b"default 0\ntimeout 3\n\ntitle Test kernel\n\troot (hd0)\n"
            b"\tkernel /boot/vmlinuz root=/dev/xvda1 console=hvc0\n\tinitrd /boot/initrd.img\n")
LONG_DIR = "L" * 200
SPARSE_RUNS = 400  # 4 KiB of data, 4 KiB of zeros, repeated: mke2fs -d turns the zeros into holes
TIND_CHUNKS = {0: 0, 20 * MIB: 1, 70 * MIB: 2}  # offset -> seed of a 4 KiB chunk; the rest is a hole


@dataclass
class Tree:
    files: dict[str, bytes] = field(default_factory=dict)  # "/boot/grub/menu.lst" -> content
    sparse: dict[str, tuple[int, dict[int, bytes]]] = field(default_factory=dict)  # path -> (size, {off: data})
    symlinks: dict[str, str] = field(default_factory=dict)  # path -> target
    dirs: list[str] = field(default_factory=list)


def _sparse_runs() -> tuple[int, dict[int, bytes]]:
    chunks = {k * 8192: _rand(1000 + k, 4096) for k in range(SPARSE_RUNS)}
    return SPARSE_RUNS * 8192, chunks


def make_tree(name: str) -> Tree:
    """The content of each tree, generated deterministically."""
    t = Tree()
    t.files["/boot/grub/menu.lst"] = MENU_LST
    t.files["/boot/small"] = b"tiny file\n"
    t.files["/boot/empty"] = b""
    if name in ("standard", "standard-tind"):
        t.files["/boot/vmlinuz"] = _rand(1, 600 * 1024)
        t.files["/boot/initrd.img"] = _rand(2, 100 * 1024)
        t.symlinks.update({
            "/boot/boot": ".",
            "/boot/rel-menu": "grub/menu.lst",
            "/boot/abs-menu": "/boot/grub/menu.lst",
            "/boot/grubdir": "grub",
            "/boot/dotdot-menu": "../boot/grub/menu.lst",
            "/boot/spacey": "grub/menu.lst ignored after the space",
            "/boot/dangling": "not-there",
            "/boot/to-dir": "/boot/grub",
            "/links/c1": "c2", "/links/c2": "c3", "/links/c3": "c4", "/links/c4": "c5", "/links/c5": "target",
            "/links/d1": "d2", "/links/d2": "d3", "/links/d3": "d4", "/links/d4": "d5", "/links/d5": "d6",
            "/links/d6": "target",
            "/links/loop-a": "loop-b", "/links/loop-b": "loop-a",
            "/links/abs-chain": "/links/c2",
            "/links/slow": f"/longnames/{LONG_DIR}/file.txt",
        })
        t.files["/links/target"] = b"the end of the chain\n"
        t.files[f"/longnames/{LONG_DIR}/file.txt"] = b"reached through a slow symlink\n"
        for i in range(2000):
            t.files[f"/many/file-{i:04d}"] = f"content of file {i}\n".encode()
        t.sparse["/sparse"] = _sparse_runs()
        t.dirs.append("/emptydir")
    if name == "standard-tind":
        t.sparse["/boot/tind"] = (max(TIND_CHUNKS) + 4096, {o: _rand(2000 + s, 4096) for o, s in TIND_CHUNKS.items()})
    if name == "frag":
        t.files["/boot/vmlinuz"] = _rand(3, 6 * MIB)
    if name == "small":
        t.files["/boot/vmlinuz"] = _rand(4, 64 * 1024)
        t.files["/big"] = _rand(5, 20 * 1024)
        t.files["/small-root"] = b"inline?\n"
        t.symlinks["/boot/rel-menu"] = "grub/menu.lst"
    if name == "fuzz":
        t.files["/boot/vmlinuz"] = _rand(6, 40 * 1024)
        t.sparse["/boot/sparse"] = (8 * 8192, {k * 8192: _rand(3000 + k, 4096) for k in range(8)})
        t.symlinks["/boot/fast"] = "grub/menu.lst"
        t.symlinks["/boot/slow"] = "/boot/" + "d" * 70 + "/f"
        t.files["/boot/" + "d" * 70 + "/f"] = b"slow target\n"
        for i in range(40):
            t.files[f"/boot/dir/entry-with-a-longish-name-{i:02d}"] = f"entry {i}\n".encode()
    if name == "metabg":
        for i in range(700):
            t.files[f"/f{i:03d}"] = f"meta file {i}\n".encode()
    return t


def tree_files(name: str) -> dict[str, bytes]:
    """Every regular file of a tree with its full content (sparse files expanded)."""
    t = make_tree(name)
    out = dict(t.files)
    for path, (size, chunks) in t.sparse.items():
        buf = bytearray(size)
        for off, data in chunks.items():
            buf[off:off + len(data)] = data
        out[path] = bytes(buf)
    return out


def _manifest(t: Tree) -> list[object]:
    return [
        sorted((p, hashlib.sha256(d).hexdigest()) for p, d in t.files.items()),
        sorted((p, size, sorted((o, hashlib.sha256(d).hexdigest()) for o, d in chunks.items()))
               for p, (size, chunks) in t.sparse.items()),
        sorted(t.symlinks.items()),
        sorted(t.dirs),
    ]


def _write_tree(t: Tree, root: Path) -> None:
    for path, data in t.files.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    for path, (size, chunks) in t.sparse.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            f.truncate(size)
            for off, data in chunks.items():
                f.seek(off)
                f.write(data)
    for path, target in t.symlinks.items():
        p = root / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, p)
    for path in t.dirs:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (int(FAKE_TIME), int(FAKE_TIME)), follow_symlinks=False)
    os.utime(root, (int(FAKE_TIME), int(FAKE_TIME)))


# --------------------------------------------------------------------------------------------------------------
# Image kinds


@dataclass(frozen=True)
class ImageSpec:
    mkfs: str
    options: tuple[str, ...]
    tree: str
    size_mib: int
    index_dirs: bool = True  # e2fsck -fD: turns big directories into htree-indexed ones
    part_type: int | None = None  # build an MBR disk with one partition of this type at 1 MiB
    description: str = ""


_NO64 = ("-O", "^64bit")

KINDS: dict[str, ImageSpec] = {
    "ext2": ImageSpec("mkfs.ext2", ("-b", "1024", "-I", "128"), "standard-tind", 40,
                      description="ext2, 1 KiB blocks, 128-byte inodes, triple-indirect sparse file"),
    "ext3": ImageSpec("mkfs.ext3", ("-b", "1024", "-I", "256"), "standard", 40,
                      description="ext3, 1 KiB blocks, 256-byte inodes, journal"),
    "ext4": ImageSpec("mkfs.ext4", ("-b", "4096", "-I", "256", *_NO64), "standard", 64,
                      description="ext4 -O ^64bit, 4 KiB blocks, metadata_csum, flex_bg, extents"),
    "ext4-1k": ImageSpec("mkfs.ext4", ("-b", "1024", "-I", "128", *_NO64), "standard", 40,
                         description="ext4 1 KiB blocks, 128-byte inodes: depth-2 extent tree on /sparse"),
    "ext4-frag": ImageSpec("mkfs.ext4", ("-b", "1024", "-g", "1024", "-O", "^flex_bg,^64bit,^resize_inode"),
                           "frag", 16, index_dirs=False,
                           description="ext4 with 1 MiB groups and no flex_bg: a 6 MiB file in > 4 extents"),
    "ext4-64bit": ImageSpec("mkfs.ext4", ("-b", "4096", "-O", "64bit"), "small", 16,
                            description="ext4 -O 64bit (PV-GRUB: Error 14 on every file)"),
    "ext4-inode1024": ImageSpec("mkfs.ext4", ("-b", "4096", "-I", "1024", *_NO64), "small", 16,
                                description="ext4 with 1024-byte inodes"),
    "ext4-metabg": ImageSpec("mkfs.ext4", ("-b", "1024", "-g", "1024", "-N", "800",
                                           "-O", "meta_bg,^resize_inode,^64bit"), "metabg", 48, index_dirs=False,
                             description="ext4 meta_bg, 48 groups of 1 MiB, 16 inodes per group"),
    "ext4-inline": ImageSpec("mkfs.ext4", ("-b", "4096", "-O", "inline_data,^64bit"), "small", 16,
                             description="ext4 -O inline_data"),
}
# Small images for tests/test_fuzz_ext2.py (loaded into memory and mutated).
KINDS["fuzz-ext2"] = ImageSpec("mkfs.ext2", ("-b", "1024", "-I", "128", "-N", "128"), "fuzz", 2,
                               description="2 MiB ext2 for fuzzing: indirect blocks, symlinks, a 2-block directory")
KINDS["fuzz-ext4"] = ImageSpec("mkfs.ext4", ("-b", "1024", "-I", "256", "-N", "128",
                                             "-O", "^64bit,^has_journal"), "fuzz", 2,
                               description="2 MiB ext4 for fuzzing: a depth-1 extent tree, symlinks, metadata_csum")
for _t in (0x83, 0xFD, 0x8E, 0x07):
    KINDS[f"mbr-{_t:02x}"] = ImageSpec("mkfs.ext4", ("-b", "4096", *_NO64), "small", 20, part_type=_t,
                                       description=f"MBR disk, partition 1 of type 0x{_t:02X} at 1 MiB, ext4")
PART_START = 1 * MIB


@dataclass(frozen=True)
class ExtImage:
    """A built image: the file, where the filesystem sits in it, and what it was built from."""

    kind: str
    path: Path
    offset: int  # byte offset of the filesystem in the file (the partition start, or 0)
    length: int  # bytes of the filesystem volume
    part_type: int | None  # MBR type byte of the partition holding it, None for a whole-disk filesystem
    tree: str
    spec: ImageSpec

    def volume(self) -> Volume:
        """A Volume over the filesystem: `(hd0,0)` for partitioned kinds, `(hd0)` otherwise."""
        disk = Disk(self.path)
        name = "(hd0,0)" if self.part_type is not None else "(hd0)"
        return Volume(disk, self.offset, self.length, self.part_type, name)

    def disk_volume(self) -> Volume:
        """The whole disk as `(hd0)`."""
        disk = Disk(self.path)
        return Volume(disk, 0, disk.size, None, "(hd0)")


_PACKAGES = {"sfdisk": "fdisk", "blkid": "util-linux"}


def tool(name: str) -> str:
    """Absolute path of an e2fsprogs/util-linux tool, also when /usr/sbin is not on PATH (non-root shells)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if found is None:
        raise RuntimeError(f"{name} not found: install the Debian package {_PACKAGES.get(name, 'e2fsprogs')}")
    return found


def _tool_version() -> str:
    out = subprocess.run([tool("mke2fs"), "-V"], capture_output=True, text=True, check=False)
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else "unknown"


def _key(kind: str, spec: ImageSpec) -> str:
    payload = {
        "kind": kind, "mkfs": spec.mkfs, "options": list(spec.options), "size": spec.size_mib,
        "index": spec.index_dirs, "part": spec.part_type, "tree": _manifest(make_tree(spec.tree)),
        "uuid": UUID, "seed": HASH_SEED, "label": LABEL, "time": FAKE_TIME, "conf": MKE2FS_CONF,
        "tools": _tool_version(), "layout": 2,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> None:
    res = subprocess.run([tool(cmd[0]), *cmd[1:]], env=env, capture_output=True, text=True, check=False)
    if res.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")


def _build(kind: str, spec: ImageSpec, work: Path) -> Path:
    conf = work / "mke2fs.conf"
    conf.write_text(MKE2FS_CONF)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=FAKE_TIME, MKE2FS_CONFIG=str(conf), LC_ALL="C")
    tree = work / "tree"
    tree.mkdir()
    _write_tree(make_tree(spec.tree), tree)
    img = work / "disk.img"
    common = ["-q", "-F", "-U", UUID, "-L", LABEL, "-d", str(tree)]
    if spec.part_type is None:
        with open(img, "wb") as f:
            f.truncate(spec.size_mib * MIB)
        _run([spec.mkfs, *common, "-E", f"hash_seed={HASH_SEED}", *spec.options, str(img)], env)
        fsck_target = str(img)
    else:
        with open(img, "wb") as f:
            f.truncate(spec.size_mib * MIB)
        fs_mib = spec.size_mib - 2
        script = (f"label: dos\nlabel-id: 0x5eed0e27\nunit: sectors\n\n"
                  f"start={PART_START // 512}, size={fs_mib * MIB // 512}, type={spec.part_type:x}\n")
        res = subprocess.run([tool("sfdisk"), "-q", str(img)], input=script, env=env, capture_output=True, text=True,
                             check=False)
        if res.returncode != 0:
            raise RuntimeError(f"sfdisk failed: {res.stderr.strip()}")
        _run([spec.mkfs, *common, "-E", f"hash_seed={HASH_SEED},offset={PART_START}", *spec.options, str(img),
              f"{fs_mib}M"], env)
        fsck_target = ""
    if spec.index_dirs and fsck_target:
        _run(["e2fsck", "-fyD", fsck_target], env, ok=(0, 1))
    return img


def build_ext_image(kind: str) -> ExtImage:
    """Build (or reuse from the cache) the image `kind` (a key of KINDS) and describe it."""
    spec = KINDS[kind]
    base = cache_root() / "ext"
    base.mkdir(parents=True, exist_ok=True)
    final = base / f"{kind}-{_key(kind, spec)}"
    img = final / "disk.img"
    if not img.exists():
        with _locked(base / f".{kind}.lock"):
            if not img.exists():
                work = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=base))
                try:
                    _build(kind, spec, work)
                    shutil.rmtree(work / "tree")
                    if final.exists():
                        shutil.rmtree(final)
                    os.replace(work, final)
                finally:
                    if work.exists():
                        shutil.rmtree(work, ignore_errors=True)
    if spec.part_type is None:
        offset, length = 0, img.stat().st_size
    else:
        offset, length = PART_START, (spec.size_mib - 2) * MIB
    return ExtImage(kind, img, offset, length, spec.part_type, spec.tree, spec)


def debugfs(img: ExtImage, request: str) -> str:
    """Run a read-only debugfs request on the image (whole-disk kinds only) and return its output."""
    res = subprocess.run([tool("debugfs"), "-R", request, str(img.path)], capture_output=True, text=True,
                         check=False)
    return res.stdout


def blkid(img: ExtImage) -> dict[str, str]:
    """`blkid -p -o export` on the filesystem (with --offset for partitioned kinds)."""
    cmd = [tool("blkid"), "-p", "-o", "export"]
    if img.offset:
        cmd += ["--offset", str(img.offset)]
    res = subprocess.run([*cmd, str(img.path)], capture_output=True, text=True, check=False)
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
