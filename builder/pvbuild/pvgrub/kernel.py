"""What PV-GRUB's loader (libxc's domain builder inside mini-os) makes of a kernel file (PVGRUB.md §6).

PV-GRUB's `boot` hands the kernel file to `kexec()` (stubdom/grub/kexec.c), which runs libxc's
`xc_dom_parse_image`: each registered loader's probe is tried in turn (ELF, bzImage, then the multiboot-like
"bin" format); a bzImage's payload is decompressed and handed to the ELF loader; the ELF loader parses the
Xen notes with libelf (xen/common/libelf/libelf-dominfo.c `elf_xen_parse`). Any failure there is GRUB
"Error 9: Unknown boot failure" (kexec.c:255-259). After a successful parse kexec compares the guest type
with its own build: a 64-bit PV-GRUB boots only "xen-3.0-x86_64", a 32-bit one only "xen-3.0-x86_32p";
anything else is "Error 13: Invalid or unsupported executable format" (kexec.c:261-274).

`inspect_kernel` models those steps on the bytes of a kernel file and returns a `KernelCheck`: what was
learned (`KernelInfo`), findings, and the GRUB error PV-GRUB would print (or None). It also flags what
PV-GRUB accepts but cannot boot: PVH-only kernels (a PHYS32_ENTRY note but no PV ENTRY) and 32-bit kernels
from Linux 5.9 on (which dropped 32-bit PV). Only as much of a bzImage payload is decompressed as the checks
need (ELF headers and the PT_NOTE segments), always bounded by `limit`.

Line numbers refer to the copies in shared/reference/pv-grub-src/xen (xen-project/xen `0724c68d85^`).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Literal

from pvbuild.pvgrub import decompress as dz
from pvbuild.pvgrub.errors import Err, GrubError
from pvbuild.pvgrub.findings import Finding, error, warning
from pvbuild.pvgrub.findings import info as note

Arch = Literal["x86_64", "i386"]

# What Amazon's PV-GRUB AKIs decompress (AWS UserProvidedKernels.md lists gzip, bzip2, lzo, xz): the
# default profile. lzma is a profile option; lz4 and zstd payloads get "unknown compression format"
# (PVGRUB.md §6; NixOS/nixpkgs #249357).
AWS_COMPRESSIONS: frozenset[str] = frozenset({"gzip", "bzip2", "xz", "lzo"})
# Everything the reference libxc tree can decode (xg_dom_bzimageloader.c:860-935).
LIBXC_COMPRESSIONS: frozenset[str] = frozenset({"gzip", "bzip2", "xz", "lzma", "lzo", "lz4", "zstd"})

DEFAULT_LIMIT = 256 * 1024 * 1024  # bound on decompressed kernel bytes examined
XC_DOM_DECOMPRESS_MAX = 1024 * 1024 * 1024  # xg_private.h; xc_dom_check_gzip skips larger gzip trailers
# Capabilities of the 64-bit Xen EC2's PV guests run on (`xl info` xen_caps); decides the guest type of a
# "bimodal" 32-bit kernel (xg_dom_elfloader.c:73-76).
XEN_CAPS = "xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"

EM_386 = 3
EM_ARM = 40
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
SHT_NOTE = 7
ELF_MAX_STRING_LENGTH = 4096  # libelf-private.h
ELF_MAX_TOTAL_NOTE_COUNT = 65536  # libelf-private.h
_M64 = (1 << 64) - 1
UNSET = -1  # UNSET_ADDR / UNSET_ADDR32

# Xen ELF note types (xen/include/public/elfnote.h) with the kind libelf-dominfo.c:117-137 parses them as.
NOTE_TYPES: dict[int, tuple[str, str]] = {
    1: ("ENTRY", "int"),
    2: ("HYPERCALL_PAGE", "int"),
    3: ("VIRT_BASE", "int"),
    4: ("PADDR_OFFSET", "int"),
    5: ("XEN_VERSION", "str"),
    6: ("GUEST_OS", "str"),
    7: ("GUEST_VERSION", "str"),
    8: ("LOADER", "str"),
    9: ("PAE_MODE", "str"),
    10: ("FEATURES", "str"),
    11: ("BSD_SYMTAB", "str"),
    12: ("HV_START_LOW", "int"),
    13: ("L1_MFN_VALID", "name"),
    14: ("SUSPEND_CANCEL", "int"),
    15: ("INIT_P2M", "int"),
    16: ("MOD_START_PFN", "int"),
    17: ("SUPPORTED_FEATURES", "int"),
    18: ("PHYS32_ENTRY", "int"),
    19: ("PHYS32_RELOC", "name"),
}
# libelf-dominfo.c:31-39 elf_xen_feature_names, in XENFEAT_* bit order.
XEN_FEATURES: tuple[str, ...] = (
    "writable_page_tables",
    "writable_descriptor_tables",
    "auto_translated_physmap",
    "supervisor_mode_kernel",
    "pae_pgdir_above_4gb",
    "hvm_callback_vector",
    "dom0",
)

PAE_NO, PAE_YES, PAE_EXTCR3, PAE_BIMODAL = 0, 1, 2, 3


@dataclass
class KernelInfo:
    """What is known about a kernel file after PV-GRUB's loaders looked at it.

    `format`: the loader that recognised it ("bzImage", "elf", "bin") or None. `compression`: the bzImage
    payload's compression ("none" for an ELF file). `file_compression`: "gzip" when the whole file was
    gzipped (GRUB gunzips it on read, PVGRUB.md §4). `machine`: from e_machine. `xen_pv`: libxc would load
    it as a PV guest (Xen-ELF notes accepted, not dom0-only, not PVH-only). `pae`: for i386 kernels, whether
    the guest type is "xen-3.0-x86_32p". `guest_type`: libxc's guest type. `xen_notes`: the Xen notes by
    name (or `__xen_guest` keys). `inspected`: False when the payload could not be decompressed here (lzo).
    """

    format: Literal["bzImage", "elf", "bin"] | None
    compression: str
    machine: Literal["x86_64", "i386"] | None = None
    xen_pv: bool = False
    pae: bool | None = None
    version: str | None = None
    xen_notes: dict[str, str | int] = field(default_factory=dict)
    pvh_only: bool = False
    file_compression: str = "none"
    e_machine: int | None = None
    elf_class: int | None = None
    guest_type: str | None = None
    notes_source: Literal["PT_NOTE", "SHT_NOTE", "__xen_guest"] | None = None
    features_required: frozenset[str] = frozenset()
    features_supported: frozenset[str] = frozenset()
    boot_protocol: int | None = None
    payload_size: int | None = None
    virt_base: int | None = None
    virt_entry: int | None = None
    virt_kstart: int | None = None
    virt_kend: int | None = None
    inspected: bool = True

    @property
    def version_tuple(self) -> tuple[int, int] | None:
        return parse_version(self.version)


@dataclass
class KernelCheck:
    """`inspect_kernel`'s answer: what was learned, findings, and the GRUB error PV-GRUB would print."""

    info: KernelInfo | None
    findings: list[Finding]
    grub_error: GrubError | None = None

    @property
    def ok(self) -> bool:
        """PV-GRUB loads it and nothing known stops the kernel (no GRUB error and no error finding)."""
        return self.grub_error is None and not any(f.severity == "error" for f in self.findings)


