"""`pvbuild diff A B`: real images (mkfs, sfdisk; cached by tests/imagebuild.py), compared through the emulator's
filesystem readers, through the command line as users run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pvbuild.diff import compare_versions, parse_dpkg_status, parse_fstab
from pvbuild.pvgrub.blockio import Disk, MemoryDisk, Volume
from pvbuild.pvgrub.errors import GrubError
from pvbuild.pvgrub.fs import ext2, xfs
from pvbuild.pvgrub.fs.base import S_IFLNK, S_IFREG, Filesystem
from tests.fixtures_xfs import build_xfs_image
from tests.imagebuild import DiskSpec, Fs, Part, Symlink, Tree, build
from tests.test_fuzz_ext2 import mutated
from tests.test_fuzz_xfs import _apply, mutations
from tests.test_machine import MENU, VERSION, boot_files, pv_kernel, whole

FSTAB = b"LABEL=rootfs / ext4 defaults 0 1\n"


def status(packages: dict[str, str]) -> bytes:
    """A dpkg status file; a "-" version marks a package removed with its config files kept."""
    out = []
    for name, version in packages.items():
        state = "deinstall ok config-files" if version.startswith("-") else "install ok installed"
        out.append(f"Package: {name}\nStatus: {state}\nPriority: optional\nArchitecture: amd64\n"
                   f"Version: {version.lstrip('-')}\nDescription: {name}\n multi-line\n .\n description\n")
    return "\n".join(out).encode()


BASE_PACKAGES = {"libc6": "2.36-9+deb12u3", "openssl": "3.0.11-1~deb12u1", "procps": "2:4.0.2-3",
                 "old-tool": "-1.0"}


def base_tree(over: dict[str, bytes | Symlink | None] | None = None) -> Tree:
    tree: Tree = boot_files(extra={
        "/etc/fstab": FSTAB,
        "/etc/hosts": b"127.0.0.1 localhost\n",
        "/etc/old.conf": b"old\n",
        "/etc/motd": b"welcome\n",
        "/usr/bin/tool": b"\x7fELF" + bytes(range(256)) * 64,
        "/etc/alternatives/editor": Symlink("/usr/bin/vim"),
        "/var/lib/dpkg/status": status(BASE_PACKAGES),
    })
    for path, value in (over or {}).items():
        if value is None:
            tree.pop(path)
        else:
            tree[path] = value
    return tree


def run_diff(a: Path, b: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvbuild", "diff", str(a), str(b), *args], capture_output=True,
                          text=True, check=False)


def diff_json(a: Path, b: Path, *args: str, code: int = 1) -> dict[str, Any]:
    out = run_diff(a, b, "--json", *args)
    assert out.returncode == code, out.stderr + out.stdout
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def changes(report: dict[str, Any], key: str = "/") -> dict[str, dict[str, list[Any]]]:
    fs = next(f for f in report["filesystems"] if f["key"] == key)
    return {c["path"]: c["changes"] for c in fs["changed"]}


def debugfs(img: Path, *requests: str) -> None:
    for request in requests:
        subprocess.run(["debugfs", "-w", "-R", request, str(img)], capture_output=True, check=True)


def copy(img: Path, dest: Path) -> Path:
    shutil.copyfile(img, dest)
    return dest


# --- identical -------------------------------------------------------------------------------------------------
def test_identical_images_exit_0_and_mtimes_only_with_all(tmp_path: Path) -> None:
    a = whole(base_tree())
    b = copy(a, tmp_path / "b.raw")
    out = run_diff(a, b)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("identical")
    # A touched file (mtime only) is identical by default, reproducible builds clamp mtimes; --all shows it.
    debugfs(b, "sif /etc/hosts mtime 1800000000")
    assert run_diff(a, b).returncode == 0
    r = diff_json(a, b, "--all")
    ch = changes(r)
    assert list(ch) == ["/etc/hosts"] and list(ch["/etc/hosts"]) == ["mtime"]
    assert ch["/etc/hosts"]["mtime"][1] == 1800000000
    assert r["identical"] is False and r["mtime_compared"] is True


# --- file-level changes ----------------------------------------------------------------------------------------
def test_added_removed_changed_symlink_mode_and_packages(tmp_path: Path) -> None:
    a = whole(base_tree())
    packages = dict(BASE_PACKAGES, openssl="3.0.11-1~deb12u2", libc6="2.36-9+deb12u1", curl="7.88.1-10")
    packages.pop("procps")
    b = copy(whole(base_tree({
        "/etc/new.conf": b"new\n",
        "/etc/old.conf": None,
        "/etc/hosts": b"127.0.0.1 localhosT\n",  # same size: only the digest tells
        "/etc/motd": b"welcome back\n",
        "/etc/alternatives/editor": Symlink("/usr/bin/nano"),
        "/var/lib/dpkg/status": status(packages),
    })), tmp_path / "b.raw")
    debugfs(b, "sif /usr/bin/tool mode 0100700", "sif /usr/bin/tool uid 1000")
    r = diff_json(a, b)
    fs = r["filesystems"][0]
    assert fs["key"] == "/" and fs["a"]["device"] == "(hd0)" and fs["a"]["fstype"] == "ext4"
    assert [e["path"] for e in fs["added"]] == ["/etc/new.conf"]
    assert fs["added"][0] == {"path": "/etc/new.conf", "type": "file", "size": 4, "mode": "0644"}
    assert [e["path"] for e in fs["removed"]] == ["/etc/old.conf"]
    ch = changes(r)
    assert set(ch) == {"/etc/hosts", "/etc/motd", "/etc/alternatives/editor", "/usr/bin/tool",
                       "/var/lib/dpkg/status"}
    assert set(ch["/etc/hosts"]) == {"content"} and ch["/etc/hosts"]["content"][0] != ch["/etc/hosts"]["content"][1]
    assert ch["/etc/motd"] == {"size": [8, 13]}
    assert ch["/etc/alternatives/editor"] == {"target": ["/usr/bin/vim", "/usr/bin/nano"]}
    assert ch["/usr/bin/tool"] == {"mode": ["0644", "0700"], "uid": [0, 1000]}
    p = r["packages"]
    assert p["added"] == [{"name": "curl", "version": "7.88.1-10"}]
    assert p["removed"] == [{"name": "procps", "version": "2:4.0.2-3"}]  # old-tool was never installed
    assert p["changed"] == [
        {"name": "libc6", "a": "2.36-9+deb12u3", "b": "2.36-9+deb12u1", "change": "downgraded"},
        {"name": "openssl", "a": "3.0.11-1~deb12u1", "b": "3.0.11-1~deb12u2", "change": "upgraded"}]
    assert r["menu_lst"]["diff"] is None and r["kernel"]["boot_changes"] == {}
    assert r["layout"] == []

    text = run_diff(a, b)
    assert text.returncode == 1
    for line in ("+ /etc/new.conf (file, 4 bytes)", "- /etc/old.conf (file, 4 bytes)",
                 "~ /etc/alternatives/editor: target /usr/bin/vim → /usr/bin/nano",
                 "~ /usr/bin/tool: mode 0644 → 0700; uid 0 → 1000", "~ /etc/motd: size 8 → 13",
                 "upgraded   openssl 3.0.11-1~deb12u1 → 3.0.11-1~deb12u2", "added      curl 7.88.1-10",
                 "removed    procps 2:4.0.2-3"):
        assert line in text.stdout, text.stdout
    assert "~ /etc/hosts: content sha256 " in text.stdout


def test_added_directory_is_folded_in_text_and_listed_in_json() -> None:
    a = whole(base_tree())
    b = whole(base_tree({"/opt/app/bin/run": b"#!/bin/sh\n", "/opt/app/lib/x": b"x", "/opt/app/lib/y": b"y"}))
    r = diff_json(a, b)
    assert [e["path"] for e in r["filesystems"][0]["added"]] == [
        "/opt", "/opt/app", "/opt/app/bin", "/opt/app/bin/run", "/opt/app/lib", "/opt/app/lib/x", "/opt/app/lib/y"]
    out = run_diff(a, b).stdout
    assert "+ /opt/ (dir, 6 entries below)" in out and "/opt/app/lib/x" not in out


# --- menu.lst and kernels --------------------------------------------------------------------------------------
NEW = "6.2.0-synthetic"
TWO_ENTRIES = MENU + b"""
title Debian GNU/Linux, kernel %s
root (hd0)
kernel /boot/vmlinuz-%s root=LABEL=rootfs ro console=hvc0
initrd /boot/initrd.img-%s
""" % (NEW.encode(), NEW.encode(), VERSION.encode())


def test_menu_default_and_new_kernel_change_what_boots() -> None:
    a = whole(base_tree({"/boot/grub/menu.lst": TWO_ENTRIES}))
    b = whole(base_tree({"/boot/grub/menu.lst": TWO_ENTRIES.replace(b"default 0", b"default 1"),
                        f"/boot/vmlinuz-{NEW}": pv_kernel()}))
    r = diff_json(a, b)
    assert r["menu_lst"]["diff"].splitlines()[3:5] == ["-default 0", "+default 1"]
    k = r["kernel"]
    assert k["a"]["versions"] == [VERSION] and k["b"]["versions"] == [VERSION, NEW]
    assert k["versions_added"] == [NEW] and k["versions_removed"] == []
    assert k["boot_changes"]["entry"] == [f"0: Debian GNU/Linux, kernel {VERSION}",
                                          f"1: Debian GNU/Linux, kernel {NEW}"]
    assert k["boot_changes"]["kernel"] == [f"(hd0)/boot/vmlinuz-{VERSION}", f"(hd0)/boot/vmlinuz-{NEW}"]
    assert k["a"]["boots"]["outcome"] == k["b"]["boots"]["outcome"] == "boots"
    out = run_diff(a, b).stdout
    assert "menu.lst (/boot/grub/menu.lst)\n" in out and "  -default 0\n  +default 1\n" in out
    assert f"Kernel (in /boot: {VERSION} → {VERSION}, {NEW})" in out and f"  + {NEW}" in out
    assert f"kernel: (hd0)/boot/vmlinuz-{VERSION} → (hd0)/boot/vmlinuz-{NEW}" in out


def test_boot_outcome_follows_the_profile_flags() -> None:
    """--pvgrub/--variant are the emulator's profile: hd00 on 1.03 finds no menu on a partitionless disk."""
    a = whole(base_tree())
    b = whole(base_tree({"/etc/motd": b"hello\n"}))
    r = diff_json(a, b, "--pvgrub", "1.03", "--variant", "hd00")
    assert r["kernel"]["profile"] == {"version": "1.03", "variant": "hd00", "arch": "x86_64"}
    assert r["kernel"]["a"]["boots"]["outcome"] != "boots"


