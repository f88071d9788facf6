"""PV-GRUB's ReiserFS driver, GRUB 0.97 `stage2/fsys_reiserfs.c`, re-implemented to fail where it fails.

An emulator, not a ReiserFS reader: line numbers ("fsys_reiserfs.c:826") refer to the reference copy in
`reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/`. What it models:

- `reiserfs_mount` (l.576-672): the superblock at 64 KiB with magic "ReIsErFs" (3.5), "ReIsEr2Fs" (3.6) or
  "ReIsEr3Fs" (JR) *and* a journal starting past 64 KiB; else the 3.5 position at 8 KiB (also a pre-journal
  superblock with the magic at byte 20: block size 4096, no journal, version 0). `s_version` > 2 is refused;
  the block size must be a power of two from 512 to 8192 (FSYSREISER_MAX_BLOCKSIZE = 24 KiB / 3, l.296), so
  the usual 4096 mounts and 16 KiB does not. No other field is checked. A journal on the same device whose size
  is a power of two is replayed in memory (`journal_init`, l.480-572): valid transactions after the last flushed
  one map blocks to their journal copies for every metadata read (`block_read`, l.403-469), the superblock is
  re-read through it and the root block read. A root of level >= MAX_HEIGHT (7) does not mount.
- The tree is searched GRUB's way: `search_stat` (l.827) descends from the root comparing only
  (dir_id, objectid) and "offset|uniqueness > 0" with the stat-data key and then scans the leaf for the stat
  item; `next_key` (l.735) walks items in tree order. Node cache: FSYS_BUF's first 24 KiB hold the root (slot 0),
  the leaf (slot 1) and the path (slots 2..n, `cached_slots` = 24 KiB / blocksize - 1; deeper levels share the
  last slot and are re-read, l.699-729); a cached slot is reused without reading or level check when its block
  number matches (INFO->blocks starts zeroed at mount). A node read at the wrong level is Error 16, a stat item
  not in its leaf Error 16.
- `reiserfs_dir` (l.1001): names are compared with `substring` against every *visible* entry (DEH_Visible) of
  the directory items that follow the stat data and share its objectid; no hash is used. Names end at NUL or
  whitespace. Symlinks: at most MAX_LINK_COUNT = 5 per lookup (6th: Error 26); the target plus the rest of the
  path must fit PATH_MAX = 1024 (else Error 14); absolute targets restart at the root, relative ones in the
  directory holding the link. The last component must be a regular file (Error 2), each earlier one a directory.
- `reiserfs_read` (l.893): direct items (tails) and indirect items (block lists, read with devread, bypassing
  the journal), in key order, for the file's objectid only; a hole (an indirect pointer 0) reads block 0 of the
  partition. The size is the stat data's 32-bit sd_size as a C int; a 3.6 (item version 2) stat data with a
  high half makes filemax 0xffffffff, i.e. -1: GRUB reads nothing. So does any size of 2 GiB or more.
- Item keys: an item with ih_version 0 uses the 3.5 key (offset, uniqueness), any other value the 3.6 key
  (60-bit offset, 4-bit type) (IH_KEY_OFFSET / IH_KEY_ISTYPE, l.217-223). Both formats are read.

FSYS_BUF (32 KiB) is modelled byte for byte: its first 24 KiB (the node cache) start as GRUB's zeroed scratch
memory plus what the mount functions tried earlier leave there (probe.fsys_buf_after_probe), so an item header
or entry pointing outside its node reads whatever GRUB would. Reads of the INFO block and journal table at
24 KiB (pointers whose values depend on where FSYS_BUF lies) or past FSYS_BUF give Error 16 with code
`fs-corrupt` ("undefined"); work beyond `STEP_LIMIT` steps is code `fs-hang`. Each open starts from the state
right after the mount (GRUB keeps the previous lookup's cache; that matters only to corrupt trees).

Errors: 15 file not found (`file-not-found`), 2 (`bad-file-type`), 26 (`symlink-loop`), 14 symlink target too
long (`fs-symlink-too-long`), 16 corrupt tree (`fs-corrupt`), 24/18/25 reads outside the partition or image.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from pvbuild.pvgrub.blockio import SECTOR, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.findings import Finding, info
from pvbuild.pvgrub.fs.base import File, Filesystem, FsIdentity
from pvbuild.pvgrub.fs.grubmem import (
    FSYS_BUFLEN,
    M32,
    DevRead,
    Hang,
    Undefined,
    emulation_error,
    grub_path,
    i32,
    isspace,
    substring,
)
from pvbuild.pvgrub.fs.grubmem import (
    show as _show,
)
from pvbuild.pvgrub.fs.grubmem import (
    u16 as _u16,
)
from pvbuild.pvgrub.fs.grubmem import (
    u32 as _u32,
)

__all__ = ["ReiserFile", "ReiserFilesystem", "grub_mount", "mount"]

# --- fsys_reiserfs.c constants ---
SUPER_SIZE = 204  # sizeof(struct reiserfs_super_block), l.53-75 (202 bytes padded to 4)
REISERFS_DISK_OFFSET_IN_BYTES = 64 * 1024  # l.281
REISERFS_OLD_DISK_OFFSET_IN_BYTES = 8 * 1024  # l.283
REISERFS_OLD_BLOCKSIZE = 4096  # l.284
REISERFS_MAX_SUPPORTED_VERSION = 2  # l.77
MAGICS = (b"ReIsEr3Fs", b"ReIsEr2Fs", b"ReIsErFs")  # l.78-80
MAX_HEIGHT = 7  # l.82
JOURNAL_TRANS_HALF = 1018  # l.85
JOURNAL_DESC_MAGIC = b"ReIsErLB"  # l.120
DISK_LEAF_NODE_LEVEL = 1  # l.189
BLKH_SIZE = 24  # struct block_head, l.180-187 (3 u16 + pad + 16-byte key)
IH_SIZE = 24  # struct item_head, l.191-211
KEY_SIZE = 16
DC_SIZE = 8  # struct disk_child (u32 + u16, padded)
DEH_SIZE = 16  # struct reiserfs_de_head, l.246-257
DEH_VISIBLE = 1 << 2  # l.262
V1_TYPE_DIRECT, V1_TYPE_INDIRECT = 0xFFFFFFFF, 0xFFFFFFFE  # l.271-272
V2_TYPE_INDIRECT, V2_TYPE_DIRECT = 1, 2  # l.275-276
ROOT_OBJECTID, ROOT_PARENT_OBJECTID = 2, 1  # l.279-280
PATH_MAX = 1024  # l.290
MAX_LINK_COUNT = 5  # l.291
CACHE_SIZE = 24 * 1024  # FSYSREISER_CACHE_SIZE, l.294
MIN_BLOCKSIZE, MAX_BLOCKSIZE = SECTOR, CACHE_SIZE // 3  # l.295-296
# sizeof(struct fsys_reiser_info) (l.306-339): two pointers, then 8+12 bytes of u32, 10 of u16/u8, 2x7 u32.
INFO_SIZE = {"x86_64": 104, "i386": 96}
S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000
STEP_LIMIT = 1_000_000


def _bsf(v: int) -> int:
    """fsys_reiserfs.c:370 log2 = the bsf instruction: the lowest set bit (0 for 0, undefined in C)."""
    return (v & -v).bit_length() - 1 if v else 0


def _substring_gt0(magic: bytes, field: bytes) -> bool:
    """substring(magic, field) > 0: the field (a C string) neither equals nor starts with magic."""
    return not field.split(b"\0", 1)[0].startswith(magic)


@dataclass
class _Super:
    raw: bytes
    position: int  # sector of the superblock GRUB used

    @property
    def root_block(self) -> int:
        return _u32(self.raw, 8)

    @property
    def journal_block(self) -> int:
        return _u32(self.raw, 12)

    @property
    def journal_dev(self) -> int:
        return _u32(self.raw, 16)

    @property
    def journal_size(self) -> int:
        return _u32(self.raw, 20)

    @property
    def blocksize(self) -> int:
        return _u16(self.raw, 44)

    @property
    def version(self) -> int:
        return _u16(self.raw, 72)


class _Run:
    """The driver's globals for one lookup: FSYS_BUF (node cache), struct fsys_reiser_info, filepos/filemax,
    errnum (inside `dev`). Methods carry the C functions' names."""

    def __init__(self, vol: Volume, fsys_buf: bytes, arch: str) -> None:
        self.vol = vol
        self.dev = DevRead(vol)
        self.mem = bytearray(fsys_buf[:FSYS_BUFLEN].ljust(FSYS_BUFLEN, b"\0"))
        self.journal_words = (FSYS_BUFLEN - CACHE_SIZE - INFO_SIZE[arch]) // 4
        self.steps = 0
        self.step_limit = STEP_LIMIT
        # struct fsys_reiser_info
        self.current_ih = -1
        self.current_item = -1
        self.file_dir_id = 0
        self.file_objectid = 0
        self.journal_block = 0
        self.journal_block_count = 0
        self.journal_first_desc = 0
        self.version = 0
        self.tree_depth = 0
        self.blocksize_shift = 0
        self.fullblocksize_shift = 0
        self.blocksize = 0
        self.cached_slots = 0
        self.journal_transactions = 0
        self.blocks = [0] * MAX_HEIGHT
        self.next_key_nr = [0] * MAX_HEIGHT
        self.journal_table: list[int] = []  # JOURNAL_START.. as journal_init fills it
        self.filepos = 0
        self.filemax = 0

    def clone(self) -> _Run:
        new = copy.copy(self)
        new.dev = copy.copy(self.dev)
        new.mem = bytearray(self.mem)
        new.blocks = list(self.blocks)
        new.next_key_nr = list(self.next_key_nr)
        new.journal_table = list(self.journal_table)
        return new

    # --- bookkeeping ---
    def step(self) -> None:
        self.steps += 1
        if self.steps > self.step_limit:
            raise Hang(f"more than {self.step_limit} steps of GRUB's reiserfs driver without an answer")

    def fail(self, number: int, detail: str, code: str | None = None) -> None:
        self.dev.fail(number, detail, code)

    @property
    def errnum(self) -> int:
        return self.dev.errnum

    # --- FSYS_BUF ---
    def rd(self, off: int, n: int) -> bytes:
        if off < 0 or off + n > FSYS_BUFLEN:
            raise Undefined(f"GRUB would read {n} bytes at offset {off} of its 32 KiB FSYS_BUF, outside it")
        if off + n > CACHE_SIZE:
            raise Undefined(f"GRUB would read its own bookkeeping (INFO, journal table at FSYS_BUF+24 KiB) as tree "
                            f"data (offset {off})")
        return bytes(self.mem[off:off + n])

    def m16(self, off: int) -> int:
        return _u16(self.rd(off, 2), 0)

    def m32(self, off: int) -> int:
        return _u32(self.rd(off, 4), 0)

    def cache(self, i: int) -> int:
        """CACHE(i) (l.345): slot i of the node cache."""
        return i << self.fullblocksize_shift

    @property
    def leaf(self) -> int:
        return self.cache(DISK_LEAF_NODE_LEVEL)

    @property
    def itemhead(self) -> int:
        return self.leaf + BLKH_SIZE

    # --- item head views (l.217-223) ---
    def ih_version(self, ih: int) -> int:
        return self.m16(ih + 22)

    def ih_key_offset(self, ih: int) -> int:
        if self.ih_version(ih) == 0:
            return self.m32(ih + 8)
        return int.from_bytes(self.rd(ih + 8, 8), "little") & ((1 << 60) - 1)

    def ih_is(self, ih: int, v1: int, v2: int) -> bool:
        if self.ih_version(ih) == 0:
            return self.m32(ih + 12) == v1
        return int.from_bytes(self.rd(ih + 8, 8), "little") >> 60 == v2

    # --- journal (l.392-572) ---
    def journal_read(self, block: int, length: int) -> bytes | None:
        return self.dev(((self.journal_block + block) & M32) << self.blocksize_shift, 0, length)

    def block_read(self, block_nr: int, start: int, length: int) -> bytes | None:
        """l.403-469: the block, or its newest copy in a valid journal transaction."""
        block_nr &= M32
        transactions = self.journal_transactions
        desc_block = self.journal_first_desc
        mask = (self.journal_block_count - 1) & M32
        translated = block_nr
        t = 0
        while transactions > 0:
            transactions -= 1
            self.step()
            i = 0
            found = False
            if t < len(self.journal_table) and self.journal_table[t] != M32:
                j_len = i32(self.journal_table[t])
                t += 1
                while i < j_len:
                    i += 1
                    value = self.journal_table[t]
                    t += 1
                    if value == block_nr:
                        t += j_len - i
                        found = True
                        break
            else:
                desc = self.journal_read(desc_block, 4096)
                if desc is None:
                    return None
                j_len = i32(_u32(desc, 4))
                while i < j_len and i < JOURNAL_TRANS_HALF:
                    i += 1
                    if _u32(desc, 12 + 4 * (i - 1)) == block_nr:
                        found = True
                        break
                if not found and j_len >= JOURNAL_TRANS_HALF:
                    commit = self.journal_read((desc_block + 1 + j_len) & mask, 4096)
                    if commit is None:
                        return None
                    while i < j_len:
                        i += 1
                        k = i - 1 - JOURNAL_TRANS_HALF
                        if 8 + 4 * k + 4 > 4096:
                            raise Undefined(f"journal transaction at {desc_block} claims {j_len} blocks: GRUB reads "
                                            "its block list past the commit block (stack memory)")
                        if _u32(commit, 8 + 4 * k) == block_nr:
                            found = True
                            break
            if found:
                translated = (self.journal_block + ((desc_block + i) & mask)) & M32
            desc_block = (desc_block + 2 + j_len) & mask
        return self.dev((translated << self.blocksize_shift) & M32, start, length)

    def journal_init(self) -> None:
        """l.480-572. GRUB ignores journal_read's result: a failed read leaves errnum set (and its buffer
        uninitialised), after which the mount fails at the root block anyway; the emulator stops there."""
        block_count = self.journal_block_count
        header = self.journal_read(block_count, 12)
        if header is None:
            return
        desc_block = _u32(header, 4)
        if desc_block >= block_count:
            return
        self.journal_first_desc = desc_block
        last_flush = _u32(header, 0)
        next_trans_id = (last_flush + 1) & M32
        table: list[int] = []
        full = False
        while True:
            self.step()
            desc = self.journal_read(desc_block, 4096)
            if desc is None:
                break
            if (_substring_gt0(JOURNAL_DESC_MAGIC, desc[4084:4096]) or _u32(desc, 0) != next_trans_id
                    or _u32(desc, 8) != _u32(header, 8)):
                break
            j_len = _u32(desc, 4)
            commit_block = (desc_block + j_len + 1) & ((block_count - 1) & M32)
            commit = self.journal_read(commit_block, 4096)
            if commit is None:
                break
            if _u32(desc, 0) != _u32(commit, 0) or j_len != _u32(commit, 4):
                break
            next_trans_id = (next_trans_id + 1) & M32
            if not full:
                if len(table) + 1 + j_len >= self.journal_words:
                    table.append(M32)  # l.528-534: the end-of-cache marker
                    full = True
                else:
                    table.append(j_len)
                    for i in range(j_len):
                        if i < JOURNAL_TRANS_HALF:
                            table.append(_u32(desc, 12 + 4 * i))
                        else:
                            table.append(_u32(commit, 8 + 4 * (i - JOURNAL_TRANS_HALF)))
            desc_block = (commit_block + 1) & ((block_count - 1) & M32)
        self.journal_table = table
        self.journal_transactions = (next_trans_id - last_flush - 1) & 0xFFFF  # __u16 journal_transactions

    # --- tree access (l.698-890) ---
    def read_tree_node(self, block_nr: int, depth: int) -> int | None:
        """l.699-729: the cache slot holding block_nr at this depth, or None (errnum set)."""
        block_nr &= M32
        if not 0 <= depth < MAX_HEIGHT:
            raise Undefined(f"GRUB would index its {MAX_HEIGHT}-level node cache with depth {depth}")
        cache = self.cache(depth)
        if depth < self.cached_slots:
            if block_nr == self.blocks[depth]:
                return cache
        else:
            cache = self.cache(self.cached_slots)
        data = self.block_read(block_nr, 0, self.blocksize)
        if data is None:
            return None
        self.mem[cache:cache + self.blocksize] = data
        level = _u16(data, 0)
        if level != depth:
            self.fail(Err.FSYS_CORRUPT, f"tree node {block_nr} has level {level}, expected {depth}")
            return None
        self.blocks[depth] = block_nr
        return cache

    def next_key(self) -> bool:
        """l.735-814: the item after current_ih in tree order (a dummy MAX_KEY item past the last one)."""
        self.step()
        ih = self.current_ih + IH_SIZE
        if ih == self.itemhead + IH_SIZE * self.m16(self.leaf + 2):
            depth = DISK_LEAF_NODE_LEVEL
            while True:
                if depth == self.tree_depth:
                    ih = self.leaf + 8  # &BLOCKHEAD(LEAF)->blk_right_delim_key as an item head
                    return self._found(ih)
                depth += 1
                if depth >= MAX_HEIGHT:
                    raise Undefined("GRUB's next_key climbs past its 7-level path (tree depth below 1)")
                if self.next_key_nr[depth] != 0:
                    break
            if depth == self.tree_depth:
                cache: int | None = 0
            elif depth <= self.cached_slots:
                cache = self.cache(depth)
            else:
                cache = self.read_tree_node(self.blocks[depth], depth)
                if cache is None:
                    return False
            while True:
                self.step()
                assert cache is not None
                nr_item = self.m16(cache + 2)
                key_nr = self.next_key_nr[depth]
                self.next_key_nr[depth] = (key_nr + 1) & M32
                if key_nr == nr_item:
                    self.next_key_nr[depth] = 0
                child = self.m32(cache + BLKH_SIZE + KEY_SIZE * nr_item + DC_SIZE * key_nr)
                depth -= 1
                cache = self.read_tree_node(child, depth)
                if cache is None:
                    return False
                if depth <= DISK_LEAF_NODE_LEVEL:
                    break
            ih = self.itemhead
        return self._found(ih)

    def _found(self, ih: int) -> bool:
        self.current_ih = ih
        self.current_item = self.leaf + self.m16(ih + 20)
        return True

    def search_stat(self, dir_id: int, objectid: int) -> bool:
        """l.827-890: descend to the leaf that should hold (dir_id, objectid, 0, 0) and find its stat item."""
        depth = self.tree_depth
        cache: int | None = 0
        while depth > DISK_LEAF_NODE_LEVEL:
            self.step()
            assert cache is not None
            nr_item = self.m16(cache + 2)
            key = cache + BLKH_SIZE
            i = 0
            while i < nr_item:
                k_dir, k_obj = self.m32(key), self.m32(key + 4)
                if k_dir > dir_id or (k_dir == dir_id and (
                        k_obj > objectid or (k_obj == objectid and (self.m32(key + 8) | self.m32(key + 12)) > 0))):
                    break
                key += KEY_SIZE
                i += 1
            if depth >= MAX_HEIGHT:
                raise Undefined(f"tree depth {depth} indexes past GRUB's 7-level path")
            self.next_key_nr[depth] = 0 if i == nr_item else i + 1
            child = self.m32(cache + BLKH_SIZE + KEY_SIZE * nr_item + DC_SIZE * i)
            depth -= 1
            cache = self.read_tree_node(child, depth)
            if cache is None:
                return False
        nr_item = self.m16(self.leaf + 2)
        ih = self.itemhead
        for _ in range(nr_item):
            if (self.m32(ih) == dir_id and self.m32(ih + 4) == objectid and self.m32(ih + 8) == 0
                    and self.m32(ih + 12) == 0):
                return self._found(ih)
            ih += IH_SIZE
        self.fail(Err.FSYS_CORRUPT, f"no stat data for object {dir_id}:{objectid} in its leaf")
        return False

    # --- reiserfs_read (l.893-990) ---
    def reiserfs_read(self, out: bytearray, at: int, length: int) -> int:
        """Reads `length` bytes at filepos into out[at:]; returns GRUB's count (0 when errnum is set)."""
        start = at
        ih = self.current_ih
        if self.m32(ih + 4) != self.file_objectid or self.ih_key_offset(ih) > self.filepos + 1:
            self.search_stat(self.file_dir_id, self.file_objectid)
            self.next_key()
        while not self.errnum:
            self.step()
            ih = self.current_ih
            if self.m32(ih + 4) != self.file_objectid:
                break
            offset = (self.filepos - self.ih_key_offset(ih) + 1) & M32
            blocksize = self.m16(ih + 18)
            if self.ih_is(ih, V1_TYPE_DIRECT, V2_TYPE_DIRECT) and offset < blocksize:
                to_read = min(blocksize - offset, length)
                out[at:at + to_read] = self.rd(self.current_item + offset, to_read)
                length -= to_read
                at += to_read
                self.filepos += to_read
                if length == 0:
                    break
                # `goto update_buf_len` lands in the indirect loop, whose test (offset < item length) now fails
            elif self.ih_is(ih, V1_TYPE_INDIRECT, V2_TYPE_INDIRECT):
                blocksize = ((blocksize >> 2) << self.fullblocksize_shift) & M32
                done = False
                while offset < blocksize:
                    self.step()
                    blocknr = self.m32(self.current_item + 4 * (offset >> self.fullblocksize_shift))
                    blk_offset = offset & (self.blocksize - 1)
                    to_read = min(self.blocksize - blk_offset, length)
                    data = self.dev((blocknr << self.blocksize_shift) & M32, blk_offset, to_read)
                    if data is not None:
                        out[at:at + to_read] = data
                    length -= to_read
                    at += to_read
                    offset += to_read
                    self.filepos += to_read
                    if length == 0:
                        done = True
                        break
                if done:
                    break
            self.next_key()
        return 0 if self.errnum else at - start

    # --- reiserfs_dir (l.1001-1219) ---
    def reiserfs_dir(self, path: bytes) -> bool:
        buf = bytearray(path + b"\0")  # the name GRUB was given (it writes NULs into it while scanning)
        linkbuf = bytearray(PATH_MAX)
        name = buf
        pos = 0
        dir_id, objectid = ROOT_PARENT_OBJECTID, ROOT_OBJECTID
        parent_dir_id = parent_objectid = 0
        link_count = 0

        def at(i: int) -> int:
            if i >= len(name):
                raise Undefined("GRUB would read past the end of its name buffer")
            return name[i]

        while True:
            if not self.search_stat(dir_id, objectid):
                return False
            mode = self.m16(self.current_item)
            if mode & S_IFMT == S_IFLNK:  # l.1035-1093
                link_count += 1
                if link_count > MAX_LINK_COUNT:
                    self.fail(Err.SYMLINK_LOOP, f"more than {MAX_LINK_COUNT} symbolic links", "symlink-loop")
                    return False
                filemax = i32(self.m32(self.current_item + 8))
                n = 0
                while at(pos + n) and not isspace(at(pos + n)):
                    n += 1
                if ((filemax + n) & M32) > PATH_MAX - 1:
                    self.fail(Err.FILELENGTH, f"symlink {dir_id}:{objectid} of {filemax & M32} bytes plus the "
                                              f"rest of the path exceeds GRUB's {PATH_MAX}-byte link buffer",
                              "fs-symlink-too-long")
                    return False
                if filemax < 0:
                    raise Undefined(f"symlink {dir_id}:{objectid} has sd_size {filemax & M32}: GRUB copies the rest "
                                    "of the path to before its link buffer")
                rest = bytes(name[pos:pos + n + 1])
                linkbuf[filemax:filemax + n + 1] = rest  # grub_memmove: DIRNAME and LINKBUF may overlap
                self.file_dir_id, self.file_objectid = dir_id, objectid
                self.filepos = 0
                if not self.next_key() or self.reiserfs_read(linkbuf, 0, filemax) != filemax:
                    if not self.errnum:
                        self.fail(Err.FSYS_CORRUPT, f"symlink {dir_id}:{objectid}: fewer bytes than its size")
                    return False
                name, pos = linkbuf, 0
                if linkbuf[0] == 0x2F:
                    dir_id, objectid = ROOT_PARENT_OBJECTID, ROOT_OBJECTID
                else:
                    dir_id, objectid = parent_dir_id, parent_objectid
                continue
            if not at(pos) or isspace(at(pos)):  # l.1098-1119
                if mode & S_IFMT != S_IFREG:
                    self.fail(Err.BAD_FILETYPE, f"object {dir_id}:{objectid} is not a regular file (mode {mode:o})",
                              "bad-file-type")
                    return False
                self.filepos = 0
                self.filemax = i32(self.m32(self.current_item + 8))
                if self.ih_version(self.current_ih) == 1 and self.m32(self.current_item + 12) > 0:
                    self.filemax = -1  # 0xffffffff in an int
                self.file_dir_id, self.file_objectid = dir_id, objectid
                return self.next_key()
            while at(pos) == 0x2F:
                pos += 1
            if mode & S_IFMT != S_IFDIR:
                self.fail(Err.BAD_FILETYPE, f"object {dir_id}:{objectid} is not a directory (mode {mode:o})",
                          "bad-file-type")
                return False
            rest_at = pos
            while at(rest_at) and not isspace(at(rest_at)) and at(rest_at) != 0x2F:
                rest_at += 1
            ch = name[rest_at]
            name[rest_at] = 0
            found: tuple[int, int] | None = None
            while found is None:
                if not self.next_key():
                    return False
                ih = self.current_ih
                if self.m32(ih + 4) != objectid:
                    break
                item = self.current_item
                name_end = item + self.m16(ih + 18)
                de = item
                entries = self.m16(ih + 16)
                while entries > 0:
                    self.step()
                    filename = item + self.m16(de + 12)
                    if self.m16(de + 14) & DEH_VISIBLE:
                        if not 0 <= name_end < FSYS_BUFLEN:
                            raise Undefined("GRUB would write the end-of-name NUL outside FSYS_BUF")
                        end = name_end

                        def read2(i: int, filename: int = filename, end: int = end) -> int:
                            return 0 if filename + i == end else self.rd(filename + i, 1)[0]

                        if substring(bytes(name), pos, read2) == 0:
                            found = (self.m32(de + 4), self.m32(de + 8))
                            break
                    name_end = filename
                    de += DEH_SIZE
                    entries -= 1
            name[rest_at] = ch
            if found is None:
                self.fail(Err.FILE_NOT_FOUND, f"{_show(bytes(name[pos:rest_at]))} not found in "
                                              f"directory {dir_id}:{objectid}", "file-not-found")
                return False
            pos = rest_at
            parent_dir_id, parent_objectid = dir_id, objectid
            dir_id, objectid = found