class _TooLarge(Exception):
    """More than `limit` decompressed bytes would be needed: the kernel is not inspected (no verdict)."""


class _Reject(Exception):
    """A loader's probe or parser failed: libxc's message, the finding code, and a sentence for humans."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.parms: _Parms | None = None
        self.elf: _Elf | None = None


def parse_version(version: str | None) -> tuple[int, int] | None:
    """(major, minor) from a kernel release string such as "6.1.0-56-amd64"."""
    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


# ---------------------------------------------------------------------------------------------------------
# libelf model


@dataclass
class _Parms:
    """struct elf_dom_parms, the part the checks use (libelf-dominfo.c:569-580 initial values)."""

    virt_base: int = UNSET
    virt_entry: int = UNSET
    virt_hypercall: int = UNSET
    p2m_base: int = UNSET
    elf_paddr_offset: int = UNSET
    phys_entry: int = UNSET
    pae: int = PAE_NO
    bsd_symtab: bool = False
    loader: str = ""
    guest_os: str = ""
    xen_ver: str = ""
    note_start_valid: bool = False  # parms->elf_note_start (a pointer: valid once any note area was walked)
    guest_info_valid: bool = False  # parms->guest_info
    supported: set[int] = field(default_factory=set)
    required: set[int] = field(default_factory=set)
    notes: dict[str, str | int] = field(default_factory=dict)
    source: Literal["PT_NOTE", "SHT_NOTE", "__xen_guest"] | None = None
    virt_kstart: int = 0
    virt_kend: int = 0


def _cstr(s: str) -> str:
    """safe_strcpy into the 16-byte fields of elf_dom_parms: at most 15 characters survive."""
    return s[:15]


class _Elf:
    """An ELF image as libelf sees it: `img` holds the first bytes (maybe a prefix), `size` the full size.

    Reads outside [0, size) return 0, as elf_access_unsigned does after a failed elf_access_ok
    (libelf-tools.c:89-100).
    """

    def __init__(self, img: bytes, size: int) -> None:
        self.img = img
        self.size = size
        self.is64 = img[4] == 2  # elf_64bit: EI_CLASS == ELFCLASS64, anything else reads as 32-bit
        self.endian = "<" if img[5] == 1 else ">"  # elf_swap: EI_DATA other than native (LSB) swaps

    def ok(self, off: int, n: int = 1) -> bool:
        return off >= 0 and off + n <= self.size and off + n <= len(self.img)

    def u(self, off: int, n: int) -> int:
        if not self.ok(off, n):
            return 0
        fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[n]
        return int(struct.unpack_from(self.endian + fmt, self.img, off)[0])

    def strval(self, off: int) -> str | None:
        """elf_strval (libelf-tools.c:207-223): a NUL-terminated string inside the image, or None."""
        if off < 0:
            return None
        end = min(len(self.img), self.size)
        limit = min(end, off + ELF_MAX_STRING_LENGTH + 1)
        nul = self.img.find(b"\0", off, limit)
        if nul < 0:
            return None
        return self.img[off:nul].decode("latin-1")

    # ehdr fields
    @property
    def e_machine(self) -> int:
        return self.u(18, 2)

    @property
    def e_entry(self) -> int:
        return self.u(24, 8) if self.is64 else self.u(24, 4)

    @property
    def e_phoff(self) -> int:
        return self.u(32, 8) if self.is64 else self.u(28, 4)

    @property
    def e_shoff(self) -> int:
        return self.u(40, 8) if self.is64 else self.u(32, 4)

    @property
    def e_phentsize(self) -> int:
        return self.u(54, 2) if self.is64 else self.u(42, 2)

    @property
    def e_phnum(self) -> int:
        return self.u(56, 2) if self.is64 else self.u(44, 2)

    @property
    def e_shentsize(self) -> int:
        return self.u(58, 2) if self.is64 else self.u(46, 2)

    @property
    def e_shnum_raw(self) -> int:
        return self.u(60, 2) if self.is64 else self.u(48, 2)

    @property
    def e_shstrndx(self) -> int:
        return self.u(62, 2) if self.is64 else self.u(50, 2)

    def shdr_count(self) -> int:
        """elf_shdr_count (libelf-tools.c:130-143): clamped to size / sizeof(Elf32_Shdr)."""
        return min(self.e_shnum_raw, self.size // 40)

    def phdr(self, i: int) -> int:
        return (self.e_phoff + self.e_phentsize * i) & _M64

    def shdr(self, i: int) -> int:
        return (self.e_shoff + self.e_shentsize * i) & _M64

    def p_type(self, ph: int) -> int:
        return self.u(ph, 4)

    def p_flags(self, ph: int) -> int:
        return self.u(ph + 4, 4) if self.is64 else self.u(ph + 24, 4)

    def p_offset(self, ph: int) -> int:
        return self.u(ph + 8, 8) if self.is64 else self.u(ph + 4, 4)

    def p_paddr(self, ph: int) -> int:
        return self.u(ph + 24, 8) if self.is64 else self.u(ph + 12, 4)

    def p_filesz(self, ph: int) -> int:
        return self.u(ph + 32, 8) if self.is64 else self.u(ph + 16, 4)

    def p_memsz(self, ph: int) -> int:
        return self.u(ph + 40, 8) if self.is64 else self.u(ph + 20, 4)

    def sh_name(self, sh: int) -> int:
        return self.u(sh, 4)

    def sh_type(self, sh: int) -> int:
        return self.u(sh + 4, 4)

    def sh_offset(self, sh: int) -> int:
        return self.u(sh + 24, 8) if self.is64 else self.u(sh + 16, 4)

    def sh_size(self, sh: int) -> int:
        return self.u(sh + 32, 8) if self.is64 else self.u(sh + 20, 4)


def _elf_init(elf: _Elf) -> None:
    """elf_init's sanity checks (libelf-loader.c:55-73): program and section header tables inside the image."""
    end = (elf.e_phoff + elf.e_phentsize * elf.e_phnum) & _M64
    if end > elf.size:
        raise _Reject("kernel-elf-corrupt", f"ELF: phdr overflow (off {end:#x} > size {elf.size:#x})")
    end = (elf.e_shoff + elf.e_shentsize * elf.shdr_count()) & _M64
    if end > elf.size:
        raise _Reject("kernel-elf-corrupt", f"ELF: shdr overflow (off {end:#x} > size {elf.size:#x})")