# --- layouts ---------------------------------------------------------------------------------------------------
ROOT_FSTAB = b"LABEL=rootfs / ext4 defaults 0 1\nLABEL=boot /boot ext4 defaults 0 2\n"


def two_partitions(boot_extra: Tree | None = None, root_uuid: str | None = None) -> Path:
    boot = Fs.of(boot_files(prefix="", extra=boot_extra), label="boot", size_mb=24)
    root = Fs.of({"/etc/fstab": ROOT_FSTAB, "/etc/hosts": b"127.0.0.1 localhost\n", "/boot/.keep": b""},
                 label="rootfs", uuid=root_uuid, size_mb=24)
    return build(DiskSpec("mbr", parts=(Part(boot, size_mb=24), Part(root, size_mb=24))))


def test_mbr_two_partitions_matched_by_fstab_mountpoint() -> None:
    a = two_partitions()
    b = two_partitions({"/grub/extra.cfg": b"x\n"}, root_uuid="11111111-2222-4333-8444-555555555555")
    r = diff_json(a, b)
    keys = {f["key"]: f for f in r["filesystems"]}
    assert set(keys) == {"/", "/boot"}
    assert keys["/boot"]["a"]["device"] == "(hd0,0)" and keys["/"]["a"]["device"] == "(hd0,1)"
    assert [e["path"] for e in keys["/boot"]["added"]] == ["/boot/grub/extra.cfg"]  # as the system sees it
    assert keys["/"]["added"] == keys["/"]["removed"] == keys["/"]["changed"] == []
    assert {"what": "filesystem /", "field": "uuid", "a": "6b7c1a1e-2d2f-4b8e-9a51-0c6d7e8f9a0b",
            "b": "11111111-2222-4333-8444-555555555555"} in r["layout"]
    assert r["kernel"]["a"]["versions"] == [VERSION]  # /boot is the separate partition
    out = run_diff(a, b).stdout
    assert "Filesystem /boot ((hd0,0) ext4 → (hd0,0) ext4): 1 added, 0 removed, 0 changed" in out
    assert "  + /boot/grub/extra.cfg (file, 2 bytes)" in out


