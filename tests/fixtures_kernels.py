"""Kernel and initrd fixtures built with real tools, for the kernel/initrd inspector tests and for others.

- `debian_kernel("amd64" | "i386")`: a real Debian 12 kernel package (linux-image-6.1.*-amd64 through apt;
  linux-image-6.1.*-686-pae from the archive's i386 index, without adding a foreign architecture), with its
  vmlinuz, config and a few real modules (xen-blkfront.ko, ...), cached under `cache_root()/debian-kernels`.
- `debian_initrd(variant)`: initrds in the layout Debian's initramfs-tools writes (an uncompressed early
  cpio, then a compressed main cpio), made with the real `cpio` and compressors from the real modules.
- `build_elf(...)`, `linux_notes(...)`, `make_bzimage(...)`: synthetic Xen kernels: ELF32/ELF64 images with
  Xen notes in PT_NOTE segments, SHT_NOTE sections or a legacy `__xen_guest` section, wrapped in a bzImage
  header whose payload is compressed by the real command-line tool (gzip, bzip2, xz, lzma, lzop, lz4,
  zstd) with the 4-byte size Linux's build appends.

Everything built is cached under `tests.conftest.cache_root()` in a folder keyed by its inputs.
Set PVBUILD_OFFLINE=1 to skip (rather than fail) tests that need to download a Debian package.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import cache_root

FIXTURE_VERSION = "1"  # bump to rebuild every cached fixture of this module

# Real modules copied out of the kernel package (name -> where they sit below kernel/).
KEEP_MODULES = ("xen-blkfront.ko", "xen-netfront.ko", "ext4.ko", "jbd2.ko", "mbcache.ko", "crc16.ko")

COMPRESSORS: dict[str, list[str]] = {
    "gzip": ["gzip", "-n", "-9", "-c"],
    "bzip2": ["bzip2", "-9", "-c"],
    "xz": ["xz", "--check=crc32", "-6", "-c"],
    "lzma": ["xz", "--format=lzma", "-9", "-c"],
    "lzo": ["lzop", "-9", "-c"],
    "lz4": ["lz4", "-l", "-9", "-c"],  # the legacy container Linux and Xen read
    "lz4-frame": ["lz4", "-9", "-c"],
    "zstd": ["zstd", "-19", "-q", "-c"],
}


def _offline() -> bool:
    return os.environ.get("PVBUILD_OFFLINE", "") not in ("", "0")


def _need_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"the tests need the command-line tool {name!r} (apt-get install it)")


def compress(data: bytes, fmt: str) -> bytes:
    """`data` compressed by the real tool for `fmt` (a key of COMPRESSORS), cached by content."""
    argv = COMPRESSORS[fmt]
    _need_tool(argv[0])
    key = hashlib.sha256(json.dumps(argv).encode() + b"\0" + data).hexdigest()[:32]
    path = cache_root() / "compressed" / f"{key}.{fmt}"
    if path.exists():
        return path.read_bytes()
    out = subprocess.run(argv, input=data, capture_output=True, check=True).stdout
    _atomic_write(path, out)
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a unique temporary file and rename, so concurrent test runs never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------
# Real Debian kernels


@dataclass(frozen=True)
class DebianKernel:
    arch: str
    package: str
    version: str
    release: str  # uname -r, e.g. 6.1.0-56-amd64
    vmlinuz: Path
    config: Path
    modules: dict[str, Path]  # "xen-blkfront.ko" -> file
    module_paths: dict[str, str]  # "xen-blkfront.ko" -> "lib/modules/<release>/kernel/drivers/block/..."

    @property
    def config_text(self) -> str:
        return self.config.read_text()


def _apt(args: Sequence[str]) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True).stdout


def _amd64_package() -> tuple[str, str]:
    """The versioned package linux-image-amd64 depends on, and its candidate version (apt-cache)."""
    for attempt in range(2):
        try:
            deps = _apt(["apt-cache", "depends", "linux-image-amd64"])
            m = re.search(r"Depends:\s*(linux-image-6\.1\.\S+-amd64)", deps)
            if m:
                pkg = m.group(1)
                show = _apt(["apt-cache", "show", "--no-all-versions", pkg])
                vm = re.search(r"^Version:\s*(\S+)", show, re.M)
                if vm:
                    return pkg, vm.group(1)
        except subprocess.CalledProcessError:
            pass
        if attempt == 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
    raise RuntimeError("apt-cache cannot resolve linux-image-amd64 to a linux-image-6.1.*-amd64 package")


def _mirror() -> str:
    """The Debian archive the host's apt uses for bookworm (deb822 URIs: or a one-line sources.list)."""
    cands: list[tuple[str, list[str]]] = []
    d = Path("/etc/apt/sources.list.d")
    for f in sorted(d.glob("*.sources")) if d.is_dir() else []:
        for para in f.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in para.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if "deb" in fields.get("types", "").split() and "uris" in fields:
                for uri in fields["uris"].split():
                    cands.append((uri, fields.get("suites", "").split()))
    lists = [Path("/etc/apt/sources.list"), *sorted(d.glob("*.list"))] if d.is_dir() else []
    for f in lists:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            parts = re.sub(r"\[[^\]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb":
                cands.append((parts[1], [parts[2]]))
    for uri, suites in cands:
        if "bookworm" in suites:
            return uri.rstrip("/")
    raise RuntimeError("no apt source for Debian bookworm found on this host")


def _i386_package() -> tuple[str, str, str, str, str]:
    """(package, version, Filename, SHA256, mirror) of linux-image-686-pae's versioned dependency."""
    idx = cache_root() / "debian-kernels" / "i386-index.json"
    if idx.exists():
        got = json.loads(idx.read_text())
        return got["package"], got["version"], got["filename"], got["sha256"], got["mirror"]
    mirror = _mirror()
    url = f"{mirror}/dists/bookworm/main/binary-i386/Packages.xz"
    with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 - the host's own apt mirror
        text = lzma.decompress(resp.read()).decode("utf-8", "replace")
    paras: dict[str, dict[str, str]] = {}
    for para in text.split("\n\n"):
        fields = dict(
            (k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in para.splitlines() if ":" in ln
                                                 and not ln.startswith(" "))
        )
        if "Package" in fields:
            paras[fields["Package"]] = fields
    meta = paras["linux-image-686-pae"]
    m = re.search(r"(linux-image-6\.1\.\S+-686-pae)", meta["Depends"])
    if not m:
        raise RuntimeError(f"linux-image-686-pae depends on {meta['Depends']!r}")
    pkg = paras[m.group(1)]
    got = {"package": pkg["Package"], "version": pkg["Version"], "filename": pkg["Filename"],
           "sha256": pkg["SHA256"], "mirror": mirror}
    _atomic_write(idx, json.dumps(got).encode())
    return pkg["Package"], pkg["Version"], pkg["Filename"], pkg["SHA256"], mirror


def _extract_kernel(deb: Path, dest: Path, arch: str, pkg: str, version: str) -> DebianKernel:
    with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        boot = Path(tmp) / "boot"
        vmlinuz = next(boot.glob("vmlinuz-*"))
        release = vmlinuz.name[len("vmlinuz-"):]
        config = boot / f"config-{release}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + "."))
        (staging / "modules").mkdir(parents=True)
        shutil.copy2(vmlinuz, staging / vmlinuz.name)
        shutil.copy2(config, staging / config.name)
        module_paths: dict[str, str] = {}
        for root in (Path(tmp) / "lib" / "modules", Path(tmp) / "usr" / "lib" / "modules"):
            for name in KEEP_MODULES:
                for f in root.glob(f"*/kernel/**/{name}"):
                    shutil.copy2(f, staging / "modules" / name)
                    module_paths[name] = "lib/modules/" + str(f.relative_to(root))
        (staging / "meta.json").write_text(json.dumps({
            "arch": arch, "package": pkg, "version": version, "release": release,
            "module_paths": module_paths}))
        try:
            staging.replace(dest)
        except OSError:  # another run finished first
            shutil.rmtree(staging, ignore_errors=True)
    return _load_kernel(dest)


def _load_kernel(dest: Path) -> DebianKernel:
    meta = json.loads((dest / "meta.json").read_text())
    release = meta["release"]
    return DebianKernel(
        arch=meta["arch"], package=meta["package"], version=meta["version"], release=release,
        vmlinuz=dest / f"vmlinuz-{release}", config=dest / f"config-{release}",
        modules={n: dest / "modules" / n for n in meta["module_paths"]},
        module_paths=dict(meta["module_paths"]),
    )


_KERNELS: dict[str, DebianKernel] = {}


def debian_kernel(arch: str) -> DebianKernel:
    """A real Debian 12 kernel: "amd64" (linux-image-6.1.*-amd64) or "i386" (linux-image-6.1.*-686-pae).

    Resolved once per process (apt-cache for amd64, the cached index for i386), downloaded once per cache.
    """
    if arch in _KERNELS:
        return _KERNELS[arch]
    try:
        _KERNELS[arch] = _debian_kernel(arch)
        return _KERNELS[arch]
    except (OSError, subprocess.CalledProcessError, RuntimeError, KeyError) as e:
        if _offline():
            pytest.skip(f"Debian {arch} kernel not available offline: {e}")
        raise


def _debian_kernel(arch: str) -> DebianKernel:
    base = cache_root() / "debian-kernels"
    if arch == "amd64":
        pkg, version = _amd64_package()
        dest = base / f"{pkg}_{version}_v{FIXTURE_VERSION}"
        if (dest / "meta.json").exists():
            return _load_kernel(dest)
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            subprocess.run(["apt-get", "download", f"{pkg}={version}"], cwd=tmp, check=True,
                           capture_output=True)
            deb = next(Path(tmp).glob("*.deb"))
            return _extract_kernel(deb, dest, arch, pkg, version)
    if arch == "i386":
        pkg, version, filename, sha256, mirror = _i386_package()
        dest = base / f"{pkg}_{version}_v{FIXTURE_VERSION}"
        if (dest / "meta.json").exists():
            return _load_kernel(dest)
        with tempfile.TemporaryDirectory(dir=cache_root()) as tmp:
            deb = Path(tmp) / Path(filename).name
            h = hashlib.sha256()
            with urllib.request.urlopen(f"{mirror}/{filename}", timeout=600) as resp, deb.open("wb") as out:  # noqa: S310
                while chunk := resp.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != sha256:
                raise RuntimeError(f"{filename}: SHA256 {h.hexdigest()} does not match the index's {sha256}")
            return _extract_kernel(deb, dest, arch, pkg, version)
    raise ValueError(f"unknown Debian architecture {arch!r}")


# ---------------------------------------------------------------------------------------------------------
# Initrds in Debian's layout


INITRD_VARIANTS = ("debian-zstd", "gzip", "xz", "lz4", "lz4-frame", "lzo", "no-blkfront", "crc-gzip")


def _cpio(tree: Path, fmt: str = "newc") -> bytes:
    """The real `cpio -o` over `tree`, as initramfs-tools runs it (sorted names, owner root)."""
    _need_tool("cpio")
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    listing = ("\n".join([".", *names]) + "\n").encode()
    return subprocess.run(["cpio", "--quiet", "-o", "-H", fmt, "-R", "0:0"], cwd=tree, input=listing,
                          capture_output=True, check=True).stdout


def _main_tree(tree: Path, kernel: DebianKernel, *, blkfront: bool) -> None:
    (tree / "bin").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "scripts").mkdir()
    (tree / "init").write_text("#!/bin/sh\necho initramfs\n")
    (tree / "etc" / "modules").write_text("")
    (tree / "lib").symlink_to("usr/lib")
    dep_lines = []
    for name, rel in sorted(kernel.module_paths.items()):
        if name == "xen-blkfront.ko" and not blkfront:
            continue
        target = tree / "usr" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kernel.modules[name], target)
        dep_lines.append(rel.split("/", 3)[3] + ":")
    moddir = tree / "usr" / "lib" / "modules" / kernel.release
    (moddir / "modules.dep").write_text("\n".join(dep_lines) + "\n")