def _elf_parse_binary(elf: _Elf) -> tuple[int, int]:
    """elf_parse_binary (libelf-loader.c:467-500): lowest p_paddr and highest p_paddr+p_memsz of PT_LOADs."""
    low, high = _M64, 0
    for i in range(elf.e_phnum):
        ph = elf.phdr(i)
        if not elf.ok(ph):
            break
        if elf.p_type(ph) != PT_LOAD or not (elf.p_flags(ph) & 7):
            continue
        paddr = elf.p_paddr(ph)
        low = min(low, paddr)
        high = max(high, (paddr + elf.p_memsz(ph)) & _M64)
    return low, high


def _parse_features(features: str, parms: _Parms, *, required: bool) -> bool:
    """elf_xen_parse_features (libelf-dominfo.c:43-100): False for an unknown required ("!x") feature."""
    pos = 0
    while pos < len(features):
        feat = ""
        length = 0
        while True:
            if length >= 63 or pos + length >= len(features):
                break
            c = features[pos + length]
            if c == "|":
                length += 1
                break
            feat += c
            length += 1
        pos += length
        if feat.startswith("!"):
            if feat[1:] in XEN_FEATURES:
                bit = XEN_FEATURES.index(feat[1:])
                parms.supported.add(bit)
                if required:
                    parms.required.add(bit)
            elif required:
                return False
        elif feat in XEN_FEATURES:
            parms.supported.add(XEN_FEATURES.index(feat))
    return True


def _parse_note(elf: _Elf, parms: _Parms, note: int) -> bool:
    """elf_xen_parse_note (libelf-dominfo.c:105-268). False when FEATURES names an unknown "!feature"."""
    ntype = elf.u(note + 8, 4)
    descsz = elf.u(note + 4, 4)
    desc = note + 12 + ((elf.u(note, 4) + 3) & ~3)
    known = NOTE_TYPES.get(ntype)
    if known is None:
        return True
    name, kind = known
    s: str | None = None
    val = 0
    if kind == "str":
        s = elf.strval(desc)
        if s is None:
            return True
        parms.notes[name] = s
    elif kind == "int":
        val = elf.u(desc, descsz) if descsz in (1, 2, 4, 8) else 0
        parms.notes[name] = val
    else:
        parms.notes[name] = elf.img[desc : desc + min(descsz, 64)].hex() if elf.ok(desc, descsz) else ""
    if name == "LOADER" and s is not None:
        parms.loader = _cstr(s)
    elif name == "GUEST_OS" and s is not None:
        parms.guest_os = _cstr(s)
    elif name == "XEN_VERSION" and s is not None:
        parms.xen_ver = _cstr(s)
    elif name == "PAE_MODE" and s is not None:
        if s == "yes":
            parms.pae = PAE_EXTCR3
        if "bimodal" in s:
            parms.pae = PAE_BIMODAL
    elif name == "BSD_SYMTAB" and s == "yes":
        parms.bsd_symtab = True
    elif name == "VIRT_BASE":
        parms.virt_base = val
    elif name == "ENTRY":
        parms.virt_entry = val
    elif name == "INIT_P2M":
        parms.p2m_base = val
    elif name == "PADDR_OFFSET":
        parms.elf_paddr_offset = val
    elif name == "HYPERCALL_PAGE":
        parms.virt_hypercall = val
    elif name == "FEATURES" and s is not None:
        if not _parse_features(s, parms, required=True):
            return False
    elif name == "PHYS32_ENTRY":
        parms.phys_entry = val & 0xFFFFFFFF
    return True


