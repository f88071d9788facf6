"""The FAT reader (fs/fat.py) on real images: mkfs.vfat (FAT12, FAT16, FAT32), files written by mtools
(tests/fixtures_fat.py), read as fsys_fat.c reads them -- including where GRUB 0.97 reads them differently
from Linux."""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import pytest

from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.fs import fat, probe
from pvbuild.pvgrub.fs.base import S_IFDIR, S_IFREG
from tests.fixtures_fat import DEEP, LONG, MANY, MTIME, Recipe, build, frag_content, plain, tree
from tests.test_machine import MENU, boot_files, check, codes

RECIPES = {"fat12": Recipe(12, 4, 4), "fat16": Recipe(16, 32, 2), "fat32": Recipe(32, 64, 1)}
KINDS = sorted(RECIPES)
FILES = tree(boot_files())


@cache
def img(kind: str) -> Path:
    return build(RECIPES[kind], FILES)


@cache
def raw(kind: str) -> bytes:
    return img(kind).read_bytes()


def mounted(kind: str) -> fat.FatFilesystem:
    disk = Disk(img(kind))
    fs = fat.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    return fs


def patched(kind: str, edits: dict[int, bytes]) -> fat.FatFilesystem | None:
    data = bytearray(raw(kind))
    for off, b in edits.items():
        data[off:off + len(b)] = b
    return fat.mount(Volume(MemoryDisk(bytes(data)), 0, len(data)))


def read(fs: fat.FatFilesystem, path: str) -> bytes:
    f = fs.open(path)
    data = f.read(0, f.size)
    assert len(data) == f.size, path
    return data


def grub_error(fs: fat.FatFilesystem, path: str) -> GrubError:
    with pytest.raises(GrubError) as e:
        fs.open(path)
    return e.value


def entry(fs: fat.FatFilesystem, path: str) -> tuple[int, bytes]:
    """(the volume offset, the 32 bytes) of the short directory entry of `path` (as GRUB's listing names it)."""
    ino = fs.root_ino
    for name in path.strip("/").split("/"):
        ino = next(e.ino for e in fs.listdir(ino) if e.name == name.encode())
    return ino, fs.vol.read(ino, 32)


def fat_slot(fs: fat.FatFilesystem, cluster: int, copy: int = 0) -> int:
    """The byte offset of FAT entry `cluster` in FAT number `copy` (FAT16/FAT32 only)."""
    sb = fs.sb
    return (sb.fat_offset + copy * sb.fat_length) * 512 + cluster * sb.fat_size // 2


def chain(fs: fat.FatFilesystem, first: int) -> list[int]:
    """The cluster chain read straight from the first FAT (masked as Linux does)."""
    sb = fs.sb
    out = [first]
    while len(out) < sb.num_clust:
        pos = sb.fat_offset * 512 + out[-1] * sb.fat_size // 2
        word = int.from_bytes(fs.vol.read(pos, 4), "little")
        nxt = ((word >> 4) if out[-1] & 1 else word) & 0xFFF if sb.fat_size == 3 else (
            word & 0xFFFF if sb.fat_size == 4 else word & 0x0FFFFFFF)
        if nxt >= sb.clust_eof_marker:
            return out
        out.append(nxt)
    raise AssertionError("cyclic chain")


# --- reading ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_every_file_reads_byte_for_byte(kind: str) -> None:
    """fsys_fat.c:298 fat_dir + :204 fat_read on FAT12, FAT16 and FAT32 (mkfs.vfat -F 12/16/32 -S 512 -s 4/2/1):
    /boot/grub/menu.lst, the kernel and initrd, a 300 KiB file over hundreds of clusters, a fragmented file, a
    long name of four entries, directories eight levels deep, a directory of 150 long names over many clusters."""
    fs = mounted(kind)
    assert fs.identity.features[0] == f"FAT{RECIPES[kind].fat}"
    assert read(fs, "/boot/grub/menu.lst") == MENU
    for path, content in FILES.items():
        if path in ("/has space.txt", "/UPPER.TXT"):
            continue
        assert read(fs, path) == content, path
    assert read(fs, "/frag.bin") == frag_content()
    assert read(fs, f"{DEEP}/deep.txt") == b"at the bottom\n"
    assert read(fs, f"/many/entry-number-{MANY - 1:04d}.txt") == f"entry {MANY - 1}\n".encode()
    assert fs.open("/empty").size == 0 and fs.open("/empty").read(0, 10) == b""