def _early_cpio(tmp: Path) -> bytes:
    early = tmp / "early"
    ucode = early / "kernel" / "x86" / "microcode"
    ucode.mkdir(parents=True)
    (ucode / "AuthenticAMD.bin").write_bytes(bytes(range(256)) * 16)
    return _cpio(early)


def debian_initrd(variant: str, kernel: DebianKernel | None = None) -> Path:
    """An initrd file built from the real amd64 kernel's modules. Variants (INITRD_VARIANTS):

    "debian-zstd": early uncompressed cpio + zstd main archive (Debian 12's default); "gzip": gzip-only;
    "xz": early + xz (crc32) main; "lz4": early + `lz4 -l` main; "lz4-frame": early + lz4 frame main (the
    kernel cannot read it); "lzo": early + lzop main; "no-blkfront": like "debian-zstd" without
    xen-blkfront.ko; "crc-gzip": a gzip-compressed cpio in the crc (070702) format.
    """
    if variant not in INITRD_VARIANTS:
        raise ValueError(f"unknown initrd variant {variant!r}")
    kernel = kernel or debian_kernel("amd64")
    dest = cache_root() / "initrds" / f"{variant}_{kernel.package}_{kernel.version}_v{FIXTURE_VERSION}.img"
    if dest.exists():
        return dest
    with tempfile.TemporaryDirectory(dir=cache_root()) as tmpname:
        tmp = Path(tmpname)
        tree = tmp / "main"
        _main_tree(tree, kernel, blkfront=variant != "no-blkfront")
        main = _cpio(tree, "crc" if variant == "crc-gzip" else "newc")
        early = _early_cpio(tmp)
        comp = {"debian-zstd": "zstd", "no-blkfront": "zstd", "crc-gzip": "gzip"}.get(variant, variant)
        body = compress(main, comp)
        blob = body if variant in ("gzip", "crc-gzip") else early + body
        _atomic_write(dest, blob)
    return dest