def grub_mount(vol: Volume, fsys_buf: bytes, arch: str = "x86_64") -> tuple[_Run, _Super | None, bool]:
    """reiserfs_mount (l.576-672): (the driver state, the superblock GRUB used, whether it returned 1).
    When it returned 0, run.errnum tells whether a read failed (GRUB keeps that errnum). `fsys_buf` is FSYS_BUF as
    the mount functions before it left it; run.mem is FSYS_BUF afterwards (its first 24 KiB)."""
    run = _Run(vol, fsys_buf, arch)
    part_length = vol.length // SECTOR
    superblock = REISERFS_DISK_OFFSET_IN_BYTES // SECTOR
    raw = run.dev(superblock, 0, SUPER_SIZE) if part_length >= superblock + SUPER_SIZE // SECTOR else None
    if (raw is None or all(_substring_gt0(m, raw[52:68]) for m in MAGICS)
            or (_u32(raw, 12) * _u16(raw, 44)) & M32 <= REISERFS_DISK_OFFSET_IN_BYTES):
        superblock = REISERFS_OLD_DISK_OFFSET_IN_BYTES // SECTOR
        if part_length < superblock + SUPER_SIZE // SECTOR:
            return run, None, False
        raw = run.dev(superblock, 0, SUPER_SIZE)
        if raw is None:
            return run, None, False
        if all(_substring_gt0(m, raw[52:68]) for m in MAGICS):
            if _substring_gt0(b"ReIsErFs", raw[20:36]):
                return run, None, False
            b = bytearray(raw)  # pre-journaling superblock: l.607-609
            b[44:46] = REISERFS_OLD_BLOCKSIZE.to_bytes(2, "little")
            b[12:16] = bytes(4)
            b[72:74] = bytes(2)
            raw = bytes(b)
    sb = _Super(raw, superblock)
    if sb.version > REISERFS_MAX_SUPPORTED_VERSION:
        return run, sb, False
    run.version = sb.version
    run.blocksize = sb.blocksize
    run.fullblocksize_shift = _bsf(sb.blocksize)
    run.blocksize_shift = (run.fullblocksize_shift - 9) & 0xFF
    run.cached_slots = ((CACHE_SIZE >> run.fullblocksize_shift) - 1) & 0xFFFF
    run.blocks = [0] * MAX_HEIGHT
    if (sb.blocksize < MIN_BLOCKSIZE or sb.blocksize > MAX_BLOCKSIZE
            or ((SECTOR << run.blocksize_shift) & 0xFFFFFFFF) != sb.blocksize):
        return run, sb, False
    run.journal_transactions = 0
    if sb.journal_block != 0 and sb.journal_dev == 0:
        run.journal_block = sb.journal_block
        run.journal_block_count = sb.journal_size
        count = run.journal_block_count
        if (count & -count) == count:
            run.journal_init()
        again = run.block_read(superblock >> run.blocksize_shift, 0, SUPER_SIZE)
        if again is not None:
            sb = _Super(again, superblock)
    root = run.block_read(sb.root_block, 0, run.blocksize)
    if root is None:
        return run, sb, False
    run.mem[0:run.blocksize] = root
    run.tree_depth = _u16(root, 0)
    if run.tree_depth >= MAX_HEIGHT:
        return run, sb, False
    if run.tree_depth == DISK_LEAF_NODE_LEVEL:
        run.mem[run.leaf:run.leaf + run.blocksize] = root
    return run, sb, True


