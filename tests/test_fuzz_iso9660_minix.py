"""Fuzz the PV-GRUB ISO 9660 and Minix emulations with mutated real images: mount/open/read/listing return or
raise GrubError (or EmulatorLimit), nothing else, within the 2 s deadline and a bounded amount of memory.

The base images are a genisoimage -R -J image and a Minix v1 image of tests/fixtures_iso9660_minix.py holding
/boot/grub/menu.lst and a few more files. The regions mutated are the bytes the emulation itself reads on the
clean image (recorded by a disk that logs every read of at most 8 KiB: volume descriptors, directory sectors
with their Rock Ridge entries, the superblock, inode blocks, indirect blocks, directory blocks), plus anywhere
in the image. Walks are cut at 50,000 GRUB steps so each example stays well under the deadline.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.pvgrub.blockio import MemoryDisk, Volume
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.files import EmulatorLimit
from pvbuild.pvgrub.fs import iso9660, minix
from tests.fixtures_iso9660_minix import iso_image, minix_image
from tests.fuzzdisks import PatchedDisk, RecordingDisk, draw_mutations, peak_memory
from tests.imagebuild import Symlink, Tree

TREE: Tree = {
    "/boot/grub/menu.lst": b"default 0\ntimeout 0\ntitle x\nroot (hd0)\nkernel /boot/vmlinuz\n",
    "/boot/vmlinuz": bytes(range(256)) * 200,  # 50 KiB: indirect zones on minix, 25 sectors on ISO
    "/small.txt": b"small\n",
    "/d1/d2/d3/deep.txt": b"deep\n",
    "/link": Symlink("boot/grub/menu.lst"),
    "/abs": Symlink("/boot"),
}
PATHS = ("/boot/grub/menu.lst", "/boot/vmlinuz", "/small.txt", "/d1/d2/d3/deep.txt", "/link", "/abs/vmlinuz",
         "/nope", "/boot/", "/BOOT/GRUB/MENU.LST")
READ_WINDOW = 64 * 1024
STEPS = 50_000
FUZZ = settings(deadline=2000, max_examples=50, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mount(kind: str, disk: MemoryDisk) -> iso9660.IsoFilesystem | minix.MinixFilesystem | None:
    vol = Volume(disk, 0, disk.size)
    fs = iso9660.mount(vol) if kind == "iso9660" else minix.mount(vol)
    if fs is not None:
        fs.step_limit = STEPS
    return fs


def _exercise(kind: str, disk: MemoryDisk) -> None:
    try:
        fs = _mount(kind, disk)
    except (GrubError, EmulatorLimit):
        return
    if fs is None:
        return
    for path in PATHS:
        try:
            f = fs.open(path)
            f.read(0, READ_WINDOW)
            f.read(max(0, f.size - 100), 200)
        except (GrubError, EmulatorLimit):
            pass
    try:
        for n, (_, st_) in enumerate(fs.walk(max_entries=200, max_depth=16)):
            if st_.kind == 0o120000:
                fs.readlink(st_.ino)
            elif st_.kind == 0o100000 and st_.size <= READ_WINDOW:
                for _chunk in fs.content(st_.ino, chunk=8192):
                    pass
            if n > 200:
                break
    except (GrubError, EmulatorLimit):
        pass


@cache
def _image(kind: str) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """The image bytes and the (offset, length) regions the clean walk reads (metadata, small data)."""
    path = iso_image(TREE, "genisoimage", joliet=True) if kind == "iso9660" else minix_image(TREE, 14, 1024)
    data = path.read_bytes()
    disk = RecordingDisk(data)
    _exercise(kind, disk)
    regions = sorted(set(disk.reads))
    assert len(regions) > 5
    return data, (*regions, (0, len(data)))


@st.composite
def mutations(draw: st.DrawFn, kind: str, anywhere: bool) -> list[tuple[int, bytes]]:
    return draw_mutations(draw, _image(kind)[1], anywhere)


def _run(kind: str, muts: list[tuple[int, bytes]]) -> None:
    peak = peak_memory(lambda: _exercise(kind, PatchedDisk(_image(kind)[0], muts)))
    assert peak < 256 << 20, peak


def test_unmutated_images_read() -> None:
    """The base images work, so the fuzz cases start from a meaningful state."""
    for kind in ("iso9660", "minix"):
        data, _ = _image(kind)
        fs = _mount(kind, MemoryDisk(data))
        assert fs is not None
        assert fs.open("/small.txt").read(0, 100) == b"small\n"


@FUZZ
@given(mutations("iso9660", anywhere=False))
def test_fuzz_iso9660_metadata(muts: list[tuple[int, bytes]]) -> None:
    """fsys_iso9660.c: volume descriptors (:124-137), directory records (:182-200), Rock Ridge entries and
    continuation areas (:202-350), extents and sizes (:169-172, :414-447)."""
    _run("iso9660", muts)


@FUZZ
@given(mutations("iso9660", anywhere=True))
def test_fuzz_iso9660_anywhere(muts: list[tuple[int, bytes]]) -> None:
    _run("iso9660", muts)


@FUZZ
@given(mutations("minix", anywhere=False))
def test_fuzz_minix_metadata(muts: list[tuple[int, bytes]]) -> None:
    """fsys_minix.c: superblock (:160-189), inode blocks (:337-349), zones and indirect blocks (:201-242),
    directory entries (:450-526), symlinks (:352-411)."""
    _run("minix", muts)


@FUZZ
@given(mutations("minix", anywhere=True))
def test_fuzz_minix_anywhere(muts: list[tuple[int, bytes]]) -> None:
    _run("minix", muts)


# --- synthetic volumes: only the magics are right, everything else is random ------------------------------
_ZERO = bytes(1 << 20)
_SEEDS = {
    # a primary volume descriptor at sector 16 whose root directory record points at sector 20, size 2048
    "iso9660": ((16 * 2048, b"\x01CD001\x01"), (16 * 2048 + 156, b"\x22\x00" + (20).to_bytes(4, "little")
                                                  + bytes(4) + (2048).to_bytes(4, "little"))),
    # a v1 superblock (14-character names), root inode 1 a directory of 32 bytes in zone 8
    "minix": ((1024, (32).to_bytes(2, "little") + (1024).to_bytes(2, "little") + b"\x01\0\x01\0\x05\0"),
              (1024 + 16, (0x137F).to_bytes(2, "little")),
              (4 * 1024, (0o40755).to_bytes(2, "little") + bytes(2) + (32).to_bytes(4, "little") + bytes(6)
               + (8).to_bytes(2, "little"))),
}
_HOT = {"iso9660": (20 * 2048, 21 * 2048, 16 * 2048 + 156), "minix": (4 * 1024, 8 * 1024, 9 * 1024, 0)}


@settings(deadline=2000, max_examples=60, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["iso9660", "minix"]),
       noise=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2047), st.binary(min_size=1, max_size=64)),
                      max_size=12))
def test_fuzz_synthetic(kind: str, noise: list[tuple[int, int, bytes]]) -> None:
    """Zero volumes with a valid-looking descriptor or superblock plus random bytes in the sectors the drivers
    read first: mount, lookups and reads stay bounded and end in GrubError or a file."""
    hot = _HOT[kind]
    muts = list(_SEEDS[kind]) + [(hot[i % len(hot)] + off, blob) for i, off, blob in noise]
    _exercise(kind, PatchedDisk(_ZERO, muts))