def test_without_fstab_filesystems_pair_by_partition_and_boot_is_found() -> None:
    """No fstab: filesystems are keyed by partition; a separate /boot (with the `boot -> .` symlink PV-GRUB <= 1.03
    needs) is still where menu.lst and the kernels are looked up."""
    def disk(menu: bytes) -> Path:
        boot = Fs.of(boot_files(menu, prefix="", extra={"/boot": Symlink(".")}), label="boot", size_mb=24)
        root = Fs.of({"/etc/hosts": b"127.0.0.1 localhost\n"}, label="rootfs", size_mb=24)
        return build(DiskSpec("mbr", parts=(Part(boot, size_mb=24), Part(root, size_mb=24))))

    r = diff_json(disk(MENU), disk(MENU.replace(b"timeout 0", b"timeout 5")))
    assert [f["key"] for f in r["filesystems"]] == ["partition 0", "partition 1"]
    assert list(changes(r, "partition 0")) == ["/grub/menu.lst"]  # same size: the content digest differs
    assert set(changes(r, "partition 0")["/grub/menu.lst"]) == {"content"}
    assert r["menu_lst"]["diff"] is not None and "+timeout 5" in r["menu_lst"]["diff"]
    assert r["kernel"]["a"]["versions"] == [VERSION]


def test_partitionless_against_mbr_pairs_root_by_mountpoint() -> None:
    a = whole(base_tree())
    root = Fs.of(base_tree(), label="rootfs", size_mb=48)
    b = build(DiskSpec("mbr", parts=(Part(root, size_mb=48),)))
    r = diff_json(a, b)
    assert [f["key"] for f in r["filesystems"]] == ["/"]
    fs = r["filesystems"][0]
    assert (fs["a"]["device"], fs["b"]["device"]) == ("(hd0)", "(hd0,0)")
    assert fs["added"] == fs["removed"] == fs["changed"] == []
    assert {"what": "disk", "field": "partition table", "a": "none", "b": "mbr"} in r["layout"]


