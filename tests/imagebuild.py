"""Disk images for the emulator's tests, built with the real tools and cached by a hash of their spec.

A spec is plain data (files, filesystems, partitions), so the cache key is just its repr. Partitions are
filled without partition devices (none exist here): each filesystem is made in its own file, then copied
into the disk image at the partition's offset.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import cache_root

MiB = 1024 * 1024
FIXED_TIME = "1700000000"


@dataclass(frozen=True)
class Symlink:
    target: str


Tree = dict[str, "bytes | Symlink"]


@dataclass(frozen=True)
class Fs:
    """One filesystem: its type, mkfs options, label/uuid, and its files."""

    files: tuple[tuple[str, bytes | Symlink], ...]
    fstype: str = "ext4"
    size_mb: int = 48
    options: tuple[str, ...] = ("-O", "^64bit")
    label: str | None = None
    uuid: str | None = None
    # mke2fs -d turns every all-zero block of a file into a hole; PV-GRUB's extent code cannot read holes
    # (see test_machine.py). With `dense`, files are rewritten through a loop mount so they have none.
    dense: bool = True

    @staticmethod
    def of(tree: Tree, **kw: object) -> Fs:
        return Fs(tuple(sorted(tree.items())), **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Part:
    fs: Fs | None
    type: str = "83"
    size_mb: int = 48
    start_mb: int | None = None


@dataclass(frozen=True)
class DiskSpec:
    """`table`: "none" (the filesystem is the whole disk), "mbr" (sfdisk dos label) or "gpt"."""

    table: str
    whole: Fs | None = None
    parts: tuple[Part, ...] = ()
    logical_from: int | None = None  # with "mbr": partitions from this index on are logical (extended)
    extra_mb: int = 4
    raw_tail: tuple[tuple[int, bytes], ...] = field(default_factory=tuple)  # (offset, bytes) patches

    def key(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:24]


def _run(cmd: list[str], **kw: object) -> None:
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=FIXED_TIME, SOURCE_DATE_EPOCH=FIXED_TIME)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")


def _populate(root: Path, files: tuple[tuple[str, bytes | Symlink], ...]) -> None:
    for path, content in files:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Symlink):
            os.symlink(content.target, dest)
        else:
            dest.write_bytes(content)


def make_fs(fs: Fs, out: Path) -> None:
    """Make one filesystem image file of fs.size_mb holding fs.files."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        _populate(tree, fs.files)
        with open(out, "wb") as f:
            f.truncate(fs.size_mb * MiB)
        if fs.fstype in ("ext2", "ext3", "ext4"):
            cmd = [f"mkfs.{fs.fstype}", "-q", "-F", "-E", "hash_seed=3a0d3a3c-0b8a-4f4e-9d1e-0a4c1a4b2c3d",
                   *fs.options, "-d", str(tree)]
            if fs.label:
                cmd += ["-L", fs.label]
            cmd += ["-U", fs.uuid or "6b7c1a1e-2d2f-4b8e-9a51-0c6d7e8f9a0b", str(out)]
            _run(cmd)
            if fs.dense and any(src.is_file() for src in tree.rglob("*")):
                _rewrite_dense(out, tree, Path(tmp) / "mnt")
        elif fs.fstype == "xfs":
            from tests.fixtures_xfs import make_xfs  # the XFS builder (protofile, no mount)

            make_xfs(out, tree, list(fs.options), label=fs.label, uuid=fs.uuid)
        elif fs.fstype in ("reiserfs", "jfs"):
            _make_by_appliance(fs, out, tree, Path(tmp))
        else:
            raise ValueError(f"unsupported fixture fs {fs.fstype}")


