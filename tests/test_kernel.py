"""The kernel inspector against real Debian kernels and synthetic Xen kernels (PVGRUB.md §6).

Each test's docstring names the rule of PVGRUB.md §6 it checks and the C source lines (copies in
shared/reference/pv-grub-src/xen) that implement it in PV-GRUB.
"""

from __future__ import annotations

import gzip
import struct

import pytest

from pvbuild.pvgrub.errors import Err
from pvbuild.pvgrub.kernel import (
    AWS_COMPRESSIONS,
    LIBXC_COMPRESSIONS,
    KernelCheck,
    inspect_kernel,
    parse_version,
)
from tests.fixtures_kernels import (
    EM_X86_64,
    build_elf,
    debian_kernel,
    kernel_layout,
    linux_notes,
    make_bzimage,
)

OLD32 = b"Linux version 4.19.0-synthetic (builder@localhost) #1 SMP\n"


def codes(check: KernelCheck) -> set[str]:
    return {f.code for f in check.findings}


def err(check: KernelCheck) -> tuple[int, str | None] | None:
    return (check.grub_error.number, check.grub_error.code) if check.grub_error else None


def elf32(**kw: object) -> bytes:
    notes = kw.pop("notes", linux_notes(32))
    return build_elf(bits=32, banner=OLD32, notes=notes, **kw)  # type: ignore[arg-type]


# --- real Debian kernels ------------------------------------------------------------------------------


def test_debian_amd64_kernel_boots_on_x86_64() -> None:
    """PVGRUB.md §6: a Debian 12 amd64 kernel is a bzImage (boot protocol >= 2.08) with an xz payload
    (xg_dom_bzimageloader.c:830-890) whose ELF has Xen PT_NOTEs (libelf-dominfo.c:583-608) and guest type
    xen-3.0-x86_64 (xg_dom_elfloader.c:84-85), which a 64-bit PV-GRUB boots (kexec.c:268-274)."""
    k = debian_kernel("amd64")
    check = inspect_kernel(k.vmlinuz.read_bytes(), "x86_64")
    assert check.grub_error is None, check.grub_error
    info = check.info
    assert info is not None
    assert (info.format, info.compression, info.machine, info.xen_pv) == ("bzImage", "xz", "x86_64", True)
    assert info.version is not None and info.version.startswith("6.1")
    assert info.version == k.release
    assert info.guest_type == "xen-3.0-x86_64"
    assert info.notes_source == "PT_NOTE"
    assert info.xen_notes["GUEST_OS"] == "linux" and info.xen_notes["XEN_VERSION"] == "xen-3.0"
    assert "ENTRY" in info.xen_notes and not info.pvh_only
    assert check.ok
    assert "CONFIG_XEN_BLKDEV_FRONTEND=m" in k.config_text


def test_debian_amd64_kernel_on_i386_pv_grub() -> None:
    """PVGRUB.md §6 Arch: a 32-bit PV-GRUB boots only xen-3.0-x86_32p: Error 13 (kexec.c:261-266)."""
    check = inspect_kernel(debian_kernel("amd64").vmlinuz.read_bytes(), "i386")
    assert err(check) == (Err.EXEC_FORMAT, "kernel-arch-mismatch")


def test_debian_amd64_kernel_full_payload_check() -> None:
    """With full=True the whole payload is decompressed and must match the size appended by the build
    (xg_dom_bzimageloader.c:243-249 for xz)."""
    check = inspect_kernel(debian_kernel("amd64").vmlinuz.read_bytes(), "x86_64", full=True)
    assert check.grub_error is None and check.info is not None and check.info.xen_pv