@pytest.mark.parametrize("kind", KINDS)
def test_fragmented_file_and_many_clusters(kind: str) -> None:
    """The chain of /frag.bin jumps over the clusters of the small files that were kept (every other one of 40
    was deleted before it was written); the FAT cache (:243-253) is reloaded across 4-sector windows on the way
    through /big.bin."""
    fs = mounted(kind)
    clusters = chain(fs, fat._first_cluster(entry(fs, "/frag.bin")[1]))
    assert sum(1 for a, b in itertools.pairwise(clusters) if b != a + 1) >= 10
    big = chain(fs, fat._first_cluster(entry(fs, "/big.bin")[1]))
    assert len(big) == -(-len(FILES["/big.bin"]) // (RECIPES[kind].cluster_sectors * 512))
    assert read(fs, "/frag.bin") == frag_content()


@pytest.mark.parametrize("kind", KINDS)
def test_reads_at_offsets(kind: str) -> None:
    """grub_read (disk_io.c:1658) from any filepos: fat_read starts at logical cluster filepos >> clustsize_bits
    (:224-230) and crosses cluster boundaries; reads past the end are clipped to filemax."""
    fs = mounted(kind)
    cluster = RECIPES[kind].cluster_sectors * 512
    for path, want in (("/big.bin", FILES["/big.bin"]), ("/frag.bin", frag_content())):
        f = fs.open(path)
        for off, n in ((0, 10), (cluster - 3, 7), (5 * cluster + 17, 3 * cluster), (len(want) - 3, 100),
                       (len(want), 10), (len(want) + 50, 10)):
            assert f.read(off, n) == want[off:off + n], (path, off, n)


@pytest.mark.parametrize("kind", KINDS)
def test_long_names_and_8_3_names(kind: str) -> None:
    """:383-445: a long name (VFAT) is compared exactly as written, case-sensitively; :447-480: the 8.3 name is
    lowercased (A-Z only) before it is compared. mtools stores "menu.lst", "boot" and "UPPER.TXT" as 8.3 names
    only, so GRUB finds "/boot/grub/menu.lst" and "/upper.txt", but not "/BOOT/GRUB/MENU.LST" nor "/UPPER.TXT"
    (Linux finds all four); "MixedCase.Txt" has a long name: found as written or by its lowercased 8.3 alias,
    not as "/mixedcase.txt"."""
    fs = mounted(kind)
    assert read(fs, "/upper.txt") == FILES["/UPPER.TXT"]
    assert read(fs, "/MixedCase.Txt") == FILES["/MixedCase.Txt"]
    alias = fat._Run.short_name(entry(fs, "/MixedCase.Txt")[1]).decode()
    assert alias.startswith("mixedc~") and alias.endswith(".txt")
    assert read(fs, f"/{alias}") == FILES["/MixedCase.Txt"]
    long_alias = fat._Run.short_name(entry(fs, f"/long/{LONG}")[1]).decode()
    assert read(fs, f"/long/{long_alias}") == read(fs, f"/long/{LONG}") == b"long name\n"
    for path in ("/UPPER.TXT", "/BOOT/GRUB/MENU.LST", "/Boot/grub/menu.lst", "/mixedcase.txt", "/MIXEDCASE.TXT",
                 f"/long/{LONG.upper()}"):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found"), path


@pytest.mark.parametrize("kind", KINDS)
def test_a_name_with_a_space(kind: str) -> None:
    """:350: the path ends at the first blank, so "/has space.txt" looks for "has" (Error 15); the file is still
    reachable by its 8.3 alias."""
    fs = mounted(kind)
    e = grub_error(fs, "/has space.txt")
    assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found") and "'has'" in e.detail
    alias = fat._Run.short_name(entry(fs, "/has space.txt")[1]).decode()
    assert read(fs, f"/{alias}") == FILES["/has space.txt"]


@pytest.mark.parametrize("kind", KINDS)
def test_lookup_failures(kind: str) -> None:
    """:326-346: a directory at the end of the path, or a file in the middle, is Error 2; a name in no entry
    (up to the first 0 entry or the end of the directory, :361-381) is Error 15; a trailing '/' searches for an
    empty name (Error 15); deleted entries (0xe5) are skipped."""
    fs = mounted(kind)
    for path, number, code in (("/nope", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/boot/grub/nope.lst", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/many/entry-number-9999.txt", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/fill/f000", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/boot/grub", Err.BAD_FILETYPE, "bad-file-type"),
                               ("/boot/grub/", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/", Err.FILE_NOT_FOUND, "file-not-found"),
                               ("/boot/grub/menu.lst/x", Err.BAD_FILETYPE, "bad-file-type"),
                               ("/small.txt/", Err.BAD_FILETYPE, "bad-file-type"),
                               (DEEP, Err.BAD_FILETYPE, "bad-file-type")):
        e = grub_error(fs, path)
        assert (e.number, e.code) == (number, code), (path, e)
    assert read(fs, "/fill/f001") == fs.open("/fill/f001").read(0, 1 << 20)
    assert read(fs, "//boot///grub//menu.lst") == MENU
    assert read(fs, "/boot/grub/menu.lst trailing words") == MENU


@pytest.mark.parametrize("kind", KINDS)
def test_dot_dot_in_a_first_level_directory(kind: str) -> None:
    """".." is an ordinary 8.3 entry to GRUB. In a directory below the root it names cluster 0 (the root), and
    fat_read (:275-277) reads "cluster 0" two clusters before the data area -- not the root directory: "/d1/.."
    finds nothing (Error 15) where Linux would. Deeper ".." entries hold a real cluster and work."""
    fs = mounted(kind)
    e = grub_error(fs, "/d1/../small.txt")
    assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found")
    assert read(fs, "/d1/d2/../d2/./d3/d4/d5/d6/d7/d8/deep.txt") == b"at the bottom\n"


# --- GRUB's handling of FAT entries, on edited images ---------------------------------------------------------

def test_active_fat_when_mirroring_is_off() -> None:
    """:127-134: a FAT32 with mirroring disabled (flags bit 7) is read through FAT number `flags & 15`; with
    mirroring on, through the first FAT. An active FAT beyond num_fats does not mount."""
    fs = mounted("fat32")
    first = fat._first_cluster(entry(fs, "/big.bin")[1])
    cut = {fat_slot(fs, first): (0x0FFFFFFF).to_bytes(4, "little")}  # FAT 0 ends /big.bin after one cluster
    mirrored = patched("fat32", cut)
    assert mirrored is not None
    assert mirrored.open("/big.bin").read(0, 1 << 20) == FILES["/big.bin"][:512]
    second = patched("fat32", {**cut, 40: (0x0081).to_bytes(2, "little")})
    assert second is not None and second.sb.fat_offset == fs.sb.fat_offset + fs.sb.fat_length
    assert read(second, "/big.bin") == FILES["/big.bin"]
    assert patched("fat32", {40: (0x0082).to_bytes(2, "little")}) is None
    vol = Volume(MemoryDisk(raw("fat32")[:40] + b"\x82\x00" + raw("fat32")[42:1 << 20]), 0, 1 << 20)
    assert probe._fat_mount(probe._Probe(vol)) is False


def test_fat32_entries_are_not_masked() -> None:
    """:253-265: FAT32 entries are used with their 4 reserved high bits. 0x1xxxxxxx is >= the end-of-chain
    marker 0x0ffffff8: the read ends short, without an error; 0xfxxxxxxx (an end of chain written as
    0xffffffff, too) is a negative int, < 2: Error 16. Linux masks them and reads the whole file."""
    fs = mounted("fat32")
    first = fat._first_cluster(entry(fs, "/big.bin")[1])
    nxt = chain(fs, first)[1]
    high = patched("fat32", {fat_slot(fs, first): (0x10000000 | nxt).to_bytes(4, "little")})
    assert high is not None
    f = high.open("/big.bin")
    assert f.read(0, f.size) == FILES["/big.bin"][:512]
    for word in (0xF0000000 | nxt, 0xFFFFFFFF):
        neg = patched("fat32", {fat_slot(fs, first): word.to_bytes(4, "little")})
        assert neg is not None
        with pytest.raises(GrubError) as e:
            neg.open("/big.bin").read(0, 1 << 20)
        assert (e.value.number, e.value.code) == (Err.FSYS_CORRUPT, "fs-corrupt")


@pytest.mark.parametrize("kind", ["fat16", "fat32"])
def test_broken_and_short_chains(kind: str) -> None:
    """:263-269: a next cluster of 1 (or past the last cluster) is Error 16; a chain shorter than the size in the
    entry ends the read short with no error (GRUB loads fewer bytes: the slack of the last cluster included)."""
    fs = mounted(kind)
    off, ent = entry(fs, "/big.bin")
    first = fat._first_cluster(ent)
    width = fs.sb.fat_size // 2
    broken = patched(kind, {fat_slot(fs, chain(fs, first)[3]): (1).to_bytes(width, "little")})
    assert broken is not None
    f = broken.open("/big.bin")  # the first 10 bytes (gunzip_test_header) read fine
    with pytest.raises(GrubError) as e:
        f.read(0, f.size)
    assert (e.value.number, e.value.code) == (Err.FSYS_CORRUPT, "fs-corrupt")
    size = len(FILES["/big.bin"])
    longer = patched(kind, {off + 28: (size + 100_000).to_bytes(4, "little")})
    assert longer is not None
    f = longer.open("/big.bin")
    data = f.read(0, f.size)
    cluster = RECIPES[kind].cluster_sectors * 512
    assert f.size == size + 100_000 and len(data) == -(-size // cluster) * cluster
    assert data[:size] == FILES["/big.bin"]


def test_sizes_and_first_clusters_as_c_ints() -> None:
    """:486-488: the size is a C int: 2 GiB or more is negative, and grub_read reads nothing. The first cluster
    adds the high word (bytes 20-21) on FAT16 too (Linux ignores it there): cluster + 65536 lies past the volume
    (Error 24). On FAT32 a high word with bit 15 set makes the cluster negative, and fat_read (:212-222) reads the
    file from the FAT12/16 root directory area, which FAT32 does not have: an empty read."""
    fs = mounted("fat16")
    off, _ = entry(fs, "/big.bin")
    huge = patched("fat16", {off + 28: (0x80000000).to_bytes(4, "little")})
    assert huge is not None
    f = huge.open("/big.bin")
    assert f.size == 0 and f.read(0, 100) == b""
    high = patched("fat16", {off + 20: b"\x01\x00"})
    assert high is not None
    e = grub_error(high, "/big.bin")
    assert e.number == Err.OUTSIDE_PART
    fs32 = mounted("fat32")
    off32, _ = entry(fs32, "/big.bin")
    neg = patched("fat32", {off32 + 20: b"\x00\x80"})
    assert neg is not None
    f = neg.open("/big.bin")
    assert f.size == len(FILES["/big.bin"]) and f.read(0, f.size) == b""


def test_directory_chain_loop_is_a_hang() -> None:
    """A directory whose first cluster points back to itself and holds no 0 entry: GRUB searches it forever for
    a missing name (the emulator sees the same cluster with the same long-name state come back: fs-hang); a
    name in that cluster is still found."""
    fs = mounted("fat32")
    first = fat._first_cluster(entry(fs, "/many")[1])
    looped = patched("fat32", {fat_slot(fs, first): first.to_bytes(4, "little")})
    assert looped is not None
    assert read(looped, "/many/entry-number-0000.txt") == b"entry 0\n"
    e = grub_error(looped, "/many/nope")
    assert (e.number, e.code) == (Err.FSYS_CORRUPT, "fs-hang")


# --- mount -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_mount_agrees_with_the_probe(kind: str) -> None:
    """fat_mount (:74-202) is probe.py `_fat_mount`: FAT is the first driver of fsys_table, and the partition
    type must be 0 or a FAT type, hidden or not (:80-83)."""
    data = raw(kind)
    start = 1 << 20
    disk = MemoryDisk(bytes(start) + data)
    for ptype, ok in ((None, True), (0x06, True), (0x0C, True), (0x1B, True), (0x83, False), (0x07, False)):
        vol = Volume(disk, start, len(data), ptype, "(hd0,0)")
        assert probe._fat_mount(probe._Probe(vol)) is ok
        assert (fat.mount(vol) is not None) is ok
        out = probe.grub_mount_sequence(vol)
        assert (out.driver is probe.GrubDriver.FAT) is ok


def test_mount_refusals() -> None:
    """:91 (no sectors per cluster), :162-169 (512-byte sectors, power-of-two clusters), :197 (the media byte
    in the first FAT entry, bit 3 ignored), :144-145 (FAT16 without root entries)."""
    fs = mounted("fat16")
    fat0 = fs.sb.fat_offset * 512
    media = raw("fat16")[21]
    for edits, ok in (({13: b"\x00"}, False), ({13: b"\x03"}, False), ({11: (1024).to_bytes(2, "little")}, False),
                      ({21: bytes([media ^ 0x08])}, True), ({21: bytes([media ^ 0x01])}, False),
                      ({fat0: b"\xf0"}, media | 8 == 0xF8), ({17: b"\x00\x00"}, False)):
        got = patched("fat16", edits)
        assert (got is not None) is ok, edits
        data = bytearray(raw("fat16")[:1 << 20])
        for off, b in edits.items():
            data[off:off + len(b)] = b
        assert probe._fat_mount(probe._Probe(Volume(MemoryDisk(bytes(data)), 0, len(data)))) is ok


# --- listing, for pvbuild diff ----------------------------------------------------------------------------------

def test_walk_names_sizes_and_times() -> None:
    """The names of GRUB's listing (:438-439, :466-476): the long name when its checksum matches, else the
    lowercased 8.3 name; sizes from the entries; mtime the entry's write time (mcopy -m kept the source's)."""
    fs = mounted("fat16")
    seen = dict(fs.walk())
    assert seen["/"].kind == S_IFDIR
    want = {p if p != "/UPPER.TXT" else "/upper.txt": c for p, c in FILES.items()}
    for path, content in want.items():
        st = seen[path]
        assert st.kind == S_IFREG and st.size == len(content) and st.mtime == MTIME, path
        assert b"".join(fs.content(st.ino, chunk=1000)) == content, path
    assert seen["/boot/grub"].kind == S_IFDIR and seen[DEEP].kind == S_IFDIR
    assert not any(p.endswith(("/.", "/..")) for p in seen)
    assert "/fill/f000" not in seen and "/fill/f001" in seen
    with pytest.raises(GrubError):
        fs.readlink(seen["/small.txt"].ino)
    with pytest.raises(GrubError):
        fs.listdir(seen["/small.txt"].ino)


# --- end to end: pvbuild check -----------------------------------------------------------------------------------

ROOTFS_MENU = MENU.replace(b"LABEL=rootfs", b"LABEL=ROOTFS")


@pytest.mark.parametrize("kind", KINDS)
def test_check_image_partitionless_boots(kind: str) -> None:
    """A whole-disk FAT with /boot/grub/menu.lst, a synthetic Xen kernel and an initrd: PV-GRUB (hd0) boots it."""
    path = build(RECIPES[kind], plain(boot_files(ROOTFS_MENU)), fragment=False)
    r = check(path)
    assert r["outcome"] == "boots", r["findings"]
    assert r["menu"] == {"device": "(hd0)", "path": "/boot/grub/menu.lst"}
    assert codes(r, "error") == [] and "fs-unsupported" not in codes(r)


def test_check_image_mbr_partition() -> None:
    """A FAT32 in an MBR partition (sfdisk, mkfs.vfat --offset) of type 0x0c is read by the hd00 profile at
    (hd0,0); the same filesystem in a partition of type 0x83 is not mounted by fat_mount (:80-83)."""
    files = plain(boot_files(ROOTFS_MENU.replace(b"root (hd0)", b"root (hd0,0)")))
    r = check(build(Recipe(32, 64, 1, part_type="c"), files, fragment=False), "1.05", "hd00")
    assert r["outcome"] == "boots", r["findings"]
    assert r["menu"]["device"] == "(hd0,0)" and r["kernel"]["device"] == "(hd0,0)"
    assert codes(r, "error") == []
    r = check(build(Recipe(32, 64, 1, part_type="83"), files, fragment=False), "1.05", "hd00")
    assert r["outcome"] == "hang-prompt" and "menu-not-found" in codes(r)
    wrong = [f for f in r["findings"] if f["code"] == "partition-type-not-fat"]
    assert wrong and "0x83" in wrong[0]["message"] and "0c" in wrong[0]["message"], r["findings"]


def test_4085_clusters_is_fat16_to_linux_and_fat12_to_grub(tmp_path: Path) -> None:
    """:148 / fat.h:69: GRUB takes FAT16 only above 4087 = 4085 + 2 clusters counted with the two reserved ones,
    i.e. above 4085 data clusters; Linux (fs/fat/inode.c, MAX_FAT12 = 4084) and blkid call 4085 clusters FAT16.
    A FAT16 of exactly 4085 clusters (mkfs.vfat -F 16, total sectors then cut in the boot sector) is read by GRUB
    with 12-bit FAT entries: a file of several clusters is misread."""
    from tests.fixtures_fat import _run, _tool, need_tools

    need_tools()
    path = tmp_path / "fat16.raw"
    with open(path, "wb") as f:
        f.truncate(4160 * 512)
    _run([_tool("mkfs.vfat"), "-F", "16", "-s", "1", "-S", "512", "-R", "1", "-r", "512", "--invariant", str(path)])
    src = tmp_path / "data"
    content = FILES["/big.bin"][:5000]
    src.write_bytes(content)
    _run([_tool("mcopy"), "-i", str(path), str(src), "::/data.bin"])
    data = bytearray(path.read_bytes())
    reserved, fats, fat_length = data[14], data[16], int.from_bytes(data[22:24], "little")
    data_offset = reserved + fats * fat_length + 512 * 32 // 512
    data[19:21] = (data_offset + 4085).to_bytes(2, "little")
    vol = Volume(MemoryDisk(bytes(data)), 0, len(data))
    ident = probe.identify(vol)
    assert ident is not None and ident.features == ("FAT16",)
    fs = fat.mount(vol)
    assert fs is not None and fs.sb.bits == 12 and fs.sb.num_clust == 4087
    assert [f.code for f in fs.findings()] == ["fs-feature-unsupported"]
    assert mounted("fat12").findings() == [] and mounted("fat16").findings() == []
    try:
        got: bytes | None = fs.open("/data.bin").read(0, len(content))
    except GrubError as e:
        assert e.number == Err.FSYS_CORRUPT
        got = None
    assert got != content, got


def test_non_ascii_names(tmp_path: Path) -> None:
    """:418-419: a long name keeps only the low byte of each UTF-16 character, so "xŁy.txt" (U+0141) is found
    as "/xAy.txt", not by its UTF-8 spelling. "café.txt" fits 8.3: mtools stores it upper case in the OEM code
    page (CP850 "É" = 0x90) with no long name, and GRUB lowercases only A-Z (:451-457): it is "/caf<0x90>.txt"."""
    from tests.fixtures_fat import _run, _tool, need_tools

    need_tools()
    path = tmp_path / "fat.raw"
    with open(path, "wb") as f:
        f.truncate(4 << 20)
    _run([_tool("mkfs.vfat"), "--invariant", str(path)])
    src = tmp_path / "data"
    src.write_bytes(b"non-ASCII name\n")
    for name in ("xŁy.txt", "café.txt"):
        _run([_tool("mcopy"), "-i", str(path), str(src), f"::/{name}"], lang="C.UTF-8")
    disk = Disk(path)
    fs = fat.mount(Volume(disk, 0, disk.size))
    assert fs is not None
    for ok in ("/xAy.txt", "/xly.txt", "/caf\udc90.txt"):
        assert read(fs, ok) == b"non-ASCII name\n", ok
    for missing in ("/xŁy.txt", "/café.txt", "/caf\udce9.txt"):
        e = grub_error(fs, missing)
        assert (e.number, e.code) == (Err.FILE_NOT_FOUND, "file-not-found"), missing
    assert {e.name for e in fs.listdir(fs.root_ino)} == {b"xAy.txt", b"caf\x90.txt"}