def test_gpt_images() -> None:
    a = build(DiskSpec("gpt", parts=(Part(Fs.of(base_tree(), label="rootfs"), type="L"),)))
    b = build(DiskSpec("gpt", parts=(Part(Fs.of(base_tree({"/etc/motd": b"hi\n"}), label="rootfs"), type="L"),)))
    r = diff_json(a, b)
    fs = r["filesystems"][0]
    assert (fs["key"], fs["a"]["device"], fs["b"]["device"]) == ("/", "(hd0,0)", "(hd0,0)")
    assert changes(r) == {"/etc/motd": {"size": [8, 3]}}
    assert {c["field"] for c in r["layout"]} <= {"GPT disk GUID", "PARTUUID"}  # sfdisk makes them at random


XFS_V4 = ("-m", "crc=0", "-n", "ftype=0")


def test_xfs_files_compared() -> None:
    a = whole(base_tree(), fstype="xfs", options=XFS_V4, size_mb=300)
    b = whole(base_tree({"/etc/hosts": b"10.0.0.1 other\n", "/etc/alternatives/editor": Symlink("/usr/bin/nano"),
                        "/etc/new.conf": b"new\n"}), fstype="xfs", options=XFS_V4, size_mb=300)
    r = diff_json(a, b)
    fs = r["filesystems"][0]
    assert fs["a"]["fstype"] == "xfs"
    assert [e["path"] for e in fs["added"]] == ["/etc/new.conf"]
    ch = changes(r)
    assert set(ch) == {"/etc/hosts", "/etc/alternatives/editor"}
    assert ch["/etc/alternatives/editor"] == {"target": ["/usr/bin/vim", "/usr/bin/nano"]}
    assert run_diff(a, a).returncode == 0