# ---------------------------------------------------------------------------------------------------------
# Synthetic Xen kernels

EM_386 = 3
EM_X86_64 = 62
# Xen ELF note types (xen/include/public/elfnote.h).
XEN_ELFNOTE = {
    "ENTRY": 1, "HYPERCALL_PAGE": 2, "VIRT_BASE": 3, "PADDR_OFFSET": 4, "XEN_VERSION": 5, "GUEST_OS": 6,
    "GUEST_VERSION": 7, "LOADER": 8, "PAE_MODE": 9, "FEATURES": 10, "BSD_SYMTAB": 11, "HV_START_LOW": 12,
    "L1_MFN_VALID": 13, "SUSPEND_CANCEL": 14, "INIT_P2M": 15, "MOD_START_PFN": 16,
    "SUPPORTED_FEATURES": 17, "PHYS32_ENTRY": 18,
}
STRING_NOTES = {"XEN_VERSION", "GUEST_OS", "GUEST_VERSION", "LOADER", "PAE_MODE", "FEATURES", "BSD_SYMTAB"}

BASE64 = 0xFFFFFFFF80000000
BASE32 = 0xC0000000
PADDR = 0x1000000
LOAD_SIZE = 0x4000


def kernel_layout(bits: int) -> tuple[int, int, int]:
    """(virt_base, kernel start virtual address, entry virtual address) of the synthetic kernels."""
    base = BASE64 if bits == 64 else BASE32
    return base, base + PADDR, base + PADDR + 0x100