@pytest.mark.parametrize("arch", ["x86_64", "i386"])
def test_debian_686_pae_kernel_is_not_pv(arch: str) -> None:
    """PVGRUB.md §6: Linux >= 5.9 has no 32-bit PV. Debian's 6.1 686-pae kernel has Xen notes (GUEST_OS,
    VIRT_BASE, PHYS32_ENTRY) but no ENTRY note, so libxc uses e_entry, a physical address below
    virt_kstart: "ELF start or entries are out of bounds" (libelf-dominfo.c:513-544), Error 9
    (kexec.c:255-259), reported as kernel-no-pv; a 64-bit PV-GRUB also has the arch mismatch."""
    k = debian_kernel("i386")
    assert k.release.endswith("686-pae") and k.release.startswith("6.1")
    check = inspect_kernel(k.vmlinuz.read_bytes(), arch)
    assert check.grub_error is not None
    assert check.grub_error.number == Err.BOOT_FAILURE
    assert check.grub_error.code in ("kernel-not-xen", "kernel-no-pv")
    info = check.info
    assert info is not None
    assert (info.format, info.machine, info.xen_pv) == ("bzImage", "i386", False)
    assert info.version is not None and info.version.startswith("6.1")
    assert "kernel-no-pv" in codes(check) or "kernel-not-xen" in codes(check)
    if arch == "x86_64":
        assert "kernel-arch-mismatch" in codes(check)
    assert not check.ok


# --- loaders and the bzImage header ----------------------------------------------------------------------


def test_plain_elf_vmlinux_is_loaded() -> None:
    """PVGRUB.md §6 Loaders: the ELF loader is tried first (xg_dom_elfloader.c:119-143): a vmlinux
    with Xen notes boots; its version comes from the "Linux version " banner."""
    check = inspect_kernel(build_elf(), "x86_64")
    assert check.grub_error is None
    assert check.info is not None
    assert (check.info.format, check.info.compression, check.info.version) == ("elf", "none", "6.1.0-synthetic")


def test_gzipped_vmlinux_file() -> None:
    """PVGRUB.md §4: GRUB gunzips files starting with 1F 8B on read, so a vmlinux.gz is an ELF to libxc."""
    check = inspect_kernel(gzip.compress(build_elf()), "x86_64")
    assert check.grub_error is None and check.info is not None
    assert (check.info.format, check.info.file_compression) == ("elf", "gzip")
    bad = inspect_kernel(gzip.compress(build_elf())[:-100], "x86_64")
    assert err(bad) == (Err.BAD_GZIP_DATA, "kernel-gzip-corrupt")


def test_unknown_format() -> None:
    """PVGRUB.md §6: neither ELF, bzImage nor bin: no loader found, Error 9 (kexec.c:255-259)."""
    for data in (b"", b"MZ" + b"\0" * 5000, b"\x7fELX" + b"\0" * 100):
        check = inspect_kernel(data, "x86_64")
        assert err(check) == (Err.BOOT_FAILURE, "kernel-format-unknown")
        assert check.info is None


@pytest.mark.parametrize("compression", ["gzip", "bzip2", "xz", "lzma", "lz4", "zstd"])
def test_bzimage_payload_compressions_libxc(compression: str) -> None:
    """PVGRUB.md §6 Payload magic: every format libxc decodes (xg_dom_bzimageloader.c:860-935) is read,
    the payload found at (setup_sects+1)*512 + payload_offset (line 840-842)."""
    check = inspect_kernel(make_bzimage(build_elf(), compression), "x86_64", LIBXC_COMPRESSIONS)
    assert check.grub_error is None, check.grub_error
    assert check.info is not None
    assert (check.info.format, check.info.compression, check.info.xen_pv) == ("bzImage", compression, True)
    assert check.info.version == "6.1.0-synthetic"
    assert check.info.boot_protocol == 0x020A


@pytest.mark.parametrize("compression", ["lz4", "zstd"])
def test_aws_refuses_lz4_and_zstd(compression: str) -> None:
    """PVGRUB.md §6: AWS's PV-GRUB decodes gzip, bzip2, lzo, xz only; lz4 and zstd payloads end in
    "xc_dom_probe_bzimage_kernel: unknown compression format" (xg_dom_bzimageloader.c:936-941), Error 9."""
    check = inspect_kernel(make_bzimage(build_elf(), compression), "x86_64", AWS_COMPRESSIONS)
    assert err(check) == (Err.BOOT_FAILURE, "kernel-compression-unsupported")
    assert check.grub_error is not None
    assert "unknown compression format" in check.grub_error.detail
    assert check.info is not None and check.info.compression == compression
    assert check.info.version == "6.1.0-synthetic"  # learned before the refusal


