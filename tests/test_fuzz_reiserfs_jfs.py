"""Fuzz the PV-GRUB ReiserFS and JFS emulations with mutated real images: mount/open/read return or raise
GrubError, nothing else, within the 2 s deadline and a bounded amount of memory.

The base images are the 3.6 ReiserFS and the JFS images of tests/fixtures_reiserfs_jfs.py (mkfs, then files
written by Linux's drivers). The regions mutated are the bytes the emulation itself reads on the clean image
(recorded by a disk that logs every read of at most 8 KiB: superblocks, the journal header, tree nodes, inode
map pages, inodes, dtree and xtree pages, directory items), plus anywhere in the image. Walks are cut at 50,000
GRUB steps (the default is 1,000,000) so each example stays well under the deadline.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.pvgrub.blockio import MemoryDisk, Volume
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.fs import jfs, reiserfs
from tests.fixtures_reiserfs_jfs import DEEP, LONG_NAME, image
from tests.fuzzdisks import PatchedDisk, RecordingDisk, draw_mutations, peak_memory
from tests.test_machine import boot_files

PATHS = ("/boot/grub/menu.lst", "/boot/vmlinuz", "/small.txt", "/tail.bin", "/big.bin", f"{DEEP}/deep.txt",
         f"/long/{LONG_NAME}", "/many/entry-0599-" + "y" * 39, "/abs", "/d1/up", "/c8", "/loop1", "/nope", "/d1/",
         "/dirlink/d2/d3")
READ_WINDOW = 64 * 1024
STEPS = 50_000
FUZZ = settings(deadline=2000, max_examples=50, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mount(kind: str, disk: MemoryDisk) -> reiserfs.ReiserFilesystem | jfs.JfsFilesystem | None:
    vol = Volume(disk, 0, disk.size)
    fs = reiserfs.mount(vol) if kind == "reiserfs" else jfs.mount(vol)
    if fs is not None:
        fs.step_limit = STEPS
    return fs


def _exercise(kind: str, disk: MemoryDisk) -> None:
    try:
        fs = _mount(kind, disk)
    except GrubError:
        return
    if fs is None:
        return
    for path in PATHS:
        try:
            f = fs.open(path)
            f.read(0, READ_WINDOW)
            f.read(max(0, f.size - 100), 200)
        except GrubError:
            pass


@cache
def _image(kind: str) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """The image bytes and the (offset, length) regions the clean walk reads (metadata, small data)."""
    data = image(kind, boot_files()).read_bytes()
    disk = RecordingDisk(data)
    _exercise(kind, disk)
    regions = sorted(set(disk.reads))
    assert len(regions) > 20
    return data, (*regions, (0, len(data)))


@st.composite
def mutations(draw: st.DrawFn, kind: str, anywhere: bool) -> list[tuple[int, bytes]]:
    return draw_mutations(draw, _image(kind)[1], anywhere)


def _run(kind: str, muts: list[tuple[int, bytes]]) -> None:
    peak = peak_memory(lambda: _exercise(kind, PatchedDisk(_image(kind)[0], muts)))
    assert peak < 256 << 20, peak


def test_unmutated_images_read() -> None:
    """The base images work, so the fuzz cases start from a meaningful state."""
    for kind in ("reiserfs", "jfs"):
        data, _ = _image(kind)
        fs = _mount(kind, MemoryDisk(data))
        assert fs is not None
        assert fs.open("/small.txt").read(0, 100) == b"small file in a direct item\n"


@FUZZ
@given(mutations("reiserfs", anywhere=False))
def test_fuzz_reiserfs_metadata(muts: list[tuple[int, bytes]]) -> None:
    """fsys_reiserfs.c: superblock (:576-672), journal header/descriptors (:480-572), internal nodes and
    leaves (search_stat :827, next_key :735), item heads, directory entries (:1156-1197), stat data."""
    _run("reiserfs", muts)


@FUZZ
@given(mutations("reiserfs", anywhere=True))
def test_fuzz_reiserfs_anywhere(muts: list[tuple[int, bytes]]) -> None:
    _run("reiserfs", muts)


@FUZZ
@given(mutations("jfs", anywhere=False))
def test_fuzz_jfs_metadata(muts: list[tuple[int, bytes]]) -> None:
    """fsys_jfs.c: superblock and fileset inode (:207-225), the inode map (di_read :106), xtrees
    (first_extent/next_extent :66-102), inline and paged dtrees, long-name dtslots (:130-197, :337-356)."""
    _run("jfs", muts)


@FUZZ
@given(mutations("jfs", anywhere=True))
def test_fuzz_jfs_anywhere(muts: list[tuple[int, bytes]]) -> None:
    _run("jfs", muts)


# --- synthetic volumes: only the magics are right, everything else is random ------------------------------
_ZERO = bytes(17 << 20)
_SEEDS = {
    # ReiserFS 3.6 superblock at 64 KiB: block count, root block, journal block/size, blocksize, magic, version
    "reiserfs": ((65536, (4352).to_bytes(4, "little") + bytes(4) + (40).to_bytes(4, "little")),
                 (65536 + 12, (18).to_bytes(4, "little") + bytes(4) + (16).to_bytes(4, "little")),
                 (65536 + 44, (4096).to_bytes(2, "little")), (65536 + 52, b"ReIsEr2Fs\0"),
                 (65536 + 72, (2).to_bytes(2, "little")), (40 * 4096, (2).to_bytes(2, "little"))),
    # JFS superblock at 32 KiB ("JFS1", s_l2bsize 12), the fileset inode (aggregate inode 16)
    "jfs": ((32768, b"JFS1" + (1).to_bytes(4, "little")), (32768 + 16, (4096).to_bytes(4, "little") + b"\x0c\0"),
            (0xB000 + 16 * 512 + 224 + 16, b"\x03\0\x12\0"), (0xB000 + 16 * 512 + 256 + 8, b"\x04\0\0\0\x20\0\0\0")),
}
_HOT = {"reiserfs": (65536, 40 * 4096, 18 * 4096, 34 * 4096, 41 * 4096),
        "jfs": (32768, 0xB000, 0xB000 + 16 * 512, 0x20000, 0x21000, 0x22000)}


@settings(deadline=2000, max_examples=60, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["reiserfs", "jfs"]),
       noise=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4095), st.binary(min_size=1, max_size=64)),
                      max_size=12))
def test_fuzz_synthetic(kind: str, noise: list[tuple[int, int, bytes]]) -> None:
    """Zero volumes with a valid-looking superblock (and, for JFS, fileset inode) plus random bytes in the blocks
    the drivers read first: mount, lookups and reads stay bounded and end in GrubError or a file."""
    hot = _HOT[kind]
    muts = list(_SEEDS[kind]) + [(hot[i % len(hot)] + off, blob) for i, off, blob in noise]
    _exercise(kind, PatchedDisk(_ZERO, muts))