def linux_notes(bits: int = 64, **override: str | int | None) -> dict[str, str | int]:
    """Xen notes as Linux's arch/x86/xen/xen-head.S emits them for a PV kernel; override or drop (None)."""
    base, _, entry = kernel_layout(bits)
    notes: dict[str, str | int] = {
        "GUEST_OS": "linux",
        "GUEST_VERSION": "2.6",
        "XEN_VERSION": "xen-3.0",
        "VIRT_BASE": base,
        "ENTRY": entry,
        "HYPERCALL_PAGE": entry + 0x1000 - 0x100,
        "FEATURES": "!writable_page_tables|pae_pgdir_above_4gb",
        "PAE_MODE": "yes",
        "LOADER": "generic",
        "PADDR_OFFSET": 0,
    }
    for k, v in override.items():
        if v is None:
            notes.pop(k, None)
        else:
            notes[k] = v
    return notes


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    nm = name + b"\0"
    return (struct.pack("<III", len(nm), len(desc), ntype) + nm + b"\0" * ((-len(nm)) & 3)
            + desc + b"\0" * ((-len(desc)) & 3))


def xen_notes_blob(notes: dict[str, str | int], bits: int = 64, *, gnu_build_id: bool = True) -> bytes:
    out = b""
    if gnu_build_id:
        out += _note(b"GNU", 3, bytes(range(20)))
    for key, value in notes.items():
        ntype = XEN_ELFNOTE[key]
        if isinstance(value, str):
            desc = value.encode() + b"\0"
        else:
            desc = struct.pack("<Q" if bits == 64 else "<I", value & ((1 << bits) - 1))
        out += _note(b"Xen", ntype, desc)
    return out