def test_unreadable_file_is_listed_not_counted() -> None:
    """The v4-1k XFS fixture has a btree file with an attribute fork whose extent root GRUB's xfs driver (and so
    the reader) looks for in the wrong place: listed under `unreadable`, and the images are still identical."""
    img = build_xfs_image("v4-1k").fs_path
    r = diff_json(img, img, code=0)
    assert r["identical"] is True
    assert [u["path"] for u in r["filesystems"][0]["unreadable"]] == ["/geo/attrbtree"]
    out = run_diff(img, img).stdout
    assert out.startswith("identical") and "? /geo/attrbtree: contents not compared" in out


# --- bad input -------------------------------------------------------------------------------------------------
def test_bad_input_exits_2_with_a_message(tmp_path: Path) -> None:
    good = whole(base_tree())
    junk = tmp_path / "junk.raw"
    junk.write_bytes(b"not a disk image\n" * 1000)
    out = run_diff(good, junk)
    assert out.returncode == 2 and "not a raw disk image" in out.stderr and "Traceback" not in out.stderr
    out = run_diff(tmp_path / "missing.raw", good)
    assert out.returncode == 2 and "missing.raw" in out.stderr and "Traceback" not in out.stderr
    bit64 = whole(base_tree(), options=("-O", "64bit"))
    out = run_diff(good, bit64)
    assert out.returncode == 2 and "(hd0) (ext4) cannot be read" in out.stderr and "64bit" in out.stderr
    v5 = whole(base_tree(), fstype="xfs", options=(), size_mb=300)
    out = run_diff(v5, good)
    assert out.returncode == 2 and "holds xfs" in out.stderr, out.stderr
    if shutil.which("mkfs.jfs"):  # a filesystem PV-GRUB reads but no reader here can list
        jfs = tmp_path / "jfs.raw"
        jfs.write_bytes(b"")
        os.truncate(jfs, 32 << 20)
        subprocess.run(["mkfs.jfs", "-q", str(jfs)], capture_output=True, check=True)
        out = run_diff(jfs, good)
        assert out.returncode == 2 and "(hd0) holds jfs" in out.stderr and "cannot" in out.stderr, out.stderr
    usage = run_diff(good, good, "--pvgrub", "2.0")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


# --- the readers' walk -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fstype", ["ext4", "ext2"])
def test_ext_walk_reads_holes_as_zeros_where_grub_does_not(fstype: str) -> None:
    """mke2fs -d leaves all-zero blocks unallocated: `content` reads them as zeros (Linux's view), while `open`
    reads what PV-GRUB would load (test_machine.py covers that). ext4 maps them with extents, ext2 with blocks."""
    data = b"A" * 4096 + bytes(3 * 4096) + b"B" * 4096 + bytes(2 * 4096)
    img = whole({"/sparse": data, "/d/s": Symlink("../sparse"), **{f"/many/f{i:04d}": b"%d" % i for i in range(600)}},
                dense=False, fstype=fstype, options=("-O", "^64bit") if fstype == "ext4" else ())
    with Disk(img) as disk:
        fs = ext2.mount(Volume(disk, 0, disk.size))
        assert fs is not None
        entries = dict(fs.walk())
        st = entries["/sparse"]
        assert st.kind == S_IFREG and st.size == len(data)
        assert b"".join(fs.content(st.ino)) == data
        assert b"".join(fs.content(st.ino, chunk=1000)) == data
        assert entries["/d/s"].kind == S_IFLNK and fs.readlink(entries["/d/s"].ino) == b"../sparse"
        assert len([p for p in entries if p.startswith("/many/")]) == 600
        assert b"".join(fs.content(entries["/many/f0599"].ino)) == b"599"