def mount(vol: Volume, *, arch: str = "x86_64") -> ReiserFilesystem | None:
    """GRUB's reiserfs_mount: a filesystem exactly when the C function returns 1, None when it returns 0 with no
    read error; a failed read (superblock, journal, root block) raises GrubError with the number GRUB keeps in
    errnum."""
    from pvbuild.pvgrub.fs import probe

    buf = bytes(probe.fsys_buf_after_probe(vol, "reiserfs", arch=arch))
    run, sb, ok = grub_mount(vol, buf, arch)
    if run.errnum:
        raise GrubError(run.errnum, f"{vol.name}: reiserfs mount: {run.dev.detail}", code="fs-corrupt")
    if not ok or sb is None:
        return None
    return ReiserFilesystem(vol, sb, run, arch)


class ReiserFile(File):
    """A file reiserfs_dir found: GRUB's state right after the lookup, read through reiserfs_read."""

    def __init__(self, fs: ReiserFilesystem, path: str, run: _Run) -> None:
        self.fs = fs
        self.path = path
        self._run = run
        self.size = run.filemax if run.filemax >= 0 else 0

    def read(self, offset: int, length: int) -> bytes:
        """One grub_read (disk_io.c:1658) from the state right after the lookup: filepos and len clipped to
        filemax, then reiserfs_read. A count short of the request is returned as is (GRUB returns it too)."""
        run = self._run.clone()
        run.step_limit = self.fs.step_limit
        filemax = run.filemax
        filepos = offset
        if filepos < 0 or filepos > filemax:
            filepos = filemax
        if length < 0 or length > filemax - filepos:
            length = filemax - filepos
        if length <= 0:
            return b""
        run.filepos = filepos
        out = bytearray(length)
        try:
            count = run.reiserfs_read(out, 0, length)
        except (Undefined, Hang) as e:
            raise self.fs.emulation_error(run, e, self.path) from None
        if run.errnum:
            raise GrubError(run.errnum, f"{self.fs.vol.name}{self.path}: {run.dev.detail}",
                            code=run.dev.code or "fs-corrupt")
        return bytes(out[:count])