def _make_by_appliance(fs: Fs, out: Path, tree: Path, tmp: Path) -> None:
    """reiserfs/jfs: the real mkfs, then the files written by a real Linux driver. The host kernel here has
    neither module, so libguestfs boots its appliance (Debian's kernel, which has both) and untars the tree
    into the mounted filesystem. KVM hangs on these machines: the appliance runs under TCG (~1 minute)."""
    import tarfile

    import guestfs  # Debian's python3-guestfs (scripts/bootstrap)

    if fs.fstype == "reiserfs":
        cmd = ["mkfs.reiserfs", "-q", "-f", *fs.options]
        if "3.5" not in fs.options:  # the 3.5 format has neither UUID nor label
            cmd += ["-u", fs.uuid or "6b7c1a1e-2d2f-4b8e-9a51-0c6d7e8f9a0b"] + (["-l", fs.label] if fs.label else [])
    else:
        cmd = ["mkfs.jfs", "-q", *fs.options] + (["-L", fs.label] if fs.label else [])
    _run([*cmd, str(out)])
    archive = tmp / "tree.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        for src in sorted(tree.rglob("*")):
            info = tar.gettarinfo(str(src), arcname=str(src.relative_to(tree)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = int(FIXED_TIME), 0, 0, "root", "root"
            if info.isfile():
                with open(src, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    g = guestfs.GuestFS(python_return_dict=True)
    try:
        g.set_backend_settings(["force_tcg"])
        g.add_drive_opts(str(out), format="raw", readonly=0)
        g.launch()
        g.mount("/dev/sda", "/")
        g.tar_in(str(archive), "/")
        g.umount_all()
        g.shutdown()
    finally:
        g.close()


def _rewrite_dense(img: Path, tree: Path, mnt: Path) -> None:
    """Rewrite every regular file through a loop mount: the kernel allocates every block, zero or not."""
    mnt.mkdir()
    _run(["mount", "-o", "loop", str(img), str(mnt)])
    try:
        for src in sorted(tree.rglob("*")):
            if src.is_file() and not src.is_symlink():
                dest = mnt / src.relative_to(tree)
                dest.unlink()
                with open(src, "rb") as fi, open(dest, "wb") as fo:
                    fo.write(fi.read())
                    fo.flush()
                    os.fsync(fo.fileno())
    finally:
        _run(["umount", str(mnt)])


def build(spec: DiskSpec) -> Path:
    """The image for `spec`, built once and cached."""
    dest = cache_root() / "images" / f"{spec.key()}.raw"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        img = Path(tmp) / "disk.raw"
        if spec.table == "none":
            assert spec.whole is not None
            make_fs(spec.whole, img)
        else:
            _partitioned(spec, img, Path(tmp))
        for offset, patch in spec.raw_tail:
            with open(img, "r+b") as f:
                f.seek(offset)
                f.write(patch)
        os.replace(img, dest)
    return dest


def _partitioned(spec: DiskSpec, img: Path, tmp: Path) -> None:
    total = 1 + sum(p.size_mb + 1 for p in spec.parts) + spec.extra_mb
    with open(img, "wb") as f:
        f.truncate(total * MiB)
    lines = ["label: dos" if spec.table == "mbr" else "label: gpt", "unit: sectors"]
    if spec.table == "mbr":
        lines.append("label-id: 0x1234abcd")
    start = 1
    primaries = spec.parts if spec.logical_from is None else spec.parts[:spec.logical_from]
    logicals = () if spec.logical_from is None else spec.parts[spec.logical_from:]
    offsets: list[int] = []
    for p in primaries:
        s = p.start_mb if p.start_mb is not None else start
        lines.append(f"start={s * 2048}, size={p.size_mb * 2048}, type={p.type}")
        offsets.append(s)
        start = s + p.size_mb
    if logicals:
        ext_size = sum(p.size_mb + 1 for p in logicals) + 1
        lines.append(f"start={start * 2048}, size={ext_size * 2048}, type=5")
        lstart = start + 1
        for p in logicals:
            lines.append(f"start={lstart * 2048}, size={p.size_mb * 2048}, type={p.type}")
            offsets.append(lstart)
            lstart += p.size_mb + 1
    _run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(img)], input="\n".join(lines) + "\n")
    for p, off in zip(spec.parts, offsets, strict=True):
        if p.fs is None:
            continue
        fsimg = tmp / f"fs-{off}.raw"
        make_fs(Fs(p.fs.files, p.fs.fstype, p.size_mb, p.fs.options, p.fs.label, p.fs.uuid, p.fs.dense), fsimg)
        _copy_into(fsimg, img, off * MiB)
        fsimg.unlink()


def _copy_into(src: Path, dst: Path, offset: int) -> None:
    """Copy src into dst at offset, skipping all-zero chunks so the image stays sparse."""
    chunk = 1 * MiB
    zero = bytes(chunk)
    with open(src, "rb") as s, open(dst, "r+b") as d:
        pos = 0
        while True:
            data = s.read(chunk)
            if not data:
                break
            if data != zero[:len(data)]:
                d.seek(offset + pos)
                d.write(data)
            pos += len(data)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def whole_fs_image(tree: Tree, **kw: object) -> Path:
    """A partitionless disk holding one filesystem made from `tree` (Fs options as keywords)."""
    return build(DiskSpec("none", whole=Fs.of(tree, **kw)))
