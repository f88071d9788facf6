"""Fuzzing the emulator's own parsers and the whole check: always a verdict or exit 2, never an exception.

Each input must finish in under 2 s (hypothesis deadline) and stay under 256 MiB of Python allocations
(tracemalloc peak). Inputs: raw menu.lst bytes, a grammar of menu commands run through a real image, MBR/EBR/GPT
sectors, and byte flips anywhere in the metadata of a small real ext4 image.
"""

from __future__ import annotations

import struct
import subprocess
import tracemalloc
from functools import cache
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.pvgrub import menu
from pvbuild.pvgrub.blockio import MemoryDisk
from pvbuild.pvgrub.check import check_disk
from pvbuild.pvgrub.disk import HD_BASE, Device, open_volume, read_layout
from pvbuild.pvgrub.errors import GrubError, ImageError
from pvbuild.pvgrub.profiles import Profile
from tests.imagebuild import DiskSpec, Fs, Tree, build
from tests.test_machine import INITRD, KCONFIG, VERSION, initrd, pv_kernel

MENU_SIZE = 4096
MEMORY_BOUND = 256 * 1024 * 1024
FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)


@cache
def base_image() -> tuple[bytes, int]:
    """A small real ext4 image with a 4 KiB menu.lst whose data block offset we know (to patch it in place)."""
    tree: Tree = {"/boot/grub/menu.lst": b"\n" * MENU_SIZE, f"/boot/vmlinuz-{VERSION}": pv_kernel(),
            INITRD: initrd(), f"/boot/config-{VERSION}": KCONFIG, "/boot/grub/default": b"1\n",
            "/boot/grub/other.lst": b"timeout 0\ntitle o\nroot (hd0)\nkernel /boot/vmlinuz-" + VERSION.encode()}
    img = build(DiskSpec("none", whole=Fs.of(tree, size_mb=16, label="rootfs",
                                              options=("-O", "^64bit", "-b", "4096"))))
    out = subprocess.run(["debugfs", "-R", "bmap /boot/grub/menu.lst 0", str(img)], capture_output=True,
                         text=True, check=True)
    block = int(out.stdout.strip())
    return Path(img).read_bytes(), block * 4096


DEFAULT_PROFILE = Profile()


def run_check(data: bytes, profile: Profile = DEFAULT_PROFILE) -> None:
    tracemalloc.start()
    try:
        report = check_disk(MemoryDisk(data), profile, "<fuzz>")
        report.to_json()
        assert report.exit_code in (0, 1)
    except ImageError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, peak


@FUZZ
@given(st.binary(max_size=4096))
def test_menu_parser_never_raises(data: bytes) -> None:
    try:
        parsed = menu.parse(data)
    except menu.FallbackLoop:
        return
    assert all(len(t) <= menu.NEW_HEAPSIZE for e in parsed.entries for _, t in e.commands)


DEVICES = st.sampled_from(["(hd0)", "(hd0,0)", "(hd0,4)", "(hd1)", "(hd0,a)", "(fd0)", "(nd)", "(hd0", "hd0",
                           "(hd0,255)", "(hd8)", ""])
PATHS = st.sampled_from([f"/boot/vmlinuz-{VERSION}", INITRD, "/boot/grub/menu.lst", "/boot/grub/other.lst",
                         "/nope", "vmlinuz", "+1", "0+1,2+3", "/boot/", "//boot//vmlinuz-" + VERSION, "/boot/grub",
                         f"(hd0)/boot/vmlinuz-{VERSION}"])
NUMS = st.sampled_from(["0", "1", "2", "0x1", "-1", "99", "saved", "x", "1 1", "1 1 0", "2147483648", ""])
COMMAND = st.one_of(
    st.tuples(st.sampled_from(["title", "root", "rootnoverify"]), DEVICES),
    st.tuples(st.sampled_from(["kernel", "initrd", "module", "configfile", "chainloader", "cat", "find"]),
              PATHS, st.sampled_from(["", " root=LABEL=rootfs console=hvc0", " --type=linux", " x" * 600])),
    st.tuples(st.sampled_from(["default", "fallback", "timeout", "savedefault", "password", "lock", "boot",
                               "hiddenmenu", "pause", "serial", "color", "Title", "#"]), NUMS),
)
SEPARATORS = st.sampled_from([" ", " ", " ", "=", "\t", "  ", " = ", "\\\n"])
ENDINGS = st.sampled_from(["\n", "\n", "\n", "\r\n", "\\\n", "\n\n"])
GOOD = st.sampled_from([
    ("root", "(hd0)"), ("kernel", f"/boot/vmlinuz-{VERSION} root=LABEL=rootfs console=hvc0"), ("initrd", INITRD),
    ("timeout", "0"), ("default", "0"), ("fallback", "1"),
])
LINE = st.one_of(GOOD, GOOD, COMMAND)