class ReiserFilesystem(Filesystem):
    """A volume GRUB's reiserfs_mount accepted, with the driver state the mount left."""

    grub_name = "reiserfs"

    def __init__(self, vol: Volume, sb: _Super, run: _Run, arch: str) -> None:
        self.vol = vol
        self.sb = sb
        self.arch = arch
        self._mounted = run
        self.step_limit = STEP_LIMIT  # GRUB steps per open or read before the emulator calls it a hang
        magic = sb.raw[52:62].split(b"\0", 1)[0]
        self.format = {b"ReIsErFs": "3.5", b"ReIsEr2Fs": "3.6", b"ReIsEr3Fs": "JR"}.get(magic, "3.5")
        from pvbuild.pvgrub.fs import probe

        ident = probe.identify(vol)  # blkid's view (UUID, label) for root=UUID=/LABEL=
        if ident is None or ident.fstype != "reiserfs":
            ident = FsIdentity("reiserfs")
        self.identity = FsIdentity("reiserfs", ident.uuid, ident.label,
                                   (self.format, f"blocksize={run.blocksize}"))

    @property
    def tree_depth(self) -> int:
        return self._mounted.tree_depth

    @property
    def journal_transactions(self) -> int:
        return self._mounted.journal_transactions

    def emulation_error(self, run: _Run, e: Undefined | Hang, path: str) -> GrubError:
        return emulation_error(self.vol.name, run.errnum, run.dev.detail, e, path)

    def open(self, path: str) -> ReiserFile:
        """reiserfs_dir (fsys_reiserfs.c:1001) on an absolute path; the name ends at the first blank."""
        raw = grub_path(path)
        run = self._mounted.clone()
        run.step_limit = self.step_limit
        try:
            ok = run.reiserfs_dir(raw)
        except (Undefined, Hang) as e:
            raise self.emulation_error(run, e, path) from None
        if run.errnum or not ok:
            number = run.errnum
            detail = run.dev.detail
            if not number:
                number, detail = Err.FSYS_CORRUPT, "GRUB's lookup failed without an error number"
            raise GrubError(number, f"{self.vol.name}{path}: {detail}", code=run.dev.code or "fs-corrupt")
        return ReiserFile(self, path, run)

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        if self.journal_transactions:
            out.append(info("reiserfs-journal-replayed",
                            f"{self.vol.name}: the ReiserFS journal holds {self.journal_transactions} "
                            "unflushed transaction(s); PV-GRUB reads metadata through them, as the emulator "
                            "does (the filesystem was not cleanly unmounted)"))
        return out