def test_lzma_is_a_profile_option() -> None:
    """PVGRUB.md §6: lzma is profile-dependent: refused without it, read with it (line 903-913)."""
    image = make_bzimage(build_elf(), "lzma")
    assert err(inspect_kernel(image, "x86_64", AWS_COMPRESSIONS)) == (9, "kernel-compression-unsupported")
    assert inspect_kernel(image, "x86_64", AWS_COMPRESSIONS | {"lzma"}).grub_error is None


def test_lzo_payload_is_not_inspected() -> None:
    """lzo payloads (AWS-supported, xg_dom_bzimageloader.c:914-924) cannot be decompressed here: no GRUB
    error is claimed and a warning says the notes were not checked."""
    check = inspect_kernel(make_bzimage(build_elf(), "lzo"), "x86_64")
    assert check.grub_error is None
    assert check.info is not None and not check.info.inspected and check.info.compression == "lzo"
    assert "kernel-not-inspected" in codes(check)


def test_uncompressed_payload_is_unknown_compression() -> None:
    """PVGRUB.md §6: a bzImage payload must be compressed: a bare ELF payload matches no magic
    (xg_dom_bzimageloader.c:936-941)."""
    check = inspect_kernel(make_bzimage(build_elf(), "none"), "x86_64", LIBXC_COMPRESSIONS)
    assert err(check) == (Err.BOOT_FAILURE, "kernel-compression-unsupported")