def _parse_notes(elf: _Elf, parms: _Parms, start: int, end: int, count: list[int]) -> int | None:
    """elf_xen_parse_notes (libelf-dominfo.c:272-308): number of "Xen" notes, None if one is invalid."""
    parms.note_start_valid = True
    xen = 0
    note = start
    while note < end:
        if count[0] >= ELF_MAX_TOTAL_NOTE_COUNT:
            break
        count[0] += 1
        nm = elf.strval(note + 12) if elf.ok(note + 12) else None
        if nm == "Xen":
            if not _parse_note(elf, parms, note):
                return None
            xen += 1
        namesz = (elf.u(note, 4) + 3) & ~3
        descsz = (elf.u(note + 4, 4) + 3) & ~3
        nxt = note + 12 + namesz + descsz
        if nxt <= note or not elf.ok(note):
            break
        note = nxt
    return xen


def _parse_guest_info(elf: _Elf, parms: _Parms, h: int) -> None:
    """elf_xen_parse_guest_info (libelf-dominfo.c:313-404): the legacy "KEY=VAL,KEY=VAL" string."""

    def star(p: int) -> int:
        return elf.u(p, 1)

    steps = 0
    while star(h) and steps < 1 << 20:
        steps += 1
        name = ""
        value = ""
        length = 0
        while True:
            if length >= 31 or star(h) == 0:
                break
            c = star(h)
            if c == ord(","):
                h += 1
                break
            if c == ord("="):
                h += 1
                vlen = 0
                while True:
                    if vlen >= 127 or star(h) == 0:
                        break
                    if star(h) == ord(","):
                        h += 1
                        break
                    value += chr(star(h))
                    vlen += 1
                    h += 1
                break
            name += chr(c)
            length += 1
            h += 1
        parms.notes[name] = value
        if name == "LOADER":
            parms.loader = _cstr(value)
        elif name == "GUEST_OS":
            parms.guest_os = _cstr(value)
        elif name == "XEN_VER":
            parms.xen_ver = _cstr(value)
        elif name == "PAE":
            if value == "yes[extended-cr3]":
                parms.pae = PAE_EXTCR3
            elif value.startswith("yes"):
                parms.pae = PAE_YES
        elif name == "BSD_SYMTAB":
            parms.bsd_symtab = True
        elif name in ("VIRT_BASE", "VIRT_ENTRY", "ELF_PADDR_OFFSET", "HYPERCALL_PAGE"):
            num = _strtoull(value)
            if name == "VIRT_BASE":
                parms.virt_base = num
            elif name == "VIRT_ENTRY":
                parms.virt_entry = num
            elif name == "ELF_PADDR_OFFSET":
                parms.elf_paddr_offset = num
            else:
                parms.virt_hypercall = (num << 12) & _M64
        elif name == "FEATURES" and not _parse_features(value, parms, required=True):
            # The return value is ignored by elf_xen_parse (libelf-dominfo.c:654): parsing just stops.
            break
    if UNSET not in (parms.virt_base, parms.virt_hypercall):
        parms.virt_hypercall = (parms.virt_hypercall + parms.virt_base) & _M64


def _strtoull(s: str) -> int:
    """strtoull(s, NULL, 0): optional blanks and sign, 0x hex / 0 octal / decimal prefix; 0 if none."""
    m = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", s)
    if not m:
        return 0
    txt = m.group(2)
    if txt[:2].lower() == "0x":
        num = int(txt, 16)
    elif txt.startswith("0"):
        num = int(txt, 8) if len(txt) > 1 else 0
    else:
        num = int(txt)
    num = min(num, _M64)
    return (-num) & _M64 if m.group(1) == "-" else num


def _xen_parse(elf: _Elf) -> _Parms:
    """elf_xen_parse for a PV guest (libelf-dominfo.c:560-663), with note_check and addr_calc_check."""
    parms = _Parms()
    count = [0]
    xen_notes = 0
    # PT_NOTE program headers (libelf-dominfo.c:583-608).
    for i in range(elf.e_phnum):
        ph = elf.phdr(i)
        if not elf.ok(ph):
            break
        if elf.p_type(ph) != PT_NOTE or elf.p_offset(ph) == 0:
            continue
        start = elf.p_offset(ph)
        more = _parse_notes(elf, parms, start, start + elf.p_filesz(ph), count)
        if more is None:
            raise _Reject("kernel-features-unsupported",
                          "ELF note FEATURES requires a feature this Xen does not know")
        xen_notes += more
    if xen_notes:
        parms.source = "PT_NOTE"
    # SHT_NOTE sections when no note segment had Xen notes (libelf-dominfo.c:610-641).
    if xen_notes == 0:
        for i in range(1, elf.shdr_count()):
            sh = elf.shdr(i)
            if not elf.ok(sh):
                break
            if elf.sh_type(sh) != SHT_NOTE:
                continue
            start = elf.sh_offset(sh)
            more = _parse_notes(elf, parms, start, start + elf.sh_size(sh), count)
            if more is None:
                raise _Reject("kernel-features-unsupported",
                              "ELF note FEATURES requires a feature this Xen does not know")
            xen_notes += more
        if xen_notes:
            parms.source = "SHT_NOTE"
    # The legacy __xen_guest section (libelf-dominfo.c:643-656).
    if xen_notes == 0:
        strtab_ok = elf.e_shstrndx < elf.shdr_count()
        strtab = elf.sh_offset(elf.shdr(elf.e_shstrndx)) if strtab_ok else None
        for i in range(1, elf.shdr_count()):
            sh = elf.shdr(i)
            if not elf.ok(sh):
                break
            sname = "unknown" if strtab is None else elf.strval(strtab + elf.sh_name(sh))
            if sname == "__xen_guest":
                parms.guest_info_valid = True
                parms.note_start_valid = False
                parms.source = "__xen_guest"
                _parse_guest_info(elf, parms, elf.sh_offset(sh))
                break
    try:
        _note_check(elf, parms)
        _addr_calc_check(elf, parms)
    except _Reject as r:
        r.parms, r.elf = parms, elf  # what was learned before the refusal, for the report
        raise
    return parms