@st.composite
def menus(draw: st.DrawFn) -> str:
    """Global commands, then entries of mostly valid commands with random damage: the machine's real paths."""
    out = ["timeout 0\n"] if draw(st.integers(0, 4)) else []
    for parts in draw(st.lists(st.one_of(GOOD, COMMAND), max_size=4)):
        out.append(parts[0] + draw(SEPARATORS) + "".join(parts[1:]) + draw(ENDINGS))
    template = [("root", "(hd0)"), ("kernel", f"/boot/vmlinuz-{VERSION} root=LABEL=rootfs console=hvc0"),
                ("initrd", INITRD)]
    for _ in range(draw(st.integers(0, 4))):
        out.append(f"title {draw(st.text(max_size=12))}\n")
        lines: list[tuple[str, ...]] = [t for t in template if draw(st.integers(0, 5))]
        for extra in draw(st.lists(LINE, max_size=3)):
            lines.insert(draw(st.integers(0, len(lines))), extra)
        for cmd in lines:
            out.append(cmd[0] + draw(SEPARATORS) + "".join(cmd[1:]) + draw(ENDINGS))
    return "".join(out)


@FUZZ
@given(menus(), st.sampled_from([Profile(), Profile("1.03", "hd0"), Profile("1.03", "hd00"), Profile(arch="i386")]))
def test_menu_grammar_through_the_machine(text: str, profile: Profile) -> None:
    raw = text.encode("utf-8", "replace")[:MENU_SIZE]
    data, offset = base_image()
    patched = bytearray(data)
    patched[offset:offset + MENU_SIZE] = raw + b"\n" * (MENU_SIZE - len(raw))
    run_check(bytes(patched), profile)


def mbr_entry(flag: int, ptype: int, start: int, length: int) -> bytes:
    return bytes([flag, 0, 0, 0, ptype, 0, 0, 0]) + struct.pack("<II", start, length)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from([0, 0x80, 0x7F]), st.sampled_from([0, 0x83, 0x05, 0x0F, 0x85, 0xEE,
                                                                              0xFD, 0xA5, 0x07]),
                          st.integers(0, 4096), st.integers(0, 4096)), min_size=4, max_size=4),
       st.lists(st.tuples(st.integers(1, 2047), st.binary(min_size=1, max_size=16)), max_size=8),
       st.booleans())
def test_partition_tables_never_crash(entries: list[tuple[int, int, int, int]], patches: list[tuple[int, bytes]],
                                      gpt: bool) -> None:
    disk = bytearray(2048 * 512)
    disk[446:510] = b"".join(mbr_entry(*e) for e in entries)
    disk[510:512] = b"\x55\xaa"
    # Extended boot records and a GPT header where the entries point, then random damage.
    for _, ptype, start, _ in entries:
        if ptype in (0x05, 0x0F, 0x85) and start < 2047:
            disk[start * 512 + 446:start * 512 + 462] = mbr_entry(0, 0x83, 1, 8)
            disk[start * 512 + 462:start * 512 + 478] = mbr_entry(0, 0x05, start + 4, 16)
            disk[start * 512 + 510:start * 512 + 512] = b"\x55\xaa"
    if gpt:
        disk[512:520] = b"EFI PART"
        disk[512 + 72:512 + 88] = struct.pack("<QII", 2, 128, 128)
    for off, patch in patches:
        disk[off * 512 // 4:off * 512 // 4 + len(patch)] = patch
    d = MemoryDisk(bytes(disk))
    read_layout(d)
    for n in range(8):
        try:
            vol = open_volume(d, Device(HD_BASE, n), gpt=gpt)
            assert vol.start >= 0
            assert vol.length >= 0
        except GrubError:
            pass


@cache
def metadata_offsets() -> list[int]:
    """Byte ranges of a real ext4 image that hold metadata: superblock, descriptors, inode table, dirs."""
    data, menu_off = base_image()
    return [1024, 4096, 8192, menu_off] + [i for i in range(0, min(len(data), 2 * 1024 * 1024), 4096)
                                           if any(data[i:i + 4096])]


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 4095), st.binary(min_size=1, max_size=8)),
                min_size=1, max_size=16))
def test_image_byte_flips_never_crash(flips: list[tuple[int, int, bytes]]) -> None:
    data, _ = base_image()
    offsets = metadata_offsets()
    img = bytearray(data)
    for which, within, patch in flips:
        pos = offsets[which % len(offsets)] + within
        img[pos:pos + len(patch)] = patch
    run_check(bytes(img))
