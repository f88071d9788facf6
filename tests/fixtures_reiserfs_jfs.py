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


def tree(boot: Tree) -> Tree:
    t: Tree = dict(boot)
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
    if not have(tool) or importlib.util.find_spec("guestfs") is None:
        pytest.skip(f"needs {tool} and python3-guestfs (scripts/bootstrap)")


def image(fstype: str, boot: Tree, options: tuple[str, ...] = ()) -> Path:
    need_appliance("mkfs.reiserfs" if fstype == "reiserfs" else "mkfs.jfs")
    return whole_fs_image(tree(boot), fstype=fstype, options=options, size_mb=64, label="rootfs")
