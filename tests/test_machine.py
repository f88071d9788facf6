"""The boot state machine end to end: real images (mkfs/sfdisk), synthetic Xen kernels, the JSON contract.

Each test cites the rule it checks: PVGRUB.md section, and the C source line in the reference copy
(shared/reference/pv-grub-src/grub-0.97-with-xen-patches/stage2/ unless another file is named).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from pvbuild.pvgrub.check import BootReport, check_image
from pvbuild.pvgrub.profiles import Profile
from tests.fixtures_kernels import build_elf, linux_notes, make_bzimage
from tests.imagebuild import DiskSpec, Fs, Part, Symlink, Tree, build

VERSION = "6.1.0-synthetic"
KCONFIG = (b"CONFIG_XEN_PV=y\nCONFIG_XEN_BLKDEV_FRONTEND=m\nCONFIG_EXT4_FS=m\nCONFIG_XFS_FS=m\n"
           b"# CONFIG_BTRFS_FS is not set\n")


def newc(files: dict[str, bytes]) -> bytes:
    """A newc cpio archive (the initramfs format), enough for the inspector to list paths."""
    out = b""
    ino = 1
    for name, data in [*files.items(), ("TRAILER!!!", b"")]:
        nm = name.encode() + b"\0"
        mode = 0o100644 if name != "TRAILER!!!" else 0
        hdr = b"070701" + b"".join(b"%08X" % v for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0,
                                                           len(nm), 0))
        out += hdr + nm + b"\0" * ((-(110 + len(nm))) % 4) + data + b"\0" * ((-len(data)) % 4)
        ino += 1
    return out + b"\0" * ((-len(out)) % 512)


@cache
def pv_kernel() -> bytes:
    return make_bzimage(build_elf(), "xz", kernel_version=f"{VERSION} (builder@localhost) #1 SMP")


@cache
def non_xen_kernel() -> bytes:
    return make_bzimage(build_elf(where="none"), "xz", kernel_version=f"{VERSION} (builder@localhost) #1 SMP")


@cache
def zstd_kernel() -> bytes:
    return make_bzimage(build_elf(), "zstd", kernel_version=f"{VERSION} (builder@localhost) #1 SMP")


@cache
def i386_kernel() -> bytes:
    return make_bzimage(build_elf(bits=32, notes=linux_notes(32)), "gzip",
                        kernel_version="5.4.0-synthetic (builder@localhost) #1 SMP")


MODDIR = f"usr/lib/modules/{VERSION}/kernel"


@cache
def initrd(blkfront: bool = True) -> bytes:
    files = {f"{MODDIR}/fs/ext4/ext4.ko": b"\x7fELF-ext4", "init": b"#!/bin/sh\n"}
    if blkfront:
        files[f"{MODDIR}/drivers/block/xen-blkfront.ko"] = b"\x7fELF-blkfront"
    return gzip.compress(newc(files), mtime=0)


MENU = b"""default 0
timeout 0
hiddenmenu

