"""Real FAT12/16/32 images for the emulator's tests: mkfs.vfat (dosfstools) on a sparse file, filled with mtools
(mmd, mcopy, mdel: no kernel vfat driver or loop mount needed), optionally inside an MBR made by sfdisk
(mkfs.vfat --offset). Cached under .cache/tests/fat, keyed by the recipe, the files and the tool versions.

One tree per FAT type holds everything the tests read: a bootable /boot (menu.lst, a synthetic Xen kernel, an
initrd), long and 8.3 names, a name with a space, an upper-case 8.3 name, a file of many clusters, a file
fragmented by deleting every other of 40 small files before writing it, directories eight levels deep and a
directory of 150 long names spanning several clusters.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import cache_root
from tests.fixtures_reiserfs_jfs import blob
from tests.imagebuild import Tree as AnyTree

RECIPE_VERSION = "2"
TOOLS = ("mkfs.vfat", "mcopy", "mmd", "mdel", "sfdisk")
DEEP = "/" + "/".join(f"d{i}" for i in range(1, 9))
LONG = "this-is-a-long-file-name-of-many-characters.txt"  # 47 characters: 4 long-name entries
MANY = 150
FRAG_SMALL = 40
MTIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC, an even second (FAT keeps 2-second steps)

Tree = dict[str, bytes]


def plain(files: AnyTree) -> Tree:
    """The regular files of a tests.imagebuild tree (FAT has no symlinks)."""
    return {p: c for p, c in files.items() if isinstance(c, bytes)}


def need_tools() -> None:
    for t in TOOLS:
        if shutil.which(t) is None and shutil.which(t, path="/usr/sbin:/sbin") is None:
            pytest.skip(f"{t} is not installed (Debian: dosfstools, mtools, fdisk)")


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path is not None
    return path


def _run(cmd: list[str], *, lang: str = "C", **kw: object) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1", LC_ALL=lang, TZ="UTC")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, **kw)  # type: ignore[call-overload]
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()[:1000]}")


def tree(boot: AnyTree, big: int = 300 * 1024) -> Tree:
    """The files every FAT image holds (the fragmented /frag.bin is written by `build` itself)."""
    t = plain(boot)
    t.update({
        "/big.bin": blob("fat-big", big),
        "/small.txt": b"a small file\n",
        "/empty": b"",
        "/UPPER.TXT": b"upper-case 8.3 name, no long name\n",
        "/MixedCase.Txt": b"mixed case: a long name entry\n",
        "/has space.txt": b"a name with a space\n",
        f"/long/{LONG}": b"long name\n",
        f"{DEEP}/deep.txt": b"at the bottom\n",
    })
    for i in range(MANY):
        t[f"/many/entry-number-{i:04d}.txt"] = f"entry {i}\n".encode()
    return t


def frag_content() -> bytes:
    return blob("fat-frag", 37 * 1024 + 5)


@dataclass(frozen=True)
class Recipe:
    """mkfs.vfat options (`-F 12/16/32`, `-s`, `-S`), the size, and an MBR partition (type, start sector) or
    none."""

    fat: int
    size_mb: int
    cluster_sectors: int
    label: str = "ROOTFS"
    part_type: str | None = None  # sfdisk type, e.g. "c" (FAT32 LBA); None: the filesystem is the whole disk
    part_start: int = 2048


def _tool_versions() -> str:
    out = []
    for t in ("mkfs.vfat", "mcopy"):
        st = os.stat(_tool(t))
        out.append(f"{t}:{st.st_size}:{int(st.st_mtime)}")
    return ",".join(out)


def build(recipe: Recipe, files: Tree, *, fragment: bool = True) -> Path:
    """The image for `recipe` holding `files` (and /frag.bin when `fragment`), built once and cached."""
    need_tools()
    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}/{recipe}/{fragment}/{_tool_versions()}".encode())
    for path in sorted(files):
        h.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    root = cache_root() / "fat"
    root.mkdir(parents=True, exist_ok=True)
    dest = root / f"fat{recipe.fat}-{h.hexdigest()[:16]}.raw"
    if dest.exists():
        return dest
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        img = Path(tmp) / "disk.raw"
        fs_sectors = recipe.size_mb * 2048
        offset = 0
        with open(img, "wb") as f:
            f.truncate((fs_sectors + (recipe.part_start + 2048 if recipe.part_type else 0)) * 512)
        if recipe.part_type:
            offset = recipe.part_start
            _run([_tool("sfdisk"), "-q", "--no-reread", "--no-tell-kernel", str(img)],
                 input=f"label: dos\n{offset},{fs_sectors},{recipe.part_type}\n")
        cmd = [_tool("mkfs.vfat"), "-F", str(recipe.fat), "-S", "512", "-s", str(recipe.cluster_sectors),
               "-n", recipe.label, "--invariant"]
        if recipe.part_type:
            cmd += ["--offset", str(offset), str(img), str(fs_sectors // 2)]
        else:
            cmd += [str(img)]
        _run(cmd)
        target = f"{img}@@{offset * 512}"
        made: set[str] = set()
        src = Path(tmp) / "src"
        src.mkdir()

        def put(path: str, data: bytes) -> None:
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in made:
                    _run([_tool("mmd"), "-i", target, f"::/{d}"])
                    made.add(d)
            local = src / hashlib.sha256(path.encode()).hexdigest()
            local.write_bytes(data)
            os.utime(local, (MTIME, MTIME))
            _run([_tool("mcopy"), "-i", target, "-m", str(local), f"::{path}"])

        if fragment:  # small files first, every other deleted, then the big one fills the holes
            cluster = recipe.cluster_sectors * 512
            for i in range(FRAG_SMALL):
                put(f"/fill/f{i:03d}", blob(f"fill-{i}", cluster))
            for i in range(0, FRAG_SMALL, 2):
                _run([_tool("mdel"), "-i", target, f"::/fill/f{i:03d}"])
            if recipe.fat == 32:  # FSInfo's next-free hint to "unknown": mtools then fills the holes from cluster 2
                with open(img, "r+b") as g:
                    g.seek(offset * 512 + 48)
                    info = int.from_bytes(g.read(2), "little")
                    g.seek((offset + info) * 512 + 492)
                    g.write(b"\xff\xff\xff\xff")
            put("/frag.bin", frag_content())
        for path in sorted(files):
            put(path, files[path])
        os.replace(img, dest)
    return dest