def build_elf(
    *,
    bits: int = 64,
    machine: int | None = None,
    notes: dict[str, str | int] | None = None,
    where: str = "phdr",
    xen_guest: str | None = None,
    gnu_build_id: bool = True,
    banner: bytes = b"Linux version 6.1.0-synthetic (builder@localhost) #1 SMP\n",
    e_entry: int | None = None,
    load_size: int = LOAD_SIZE,
) -> bytes:
    """A small ELF kernel image with one PT_LOAD and Xen notes.

    `where`: "phdr" (a PT_NOTE segment over an SHT_NOTE .notes section, as vmlinux has), "shdr" (only the
    SHT_NOTE section, no PT_NOTE), "none" (no Xen notes; with `gnu_build_id`, still a GNU note segment).
    `xen_guest`: adds a legacy `__xen_guest` section with that string. `notes` default: `linux_notes(bits)`.
    """
    is64 = bits == 64
    machine = machine if machine is not None else (EM_X86_64 if is64 else EM_386)
    notes = linux_notes(bits) if notes is None else notes
    _, kstart, _ = kernel_layout(bits)
    blob = xen_notes_blob(notes if where != "none" else {}, bits, gnu_build_id=gnu_build_id)
    ehsize, phentsize, shentsize = (64, 56, 64) if is64 else (52, 32, 40)
    has_note_seg = where == "phdr" or (where == "none" and gnu_build_id)
    phnum = 1 + (1 if has_note_seg else 0)
    text_off = 0x1000
    text = bytearray(load_size)
    text[0x200 : 0x200 + len(banner)] = banner
    notes_off = text_off + load_size
    guest = (xen_guest.encode() + b"\0") if xen_guest is not None else b""
    guest_off = notes_off + len(blob)
    names = [b"", b".text", b".notes", b".shstrtab"] + ([b"__xen_guest"] if xen_guest is not None else [])
    shstr = b"\0".join(names) + b"\0"
    name_off = {n: shstr.index(n + b"\0") if n else 0 for n in names}
    shstr_off = guest_off + len(guest)
    shoff = (shstr_off + len(shstr) + 7) & ~7
    shnum = len(names)
    entry = e_entry if e_entry is not None else kstart + 0x100
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1, 0]) + b"\0" * 8
    if is64:
        ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, ehsize, shoff, 0, ehsize,
                                   phentsize, phnum, shentsize, shnum, 3)
    else:
        ehdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, entry, ehsize, shoff, 0, ehsize,
                                   phentsize, phnum, shentsize, shnum, 3)

    def phdr(ptype: int, flags: int, off: int, vaddr: int, paddr: int, size: int, align: int) -> bytes:
        if is64:
            return struct.pack("<IIQQQQQQ", ptype, flags, off, vaddr, paddr, size, size, align)
        return struct.pack("<IIIIIIII", ptype, off, vaddr, paddr, size, size, flags, align)

    phdrs = phdr(1, 5, text_off, kstart, PADDR, load_size, 0x1000)
    if has_note_seg:
        phdrs += phdr(4, 4, notes_off, kstart + load_size, PADDR + load_size, len(blob), 4)

    def shdr(name: int, stype: int, flags: int, addr: int, off: int, size: int, align: int) -> bytes:
        if is64:
            return struct.pack("<IIQQQQIIQQ", name, stype, flags, addr, off, size, 0, 0, align, 0)
        return struct.pack("<IIIIIIIIII", name, stype, flags, addr, off, size, 0, 0, align, 0)

    shdrs = shdr(0, 0, 0, 0, 0, 0, 0)
    shdrs += shdr(name_off[b".text"], 1, 6, kstart, text_off, load_size, 16)
    # An empty .notes is PROGBITS: an SHT_NOTE section, even empty, is a note area for libelf.
    shdrs += shdr(name_off[b".notes"], 7 if blob else 1, 2, 0, notes_off, len(blob), 4)
    shdrs += shdr(name_off[b".shstrtab"], 3, 0, 0, shstr_off, len(shstr), 1)
    if xen_guest is not None:
        shdrs += shdr(name_off[b"__xen_guest"], 1, 0, 0, guest_off, len(guest), 1)
    img = bytearray(shoff + len(shdrs))
    img[0 : len(ehdr)] = ehdr
    img[ehsize : ehsize + len(phdrs)] = phdrs
    img[text_off : text_off + load_size] = text
    img[notes_off : notes_off + len(blob)] = blob
    img[guest_off : guest_off + len(guest)] = guest
    img[shstr_off : shstr_off + len(shstr)] = shstr
    img[shoff:] = shdrs
    return bytes(img)