title Debian GNU/Linux, kernel %s
root (hd0)
kernel /boot/vmlinuz-%s root=LABEL=rootfs ro console=hvc0
initrd /boot/initrd.img-%s
""" % (VERSION.encode(), VERSION.encode(), VERSION.encode())


def boot_files(menu: bytes = MENU, *, prefix: str = "/boot", extra: Tree | None = None) -> Tree:
    tree: Tree = {
        f"{prefix}/grub/menu.lst": menu,
        f"{prefix}/vmlinuz-{VERSION}": pv_kernel(),
        f"{prefix}/initrd.img-{VERSION}": initrd(),
        f"{prefix}/config-{VERSION}": KCONFIG,
    }
    tree.update(extra or {})
    return tree


def whole(tree: Tree, **kw: Any) -> Path:
    kw.setdefault("label", "rootfs")
    return build(DiskSpec("none", whole=Fs.of(tree, **kw)))


def check(img: Path, version: str = "1.05", variant: str = "hd0", arch: str = "x86_64") -> dict[str, Any]:
    return check_image(img, Profile(version, variant, arch)).to_json()


def codes(report: dict[str, Any], severity: str | None = None) -> list[str]:
    return [f["code"] for f in report["findings"] if severity is None or f["severity"] == severity]


# --- the happy path and the JSON contract ------------------------------------------------------------------

def test_partitionless_image_boots_with_the_json_contract() -> None:
    """PVGRUB.md §1 (hd0: (hd0)/boot/grub/menu.lst), §3 (default 0, timeout 0), §6 (kernel, initrd)."""
    r = check(whole(boot_files()))
    assert r["outcome"] == "boots", r["findings"]
    assert r["profile"] == {"version": "1.05", "variant": "hd0", "arch": "x86_64"}
    assert r["menu"] == {"device": "(hd0)", "path": "/boot/grub/menu.lst"}
    assert r["entry"] == {"index": 0, "title": f"Debian GNU/Linux, kernel {VERSION}"}
    assert r["tried"] == [{"index": 0, "title": f"Debian GNU/Linux, kernel {VERSION}", "error": None}]
    assert r["grub_error"] is None
    k = r["kernel"]
    assert (k["device"], k["path"], k["format"], k["compression"], k["machine"], k["xen_pv"]) == (
        "(hd0)", f"/boot/vmlinuz-{VERSION}", "bzImage", "xz", "x86_64", True)
    assert k["version"].startswith(VERSION)
    assert r["initrd"] == {"device": "(hd0)", "path": f"/boot/initrd.img-{VERSION}", "compression": "gzip",
                           "has_blkfront": True}
    assert r["cmdline"] == "root=LABEL=rootfs ro console=hvc0"
    assert codes(r, "error") == []
    assert set(r) >= {"outcome", "profile", "menu", "tried", "entry", "grub_error", "kernel", "initrd",
                      "cmdline", "findings"}


def test_cli_json_and_exit_codes(tmp_path: Path) -> None:
    """The issue's command contract: exit 0 boots, 1 does not, 2 bad input; --json prints one object."""
    good = whole(boot_files())
    out = subprocess.run([sys.executable, "-m", "pvbuild", "check", str(good), "--json"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["outcome"] == "boots"
    bad = whole(boot_files(b"title x\nroot (hd0)\n"))
    out = subprocess.run([sys.executable, "-m", "pvbuild", "check", str(bad)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 1
    assert out.stdout.startswith("HANGS at the menu")
    missing = subprocess.run([sys.executable, "-m", "pvbuild", "check", str(tmp_path / "nope.raw")],
                             capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "nope.raw" in missing.stderr
    junk = tmp_path / "junk.raw"
    junk.write_bytes(b"not a disk image\n" * 1000)
    out = subprocess.run([sys.executable, "-m", "pvbuild", "check", str(junk)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2 and "not a raw disk image" in out.stderr
    usage = subprocess.run([sys.executable, "-m", "pvbuild", "check", str(good), "--pvgrub", "2.0"],
                           capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


# --- which menu.lst is read (PVGRUB.md §1) -------------------------------------------------------------------

def mbr(parts: list[Part], **kw: Any) -> Path:
    return build(DiskSpec("mbr", parts=tuple(parts), **kw))


def test_hd00_103_on_partitionless_image_finds_no_menu() -> None:
    """PVGRUB.md §1: 1.03 hd00 reads only (hd0,0)/boot/grub/menu.lst; §4: (hd0,N) on a partitionless disk
    is Error 5 (disk_io.c:700-705 PC_MBR_CHECK_SIG) -> GRUB's prompt."""
    r = check(whole(boot_files()), "1.03", "hd00")
    assert r["outcome"] == "hang-prompt"
    assert r["menu"] is None and r["entry"] is None
    assert "menu-not-found" in codes(r, "error")


def test_hd0_103_on_mbr_image_finds_no_menu() -> None:
    """PVGRUB.md §1 + §4: `(hd0)` on an MBR disk mounts nothing (Error 17, disk_io.c:436-437)."""
    img = mbr([Part(Fs.of(boot_files(), label="rootfs"))])
    r = check(img, "1.03", "hd0")
    assert r["outcome"] == "hang-prompt"
    assert "menu-not-found" in codes(r)
    r = check(img, "1.03", "hd00")  # the menu is read from (hd0,0), but its entry's `root (hd0)` mounts nothing
    assert r["outcome"] == "hang-menu"
    assert r["tried"][0]["error"] == 17
    hd00 = mbr([Part(Fs.of(boot_files(MENU.replace(b"root (hd0)", b"root (hd0,0)")), label="rootfs"))])
    r = check(hd00, "1.03", "hd00")
    assert r["outcome"] == "boots", r["findings"]
    assert r["menu"] == {"device": "(hd0,0)", "path": "/boot/grub/menu.lst"}


def test_104_searches_partitions_and_grub_dir() -> None:
    """PVGRUB.md §1: 1.04+ search (hd0)/boot/grub, (hd0,0)/boot/grub, (hd0,0)/grub, (hd0,1)/boot/grub, ..."""
    menu = MENU.replace(b"root (hd0)", b"root (hd0,1)").replace(b"/boot/", b"/")
    boot = Fs.of(boot_files(menu, prefix=""), label="boot")
    img = mbr([Part(None, type="82", size_mb=8), Part(boot)])
    for version in ("1.04", "1.05"):
        r = check(img, version)
        assert r["menu"] == {"device": "(hd0,1)", "path": "/grub/menu.lst"}, r["search"]
    r = check(img, "1.03", "hd00")
    assert r["outcome"] == "hang-prompt"


def test_separate_boot_needs_boot_symlink_on_103() -> None:
    """PVGRUB.md §1: <= 1.03 with a separate /boot: menu.lst at /boot/boot/grub; `boot -> .` makes it work."""
    menu = MENU.replace(b"root (hd0)", b"root (hd0,0)")
    plain = Fs.of(boot_files(menu, prefix=""), label="boot")
    linked = Fs.of(boot_files(menu, prefix="", extra={"/boot": Symlink(".")}), label="boot")
    root = Fs.of({"/etc/fstab": b"LABEL=rootfs / ext4 defaults 0 1\n"}, label="rootfs")
    r = check(mbr([Part(plain), Part(root)]), "1.03", "hd00")
    assert r["outcome"] == "hang-prompt"
    r = check(mbr([Part(linked), Part(root)]), "1.03", "hd00")
    assert r["outcome"] == "boots", r["findings"]
    assert r["kernel"]["path"] == f"/boot/vmlinuz-{VERSION}"


def test_logical_partition_numbered_from_4() -> None:
    """PVGRUB.md §4: logical partitions from (hd0,4) in EBR order (disk_io.c next_pc_slice:715-754)."""
    menu = MENU.replace(b"root (hd0)", b"root (hd0,5)")
    img = mbr([Part(Fs.of(boot_files(menu), label="boot")),
               Part(Fs.of({"/x": b"first logical"}, label="l1")),
               Part(Fs.of(boot_files(menu), label="rootfs"))], logical_from=1)
    r = check(img)
    assert r["outcome"] == "boots", r["findings"]
    assert r["kernel"]["device"] == "(hd0,5)"
    r = check(mbr([Part(Fs.of(boot_files(menu.replace(b"(hd0,5)", b"(hd0,6)")), label="rootfs"))]))
    assert r["outcome"] == "hang-menu"
    assert r["tried"][0]["error"] == 22


def test_empty_primary_slot_keeps_its_number() -> None:
    """PVGRUB.md §4: empty slots are counted; naming one is Error 22 (disk_io.c:772-776 current_slice)."""
    menu = MENU.replace(b"root (hd0)", b"root (hd0,1)")
    img = mbr([Part(Fs.of(boot_files(menu), label="rootfs"))])
    r = check(img)
    assert r["tried"][0]["error"] == 22
    assert "partition-not-found" in codes(r)


def test_gpt_refused_by_103_read_by_104() -> None:
    """PVGRUB.md §4 + seed: PV-GRUB 1.03 and earlier do not support GPT; 1.04+ do."""
    menu = MENU.replace(b"root (hd0)", b"root (hd0,0)")
    img = build(DiskSpec("gpt", parts=(Part(Fs.of(boot_files(menu), label="rootfs"), type="L"),)))
    r = check(img, "1.03", "hd00")
    assert r["outcome"] == "hang-prompt"
    assert "gpt-unsupported" in codes(r)
    r = check(img, "1.04")
    assert r["outcome"] == "boots", r["findings"]


def test_partition_type_must_be_linux_for_ext2fs() -> None:
    """PVGRUB.md §4: ext2fs mounts only on the whole disk or MBR type 0x83/0xFD (fsys_ext2fs.c mount)."""
    menu = MENU.replace(b"root (hd0)", b"root (hd0,0)")
    for ptype, ok in (("83", True), ("fd", True), ("8e", False), ("7", False)):
        r = check(mbr([Part(Fs.of(boot_files(menu), label="rootfs"), type=ptype)]), "1.03", "hd00")
        assert (r["outcome"] == "boots") == ok, (ptype, r["findings"])
        if not ok:
            assert "partition-type-not-linux" in codes(r)


def test_ext4_64bit_hides_every_file() -> None:
    """PVGRUB.md §5: INCOMPAT_64BIT always fails (patch 60's inverted check): menu.lst is not found."""
    r = check(whole(boot_files(), options=("-O", "64bit")))
    assert r["outcome"] == "hang-prompt"
    assert "fs-64bit" in codes(r, "error")


# --- selection and fallbacks (PVGRUB.md §3) ------------------------------------------------------------------

def entry(title: str, kernel: str = f"/boot/vmlinuz-{VERSION}", initrd: str | None = None,
          root: str = "(hd0)", args: str = "root=LABEL=rootfs console=hvc0") -> bytes:
    text = f"title {title}\n"
    if root:
        text += f"root {root}\n"
    text += f"kernel {kernel} {args}\n"
    if initrd:
        text += f"initrd {initrd}\n"
    return text.encode()


INITRD = f"/boot/initrd.img-{VERSION}"


def test_no_timeout_hangs_at_menu_even_hidden() -> None:
    """PVGRUB.md §3: no timeout -> the menu waits forever, even with hiddenmenu (stage2.c:278-280)."""
    r = check(whole(boot_files(b"default 0\nhiddenmenu\n" + entry("a", initrd=INITRD))))
    assert r["outcome"] == "hang-menu"
    assert "menu-no-timeout" in codes(r, "error")
    assert r["tried"] == []


def test_no_entries_is_the_prompt() -> None:
    """PVGRUB.md §3/§7: a menu without entries drops to the command line (stage2.c:1114-1119)."""
    r = check(whole(boot_files(b"timeout 0\ntitle lonely\nserial --unit=0\n")))
    assert r["outcome"] == "hang-prompt"
    assert "menu-no-entries" in codes(r)
    assert "menu-unknown-command" in codes(r, "warning")


def test_fallback_after_missing_kernel() -> None:
    """PVGRUB.md §3: on error the next fallback in list order (stage2.c:766-777); kernel file missing = 15."""
    menu = b"default 0\nfallback 1\ntimeout 3\n" + entry("new", "/boot/vmlinuz-missing", INITRD) + entry(
        "old", initrd=INITRD)
    r = check(whole(boot_files(menu)))
    assert r["outcome"] == "boots"
    assert r["tried"] == [{"index": 0, "title": "new", "error": 15}, {"index": 1, "title": "old", "error": None}]
    assert r["entry"] == {"index": 1, "title": "old"}
    assert r["grub_error"] == {"number": 15, "message": "File not found"}
    assert "fallback-used" in codes(r, "info")


def test_fallback_exhausted_hangs_and_reports_each_cause() -> None:
    """PVGRUB.md §3: fallbacks exhausted -> "Press any key" = hang (cmdline.c run_script)."""
    menu = b"timeout 0\nfallback 1\n" + entry("a", "/nope") + entry("b", "vmlinuz")
    r = check(whole(boot_files(menu)))
    assert r["outcome"] == "hang-menu"
    assert [t["error"] for t in r["tried"]] == [15, 1]
    assert {"kernel-not-found", "bad-filename"} <= set(codes(r, "error"))
    assert r["grub_error"]["number"] == 1


def test_fallback_walk_is_linear_in_list_order() -> None:
    """PVGRUB.md §3: linear, whatever failed: fallback 2 0 from default 1 tries 1, 2, 0."""
    menu = b"default 1\nfallback 2 0\ntimeout 0\n" + entry("zero", initrd=INITRD) + entry("one", "/x") + entry(
        "two", "/y")
    r = check(whole(boot_files(menu)))
    assert [t["index"] for t in r["tried"]] == [1, 2, 0]
    assert r["outcome"] == "boots"


def test_global_command_in_entry_is_error_27() -> None:
    """PVGRUB.md §3: default/timeout/fallback/hiddenmenu inside an entry -> Error 27."""
    menu = b"timeout 0\ntitle a\nroot (hd0)\ntimeout 5\nkernel /boot/vmlinuz-" + VERSION.encode() + b"\n"
    r = check(whole(boot_files(menu)))
    assert r["tried"][0]["error"] == 27
    assert "menu-scope-error" in codes(r, "error")


def test_initrd_before_kernel_is_19_and_module_before_kernel_20() -> None:
    """PVGRUB.md §3: `initrd` before `kernel` -> 19; `module` before kernel -> 20 (builtins.c)."""
    r = check(whole(boot_files(b"timeout 0\ntitle a\nroot (hd0)\ninitrd " + INITRD.encode() + b"\n")))
    assert r["tried"][0]["error"] == 19
    r = check(whole(boot_files(b"timeout 0\ntitle a\nroot (hd0)\nmodule " + INITRD.encode() + b"\n")))
    assert r["tried"][0]["error"] == 20


def test_entry_without_root_fails() -> None:
    """PVGRUB.md §3: an entry's root starts at (nd) (mini-os.c boot_drive = NETWORK_DRIVE); with no network
    every file open there fails (derived: Error 21)."""
    r = check(whole(boot_files(b"timeout 0\n" + entry("a", root=""))))
    assert r["outcome"] == "hang-menu"
    assert r["tried"][0]["error"] == 21
    assert "root-not-set" in codes(r)


def test_explicit_device_in_kernel_path_needs_no_root() -> None:
    """PVGRUB.md §4: `(dev)/abs/path` names its device (disk_io.c setup_part)."""
    menu = b"timeout 0\ntitle a\nkernel (hd0)/boot/vmlinuz-%s root=LABEL=rootfs console=hvc0\n" \
           b"initrd (hd0)%s\n" % (VERSION.encode(), INITRD.encode())
    r = check(whole(boot_files(menu)))
    assert r["outcome"] == "boots", r["findings"]


def test_default_saved_reads_default_file() -> None:
    """PVGRUB.md §3: `default saved` reads the file `default` in the menu's directory (stage2.c:905-937)."""
    menu = b"default saved\ntimeout 0\n" + entry("a", "/nope") + entry("b", initrd=INITRD)
    r = check(whole(boot_files(menu, extra={"/boot/grub/default": b"1\n"})))
    assert r["entry"] == {"index": 1, "title": "b"}
    r = check(whole(boot_files(menu)))
    assert r["tried"][0]["index"] == 0


def test_savedefault_without_default_file_is_error_15() -> None:
    """PVGRUB.md §3: `savedefault` with no `default` file -> Error 15 (derived from savedefault_helper)."""
    menu = b"timeout 0\ntitle a\nroot (hd0)\nsavedefault\nkernel /boot/vmlinuz-%s\n" % VERSION.encode()
    r = check(whole(boot_files(menu)))
    assert r["tried"][0]["error"] == 15
    assert "savedefault-no-file" in codes(r)
    r = check(whole(boot_files(menu, extra={"/boot/grub/default": b"0\n"})))
    assert r["outcome"] == "boots"


def test_configfile_restarts_with_new_menu() -> None:
    """PVGRUB.md §3: `configfile F` restarts GRUB with F (builtins.c configfile_func longjmp)."""
    menu = b"timeout 0\ntitle go\nconfigfile (hd0)/boot/grub/real.lst\n"
    real = b"timeout 0\n" + entry("real", initrd=INITRD)
    r = check(whole(boot_files(menu, extra={"/boot/grub/real.lst": real})))
    assert r["outcome"] == "boots"
    assert r["entry"]["title"] == "real"
    assert r["menu"] == {"device": "(hd0)", "path": "/boot/grub/real.lst"}


def test_gzipped_menu_and_kernel_are_gunzipped() -> None:
    """PVGRUB.md §4: every file is gunzipped on read if it starts with 1F 8B (disk_io.c grub_open ->
    gunzip.c gunzip_test_header)."""
    menu = gzip.compress(b"timeout 0\n" + entry("gz", "/boot/vmlinux.gz", INITRD), mtime=0)
    elf = build_elf()
    r = check(whole(boot_files(menu, extra={"/boot/vmlinux.gz": gzip.compress(elf, mtime=0)})))
    assert r["outcome"] == "boots", r["findings"]
    assert r["kernel"]["format"] == "elf"


def test_initrd_of_failed_entry_stays_loaded() -> None:
    """PVGRUB.md §3 (derived): mini-os keeps module_image across entries, so a fallback entry without
    `initrd` boots with the initrd a failed entry loaded (mini-os.c load_initrd frees only on a new load)."""
    menu = b"timeout 0\nfallback 1\n" + entry("bad kernel", "/boot/not-xen", INITRD) + entry("no initrd")
    r = check(whole(boot_files(menu, extra={"/boot/not-xen": non_xen_kernel()})))
    assert [t["error"] for t in r["tried"]] == [9, None]
    assert r["initrd"] is not None and r["initrd"]["path"] == INITRD


def test_kernel_not_xen_is_error_9_at_boot() -> None:
    """PVGRUB.md §6: no Xen notes on an x86 ELF -> "Not a Xen-ELF image" -> Error 9 (kexec.c:255-258)."""
    r = check(whole(boot_files(extra={f"/boot/vmlinuz-{VERSION}": non_xen_kernel()})))
    assert r["outcome"] == "hang-menu"
    assert r["tried"][0]["error"] == 9
    assert "kernel-not-xen" in codes(r, "error")


def test_zstd_kernel_unsupported() -> None:
    """PVGRUB.md §6: lz4 and zstd payloads are unknown compression formats for the AKIs -> Error 9."""
    r = check(whole(boot_files(extra={f"/boot/vmlinuz-{VERSION}": zstd_kernel()})))
    assert r["tried"][0]["error"] == 9
    assert "kernel-compression-unsupported" in codes(r)


def test_64bit_pvgrub_refuses_32bit_kernel_and_reverse() -> None:
    """PVGRUB.md §6 + seed: 64-bit PV-GRUB cannot start a 32-bit kernel or vice versa (kexec.c:261-273)."""
    img = whole(boot_files(extra={f"/boot/vmlinuz-{VERSION}": i386_kernel()}))
    r = check(img, arch="x86_64")
    assert r["tried"][0]["error"] == 13
    assert "kernel-arch-mismatch" in codes(r)
    r = check(img, arch="i386")
    assert r["outcome"] == "boots", r["findings"]
    r = check(whole(boot_files()), arch="i386")
    assert r["tried"][0]["error"] == 13


def test_password_in_entry_waits_and_lock_needs_password() -> None:
    """PVGRUB.md §3: `password` in an entry is interactive (hang); `lock` with a password -> Error 32."""
    r = check(whole(boot_files(b"timeout 0\ntitle a\npassword secret\nroot (hd0)\n")))
    assert r["outcome"] == "hang-prompt"
    menu = b"timeout 0\npassword secret\ntitle a\nlock\nroot (hd0)\nkernel /boot/vmlinuz-%s\n" % VERSION.encode()
    r = check(whole(boot_files(menu)))
    assert r["tried"][0]["error"] == 32


def test_chainloader_is_error_8() -> None:
    """PVGRUB.md §3: `chainloader` then boot -> Error 8 (boot_func's default case under __MINIOS__)."""
    menu = b"timeout 0\ntitle a\nroot (hd0)\nchainloader --force /boot/vmlinuz-%s\n" % VERSION.encode()
    r = check(whole(boot_files(menu)))
    assert r["tried"][0]["error"] == 8
    # Without --force the boot signature is checked first; a file shorter than a sector is Error 13 too.
    r = check(whole(boot_files(b"timeout 0\ntitle a\nroot (hd0)\nchainloader /boot/grub/menu.lst\n")))
    assert r["tried"][0]["error"] == 13


def test_entry_without_kernel_returns_to_menu() -> None:
    """PVGRUB.md §3: implicit `boot` only if a kernel was loaded; otherwise back to the (waiting) menu."""
    r = check(whole(boot_files(b"timeout 0\ntitle a\nroot (hd0)\n")))
    assert r["outcome"] == "hang-menu"
    assert r["tried"] == [{"index": 0, "title": "a", "error": None}]


def test_symlink_kernel_and_loop() -> None:
    """PVGRUB.md §4: ext2 follows symlinks (absolute from that fs's root); a loop is Error 26."""
    tree = boot_files(b"timeout 0\n" + entry("a", "/vmlinuz", "/initrd.img"), extra={
        "/vmlinuz": Symlink(f"boot/vmlinuz-{VERSION}"), "/initrd.img": Symlink(f"/boot/initrd.img-{VERSION}")})
    r = check(whole(tree))
    assert r["outcome"] == "boots", r["findings"]
    loop = boot_files(b"timeout 0\n" + entry("a", "/boot/l1"), extra={"/boot/l1": Symlink("l2"),
                                                                       "/boot/l2": Symlink("l1")})
    r = check(whole(loop))
    assert r["tried"][0]["error"] == 26
    assert "symlink-loop" in codes(r)


# --- after the hand-over (PVGRUB.md §6) ------------------------------------------------------------------

def test_cmdline_is_text_after_filename_and_truncated_to_1023() -> None:
    """PVGRUB.md §3: the command line is the text after FILE with leading blanks stripped; <= 1023 bytes."""
    long_arg = "x" * 1500
    menu = b"timeout 0\n" + entry("a", initrd=INITRD, args="   root=LABEL=rootfs console=hvc0 " + long_arg)
    r = check(whole(boot_files(menu)))
    assert r["cmdline"].startswith("root=LABEL=rootfs console=hvc0 xxx")
    assert len(r["cmdline"].encode()) == 1023
    assert "cmdline-truncated" in codes(r, "warning")


def test_initrd_without_blkfront() -> None:
    """PVGRUB.md §6: XEN_BLKDEV_FRONTEND=m in config-VERSION -> the initrd must carry xen-blkfront.ko."""
    r = check(whole(boot_files(extra={INITRD: initrd(blkfront=False)})))
    assert r["outcome"] == "boots"
    assert r["initrd"]["has_blkfront"] is False
    assert "initrd-no-blkfront" in codes(r, "error")
    menu = b"timeout 0\n" + entry("a", args="root=/dev/xvda1 console=hvc0")
    r = check(whole(boot_files(menu)))
    assert "initrd-no-blkfront" in codes(r, "error")


@pytest.mark.parametrize(("arg", "ok"), [
    ("root=LABEL=rootfs", True), ("root=LABEL=other", False), ("root=UUID=6b7c1a1e-2d2f-4b8e-9a51-0c6d7e8f9a0b",
                                                                True),
    ("root=UUID=00000000-0000-0000-0000-000000000000", False), ("root=/dev/xvda1", True), ("root=/dev/sda1", True),
    ("root=/dev/xvda", True), ("root=/dev/vda1", False), ("root=/dev/nvme0n1p1", False), ("root=/dev/xvdb1", False),
    ("", False),
])
def test_root_must_name_a_device_the_guest_has(arg: str, ok: bool) -> None:
    """PVGRUB.md §6: root= LABEL/UUID must match the filesystem; device names are xvd*/sda* for PV guests."""
    menu = b"timeout 0\n" + entry("a", initrd=INITRD, args=f"{arg} console=hvc0")
    r = check(whole(boot_files(menu)))
    assert ("root-not-found" not in codes(r)) == ok, r["findings"]


def test_root_partition_numbers_on_mbr() -> None:
    """PVGRUB.md §6: on a partitioned disk root= must name the partition (xvda2), not the whole disk."""
    menu = MENU.replace(b"root (hd0)", b"root (hd0,0)")
    for arg, ok in (("root=/dev/xvda2", True), ("root=/dev/xvda1", True), ("root=/dev/xvda3", False),
                    ("root=/dev/xvda", False)):
        m = menu.replace(b"root=LABEL=rootfs", arg.encode())
        img = mbr([Part(Fs.of(boot_files(m), label="boot")), Part(Fs.of({"/etc/x": b"x"}, label="rootfs"))])
        r = check(img)
        assert ("root-not-found" not in codes(r)) == ok, (arg, r["findings"])


def test_missing_hvc0_is_a_warning_only() -> None:
    """PVGRUB.md §6: no console=hvc0 -> no console output: a warning, exit code still 0."""
    menu = b"timeout 0\n" + entry("a", initrd=INITRD, args="root=LABEL=rootfs ro")
    report: BootReport = check_image(whole(boot_files(menu)), Profile())
    j = report.to_json()
    assert "no-hvc0-console" in codes(j, "warning")
    assert report.exit_code == 0


def test_xfs_v4_boot_read_and_v5_refused() -> None:
    """PVGRUB.md §5: xfs v4 (crc=0, ftype=0) is read; V5 (crc=1, the mkfs default) -> Error 17."""
    v4 = whole(boot_files(), fstype="xfs", options=("-m", "crc=0", "-n", "ftype=0"), size_mb=300)
    r = check(v4)
    assert r["outcome"] == "boots", r["findings"]
    v5 = whole(boot_files(), fstype="xfs", options=(), size_mb=300)
    r = check(v5)
    assert r["outcome"] == "hang-prompt"
    assert "fs-unsupported" in codes(r, "error")


def test_kernel_options_are_not_part_of_the_command_line() -> None:
    """PVGRUB.md §3: `kernel [--type=X] [--no-mem-option] FILE ARGS` (builtins.c kernel_func option loop)."""
    menu = (b"timeout 0\ntitle a\nroot (hd0)\nkernel --type=linux --no-mem-option /boot/vmlinuz-%s  root=LABEL=rootfs"
            b" console=hvc0\ninitrd %s\n" % (VERSION.encode(), INITRD.encode()))
    r = check(whole(boot_files(menu)))
    assert r["outcome"] == "boots"
    assert r["cmdline"] == "root=LABEL=rootfs console=hvc0"
    bad = menu.replace(b"--type=linux", b"--type=plan9")
    assert check(whole(boot_files(bad)))["tried"][0]["error"] == 30


def test_second_initrd_replaces_first_and_module_drops_it() -> None:
    """PVGRUB.md §3: a second `initrd` replaces the first; `module` drops the initrd (mini-os.c load_module)."""
    two = b"timeout 0\n" + entry("a", initrd="/boot/other.img") + b"initrd " + INITRD.encode() + b"\n"
    r = check(whole(boot_files(two, extra={"/boot/other.img": initrd(blkfront=False)})))
    assert r["initrd"]["path"] == INITRD
    mod = b"timeout 0\n" + entry("a", initrd=INITRD) + b"module " + INITRD.encode() + b"\n"
    r = check(whole(boot_files(mod)))
    assert r["initrd"] is None
    assert "initrd-as-module" in codes(r)


@pytest.mark.parametrize(("device", "error"), [
    ("(hd1)", 21), ("(fd0)", 21), ("(hd8)", 12), ("(hd0,255)", 11), ("(hd0,a)", 22), ("(hd0,0,a)", 5),
    ("(nd)", 11), ("(cd)", 11), ("hd0", 11),
])
def test_device_syntax_errors(device: str, error: int) -> None:
    """PVGRUB.md §4: (fdN) fails, hd8+ -> 12 (sane_partition), P <= 254 (set_device), BSD letters, no (nd)
    without a network; on a partitionless disk any partition is Error 5 first."""
    menu = b"timeout 0\ntitle a\nroot %s\nkernel /boot/vmlinuz-%s\n" % (device.encode(), VERSION.encode())
    r = check(whole(boot_files(menu)))
    assert r["tried"][0]["error"] == error, r["findings"]


def test_blocklist_and_relative_names() -> None:
    """PVGRUB.md §4: names not starting with / or ( are blocklists or Error 1 (disk_io.c grub_open:1565-1620)."""
    r = check(whole(boot_files(b"timeout 0\ntitle a\nroot (hd0)\nchainloader +1\n")))
    assert r["tried"][0]["error"] == 13  # sector 0 of an ext4 image has no 0x55AA boot signature
    r = check(whole(boot_files(b"timeout 0\ntitle a\nroot (hd0)\nkernel boot/vmlinuz\n")))
    assert r["tried"][0]["error"] == 1


def test_real_debian_kernel_and_initrd_boot(tmp_path: Path) -> None:
    """PVGRUB.md §6 with the real thing: Debian 12's linux-image-amd64 (bzImage, xz, Xen PV) and an initrd in
    initramfs-tools' layout (early cpio + zstd main archive) with the real xen-blkfront.ko."""
    from tests.fixtures_kernels import debian_initrd, debian_kernel

    k = debian_kernel("amd64")
    rel = k.release
    menu = (b"default 0\ntimeout 0\ntitle Debian\nroot (hd0)\nkernel /boot/vmlinuz-%s root=LABEL=rootfs ro "
            b"console=hvc0\ninitrd /boot/initrd.img-%s\n" % (rel.encode(), rel.encode()))
    tree: Tree = {"/boot/grub/menu.lst": menu, f"/boot/vmlinuz-{rel}": k.vmlinuz.read_bytes(),
                  f"/boot/config-{rel}": k.config.read_bytes(),
                  f"/boot/initrd.img-{rel}": debian_initrd("debian-zstd", k).read_bytes()}
    r = check(whole(tree, size_mb=96, dense=True))
    assert r["outcome"] == "boots", r["findings"]
    assert (r["kernel"]["format"], r["kernel"]["compression"], r["kernel"]["xen_pv"]) == ("bzImage", "xz", True)
    assert r["kernel"]["version"].startswith(rel)
    assert r["initrd"]["compression"] == "zstd" and r["initrd"]["has_blkfront"] is True
    assert codes(r, "error") == []
    tree[f"/boot/initrd.img-{rel}"] = debian_initrd("no-blkfront", k).read_bytes()
    r = check(whole(tree, size_mb=96, dense=True))
    assert "initrd-no-blkfront" in codes(r, "error")


def test_sparse_kernel_file_cannot_be_read() -> None:
    """fsys_ext2fs.c:656-661 ext4fs_block_map: a logical block more than one past an extent's end is
    Error 16 (a block right after it reads the next physical block instead of zeros). `mke2fs -d` makes a
    hole of every all-zero block, so a kernel copied that way does not load: pvbuild's builder must not."""
    kernel = bytearray(pv_kernel())
    kernel += bytes(16384) + b"tail"  # zero blocks in the middle of the file become a hole
    r = check(whole(boot_files(extra={f"/boot/vmlinuz-{VERSION}": bytes(kernel)}), options=("-O", "^64bit",
                                                                                               "-b", "1024"),
                    dense=False))
    assert r["tried"][0]["error"] == 16, r["findings"]
    # A one-block hole right after an extent is read from the next physical block: loaded, but corrupt.
    r = check(whole(boot_files(), options=("-O", "^64bit", "-b", "1024"), dense=False))
    assert "file-sparse" in codes(r, "error")


def test_real_debian_686_pae_kernel_is_not_pv() -> None:
    """PVGRUB.md §6 + the brief: Debian 12's 686-pae kernel (6.1) has no Xen PV support (32-bit PV left
    Linux in 5.9): the i386 AKI refuses it, and so does the x86_64 one."""
    from tests.fixtures_kernels import debian_kernel

    k = debian_kernel("i386")
    rel = k.release
    menu = (b"timeout 0\ntitle Debian i386\nroot (hd0)\nkernel /boot/vmlinuz-%s root=/dev/xvda1 console=hvc0\n"
            % rel.encode())
    img = whole({"/boot/grub/menu.lst": menu, f"/boot/vmlinuz-{rel}": k.vmlinuz.read_bytes()}, size_mb=64,
                dense=True)
    for arch in ("i386", "x86_64"):
        r = check(img, arch=arch)
        assert r["outcome"] == "hang-menu", r["findings"]
        assert r["kernel"]["xen_pv"] is False and r["kernel"]["machine"] == "i386"
        assert "kernel-no-pv" in codes(r, "error")


def test_cli_internal_error_is_one_line_and_exit_4(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Exit codes (README): a bug is exit 4 with one line on stderr, never a traceback."""
    import pvbuild.pvgrub.check as checkmod
    from pvbuild.cli import main

    def boom(*_: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(checkmod, "check_image", boom)
    monkeypatch.delenv("PVBUILD_DEBUG", raising=False)
    assert main(["check", str(whole(boot_files()))]) == 4
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err and err.count("\n") == 1
