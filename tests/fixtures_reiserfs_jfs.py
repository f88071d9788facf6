"""Real ReiserFS and JFS images for the emulator's tests: mkfs.reiserfs / mkfs.jfs, then the files written by a
real Linux driver through libguestfs (tests/imagebuild.py `_make_by_appliance`), cached under .cache/tests.

One tree per filesystem holds everything the tests read (a bootable /boot, small/large/tail files, deep and
long-named paths, a directory of 600 names that splits the ReiserFS tree and the JFS dtree, symlink chains), so
each image costs one appliance boot (about a minute under TCG) the first time.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from tests.imagebuild import Symlink, Tree, have, whole_fs_image

LONG_NAME = "L" + "x" * 200 + "-long-name-of-many-characters-to-span-slots"[:54]  # 255 characters
DEEP = "/" + "/".join(f"d{i}" for i in range(1, 13))
MANY = 600


def blob(seed: str, size: int) -> bytes:
    """Deterministic incompressible bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def tree(boot: Tree, fstype: str = "") -> Tree:
    t: Tree = dict(boot)
    if fstype == "jfs":  # the longest target Linux allows (ReiserFS refuses it): past JFS GRUB's 4094 bytes
        t["/link4095"] = Symlink("./" * 2043 + "small.txt")
    t.update({
        "/big.bin": blob("big", 3 * 1024 * 1024 + 123),
        "/tail.bin": blob("tail", 10000),
        "/small.txt": b"small file in a direct item\n",
        "/caf\u00e9": b"non-ASCII name\n",
        "/empty": b"",
        f"{DEEP}/deep.txt": b"at the bottom\n",
        f"/long/{LONG_NAME}": b"long name\n",
        "/abs": Symlink("/small.txt"),
        "/dirlink": Symlink("d1"),
        "/d1/up": Symlink("../tail.bin"),
        "/loop1": Symlink("/loop2"),
        "/loop2": Symlink("/loop1"),
        "/link149": Symlink("./" * 70 + "small.txt"),  # 149 bytes: JFS keeps it in the inode and its EA area
        "/link1029": Symlink("./" * 510 + "small.txt"),  # past ReiserFS GRUB's 1024-byte link buffer

        "/boot/vmlinuz": Symlink(boot_kernel_name(boot)),
    })
    for i in range(MANY):
        t[f"/many/entry-{i:04d}-{'y' * (i % 40)}"] = f"entry {i}\n".encode()
    for i in range(1, 10):  # /c1 -> c2 -> ... -> c9 -> small.txt: opening /cK follows 10 - K links
        t[f"/c{i}"] = Symlink(f"c{i + 1}" if i < 9 else "small.txt")
    return t


def boot_kernel_name(boot: Tree) -> str:
    return next(p.rsplit("/", 1)[1] for p in boot if p.startswith("/boot/vmlinuz-"))


def need_appliance(tool: str) -> None:
    """Skip unless mkfs and a libguestfs appliance can be had: python3-guestfs, and a kernel in /boot for
    supermin (Debian's supermin only recommends linux-image-amd64)."""
    if not have(tool) or importlib.util.find_spec("guestfs") is None or not list(Path("/boot").glob("vmlinuz-*")):
        pytest.skip(f"needs {tool}, python3-guestfs and linux-image-amd64 (the libguestfs appliance's kernel)")


def image(fstype: str, boot: Tree, options: tuple[str, ...] = ()) -> Path:
    need_appliance("mkfs.reiserfs" if fstype == "reiserfs" else "mkfs.jfs")
    return whole_fs_image(tree(boot, fstype), fstype=fstype, options=options, size_mb=64, label="rootfs")


SPARSE_BLOCKS = 300  # data blocks of /sparse.bin, one every other 4 KiB block (a hole after each)
SPARSE_SIZE = (2 * SPARSE_BLOCKS - 1) * 4096


def sparse_content() -> bytes:
    """What Linux reads from /sparse.bin: block 2k holds blob("sparse-k"), odd blocks are holes."""
    out = bytearray(SPARSE_SIZE)
    for k in range(SPARSE_BLOCKS):
        out[2 * k * 4096:(2 * k + 1) * 4096] = blob(f"sparse-{k}", 4096)
    return bytes(out)


def sparse_images() -> tuple[Path, Path]:
    """A ReiserFS and a JFS image, each holding /sparse.bin written block by block with pwrite (300 extents with
    holes between: a JFS xtree of two leaf pages, ReiserFS indirect items with zero pointers). One appliance
    boot for both; cached under .cache/tests/images."""
    import os
    import subprocess
    import tempfile

    from tests.conftest import cache_root

    need_appliance("mkfs.reiserfs")
    need_appliance("mkfs.jfs")
    root = cache_root() / "images"
    root.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"sparse-v1/{SPARSE_BLOCKS}".encode()).hexdigest()[:16]
    dest = (root / f"sparse-reiserfs-{key}.raw", root / f"sparse-jfs-{key}.raw")
    if all(p.exists() for p in dest):
        return dest
    import guestfs

    with tempfile.TemporaryDirectory(dir=root) as tmp:
        imgs = (Path(tmp) / "r.raw", Path(tmp) / "j.raw")
        for img in imgs:
            with open(img, "wb") as f:
                f.truncate(64 << 20)
        for cmd in (["mkfs.reiserfs", "-q", "-f", "-u", "6b7c1a1e-2d2f-4b8e-9a51-0c6d7e8f9a0b", str(imgs[0])],
                    ["mkfs.jfs", "-q", str(imgs[1])]):
            subprocess.run(cmd, check=True, capture_output=True)
        g = guestfs.GuestFS(python_return_dict=True)
        try:
            g.set_backend_settings(["force_tcg"])
            for img in imgs:
                g.add_drive_opts(str(img), format="raw", readonly=0)
            g.launch()
            for dev in ("/dev/sda", "/dev/sdb"):
                g.mount(dev, "/")
                g.touch("/sparse.bin")
                for k in range(SPARSE_BLOCKS):
                    g.pwrite("/sparse.bin", blob(f"sparse-{k}", 4096), 2 * k * 4096)
                g.umount_all()
            g.shutdown()
        finally:
            g.close()
        for img, out in zip(imgs, dest, strict=True):
            os.replace(img, out)
    return dest