def make_bzimage(
    payload_elf: bytes,
    compression: str = "gzip",
    *,
    setup_sects: int = 4,
    version: int = 0x020A,
    kernel_version: str | None = "6.1.0-synthetic (builder@localhost) #1 SMP",
    prefix: int = 0x100,
    raw_payload: bytes | None = None,
    place_at_sects: int | None = None,
) -> bytes:
    """A bzImage (boot protocol `version`) carrying `payload_elf` compressed by the real tool.

    Like Linux's build, every format but gzip gets the uncompressed size appended (scripts size_append).
    `raw_payload` replaces the compressed payload as is. `place_at_sects` puts the protected-mode part at
    (place_at_sects + 1) * 512 instead of (setup_sects + 1) * 512 (to model a loader reading 0 as 4).
    """
    if raw_payload is not None:
        payload = raw_payload
    elif compression == "none":
        payload = payload_elf
    else:
        payload = compress(payload_elf, compression)
        if compression != "gzip":
            payload += struct.pack("<I", len(payload_elf))
    setup_len = ((place_at_sects if place_at_sects is not None else setup_sects) + 1) * 512
    start = setup_len + prefix  # where the payload lies
    out = bytearray(max(0x400, start + len(payload) + 16))
    out[0x1F1] = setup_sects
    struct.pack_into("<H", out, 0x1FE, 0xAA55)
    out[0x200:0x202] = b"\xeb\x66"
    out[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", out, 0x206, version)
    if kernel_version is not None:
        text = kernel_version.encode()[:150] + b"\0"
        out[0x260 : 0x260 + len(text)] = text
        struct.pack_into("<H", out, 0x20E, 0x260 - 0x200)
    struct.pack_into("<I", out, 0x248, prefix)
    struct.pack_into("<I", out, 0x24C, len(payload))
    if start < 0x300:
        raise ValueError("the payload would overlap the setup header")
    out[start : start + len(payload)] = payload
    return bytes(out)


def newc_archive(entries: Sequence[tuple[str, bytes]], *, magic: bytes = b"070701", trailer: bool = True,
                 mode: int = 0o100644) -> bytes:
    """A cpio archive in the newc (070701) or crc (070702) format written directly (for edge cases the
    real `cpio` will not produce); padded to 4 bytes like the real one, not to 512."""
    out = bytearray()
    items = [*entries, ("TRAILER!!!", b"")] if trailer else list(entries)
    for ino, (name, data) in enumerate(items, 1):
        raw = name.encode() + b"\0"
        check = sum(data) & 0xFFFFFFFF if magic == b"070702" else 0
        fields = [ino, mode if name != "TRAILER!!!" else 0, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), check]
        out += magic + b"".join(b"%08X" % f for f in fields) + raw
        out += b"\0" * ((-len(out)) & 3)
        out += data + b"\0" * ((-len(data)) & 3)
    return bytes(out)