def test_walk_bounds_and_directory_cycle(tmp_path: Path) -> None:
    """The walk is bounded (names) and a directory reached twice (a hard-linked directory: a corrupt image) is an
    error, not an endless walk; `pvbuild diff` says so with exit 2."""
    img = whole(base_tree())
    with Disk(img) as disk:
        fs = ext2.mount(Volume(disk, 0, disk.size))
        assert fs is not None
        with pytest.raises(GrubError) as e:
            list(fs.walk(max_entries=5))
        assert e.value.code == "fs-emulator-limit"
    looped = copy(img, tmp_path / "loop.raw")
    debugfs(looped, "link /etc /etc/alternatives/loop")
    with Disk(looped) as disk:
        fs = ext2.mount(Volume(disk, 0, disk.size))
        assert fs is not None
        with pytest.raises(GrubError) as e:
            list(fs.walk())
        assert e.value.code == "fs-corrupt" and "reached twice" in str(e.value)
    out = run_diff(img, looped)
    assert out.returncode == 2 and "/etc/alternatives/loop: directory inode" in out.stderr, out.stderr


# --- hostile images: the walk raises GrubError or ends, nothing else ---------------------------------------
def _walk_everything(fs: Filesystem | None) -> None:
    if fs is None:
        return
    try:
        for _, st in fs.walk(max_entries=20_000):
            try:
                if st.kind == S_IFREG:
                    for k, _chunk in enumerate(fs.content(st.ino, chunk=64 * 1024)):
                        if k == 4:
                            break
                elif st.kind == S_IFLNK:
                    fs.readlink(st.ino)
            except GrubError:
                pass
    except GrubError:
        pass


WALK_FUZZ = settings(max_examples=60, deadline=5000, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@WALK_FUZZ
@given(mutated("fuzz-ext4"))
def test_fuzz_ext4_walk(data: bytes) -> None:
    """Mutated ext4 (tests/test_fuzz_ext2.py's regions): walk, content and readlink raise GrubError or end."""
    _walk_everything(ext2.mount(Volume(MemoryDisk(data), 0, len(data))))


@pytest.mark.slow
@WALK_FUZZ
@given(mutations(None))
def test_fuzz_xfs_walk(muts: list[tuple[int, bytes]]) -> None:
    """Mutated V4 XFS (tests/test_fuzz_xfs.py's regions, every directory format): GrubError or an end."""
    disk = _apply(muts)
    fs = xfs.mount(Volume(disk, 0, disk.size))
    if fs is not None:
        fs.step_limit = 200_000
    _walk_everything(fs)


# --- units -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "sign"), [
    ("1.0", "1.0", 0), ("1.0", "1.1", -1), ("1.0~rc1", "1.0", -1), ("1:0.9", "2.0", 1), ("1.0-1", "1.0-2", -1),
    ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2", -1), ("2.36-9+deb12u3", "2.36-9", 1), ("1.0a", "1.0+", -1),
    ("1.10", "1.9", 1), ("0~20171227-0.3", "0~20171227-0.3+deb12u1", -1), ("1.0", "1.0.0", -1),
])
def test_dpkg_version_order(a: str, b: str, sign: int) -> None:
    got = compare_versions(a, b)
    assert (got > 0) - (got < 0) == sign


def test_dpkg_status_keeps_installed_packages_and_multiarch() -> None:
    text = status({"a": "1", "b": "-2"}).decode() + (
        "\nPackage: libx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n"
        "\nPackage: libx\nStatus: install ok installed\nArchitecture: i386\nVersion: 1\n")
    assert parse_dpkg_status(text) == {"a": "1", "libx:amd64": "1", "libx:i386": "1"}


def test_fstab_parsing() -> None:
    text = "# c\nUUID=x / ext4 defaults 0 1\n/dev/xvda2\t/boot ext2 ro\nbad\nLABEL=a\\040b /mnt\\040x xfs\n"
    assert parse_fstab(text) == [("UUID=x", "/", "ext4"), ("/dev/xvda2", "/boot", "ext2"),
                                 ("LABEL=a b", "/mnt x", "xfs")]
