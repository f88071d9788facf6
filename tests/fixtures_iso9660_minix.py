"""Images for the ISO 9660 and Minix readers (fs/iso9660.py, fs/minix.py), made by the suite itself.

- `iso_image(tree, tool, rock_ridge, joliet)`: `genisoimage` or `xorriso -as mkisofs` from a temporary tree
  (with -R / -r for Rock Ridge, xorriso's --norock without, -J for Joliet), cached under
  `cache_root()/images-iso` keyed by the inputs.
- `minix_image(tree, namelen)`: a Minix v1 filesystem written here in pure Python (the host kernel has no minix
  driver, so neither a loop mount nor a libguestfs appliance can fill one): the layout util-linux mkfs.minix
  makes (boot block, superblock at 1 KiB, inode map, zone map, inode table, data zones), files with direct,
  indirect and double-indirect zones, directories, symlinks, and optionally holes (zone 0) for all-zero blocks.
  The tests check every image with `fsck.minix -f`. `mkfs_minix(version, namelen)` gives an empty image made by
  mkfs.minix itself (v1, v2, v3).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import cache_root
from tests.imagebuild import Symlink, Tree

BLOCK = 1024
BOOT_BLOCK = (b"MINIX-BOOT-BLOCK" * 64)[:BLOCK]  # what GRUB reads for a hole (zone 0)


def need(tool: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}") if os.path.exists(p)), None)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


def _key(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, dict):
            for k in sorted(p):
                v = p[k]
                h.update(k.encode() + b"\0" + (b"L" + v.target.encode() if isinstance(v, Symlink) else b"F" + v))
        else:
            h.update(repr(p).encode())
        h.update(b"\1")
    return h.hexdigest()[:24]


def _populate(root: Path, tree: Tree) -> None:
    for path, content in sorted(tree.items()):
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Symlink):
            os.symlink(content.target, dest)
        else:
            dest.write_bytes(content)


# --- ISO 9660 ---------------------------------------------------------------------------------------------
def iso_image(tree: Tree, tool: str = "genisoimage", *, rock_ridge: bool = True, joliet: bool = False,
              extra: tuple[str, ...] = ()) -> Path:
    # xorriso's mkisofs emulation writes Rock Ridge unless told --norock
    opts = (["-R"] if tool == "genisoimage" else ["-r"]) if rock_ridge else \
        ([] if tool == "genisoimage" else ["--norock"])
    opts += ["-J"] if joliet else []
    out = cache_root() / "images-iso" / f"{tool}-{int(rock_ridge)}{int(joliet)}-{_key(tree, opts, extra)}.iso"
    if out.exists():
        return out
    exe = need(tool)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        _populate(src, tree)
        img = Path(tmp) / "out.iso"
        cmd = [exe] + (["-as", "mkisofs"] if tool == "xorriso" else []) + ["-quiet", *opts, *extra, "-V", "PVISO",
                                                                           "-o", str(img), str(src)]
        env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        os.replace(img, out)
    return out


# --- Minix v1 ---------------------------------------------------------------------------------------------
def mkfs_minix(version: int, namelen: int = 14, size_kib: int = 4096) -> Path:
    out = cache_root() / "images-minix" / f"mkfs-v{version}-n{namelen}-{size_kib}.img"
    if out.exists():
        return out
    exe = need("mkfs.minix")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.truncate(size_kib * BLOCK)
    names = ["-n", str(namelen)] if version < 3 else []  # v3 has 60-character names only
    subprocess.run([exe, f"-{version}", *names, str(tmp)], check=True, capture_output=True)
    os.replace(tmp, out)
    return out


class _MinixWriter:
    def __init__(self, nblocks: int, namelen: int, ninodes: int) -> None:
        assert nblocks <= 0xFFFF and namelen in (14, 30)
        self.nblocks = nblocks
        self.namelen = namelen
        self.dirsize = namelen + 2
        self.ninodes = (ninodes + 31) // 32 * 32
        self.imap_blocks = (self.ninodes + 1 + 8191) // 8192
        self.inode_blocks = self.ninodes * 32 // BLOCK
        zmap = 1
        while True:
            first = 2 + self.imap_blocks + zmap + self.inode_blocks
            need_zmap = (nblocks - first + 1 + 8191) // 8192
            if need_zmap <= zmap:
                break
            zmap = need_zmap
        self.zmap_blocks = zmap
        self.firstdatazone = 2 + self.imap_blocks + zmap + self.inode_blocks
        self.img = bytearray(nblocks * BLOCK)
        self.img[0:BLOCK] = BOOT_BLOCK
        self.next_zone = self.firstdatazone
        self.next_ino = 1
        self.inodes: dict[int, bytearray] = {}

    def zone(self) -> int:
        z = self.next_zone
        if z >= self.nblocks:
            raise ValueError("minix image full")
        self.next_zone += 1
        return z

    def inode(self) -> int:
        i = self.next_ino
        if i > self.ninodes:
            raise ValueError("out of minix inodes")
        self.next_ino += 1
        return i

    def put_block(self, z: int, data: bytes) -> None:
        self.img[z * BLOCK:z * BLOCK + len(data)] = data

    def write_inode(self, ino: int, mode: int, data: bytes, nlinks: int, holes: bool = False) -> None:
        zones = [0] * 9
        nblk = (len(data) + BLOCK - 1) // BLOCK
        ind: list[int] | None = None
        dbl: list[int] | None = None
        dbl_children: dict[int, list[int]] = {}
        for k in range(nblk):
            chunk = data[k * BLOCK:(k + 1) * BLOCK]
            if holes and not any(chunk):
                continue
            if k < 7:
                zones[k] = self.zone()
                self.put_block(zones[k], chunk)
            elif k < 7 + 512:
                if ind is None:
                    zones[7] = self.zone()
                    ind = [0] * 512
                z = self.zone()
                self.put_block(z, chunk)
                ind[k - 7] = z
            else:
                j = k - 519
                if j >= 512 * 512:
                    raise ValueError("file too big for minix v1")
                if dbl is None:
                    zones[8] = self.zone()
                    dbl = [0] * 512
                if j >> 9 not in dbl_children:
                    dbl[j >> 9] = self.zone()
                    dbl_children[j >> 9] = [0] * 512
                z = self.zone()
                self.put_block(z, chunk)
                dbl_children[j >> 9][j & 511] = z
        if ind is not None:
            self.put_block(zones[7], struct.pack("<512H", *ind))
        if dbl is not None:
            self.put_block(zones[8], struct.pack("<512H", *dbl))
            for i, child in dbl_children.items():
                self.put_block(dbl[i], struct.pack("<512H", *child))
        raw = struct.pack("<HHIIBB9H", mode, 0, len(data), 1700000000, 0, nlinks, *zones)
        self.inodes[ino] = bytearray(raw)

    def dirent(self, ino: int, name: bytes) -> bytes:
        assert 0 < len(name) <= self.namelen
        return struct.pack("<H", ino) + name.ljust(self.namelen, b"\0")

    def build(self, tree: Tree, holes: frozenset[str] = frozenset()) -> bytes:
        # a nested dict: name -> bytes | Symlink | dict
        root: dict[str, object] = {}
        for path, content in tree.items():
            parts = [p for p in path.split("/") if p]
            node = root
            for p in parts[:-1]:
                nxt = node.setdefault(p, {})
                assert isinstance(nxt, dict)
                node = nxt
            node[parts[-1]] = content

        def write_dir(node: dict[str, object], ino: int, parent: int, prefix: str) -> None:
            entries = [self.dirent(ino, b"."), self.dirent(parent, b"..")]
            subdirs = 0
            for name in sorted(node):
                child = node[name]
                cino = self.inode()
                entries.append(self.dirent(cino, name.encode()))
                if isinstance(child, dict):
                    subdirs += 1
                    write_dir(child, cino, ino, f"{prefix}/{name}")
                elif isinstance(child, Symlink):
                    self.write_inode(cino, 0o120777, child.target.encode(), 1)
                else:
                    assert isinstance(child, bytes)
                    self.write_inode(cino, 0o100644, child, 1, holes=f"{prefix}/{name}" in holes)
            self.write_inode(ino, 0o040755, b"".join(entries), 2 + subdirs)

        write_dir(root, self.inode(), 1, "")
        # inode table
        itable = (2 + self.imap_blocks + self.zmap_blocks) * BLOCK
        for ino, raw in self.inodes.items():
            o = itable + (ino - 1) * 32
            self.img[o:o + 32] = raw
        # maps: everything set, then the valid range cleared, then the used ones set (mkfs.minix's way)
        imap = bytearray(b"\xff" * self.imap_blocks * BLOCK)
        for i in range(1, self.ninodes + 1):
            if i >= self.next_ino:
                imap[i >> 3] &= ~(1 << (i & 7)) & 0xFF
        zmap = bytearray(b"\xff" * self.zmap_blocks * BLOCK)
        for z in range(self.next_zone, self.nblocks):
            bit = z - self.firstdatazone + 1
            zmap[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
        self.img[2 * BLOCK:2 * BLOCK + len(imap)] = imap
        o = (2 + self.imap_blocks) * BLOCK
        self.img[o:o + len(zmap)] = zmap
        magic = 0x137F if self.namelen == 14 else 0x138F
        sb = struct.pack("<HHHHHHIHHI", self.ninodes, self.nblocks, self.imap_blocks, self.zmap_blocks,
                         self.firstdatazone, 0, (7 + 512 + 512 * 512) * BLOCK, magic, 1, 0)
        self.img[BLOCK:BLOCK + len(sb)] = sb
        return bytes(self.img)


def minix_image(tree: Tree, namelen: int = 14, size_kib: int = 8192, holes: frozenset[str] = frozenset()) -> Path:
    """A Minix v1 image holding `tree` (cached; the tests verify it with fsck.minix -f)."""
    out = cache_root() / "images-minix" / f"v1-n{namelen}-{size_kib}-{_key(tree, sorted(holes))}.img"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    w = _MinixWriter(size_kib, namelen, max(64, len(tree) * 2 + 64))
    data = w.build(tree, holes)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def fsck_minix(img: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need("fsck.minix"), "-f", str(img)], check=False, capture_output=True, text=True)