def _note_check(elf: _Elf, parms: _Parms) -> None:
    """elf_xen_note_check (libelf-dominfo.c:409-461) for a PV guest."""
    machine = elf.e_machine
    if not parms.note_start_valid and not parms.guest_info_valid:
        if machine in (EM_386, EM_X86_64):
            raise _Reject("kernel-not-xen",
                          "ERROR: Not a Xen-ELF image: No ELF notes or '__xen_guest' section found")
        return
    if machine == EM_ARM:
        return
    if not parms.loader.startswith("generic") and not parms.guest_os.startswith("linux"):
        raise _Reject("kernel-not-xen",
                      "ERROR: Will only load images built for the generic loader or Linux images "
                      f"(Not '{parms.loader}' and '{parms.guest_os}') or with PHYS32_ENTRY set")
    if not parms.xen_ver.startswith("xen-3.0"):
        raise _Reject("kernel-not-xen", f"ERROR: Xen will only load images built for Xen v3.0 "
                      f"(Not '{parms.xen_ver}')")


def _addr_calc_check(elf: _Elf, parms: _Parms) -> None:
    """elf_xen_addr_calc_check (libelf-dominfo.c:463-555) for a PV guest (BSD symtab space not added)."""
    if parms.elf_paddr_offset != UNSET and parms.virt_base == UNSET:
        raise _Reject("kernel-bad-addresses", "ERROR: ELF_PADDR_OFFSET set, VIRT_BASE unset")
    if parms.virt_base == UNSET:
        parms.virt_base = 0
    if parms.elf_paddr_offset == UNSET:
        parms.elf_paddr_offset = 0 if parms.note_start_valid else parms.virt_base
    pstart, pend = _elf_parse_binary(elf)
    virt_offset = (parms.virt_base - parms.elf_paddr_offset) & _M64
    parms.virt_kstart = (pstart + virt_offset) & _M64
    parms.virt_kend = (pend + virt_offset) & _M64
    entry = parms.virt_entry if parms.virt_entry != UNSET else elf.e_entry
    if (parms.virt_kstart > parms.virt_kend or entry < parms.virt_kstart or entry > parms.virt_kend
            or parms.virt_base > parms.virt_kstart):
        raise _Reject("kernel-bad-addresses",
                      "ERROR: ELF start or entries are out of bounds "
                      f"(virt_base {parms.virt_base:#x}, kernel {parms.virt_kstart:#x}-{parms.virt_kend:#x}, "
                      f"entry {entry:#x})")
    if parms.p2m_base != UNSET and parms.virt_kstart <= parms.p2m_base < parms.virt_kend:
        raise _Reject("kernel-bad-addresses", "ERROR: P->M table base is out of bounds")


def _guest_type(elf: _Elf, parms: _Parms) -> str:
    """xc_dom_guest_type (xg_dom_elfloader.c:52-92) for a PV container."""
    machine = elf.e_machine
    if machine == EM_386:
        if parms.pae == PAE_BIMODAL:
            return "xen-3.0-x86_32p" if "xen-3.0-x86_32p" in XEN_CAPS else "xen-3.0-x86_32"
        if parms.pae in (PAE_EXTCR3, PAE_YES):
            return "xen-3.0-x86_32p"
        return "xen-3.0-x86_32"
    if machine == EM_X86_64:
        return "xen-3.0-x86_64"
    raise _Reject("kernel-arch-unknown", f"xc_dom_guest_type: unknown image type {machine}")


# ---------------------------------------------------------------------------------------------------------
# loaders


@dataclass
class _Source:
    """The ELF bytes a loader works on: `img` (maybe a prefix), `size` (full size), `more` to get more."""

    img: bytes
    size: int
    payload: bytes | None = None
    fmt: str = "none"
    limit: int = DEFAULT_LIMIT
    complete: bool = True

    def ensure(self, need: int, *, required: bool = True) -> None:
        """Make `img` hold at least min(need, size) bytes (decompressing more of the payload). Needing more
        than `limit` is _TooLarge, unless not `required` (a read-ahead), which is clipped to the limit."""
        need = min(need, self.size)
        if not required:
            need = min(need, self.limit)
        if len(self.img) >= need or self.payload is None or self.complete:
            return
        if need > self.limit:
            raise _TooLarge(f"the checks need {need} decompressed bytes, more than the limit of {self.limit}")
        try:
            m = dz.decompress_member(self.payload, self.fmt, self.limit, stop_after=min(max(need, 1 << 16), self.limit))
        except dz.OutputLimitExceeded as e:
            raise _TooLarge(f"the {self.fmt} payload decompresses to more than {self.limit} bytes") from e
        except dz.DecompressError as e:
            raise _Reject("kernel-payload-corrupt", f"unable to {self.fmt} decompress kernel: {e}") from e
        self.img = m.data
        self.complete = m.complete
        if m.complete and len(self.img) < self.size - (16 if self.fmt == "gzip" else 0):
            raise _Reject("kernel-payload-corrupt",
                          f"{self.fmt}: got {len(self.img):#x} bytes instead of {self.size:#x}")

    def ensure_all(self) -> None:
        self.ensure(self.size)