def test_payload_must_be_elf() -> None:
    """PVGRUB.md §6: the payload is handed to the ELF loader (xg_dom_bzimageloader.c:943), which needs
    an ELF (xg_dom_elfloader.c:108-115)."""
    check = inspect_kernel(make_bzimage(b"not an elf at all" * 10, "gzip"), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-payload-not-elf")


def test_boot_protocol_too_old() -> None:
    """PVGRUB.md §6: bzImage version >= 0x0208 (xg_dom_bzimageloader.c:830-835)."""
    check = inspect_kernel(make_bzimage(build_elf(), "gzip", version=0x0207), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-format-unknown")
    assert check.info is not None and check.info.boot_protocol == 0x0207


def test_setup_sects_zero_is_not_four() -> None:
    """PVGRUB.md §6: setup_sects 0 is NOT treated as 4: libxc computes (0+1)*512 (xg_dom_bzimageloader.c
    :838-841), unlike the x86 boot protocol. A payload at 512+offset is found; one placed at 5*512+offset
    (where a boot-protocol loader would look) is not."""
    ok = inspect_kernel(make_bzimage(build_elf(), "gzip", setup_sects=0), "x86_64")
    assert ok.grub_error is None
    moved = inspect_kernel(make_bzimage(build_elf(), "gzip", setup_sects=0, place_at_sects=4), "x86_64")
    assert err(moved) == (Err.BOOT_FAILURE, "kernel-compression-unsupported")


def test_payload_offset_and_length_overflow() -> None:
    """PVGRUB.md §6: payload_offset/payload_length must lie inside the file (xg_dom_bzimageloader.c
    :844-855)."""
    image = bytearray(make_bzimage(build_elf(), "gzip"))
    struct.pack_into("<I", image, 0x248, len(image))
    assert err(inspect_kernel(bytes(image), "x86_64")) == (Err.BOOT_FAILURE, "kernel-format-unknown")
    image = bytearray(make_bzimage(build_elf(), "gzip"))
    struct.pack_into("<I", image, 0x24C, len(image))
    check = inspect_kernel(bytes(image), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-format-unknown")
    assert check.grub_error is not None and "payload length overflow" in check.grub_error.detail


def test_corrupt_payload() -> None:
    """A payload that fails to decompress: "unable to ... decompress kernel" (xg_dom_bzimageloader.c
    :860-935), Error 9."""
    image = bytearray(make_bzimage(build_elf(), "xz"))
    start = 5 * 512 + 0x100
    for i in range(start + 64, start + 400, 7):
        image[i] ^= 0xFF
    assert err(inspect_kernel(bytes(image), "x86_64")) == (Err.BOOT_FAILURE, "kernel-payload-corrupt")


def test_bin_loader_image() -> None:
    """PVGRUB.md §6 Loaders: the third loader, "bin" (xg_dom_binloader.c find_table: magic 0x336ec578
    with checksum in the first 8 KiB); its PAE flags give the guest type."""
    table = struct.pack("<III", 0x336EC578, 0x00010000 | (1 << 14), (-(0x336EC578 + (0x00010000 | (1 << 14))))
                        & 0xFFFFFFFF)
    image = b"\0" * 64 + table + b"\0" * 4000
    i386 = inspect_kernel(image, "i386")
    assert i386.grub_error is None and i386.info is not None
    assert (i386.info.format, i386.info.guest_type) == ("bin", "xen-3.0-x86_32p")
    assert err(inspect_kernel(image, "x86_64")) == (Err.EXEC_FORMAT, "kernel-arch-mismatch")


# --- Xen notes -----------------------------------------------------------------------------------------------


def test_notes_from_sht_note_when_no_pt_note() -> None:
    """PVGRUB.md §6 Xen notes: without Xen notes in PT_NOTE segments, libelf reads SHT_NOTE sections
    (libelf-dominfo.c:610-641)."""
    check = inspect_kernel(make_bzimage(build_elf(where="shdr"), "bzip2"), "x86_64")
    assert check.grub_error is None and check.info is not None
    assert check.info.notes_source == "SHT_NOTE"


def test_legacy_xen_guest_section() -> None:
    """PVGRUB.md §6 Xen notes: last, the legacy `__xen_guest` string "KEY=VAL,..." (libelf-dominfo.c
    :643-656, parsed at 313-404; HYPERCALL_PAGE is a page number added to VIRT_BASE)."""
    base, _, entry = kernel_layout(64)
    guest = (f"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE={base:#x},ELF_PADDR_OFFSET=0,"
             f"VIRT_ENTRY={entry:#x},HYPERCALL_PAGE=0x1001,LOADER=generic")
    check = inspect_kernel(build_elf(where="none", gnu_build_id=False, xen_guest=guest), "x86_64")
    assert check.grub_error is None, check.grub_error
    assert check.info is not None and check.info.notes_source == "__xen_guest"
    assert check.info.xen_notes["XEN_VER"] == "xen-3.0"


def test_xen_guest_unknown_required_feature_is_ignored() -> None:
    """elf_xen_parse ignores elf_xen_parse_guest_info's result (libelf-dominfo.c:654): an unknown
    "!feature" there only stops parsing, unlike in a FEATURES note."""
    base, _, entry = kernel_layout(64)
    guest = (f"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE={base:#x},ELF_PADDR_OFFSET=0,VIRT_ENTRY={entry:#x},"
             "FEATURES=!no_such_feature")
    check = inspect_kernel(build_elf(where="none", gnu_build_id=False, xen_guest=guest), "x86_64")
    assert check.grub_error is None


@pytest.mark.parametrize("gnu_note", [False, True])
def test_no_xen_notes(gnu_note: bool) -> None:
    """PVGRUB.md §6: no Xen notes on an x86 ELF: "Not a Xen-ELF image" when there is no note area at all
    (libelf-dominfo.c:412-423); with another note area (a GNU build-id) libelf passes that test and fails
    "Will only load images built for the generic loader or Linux images" (line 439-450). Error 9 both."""
    check = inspect_kernel(make_bzimage(build_elf(where="none", gnu_build_id=gnu_note), "gzip"), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-not-xen")
    assert check.grub_error is not None
    assert ("generic loader" in check.grub_error.detail) == gnu_note
    assert ("Not a Xen-ELF image" in check.grub_error.detail) == (not gnu_note)
    assert check.info is not None and check.info.machine == "x86_64" and not check.info.xen_pv


def test_non_x86_without_notes_passes_note_check_but_has_no_guest_type() -> None:
    """libelf-dominfo.c:415-422 refuses note-less images only for EM_386/EM_X86_64; others then fail in
    xc_dom_guest_type "unknown image type" (xg_dom_elfloader.c:86-90): Error 9 either way. (Without notes
    VIRT_BASE is 0, so the entry must be the physical one to pass libelf-dominfo.c:537-544.)"""
    check = inspect_kernel(build_elf(where="none", gnu_build_id=False, machine=183, e_entry=0x1000100),
                           "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-arch-unknown")


@pytest.mark.parametrize(
    ("override", "ok"),
    [
        ({"LOADER": None}, True),  # GUEST_OS "linux" suffices
        ({"GUEST_OS": "netbsd"}, True),  # LOADER "generic" suffices
        ({"GUEST_OS": "netbsd", "LOADER": None}, False),
        ({"GUEST_OS": "Linux", "LOADER": "generic-x"}, True),
        ({"GUEST_OS": "Linux", "LOADER": "Generic"}, False),  # prefixes compare case-sensitively
        ({"XEN_VERSION": "xen-3.0-x86_64"}, True),
        ({"XEN_VERSION": "xen-4.0"}, False),
        ({"XEN_VERSION": None}, False),
    ],
)
def test_loader_guest_os_and_xen_version(override: dict[str, str | None], ok: bool) -> None:
    """PVGRUB.md §6: needs (LOADER starts "generic" or GUEST_OS starts "linux") and XEN_VERSION starts
    "xen-3.0" (libelf-dominfo.c:438-459, strncmp prefixes)."""
    check = inspect_kernel(build_elf(notes=linux_notes(64, **override)), "x86_64")
    if ok:
        assert check.grub_error is None, check.grub_error
    else:
        assert err(check) == (Err.BOOT_FAILURE, "kernel-not-xen")


def test_features_dom0_required_is_refused() -> None:
    """PVGRUB.md §6: FEATURES "!dom0" marks a dom0-only kernel: "Kernel does not support unprivileged
    (DomU) operation" (xg_dom_elfloader.c:176-182), Error 9."""
    check = inspect_kernel(build_elf(notes=linux_notes(64, FEATURES="!writable_page_tables|!dom0")), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-dom0-only")
    assert inspect_kernel(build_elf(notes=linux_notes(64, FEATURES="dom0")), "x86_64").grub_error is None


def test_features_unknown_required_is_refused() -> None:
    """PVGRUB.md §6: an unknown "!feature" fails elf_xen_parse_features (libelf-dominfo.c:95-96) and so
    the note (line 226-230) and the probe: Error 9. An unknown optional feature is ignored."""
    check = inspect_kernel(build_elf(notes=linux_notes(64, FEATURES="!gnttab_map_avail_bits")), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-features-unsupported")
    assert inspect_kernel(build_elf(notes=linux_notes(64, FEATURES="frobnicate|!writable_page_tables")),
                          "x86_64").grub_error is None


@pytest.mark.parametrize(
    "override",
    [
        {"ENTRY": kernel_layout(64)[1] - 0x1000},  # entry below virt_kstart
        {"ENTRY": kernel_layout(64)[1] + 0x100000},  # entry above virt_kend
        {"VIRT_BASE": kernel_layout(64)[1] + 0x1000},  # VIRT_BASE above the kernel start
        {"VIRT_BASE": None},  # PADDR_OFFSET without VIRT_BASE
    ],
)
def test_address_sanity(override: dict[str, int | None]) -> None:
    """PVGRUB.md §6 Address sanity: virt_kstart <= entry <= virt_kend and VIRT_BASE <= virt_kstart
    (libelf-dominfo.c:537-544); ELF_PADDR_OFFSET needs VIRT_BASE (line 468-474)."""
    check = inspect_kernel(build_elf(notes=linux_notes(64, **override)), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-bad-addresses")


def test_p2m_base_inside_kernel_is_refused() -> None:
    """libelf-dominfo.c:546-552: INIT_P2M inside [virt_kstart, virt_kend) is out of bounds."""
    _, kstart, _ = kernel_layout(64)
    check = inspect_kernel(build_elf(notes=linux_notes(64, INIT_P2M=kstart + 0x10)), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-bad-addresses")


# --- architecture -------------------------------------------------------------------------------------------


def test_32bit_pae_kernel_on_i386_pv_grub() -> None:
    """PVGRUB.md §6 Arch: EM_386 with PAE_MODE "yes" is xen-3.0-x86_32p (libelf-dominfo.c:193-195,
    xg_dom_elfloader.c:77-79), what a 32-bit PV-GRUB boots (kexec.c:261-266)."""
    check = inspect_kernel(make_bzimage(elf32(), "gzip", kernel_version="4.19.0-synthetic"), "i386")
    assert check.grub_error is None, check.grub_error
    assert check.info is not None
    assert (check.info.machine, check.info.pae, check.info.guest_type) == ("i386", True, "xen-3.0-x86_32p")
    assert check.ok


@pytest.mark.parametrize("pae", ["bimodal", "yes,bimodal"])
def test_32bit_bimodal_kernel(pae: str) -> None:
    """A PAE_MODE note containing "bimodal" is xen-3.0-x86_32p when Xen offers it (xg_dom_elfloader.c
    :73-76), as EC2's 64-bit Xen does."""
    check = inspect_kernel(elf32(notes=linux_notes(32, PAE_MODE=pae)), "i386")
    assert check.grub_error is None and check.info is not None and check.info.pae


@pytest.mark.parametrize("pae", [None, "no", "yes[extended-cr3]"])
def test_32bit_non_pae_kernel(pae: str | None) -> None:
    """PVGRUB.md §6 Arch: without a PAE note "yes"/"bimodal" the guest type is xen-3.0-x86_32: Error 13
    on both PV-GRUBs (kexec.c:261-274). In a PAE_MODE note only the exact "yes" counts
    (libelf-dominfo.c:193-198); "yes[extended-cr3]" is a `__xen_guest` PAE value."""
    check = inspect_kernel(elf32(notes=linux_notes(32, PAE_MODE=pae)), "i386")
    assert err(check) == (Err.EXEC_FORMAT, "kernel-not-pae")
    assert check.info is not None and check.info.pae is False
    assert err(inspect_kernel(elf32(notes=linux_notes(32, PAE_MODE=pae)), "x86_64")) == (
        Err.EXEC_FORMAT, "kernel-arch-mismatch")


def test_xen_guest_pae_extended_cr3() -> None:
    """`__xen_guest` "PAE=yes[extended-cr3]" (libelf-dominfo.c:369-375) makes a PAE kernel."""
    base, _, entry = kernel_layout(32)
    guest = (f"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE={base:#x},ELF_PADDR_OFFSET=0,VIRT_ENTRY={entry:#x},"
             "PAE=yes[extended-cr3]")
    check = inspect_kernel(build_elf(bits=32, banner=OLD32, where="none", gnu_build_id=False, xen_guest=guest),
                           "i386")
    assert check.grub_error is None, check.grub_error


def test_64bit_pv_grub_refuses_32bit_kernel() -> None:
    """PVGRUB.md §6 Arch: "64-bit PV-GRUB cannot start a 32-bit kernel", Error 13 (kexec.c:268-274)."""
    check = inspect_kernel(make_bzimage(elf32(), "xz", kernel_version="4.19.0"), "x86_64")
    assert err(check) == (Err.EXEC_FORMAT, "kernel-arch-mismatch")
    assert check.grub_error is not None and "32-bit kernel" in check.grub_error.detail


def test_32bit_kernel_from_5_9_has_no_pv() -> None:
    """PVGRUB.md §6: 32-bit Linux >= 5.9 has no Xen PV support: flagged kernel-no-pv although PV-GRUB
    itself starts it."""
    check = inspect_kernel(make_bzimage(elf32(), "gzip", kernel_version="5.10.0-28-686-pae"), "i386")
    assert check.grub_error is None
    assert "kernel-no-pv" in codes(check)
    assert check.info is not None and not check.info.xen_pv and not check.ok


def test_pvh_only_kernel() -> None:
    """PVGRUB.md §6: a PVH-only kernel (PHYS32_ENTRY but no ENTRY) dies silently: flagged kernel-no-pv.
    With its physical e_entry inside the ELF's virtual range the address check passes
    (libelf-dominfo.c:513-519), so PV-GRUB itself reports nothing."""
    _, kstart, _ = kernel_layout(64)
    notes = linux_notes(64, ENTRY=None, PHYS32_ENTRY=0x1000100)
    check = inspect_kernel(build_elf(notes=notes, e_entry=kstart + 0x80), "x86_64")
    assert check.grub_error is None
    assert check.info is not None and check.info.pvh_only and not check.info.xen_pv
    assert "kernel-no-pv" in codes(check)


def test_pvh_only_kernel_with_physical_entry() -> None:
    """The usual PVH-only vmlinux: e_entry is physical, below virt_kstart: libxc's address check fails
    (libelf-dominfo.c:537-544), Error 9, reported as kernel-no-pv."""
    notes = linux_notes(64, ENTRY=None, PHYS32_ENTRY=0x1000100)
    check = inspect_kernel(build_elf(notes=notes, e_entry=0x1000000), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-no-pv")


def test_em_x86_64_constant_and_versions() -> None:
    assert EM_X86_64 == 62
    assert parse_version("6.1.0-56-amd64") == (6, 1)
    assert parse_version("5.10") == (5, 10)
    assert parse_version("garbage") is None
    assert parse_version(None) is None


def test_bad_arch_argument() -> None:
    with pytest.raises(ValueError, match="arch"):
        inspect_kernel(build_elf(), "arm64")


def test_xen_guest_default_paddr_offset_is_virt_base() -> None:
    """With `__xen_guest` and no ELF_PADDR_OFFSET, the offset defaults to VIRT_BASE (libelf-dominfo.c
    :498-503: old xenified kernels put virtual addresses in p_paddr); physical p_paddr then fails the
    address check, Error 9."""
    base, _, entry = kernel_layout(64)
    guest = f"GUEST_OS=linux,XEN_VER=xen-3.0,VIRT_BASE={base:#x},VIRT_ENTRY={entry:#x}"
    check = inspect_kernel(build_elf(where="none", gnu_build_id=False, xen_guest=guest), "x86_64")
    assert err(check) == (Err.BOOT_FAILURE, "kernel-bad-addresses")


def test_decompression_limit_gives_no_verdict() -> None:
    """Decompression is bounded (PVGRUB.md §6 asks only for headers and notes): when the notes lie beyond
    `limit`, the kernel is reported not inspected rather than given a wrong verdict; with enough room
    only the prefix up to the notes is needed, not the whole payload."""
    elf = build_elf()
    image = make_bzimage(elf, "xz")
    small = inspect_kernel(image, "x86_64", limit=4096)
    assert small.grub_error is None
    assert small.info is not None and not small.info.inspected
    assert "kernel-not-inspected" in codes(small)
    enough = inspect_kernel(image, "x86_64", limit=len(elf) - 100)
    assert enough.grub_error is None and enough.info is not None and enough.info.inspected
    assert inspect_kernel(gzip.compress(elf), "x86_64", limit=4096).info is not None


def test_payload_size_mismatch() -> None:
    """libxc decompresses into a buffer of the size the payload's trailer declares and fails when the
    stream gives another size (xg_dom_bzimageloader.c:112-118, 243-249): checked with full=True."""
    elf = build_elf()
    image = bytearray(make_bzimage(elf, "bzip2"))
    payload_end = 5 * 512 + 0x100 + struct.unpack_from("<I", image, 0x24C)[0]
    struct.pack_into("<I", image, payload_end - 4, len(elf) + 4096)
    check = inspect_kernel(bytes(image), "x86_64", full=True)
    assert err(check) == (Err.BOOT_FAILURE, "kernel-payload-corrupt")
