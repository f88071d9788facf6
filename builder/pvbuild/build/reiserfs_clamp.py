"""Clamp the inode times of a ReiserFS image to SOURCE_DATE_EPOCH, on the build host, after libguestfs filled it.

The appliance's clock is set to SOURCE_DATE_EPOCH before the mount and for every path of the tree (build/disk.py
`fill_with_guestfs`), but one inode is out of reach: `.reiserfs_priv`, the private folder the kernel makes at the
first read-write mount and hides from every lookup. Its times are the appliance clock at that moment, a second or
more after SOURCE_DATE_EPOCH when the appliance runs slowly (TCG on a busy host), so two builds of one recipe
differed in those 12 bytes. Every time in a built image is at most SOURCE_DATE_EPOCH (the tree's mtimes are
clamped, the appliance's clock starts there), so any later one is clamped to it here.

What is patched: the stat-data items (key offset 0, type 0) of every block that is a well-formed leaf node (level
1, item heads and bodies inside the block), the leaf itself and the copies the journal or free space keep. A
stat-data item is 44 bytes (struct stat_data, 3.6) with atime, mtime and ctime at 24, 28 and 32, or 32 bytes
(struct stat_data_v1) with them at 12, 16 and 20 (reiserfs_fs.h). Nothing else is written.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

SUPERBLOCK_OFFSET = 64 * 1024
BLOCK_HEAD = 24  # struct block_head: level, nr_item, free_space, reserved, right delimiting key
ITEM_HEAD = 24  # struct item_head: key (16), free space / entry count, length, location, version
LEAF_LEVEL = 1
SD_V2_LEN, SD_V1_LEN = 44, 32
SD_V2_TIMES, SD_V1_TIMES = (24, 28, 32), (12, 16, 20)
KEY_FORMAT_3_5, KEY_FORMAT_3_6 = 0, 1


def _is_stat_data(key_tail: bytes, version: int) -> bool:
    """Key offset 0 and type stat data: v1 keys (k_offset, k_uniqueness == 0), v2 keys (a u64 whose top 4 bits are
    the type, 0 for stat data, and whose low 60 bits are the offset)."""
    if version == KEY_FORMAT_3_6:
        return int.from_bytes(key_tail, "little") == 0
    return int.from_bytes(key_tail[:4], "little") == 0 and int.from_bytes(key_tail[4:], "little") == 0


def clamp_leaf(block: bytearray, epoch: int) -> int:
    """Clamp the stat-data times of one leaf block in place; returns how many times changed (0: not a leaf)."""
    level, nr_item, free_space = struct.unpack_from("<HHH", block, 0)
    size = len(block)
    if level != LEAF_LEVEL or not 0 < nr_item <= (size - BLOCK_HEAD) // ITEM_HEAD:
        return 0
    if free_space > size - BLOCK_HEAD - nr_item * ITEM_HEAD:
        return 0
    heads_end = BLOCK_HEAD + nr_item * ITEM_HEAD
    items = []
    for i in range(nr_item):
        ih = BLOCK_HEAD + i * ITEM_HEAD
        key_tail = bytes(block[ih + 8:ih + 16])
        _count, length, location, version = struct.unpack_from("<HHHH", block, ih + 16)
        if version not in (KEY_FORMAT_3_5, KEY_FORMAT_3_6) or location < heads_end or location + length > size:
            return 0  # not a leaf after all: leave the block alone
        items.append((key_tail, length, location, version))
    changed = 0
    for key_tail, length, location, version in items:
        if not _is_stat_data(key_tail, version):
            continue
        fields = SD_V2_TIMES if length == SD_V2_LEN else SD_V1_TIMES if length == SD_V1_LEN else ()
        for off in fields:
            at = location + off
            (value,) = struct.unpack_from("<I", block, at)
            if value > epoch:
                struct.pack_into("<I", block, at, epoch)
                changed += 1
    return changed


def clamp_reiserfs_times(image: Path, epoch: int) -> int:
    """Clamp every stat-data time above `epoch` in the ReiserFS filesystem image `image`; returns how many."""
    if not 0 <= epoch < 1 << 32:
        raise ValueError(f"SOURCE_DATE_EPOCH {epoch} does not fit ReiserFS's 32-bit times")
    changed = 0
    with open(image, "r+b") as f:
        f.seek(SUPERBLOCK_OFFSET + 44)
        raw = f.read(2)
        if len(raw) != 2:
            raise ValueError(f"{image} is too small to be a ReiserFS image")
        (blocksize,) = struct.unpack("<H", raw)
        if blocksize not in (512, 1024, 2048, 4096, 8192):
            raise ValueError(f"{image}: ReiserFS block size {blocksize} is not a power of two from 512 to 8192")
        size = os.fstat(f.fileno()).st_size
        for start in range(0, size - size % blocksize, blocksize):
            f.seek(start)
            block = bytearray(f.read(blocksize))
            if len(block) < blocksize or block[:2] != b"\x01\x00":  # level 1, little-endian: the cheap test
                continue
            n = clamp_leaf(block, epoch)
            if n:
                f.seek(start)
                f.write(block)
                changed += n
    return changed
