"""Fuzz the PV-GRUB FAT emulation with mutated real images: mount/open/read/listing return or raise GrubError,
nothing else, within the 2 s deadline and a bounded amount of memory.

The base images are the FAT12/16/32 images of tests/test_fs_fat.py (mkfs.vfat, files written by mtools). The
regions mutated are the bytes the emulation itself reads on the clean image (recorded by a disk that logs every
read of at most 8 KiB: the boot sector, the FAT windows, the root directory and directory clusters, small file
data), the FAT and the directory areas wholesale, plus anywhere in the image. Walks are cut at 50,000 GRUB steps
(the default is 1,000,000) so each example stays well under the deadline. Whenever the mutated volume mounts,
fs/fat.py and probe.py `_fat_mount` must agree on it.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.pvgrub.blockio import MemoryDisk, Volume
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.fs import fat, probe
from tests.fixtures_fat import DEEP, LONG, Recipe, build, tree
from tests.fuzzdisks import PatchedDisk, RecordingDisk, draw_mutations, peak_memory
from tests.test_machine import boot_files

PATHS = ("/boot/grub/menu.lst", "/big.bin", "/frag.bin", "/small.txt", "/upper.txt", "/MixedCase.Txt",
         f"/long/{LONG}", f"{DEEP}/deep.txt", "/many/entry-number-0149.txt", "/nope", "/boot/grub", "/d1/../x")
READ_WINDOW = 64 * 1024
STEPS = 50_000
KINDS = ("fat12", "fat16", "fat32")
# Small images (the fuzz copies nothing per example, but the clean walk records every read)
RECIPES = {"fat12": Recipe(12, 4, 4), "fat16": Recipe(16, 8, 1), "fat32": Recipe(32, 40, 1)}
FUZZ = settings(deadline=2000, max_examples=40, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _exercise(disk: MemoryDisk) -> None:
    vol = Volume(disk, 0, disk.size)
    try:
        fs = fat.mount(vol)
    except GrubError:
        assert probe._fat_mount(probe._Probe(vol)) is False
        return
    assert (fs is not None) is probe._fat_mount(probe._Probe(vol))
    if fs is None:
        return
    fs.step_limit = STEPS
    for path in PATHS:
        try:
            f = fs.open(path)
            f.read(0, READ_WINDOW)
            f.read(max(0, f.size - 100), 200)
        except GrubError:
            pass
    try:
        for _, entry in zip(range(100), fs.walk(max_entries=100, max_depth=12), strict=False):
            if entry[1].size <= READ_WINDOW and entry[1].kind == 0o100000:
                for _chunk in fs.content(entry[1].ino):
                    pass
    except GrubError:
        pass


@cache
def _image(kind: str) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """The image bytes and the (offset, length) regions to mutate: what the clean walk reads (metadata, small
    data), the FATs and the FAT12/16 root directory, and the whole image (last)."""
    data = build(RECIPES[kind], tree(boot_files(), big=40 * 1024)).read_bytes()
    disk = RecordingDisk(data)
    _exercise(disk)
    regions = sorted(set(disk.reads))
    assert len(regions) > 10
    fs = fat.mount(Volume(MemoryDisk(data), 0, len(data)))
    assert fs is not None
    sb = fs.sb
    meta = (sb.fat_offset * 512, (sb.data_offset - sb.fat_offset) * 512)
    return data, (*regions, meta, (0, 512), (0, len(data)))


@st.composite
def mutations(draw: st.DrawFn, kind: str, anywhere: bool) -> list[tuple[int, bytes]]:
    return draw_mutations(draw, _image(kind)[1], anywhere)


def _run(kind: str, muts: list[tuple[int, bytes]]) -> None:
    peak = peak_memory(lambda: _exercise(PatchedDisk(_image(kind)[0], muts)))
    assert peak < 128 << 20, peak


def test_unmutated_images_read() -> None:
    """The base images work, so the fuzz cases start from a meaningful state."""
    for kind in KINDS:
        data, _ = _image(kind)
        fs = fat.mount(Volume(MemoryDisk(data), 0, len(data)))
        assert fs is not None
        assert fs.open("/small.txt").read(0, 100) == b"a small file\n"


@FUZZ
@given(mutations("fat12", anywhere=False))
def test_fuzz_fat12_metadata(muts: list[tuple[int, bytes]]) -> None:
    """fsys_fat.c: the boot sector (fat_mount :74-202), 12-bit FAT entries in the FAT cache (:235-273), the fixed
    root directory (:212-222), directory entries and long names (:359-481)."""
    _run("fat12", muts)


@FUZZ
@given(mutations("fat16", anywhere=False))
def test_fuzz_fat16_metadata(muts: list[tuple[int, bytes]]) -> None:
    _run("fat16", muts)


@FUZZ
@given(mutations("fat32", anywhere=False))
def test_fuzz_fat32_metadata(muts: list[tuple[int, bytes]]) -> None:
    """FAT32: the active-FAT flags (:127-134), the root cluster, unmasked 32-bit FAT entries (:253-265)."""
    _run("fat32", muts)


@FUZZ
@given(kind=st.sampled_from(KINDS), muts=st.data())
def test_fuzz_fat_anywhere(kind: str, muts: st.DataObject) -> None:
    _run(kind, muts.draw(mutations(kind, anywhere=True)))


# --- synthetic volumes: a plausible boot sector, everything else random --------------------------------------
_ZERO = bytes(2 << 20)


@settings(deadline=2000, max_examples=60, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spc=st.sampled_from([1, 2, 4, 8, 64]), fat_len=st.integers(0, 40), entries=st.sampled_from([0, 16, 512]),
       fat32_len=st.integers(0, 40), root=st.integers(0, 0xFFFFFFFF), flags=st.integers(0, 0xFF),
       noise=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 16383), st.binary(min_size=1, max_size=64)),
                      max_size=12))
def test_fuzz_synthetic(spc: int, fat_len: int, entries: int, fat32_len: int, root: int, flags: int,
                        noise: list[tuple[int, int, bytes]]) -> None:
    """2 MiB of zeros with a boot sector whose geometry fields are drawn (FAT12/16 or FAT32 by fat_length), a
    media byte that matches the first FAT entry, and random bytes in the FAT, the root area and the first data
    clusters: mount, lookups and reads stay bounded and end in GrubError or a file."""
    bpb = bytearray(64)
    bpb[0:3] = b"\xeb\x3c\x90"
    bpb[11:13] = (512).to_bytes(2, "little")
    bpb[13] = spc
    bpb[14:16] = (1).to_bytes(2, "little")
    bpb[16] = 2
    bpb[17:19] = entries.to_bytes(2, "little")
    bpb[19:21] = (4096).to_bytes(2, "little")
    bpb[21] = 0xF8
    bpb[22:24] = fat_len.to_bytes(2, "little")
    bpb[36:40] = fat32_len.to_bytes(4, "little")
    bpb[40:42] = flags.to_bytes(2, "little")
    bpb[44:48] = root.to_bytes(4, "little")
    first_fat = b"\xf8\xff\xff\x0f" if not fat_len else b"\xf8\xff\xff\xff"
    hot = (512, 512 + 8192, 512 + 2 * 8192, 512 + 3 * 8192)
    muts = [(0, bytes(bpb)), (512, first_fat)] + [(hot[i] + off, blob) for i, off, blob in noise]
    _run_synthetic(muts)


def _run_synthetic(muts: list[tuple[int, bytes]]) -> None:
    peak = peak_memory(lambda: _exercise(PatchedDisk(_ZERO, muts)))
    assert peak < 128 << 20, peak