def _elf_probe_and_parse(src: _Source, info: KernelInfo) -> _Parms:
    """xc_dom_probe_elf_kernel + xc_dom_parse_elf_kernel (xg_dom_elfloader.c:97-201)."""
    src.ensure(1 << 16, required=False)
    if src.size < 52 or src.img[:4] != b"\x7fELF":  # elf_is_elfbinary: sizeof(Elf32_Ehdr), IS_ELF
        raise _Reject("kernel-format-unknown", "xc_dom_probe_elf_kernel: kernel is not an ELF image")
    elf = _Elf(src.img, src.size)
    info.elf_class = 64 if elf.is64 else 32
    info.e_machine = elf.e_machine
    info.machine = "x86_64" if elf.e_machine == EM_X86_64 else "i386" if elf.e_machine == EM_386 else None
    # Headers and note segments are what elf_xen_parse reads first: decompress up to their end.
    src.ensure((elf.e_phoff + elf.e_phentsize * elf.e_phnum) & _M64)
    elf = _Elf(src.img, src.size)
    need = 0
    for i in range(min(elf.e_phnum, 65535)):
        ph = elf.phdr(i)
        if elf.ok(ph) and elf.p_type(ph) == PT_NOTE and elf.p_offset(ph):
            need = max(need, elf.p_offset(ph) + elf.p_filesz(ph))
    if need:
        src.ensure(need)
        elf = _Elf(src.img, src.size)
    _elf_init(elf)
    try:
        try:
            parms = _xen_parse(elf)
            decided = parms.source == "PT_NOTE"
        except _Reject:
            if src.complete:
                raise
            decided = False
        if not decided and not src.complete:
            # Not decided by the note segments: section headers and sections need the whole image.
            src.ensure_all()
            elf = _Elf(src.img, src.size)
            _elf_init(elf)
            parms = _xen_parse(elf)
    except _Reject as r:
        if r.parms is not None and r.elf is not None:
            _fill_from_parms(info, r.parms, r.elf)
            if info.pvh_only and r.code == "kernel-bad-addresses":
                # libxc falls back to e_entry, a physical address, when there is no ENTRY note.
                r.code = "kernel-no-pv"
                r.detail += (": the kernel has a PVH entry point (PHYS32_ENTRY) but no PV ENTRY note "
                             "(built without CONFIG_XEN_PV)")
        raise
    _fill_from_parms(info, parms, elf)
    # xc_dom_parse_elf_kernel (xg_dom_elfloader.c:176-182): dom0-only kernels are refused.
    if XEN_FEATURES.index("dom0") in parms.required:
        raise _Reject("kernel-dom0-only",
                      "xc_dom_parse_elf_kernel: Kernel does not support unprivileged (DomU) operation")
    info.guest_type = _guest_type(elf, parms)
    return parms


def _fill_from_parms(info: KernelInfo, parms: _Parms, elf: _Elf) -> None:
    info.xen_notes = dict(parms.notes)
    info.notes_source = parms.source
    info.features_required = frozenset(XEN_FEATURES[b] for b in parms.required)
    info.features_supported = frozenset(XEN_FEATURES[b] for b in parms.supported)
    info.virt_base = parms.virt_base
    info.virt_entry = parms.virt_entry if parms.virt_entry != UNSET else elf.e_entry
    info.virt_kstart = parms.virt_kstart
    info.virt_kend = parms.virt_kend
    # PVH-only: a PVH entry point but no PV one (PVGRUB.md §6). libxc then starts the PV guest at e_entry,
    # a physical address, with no PV entry code there.
    has_pv_entry = "ENTRY" in parms.notes or "VIRT_ENTRY" in parms.notes
    info.pvh_only = parms.phys_entry != UNSET and not has_pv_entry
    if elf.e_machine == EM_386:
        info.pae = parms.pae in (PAE_EXTCR3, PAE_YES) or (
            parms.pae == PAE_BIMODAL and "xen-3.0-x86_32p" in XEN_CAPS)


# The payload magics in xc_dom_probe_bzimage_kernel's order, with the lengths check_magic compares
# (xg_dom_bzimageloader.c:860-935; "\x89LZO" is a 5-byte C string literal, so its NUL counts).
_BZ_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x5d\x00", "lzma"),
    (b"\x89LZO\x00", "lzo"),
    (b"\x02\x21", "lz4"),
)


def _bzimage_probe(data: bytes, info: KernelInfo, compressions: frozenset[str], limit: int,
                   full: bool) -> _Source | None:
    """xc_dom_probe_bzimage_kernel (xg_dom_bzimageloader.c:803-944) up to handing the payload to the ELF
    loader. Returns None for an lzo payload, which cannot be decompressed here."""
    if len(data) < 0x250:
        raise _Reject("kernel-format-unknown", "xc_dom_probe_bzimage_kernel: kernel image too small")
    if data[0x202:0x206] != b"HdrS":
        raise _Reject("kernel-format-unknown", "xc_dom_probe_bzimage_kernel: kernel is not a bzImage")
    info.format = "bzImage"
    version = struct.unpack_from("<H", data, 0x206)[0]
    info.boot_protocol = version
    info.version = _bzimage_version(data)
    if version < 0x0208:
        raise _Reject("kernel-format-unknown",
                      f"xc_dom_probe_bzimage_kernel: boot protocol too old ({version:04x}); "
                      "a bzImage needs boot protocol 2.08 (Linux 2.6.26) to carry an ELF payload")
    setup_sects = data[0x1F1]  # used as is: 0 is NOT read as 4 (xg_dom_bzimageloader.c:840)
    offset = (setup_sects + 1) * 512 + struct.unpack_from("<I", data, 0x248)[0]
    length = struct.unpack_from("<I", data, 0x24C)[0]
    if offset >= len(data):
        raise _Reject("kernel-format-unknown", "xc_dom_probe_bzimage_kernel: payload offset overflow")
    if offset + length > len(data):
        raise _Reject("kernel-format-unknown", "xc_dom_probe_bzimage_kernel: payload length overflow")
    payload = data[offset : offset + length]
    fmt = "unknown"
    for magic, name in _BZ_MAGICS:
        if len(magic) <= len(payload) and payload.startswith(magic):
            fmt = name
            break
    info.compression = fmt if fmt != "unknown" else dz.detect(payload)
    if fmt == "unknown" or fmt not in compressions:
        what = (f"{fmt} payloads are not supported by this PV-GRUB" if fmt != "unknown"
                else f"payload starts with {payload[:4].hex(' ') or 'nothing'}")
        raise _Reject("kernel-compression-unsupported",
                      f"xc_dom_probe_bzimage_kernel: unknown compression format ({what})")
    if len(payload) < 8:
        raise _Reject("kernel-payload-corrupt", f"{fmt}: insufficient input data")
    declared = struct.unpack_from("<I", payload, len(payload) - 4)[0]
    if fmt == "gzip":
        # xc_dom_try_gunzip/xc_dom_check_gzip: an insane size skips decompression, the ELF probe then fails.
        if declared > XC_DOM_DECOMPRESS_MAX:
            raise _Reject("kernel-payload-corrupt",
                          f"gzip payload declares {declared} bytes (> 1 GiB): left compressed, not an ELF")
        declared += 16
    info.payload_size = declared
    if fmt == "lzo":
        return None
    # lz4 legacy and the others: the trailing 4-byte size is not part of the stream (Xen passes size - 4).
    stream = payload if fmt == "gzip" else payload[:-4]
    if fmt == "lz4" and dz.lz4_container(stream) != "legacy":
        raise _Reject("kernel-payload-corrupt", "LZ4: invalid header")
    src = _Source(b"", declared, stream, fmt, limit, complete=False)
    if full:
        src.ensure_all()
    return src


def _bzimage_version(data: bytes) -> str | None:
    """The kernel_version string: header field at 0x20E, a pointer less 0x200 (boot protocol >= 2.00)."""
    ptr = struct.unpack_from("<H", data, 0x20E)[0]
    if not ptr:
        return None
    start = ptr + 0x200
    end = data.find(b"\0", start, start + 256)
    if start >= len(data) or end < 0:
        return None
    text = data[start:end].decode("latin-1").strip()
    return text.split()[0] if text else None


_BIN_MAGIC = 0x336EC578


def _bin_probe(data: bytes, info: KernelInfo) -> None:
    """xc_dom_probe_bin_kernel / xc_dom_parse_bin_kernel (xg_dom_binloader.c find_table, flags, PAE)."""
    if len(data) < 32:
        raise _Reject("kernel-format-unknown", "xc_dom_probe_bin_kernel: no xen_bin_image table")
    end = 8192 if len(data) > 8192 + 32 else len(data) - 32
    for off in range(0, end, 4):
        magic, flags, csum = struct.unpack_from("<III", data, off)
        if magic == _BIN_MAGIC and (magic + flags + csum) & 0xFFFFFFFF == 0:
            break
    else:
        raise _Reject("kernel-format-unknown", "xc_dom_probe_bin_kernel: no xen_bin_image table")
    info.format = "bin"
    info.compression = "none"
    mask = 0xFFFFFFFF & ~0x1 & ~(3 << 14)
    if flags & mask != 0x00010000:
        raise _Reject("kernel-format-unknown", "xc_dom_parse_bin_kernel: xen_bin_image_table flags")
    pae = (flags >> 14) & 3
    info.guest_type = {0: "xen-3.0-x86_32", 1: "xen-3.0-x86_32p", 2: "xen-3.0-x86_64",
                       3: "xen-3.0-x86_32p" if "xen-3.0-x86_32p" in XEN_CAPS else "xen-3.0-x86_32"}[pae]
    info.machine = "x86_64" if pae == 2 else "i386"
    info.pae = None if pae == 2 else info.guest_type == "xen-3.0-x86_32p"


_LINUX_VERSION = re.compile(rb"Linux version (\d+\.\d+[^\s\x00]*)")


def inspect_kernel(
    data: bytes,
    arch: str,
    compressions: frozenset[str] = AWS_COMPRESSIONS,
    *,
    limit: int = DEFAULT_LIMIT,
    full: bool = False,
) -> KernelCheck:
    """What PV-GRUB (`arch` "x86_64" or "i386") does with the kernel file `data` (PVGRUB.md §6).

    `compressions`: the bzImage payload compressions the profile's libxc decodes (AWS_COMPRESSIONS).
    `limit`: most decompressed bytes examined. `full`: decompress the whole payload (also checks that it
    decompresses to the size its trailer declares, as libxc does); by default only up to the notes.
    Never raises for bad input: the GRUB error is in `KernelCheck.grub_error`.
    """
    if arch not in ("x86_64", "i386"):
        raise ValueError(f"arch must be 'x86_64' or 'i386', not {arch!r}")
    findings: list[Finding] = []
    file_compression = "none"
    if data[:2] == dz.GZIP_MAGIC:
        # GRUB gunzips every file starting with 1F 8B while reading it (PVGRUB.md §4).
        try:
            data = dz.decompress(data, "gzip", limit)
        except dz.OutputLimitExceeded as e:
            return _not_inspected(KernelInfo(None, "none", file_compression="gzip"), findings, str(e))
        except dz.DecompressError as e:
            err = GrubError(Err.BAD_GZIP_DATA, f"kernel file: {e}", "kernel-gzip-corrupt")
            findings.append(error("kernel-gzip-corrupt", f"GRUB cannot gunzip the kernel file: {e}"))
            return KernelCheck(KernelInfo(None, "none", file_compression="gzip"), findings, err)
        file_compression = "gzip"
        findings.append(note("kernel-file-gzipped", "the kernel file is gzipped; GRUB decompresses it on read"))

    try:
        return _run_loaders(data, arch, compressions, limit, full, file_compression, findings)
    except _TooLarge as e:
        return _not_inspected(KernelInfo(None, "none", file_compression=file_compression), findings, str(e))


def _not_inspected(kinfo: KernelInfo, findings: list[Finding], why: str) -> KernelCheck:
    kinfo.inspected = False
    findings.append(warning("kernel-not-inspected", f"the kernel was not inspected: {why}"))
    return KernelCheck(kinfo, findings, None)


def _run_loaders(data: bytes, arch: str, compressions: frozenset[str], limit: int, full: bool,
                 file_compression: str, findings: list[Finding]) -> KernelCheck:
    # Loader order (PVGRUB.md §6): ELF, bzImage, bin; the first whose probe succeeds parses the image
    # (xc_dom_find_loader). When all fail, the reason reported is the one of the format the file has.
    rejects: dict[str, _Reject] = {}
    elf_info = KernelInfo("elf", "none", file_compression=file_compression)
    try:
        parms = _elf_probe_and_parse(_Source(data, len(data)), elf_info)
        m = _LINUX_VERSION.search(data)
        elf_info.version = m.group(1).decode("latin-1") if m else None
        return _finish(elf_info, findings, arch)
    except _Reject as r:
        rejects["elf"] = r
    bz_info = KernelInfo(None, "none", file_compression=file_compression)
    try:
        src = _bzimage_probe(data, bz_info, compressions, limit, full)
        if src is None:
            bz_info.inspected = False
            findings.append(warning(
                "kernel-not-inspected",
                f"the bzImage payload is {bz_info.compression}-compressed, which this tool cannot "
                "decompress: the Xen notes and architecture were not checked"))
            return KernelCheck(bz_info, findings, None)
        src.ensure(1 << 16, required=False)
        if src.img[:4] != b"\x7fELF":
            raise _Reject("kernel-payload-not-elf",
                          "xc_dom_probe_elf_kernel: kernel is not an ELF image (bzImage payload)")
        parms = _elf_probe_and_parse(src, bz_info)
        if full:
            src.ensure_all()
        del parms
        return _finish(bz_info, findings, arch)
    except _Reject as r:
        rejects["bzImage"] = r
    bin_info = KernelInfo(None, "none", file_compression=file_compression)
    try:
        _bin_probe(data, bin_info)
        return _finish(bin_info, findings, arch)
    except _Reject as r:
        rejects["bin"] = r
    if data[:4] == b"\x7fELF":
        kinfo: KernelInfo | None = elf_info
        chosen = rejects["elf"]
    elif bz_info.format == "bzImage":
        kinfo, chosen = bz_info, rejects["bzImage"]
    elif bin_info.format == "bin":
        kinfo, chosen = bin_info, rejects["bin"]
    else:
        kinfo = None
        chosen = _Reject("kernel-format-unknown",
                         "xc_dom_find_loader: no loader found (not an ELF, bzImage or Xen binary image)")
    findings.append(error(chosen.code, chosen.detail))
    if kinfo is not None:
        _linux_findings(kinfo, findings, arch)
    return KernelCheck(kinfo, findings, GrubError(Err.BOOT_FAILURE, chosen.detail, chosen.code))


def _finish(kinfo: KernelInfo, findings: list[Finding], arch: str) -> KernelCheck:
    """The checks after a successful parse: kexec's guest-type test, then what stops the kernel itself."""
    kinfo.xen_pv = not kinfo.pvh_only
    want = "xen-3.0-x86_64" if arch == "x86_64" else "xen-3.0-x86_32p"
    grub_error: GrubError | None = None
    if kinfo.guest_type != want:
        # kexec.c:261-274: "can only boot x86 32 PAE kernels" / "can only boot x86 64 kernels".
        if arch == "x86_64":
            code = "kernel-arch-mismatch"
            detail = (f"64-bit PV-GRUB cannot start a 32-bit kernel (can only boot x86 64 kernels, "
                      f"not {kinfo.guest_type})")
        elif kinfo.guest_type == "xen-3.0-x86_32":
            code = "kernel-not-pae"
            detail = "32-bit PV-GRUB can only boot x86 32 PAE kernels, not xen-3.0-x86_32 (no PAE note)"
        else:
            code = "kernel-arch-mismatch"
            detail = f"32-bit PV-GRUB cannot start a 64-bit kernel (not {kinfo.guest_type})"
        findings.append(error(code, detail))
        grub_error = GrubError(Err.EXEC_FORMAT, detail, code)
    _linux_findings(kinfo, findings, arch)
    summary = (f"{kinfo.format} kernel{' ' + kinfo.version if kinfo.version else ''}, "
               f"{kinfo.compression} payload, {kinfo.machine or 'unknown machine'}, guest type "
               f"{kinfo.guest_type}, Xen notes from {kinfo.notes_source or 'none'}")
    findings.insert(0, note("kernel-summary", summary))
    return KernelCheck(kinfo, findings, grub_error)


def _linux_findings(kinfo: KernelInfo, findings: list[Finding], arch: str) -> None:
    """What stops the kernel even when PV-GRUB starts it, and an architecture mismatch not yet reported."""
    codes = {f.code for f in findings}
    if kinfo.pvh_only:
        kinfo.xen_pv = False
        if "kernel-no-pv" not in codes:
            findings.append(error(
                "kernel-no-pv",
                "the kernel has a PVH entry point (PHYS32_ENTRY) but no PV ENTRY note: built without "
                "CONFIG_XEN_PV, it cannot run as a PV guest"))
            codes.add("kernel-no-pv")
    vt = kinfo.version_tuple
    if kinfo.machine == "i386" and vt is not None and vt >= (5, 9):
        kinfo.xen_pv = False
        if "kernel-no-pv" not in codes:
            findings.append(error(
                "kernel-no-pv", f"Linux {kinfo.version} is a 32-bit kernel: Linux removed 32-bit Xen PV "
                "support in 5.9, so it cannot run as a PV guest"))
    if kinfo.machine is not None and kinfo.machine != arch and "kernel-arch-mismatch" not in codes:
        what = ("64-bit PV-GRUB cannot start a 32-bit kernel" if arch == "x86_64"
                else "32-bit PV-GRUB cannot start a 64-bit kernel")
        findings.append(error("kernel-arch-mismatch", f"{what} (the kernel is {kinfo.machine})"))
