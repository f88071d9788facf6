"""`pvbuild convert`: images built the way other tools build them (stock mkfs.ext4, so 64bit on; a grub2-only
/boot with grub.cfg and no menu.lst; Debian's real Xen-capable kernel and an initramfs-tools initrd) become
PV-GRUB-ready, and the emulator says they boot. The original is never touched unless --in-place."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pvbuild.cli import main
from pvbuild.convert import version_key
from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.profiles import Profile
from tests.fixtures_kernels import debian_kernel
from tests.imagebuild import DiskSpec, Fs, Part, Symlink, Tree, build

ROOT_UUID = "0e6f6a3c-1b2d-4c5e-8f90-a1b2c3d4e5f6"
BOOT_UUID = "7d1c2b3a-4e5f-4a6b-9c8d-0f1e2d3c4b5a"
GRUB_CFG = b"set default=0\nmenuentry 'Debian GNU/Linux' {\n\tlinux /boot/vmlinuz root=/dev/sda1 ro quiet\n}\n"
OS_RELEASE = b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'


def _need_tools() -> None:
    for tool in ("debugfs", "resize2fs", "e2fsck", "mkfs.ext4", "sfdisk"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            pytest.skip(f"{tool} is not installed")


def _boot_files(prefix: str, *, kernel: bool = True) -> Tree:
    from tests.fixtures_kernels import debian_initrd

    k = debian_kernel("amd64")
    rel = k.release
    tree: Tree = {f"{prefix}/grub/grub.cfg": GRUB_CFG, f"{prefix}/config-{rel}": k.config.read_bytes()}
    if kernel:
        tree[f"{prefix}/vmlinuz-{rel}"] = k.vmlinuz.read_bytes()
        tree[f"{prefix}/initrd.img-{rel}"] = debian_initrd("debian-zstd", k).read_bytes()
        tree[f"{prefix}/System.map-{rel}"] = b"ffffffff81000000 T _text\n"
    return tree


def _root_files(fstab: bytes) -> Tree:
    return {"/etc/os-release": OS_RELEASE, "/etc/fstab": fstab, "/usr/bin/true": b"\x7fELF", "/bin": Symlink("usr/bin"),
            "/sbin/init": b"#!/bin/sh\n"}


def stock_whole(*, kernel: bool = True) -> Path:
    """A partitionless image: one stock ext4 (64bit) holding / and /boot."""
    tree = {**_root_files(b"UUID=%s / ext4 defaults 0 1\n" % ROOT_UUID.encode()), **_boot_files("/boot", kernel=kernel)}
    return build(DiskSpec("none", whole=Fs.of(tree, options=(), size_mb=80, uuid=ROOT_UUID, label="rootfs",
                                              dense=False)))


def stock_mbr_single() -> Path:
    """MBR, one stock ext4 partition holding / and /boot."""
    tree = {**_root_files(b"UUID=%s / ext4 defaults 0 1\n" % ROOT_UUID.encode()), **_boot_files("/boot")}
    fs = Fs.of(tree, options=(), uuid=ROOT_UUID, label="rootfs", dense=False)
    return build(DiskSpec("mbr", parts=(Part(fs, size_mb=80),)))


def stock_mbr_separate() -> Path:
    """MBR: a stock ext4 /boot (64bit, grub2 only) first, then the stock ext4 root."""
    boot = Fs.of(_boot_files(""), options=(), uuid=BOOT_UUID, label="boot", dense=False)
    root = Fs.of({**_root_files(b"UUID=%s / ext4 defaults 0 1\nUUID=%s /boot ext4 defaults 0 2\n"
                                % (ROOT_UUID.encode(), BOOT_UUID.encode())), "/boot/.keep": b""},
                 options=(), uuid=ROOT_UUID, label="rootfs")
    return build(DiskSpec("mbr", parts=(Part(boot, size_mb=48), Part(root, size_mb=32))))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(src), str(dst)], check=True)
    return dst


def _convert(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["convert", "--json", *args])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def _dumpe2fs_features(image: Path, offset: int = 0) -> str:
    spec = f"{image}?offset={offset}" if offset else str(image)
    out = subprocess.run(["dumpe2fs", "-h", spec], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("Filesystem features"))


def _holes(image: Path, path: str) -> list[tuple[int, int]]:
    """Logical block ranges of `path` no extent covers (PV-GRUB's ext4 reader misreads them)."""
    out = subprocess.run(["debugfs", "-R", f"ex {path}", str(image)], capture_output=True, text=True,
                         check=True).stdout
    covered = []
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)/\s*(\d+)\s+\d+/\s*\d+\s+(\d+)\s*-\s*(\d+)\s", line)
        if m and m.group(1) == m.group(2):  # leaf extents only
            covered.append((int(m.group(3)), int(m.group(4))))
    gaps, want = [], 0
    for lo, hi in sorted(covered):
        if lo > want:
            gaps.append((want, lo - 1))
        want = max(want, hi + 1)
    return gaps


def _menu_of(report: dict[str, object]) -> str:
    conv = report["convert"]
    assert isinstance(conv, dict)
    return str(conv["menu"])


def test_version_order() -> None:
    names = ["6.1.0-9-amd64", "6.1.0-28-amd64", "5.10.0-30-amd64", "0-rescue-abc", "6.1.0-28-cloud-amd64"]
    assert sorted(names, key=version_key, reverse=True)[:2] == ["6.1.0-28-cloud-amd64", "6.1.0-28-amd64"]
    assert sorted(names, key=version_key)[0] == "0-rescue-abc"


def test_partitionless_stock_image_converts_and_boots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """64bit dropped with resize2fs -s, menu.lst written next to grub.cfg, root=UUID=, hd0; original untouched."""
    _need_tools()
    image = _copy(stock_whole(), tmp_path / "disk.raw")
    assert " 64bit" in _dumpe2fs_features(image)
    kernel = f"/boot/vmlinuz-{debian_kernel('amd64').release}"
    assert _holes(image, kernel)  # mke2fs -d made holes of the kernel's zero blocks
    before = _sha(image)
    # Without conversion PV-GRUB fails every lookup on the 64bit filesystem.
    assert not check_image(image, Profile()).boots
    code, r = _convert([str(image)], capsys)
    assert code == 0, r.get("findings")
    out = tmp_path / "disk.pvgrub.raw"
    assert out.is_file() and _sha(image) == before
    assert r["outcome"] == "boots" and r["image"] == "disk.pvgrub.raw"
    assert r["profile"] == {"version": "1.05", "variant": "hd0", "arch": "x86_64"}
    assert str(r["cmdline"]).startswith(f"root=UUID={ROOT_UUID} ro console=hvc0")
    menu = _menu_of(r)
    assert "root (hd0)\n" in menu and "kernel /boot/vmlinuz-6." in menu and "initrd /boot/initrd.img-6." in menu
    assert "title Debian GNU/Linux 12 (bookworm), kernel 6." in menu
    assert " 64bit" not in _dumpe2fs_features(out)
    assert "metadata_csum" in _dumpe2fs_features(out)  # ro_compat: GRUB 0.97 ignores it, so it stays
    conv = r["convert"]
    assert isinstance(conv, dict)
    assert any("64bit" in c for c in conv["changes"])
    report = json.loads((tmp_path / "boot-report.json").read_text())
    assert report["outcome"] == "boots" and report["image"] == "disk.pvgrub.raw"
    subprocess.run(["e2fsck", "-fn", str(out)], check=True, capture_output=True)
    assert _holes(out, kernel) == []  # unwritten extents now, read as zeros by GRUB and Linux
    # Sparse: the copy holds data only where the original does (plus what the conversion wrote).
    assert out.stat().st_blocks * 512 < out.stat().st_size
    # No temporary files are left next to the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boot-report.json", "disk.pvgrub.raw", "disk.raw"]


def test_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Converting a converted image gives the same menu.lst and still boots."""
    _need_tools()
    image = _copy(stock_whole(), tmp_path / "disk.raw")
    code, first = _convert([str(image), "-o", str(tmp_path / "a.raw")], capsys)
    assert code == 0
    code, second = _convert([str(tmp_path / "a.raw"), "-o", str(tmp_path / "b.raw")], capsys)
    assert code == 0 and second["outcome"] == "boots"
    assert _menu_of(first) == _menu_of(second)
    conv = second["convert"]
    assert isinstance(conv, dict)
    assert not any("64bit" in c for c in conv["changes"])
    assert any("replaced" in c for c in conv["changes"])


def test_in_place_changes_the_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need_tools()
    image = _copy(stock_whole(), tmp_path / "disk.raw")
    before = _sha(image)
    code, r = _convert([str(image), "--in-place"], capsys)
    assert code == 0 and r["outcome"] == "boots"
    assert _sha(image) != before
    assert not (tmp_path / "disk.pvgrub.raw").exists()
    assert check_image(image, Profile()).boots


def test_mbr_single_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A partitioned image: the partition is fixed in a temporary file and written back; hd00, (hd0,0)."""
    _need_tools()
    image = _copy(stock_mbr_single(), tmp_path / "mbr.raw")
    before = _sha(image)
    code, r = _convert([str(image), "-o", str(tmp_path / "out" / "mbr-pv.raw")], capsys)
    assert code == 0, r.get("findings")
    assert _sha(image) == before
    assert r["profile"] == {"version": "1.05", "variant": "hd00", "arch": "x86_64"}
    menu = _menu_of(r)
    assert "root (hd0,0)\n" in menu and "kernel /boot/vmlinuz-" in menu
    assert (tmp_path / "out" / "boot-report.json").is_file()
    assert " 64bit" not in _dumpe2fs_features(tmp_path / "out" / "mbr-pv.raw", 1024 * 1024)
    # The original partition table is kept as it was.
    assert (tmp_path / "out" / "mbr-pv.raw").read_bytes()[:512] == image.read_bytes()[:512]


def test_mbr_separate_boot_for_pvgrub_103(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Separate /boot: menu.lst is /grub/menu.lst on it, boot -> . makes /boot/grub/menu.lst resolve (the only
    place PV-GRUB 1.03 hd00 looks); root= names the root partition's UUID; the root's 64bit is left alone."""
    _need_tools()
    image = _copy(stock_mbr_separate(), tmp_path / "sep.raw")
    code, r = _convert([str(image), "--pvgrub", "1.03", "--timeout", "3", "--no-hiddenmenu"], capsys)
    assert code == 0, r.get("findings")
    assert r["profile"] == {"version": "1.03", "variant": "hd00", "arch": "x86_64"}
    assert r["menu"] == {"device": "(hd0,0)", "path": "/boot/grub/menu.lst"}
    menu = _menu_of(r)
    assert "root (hd0,0)\nkernel /vmlinuz-" in menu and "initrd /initrd.img-" in menu
    assert "timeout 3\n" in menu and "hiddenmenu" not in menu
    assert f"root=UUID={ROOT_UUID}" in menu
    conv = r["convert"]
    assert isinstance(conv, dict)
    assert conv["separate_boot"] is True and any("boot -> ." in c for c in conv["changes"])
    out = tmp_path / "sep.pvgrub.raw"
    root_offset = (1 + 48) * 1024 * 1024
    assert " 64bit" in _dumpe2fs_features(out, root_offset)  # PV-GRUB never reads the root filesystem
    assert " 64bit" not in _dumpe2fs_features(out, 1024 * 1024)


def test_flags_and_recipe_menu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The recipe's menu/kernel sections shape menu.lst; a flag given wins over the recipe."""
    _need_tools()
    image = _copy(stock_whole(), tmp_path / "disk.raw")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: retro\nkernel:\n  cmdline: [nomodeset]\n  root: label\n"
                      "menu:\n  title: Retrofitted\n  timeout: 5\n  hiddenmenu: false\n  fallback: []\n"
                      "  entries:\n    - title: Rescue\n      kernel: /boot/vmlinuz-rescue\n      args: single\n")
    code, r = _convert([str(image), "--recipe", str(recipe), "-o", str(tmp_path / "r.raw")], capsys)
    assert code == 0, r.get("findings")
    menu = _menu_of(r)
    assert "written by pvbuild from retro" in menu
    assert "timeout 5\n" in menu and "hiddenmenu" not in menu and "fallback" not in menu
    assert "title Retrofitted, kernel 6." in menu and "title Rescue\n" in menu
    assert "root=LABEL=rootfs ro console=hvc0 nomodeset" in menu
    assert "kernel /boot/vmlinuz-rescue root=LABEL=rootfs single console=hvc0" in menu
    code, r = _convert([str(image), "--recipe", str(recipe), "--timeout", "0", "--hiddenmenu", "--title", "X",
                        "--fallback", "1", "-o", str(tmp_path / "f.raw")], capsys)
    assert code == 0
    menu = _menu_of(r)
    assert "timeout 0\n" in menu and "hiddenmenu\n" in menu and "fallback 1\n" in menu and "title X, kernel" in menu
    # Bad entry numbers are refused before anything is written.
    code = main(["convert", str(image), "--default", "7", "-o", str(tmp_path / "bad.raw")])
    assert code == 2 and "--default 7" in capsys.readouterr().err
    assert not (tmp_path / "bad.raw").exists()


def test_refuses_image_without_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need_tools()
    image = _copy(stock_whole(kernel=False), tmp_path / "nok.raw")
    code = main(["convert", str(image)])
    err = capsys.readouterr().err
    assert code == 2 and "no kernel" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nok.raw"]


def test_refuses_non_xen_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A kernel PV-GRUB cannot start is named with the reason (the emulator's kernel inspector)."""
    _need_tools()
    tree = {**_root_files(b""), "/boot/vmlinuz-5.0.0-generic": b"MZ not a kernel" * 100}
    image = build(DiskSpec("none", whole=Fs.of(tree, options=(), size_mb=16, uuid=ROOT_UUID)))
    code = main(["convert", str(image), "-o", str(tmp_path / "x.raw")])
    err = capsys.readouterr().err
    assert code == 2 and "/boot/vmlinuz-5.0.0-generic" in err and "Xen" in err, err
    assert not list(tmp_path.iterdir())


def test_refuses_xfs_v5_boot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An XFS v5 (crc=1, mkfs.xfs's default) root holding /boot: PV-GRUB cannot read it; nothing is written."""
    _need_tools()
    if shutil.which("mkfs.xfs") is None and shutil.which("mkfs.xfs", path="/usr/sbin:/sbin") is None:
        pytest.skip("mkfs.xfs is not installed")
    tree = {**_root_files(b""), "/boot/vmlinuz-6.1.0-1-amd64": b"kernel"}
    image = build(DiskSpec("none", whole=Fs.of(tree, fstype="xfs", options=(), size_mb=300, uuid=ROOT_UUID)))
    code = main(["convert", str(image), "-o", str(tmp_path / "x.raw")])
    err = capsys.readouterr().err
    assert code == 2 and "XFS" in err and "v5" in err, err
    assert not list(tmp_path.iterdir())


def test_refuses_gpt_for_pvgrub_103(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _need_tools()
    fs = Fs.of({**_root_files(b""), "/boot/vmlinuz-6.1.0-1-amd64": b"kernel"}, options=(), uuid=ROOT_UUID)
    image = build(DiskSpec("gpt", parts=(Part(fs, type="L", size_mb=16),)))
    code = main(["convert", str(image), "--pvgrub", "1.03", "-o", str(tmp_path / "x.raw")])
    err = capsys.readouterr().err
    assert code == 2 and "GPT" in err and "1.04" in err, err


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(tmp_path / "missing.raw")]) == 2
    junk = tmp_path / "junk.raw"
    junk.write_bytes(b"\0" * 65536)
    assert main(["convert", str(junk)]) == 2
    assert "no Linux filesystem" in capsys.readouterr().err


def test_refuses_image_attached_to_a_loop_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An image attached to a loop device may be mounted: never copied or edited then."""
    _need_tools()
    if shutil.which("losetup") is None and shutil.which("losetup", path="/usr/sbin:/sbin") is None:
        pytest.skip("losetup is not installed")
    image = _copy(stock_whole(kernel=False), tmp_path / "busy.raw")
    attach = subprocess.run(["losetup", "-f", "--show", "-r", str(image)], capture_output=True, text=True,
                            check=False)
    if attach.returncode != 0:
        pytest.skip(f"cannot attach a loop device here: {attach.stderr.strip()}")
    try:
        code = main(["convert", str(image), "--in-place"])
        err = capsys.readouterr().err
        assert code == 2 and attach.stdout.strip() in err, err
    finally:
        subprocess.run(["losetup", "-d", attach.stdout.strip()], check=False)


def test_separate_boot_with_root_pvbuild_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """/boot on ext4, root elsewhere (LVM, LUKS: here a partition with no filesystem): refused with the way out,
    then converted when root= is given."""
    _need_tools()
    boot = Fs.of(_boot_files(""), options=(), uuid=BOOT_UUID, label="boot", dense=False)
    image = build(DiskSpec("mbr", parts=(Part(boot, size_mb=48), Part(None, type="8e", size_mb=8))))
    code = main(["convert", str(image), "-o", str(tmp_path / "x.raw")])
    err = capsys.readouterr().err
    assert code == 2 and "--cmdline root=" in err, err
    code, r = _convert([str(image), "-o", str(tmp_path / "y.raw"), "--cmdline", "root=/dev/mapper/vg-root"], capsys)
    menu = _menu_of(r)
    assert "root (hd0,0)\nkernel /vmlinuz-" in menu and "root=/dev/mapper/vg-root ro console=hvc0" in menu
    assert r["entry"] is not None and r["kernel"] is not None, r["findings"]


def test_separate_ext4_boot_with_xfs_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The RHEL-like layout: a stock ext4 /boot and an XFS (v5) root. Only /boot is edited; root= names the XFS
    filesystem's UUID, which the emulator resolves to the second partition — and then finds that the initrd
    (made for an ext4 root) lacks xfs.ko, which the kernel builds as a module: exit 1, the output and its
    report kept for reading."""
    _need_tools()
    if shutil.which("mkfs.xfs") is None and shutil.which("mkfs.xfs", path="/usr/sbin:/sbin") is None:
        pytest.skip("mkfs.xfs is not installed")
    boot = Fs.of(_boot_files(""), options=(), uuid=BOOT_UUID, label="boot", dense=False)
    root = Fs.of({**_root_files(b""), "/boot/.keep": b""}, fstype="xfs", options=(), uuid=ROOT_UUID)
    image = build(DiskSpec("mbr", parts=(Part(boot, size_mb=48), Part(root, size_mb=300))))
    code, r = _convert([str(image), "-o", str(tmp_path / "rhel.raw")], capsys)
    findings = r["findings"]
    assert isinstance(findings, list)
    assert code == 1 and r["outcome"] == "boots", findings
    assert [f["code"] for f in findings if f["severity"] == "error"] == ["initrd-no-rootfs-module"]
    assert (tmp_path / "rhel.raw").is_file() and (tmp_path / "boot-report.json").is_file()
    conv = r["convert"]
    assert isinstance(conv, dict)
    assert conv["root"]["fstype"] == "xfs" and conv["boot"]["device"] == "(hd0,0)" and conv["separate_boot"]
    assert f"root=UUID={ROOT_UUID}" in _menu_of(r)
    assert conv["kernels"][0]["usable"] is True


def test_refuses_btrfs_boot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A btrfs root holding /boot (mkfs.btrfs --rootdir): PV-GRUB has no btrfs driver; nothing is written."""
    _need_tools()
    mkfs = shutil.which("mkfs.btrfs") or shutil.which("mkfs.btrfs", path="/usr/sbin:/sbin")
    if mkfs is None:
        pytest.skip("mkfs.btrfs is not installed")
    tree = tmp_path / "tree"
    for rel, data in {"etc/os-release": OS_RELEASE, "usr/bin/true": b"x", "boot/vmlinuz-6.1.0-1-amd64": b"k"}.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    image = tmp_path / "btrfs.raw"
    with open(image, "wb") as f:
        f.truncate(128 * 1024 * 1024)
    subprocess.run([mkfs, "-q", "-f", "--rootdir", str(tree), str(image)], check=True, capture_output=True)
    code = main(["convert", str(image)])
    err = capsys.readouterr().err
    assert code == 2 and "btrfs" in err and "no btrfs driver" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["btrfs.raw", "tree"]


@pytest.mark.slow
def test_xfs_v4_boot_through_libguestfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A separate /boot on V4 XFS without ftype (what PV-GRUB's xfs driver reads): listed and its kernel inspected
    with the emulator's XFS reader, edited inside a libguestfs appliance (never mounted on the host)."""
    _need_tools()
    for tool in ("mkfs.xfs", "guestfish", "xfs_repair"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            pytest.skip(f"{tool} is not installed")
    boot = Fs.of(_boot_files(""), fstype="xfs", options=("-m", "crc=0", "-n", "ftype=0"), uuid=BOOT_UUID)
    root = Fs.of({**_root_files(b""), "/boot/.keep": b""}, options=(), uuid=ROOT_UUID, label="rootfs")
    image = build(DiskSpec("mbr", parts=(Part(boot, size_mb=300), Part(root, size_mb=32))))
    before = _sha(image)
    code, r = _convert([str(image), "-o", str(tmp_path / "xfs.raw")], capsys)
    assert code == 0, r.get("findings")
    assert _sha(image) == before
    conv = r["convert"]
    assert isinstance(conv, dict)
    assert conv["boot"]["fstype"] == "xfs" and conv["separate_boot"] and conv["root"]["fstype"] == "ext4"
    assert any("libguestfs" in c for c in conv["changes"]) and any("boot -> ." in c for c in conv["changes"])
    assert r["menu"] == {"device": "(hd0,0)", "path": "/boot/grub/menu.lst"}
    assert "kernel /vmlinuz-" in _menu_of(r) and f"root=UUID={ROOT_UUID}" in _menu_of(r)


@pytest.mark.slow
def test_real_debian_system_converted_boots_under_xen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole point, for real: a Debian 12 system (pvbuild's own build, its files copied out with debugfs
    rdump) put on a stock ext4 (64bit on, grub2's grub.cfg only, the UUID its fstab names), which PV-GRUB cannot
    read, is converted and then booted as a Xen PV guest by `pvbuild boot`: it reaches userspace."""
    import os

    if os.geteuid() != 0:
        pytest.skip("copying a whole system out keeps its owners only as root")
    _need_tools()
    from pvbuild.boot.run import boot_image
    from pvbuild.build.pipeline import build as build_image
    from pvbuild.build.run import Log
    from pvbuild.plan import load_plan
    from tests.conftest import REPO, cache_root

    rootfs_cache = cache_root() / "build" / "rootfs-cache"
    rootfs_cache.mkdir(parents=True, exist_ok=True)
    (tmp_path / "work").mkdir()
    plan = load_plan(REPO / "recipes" / "debian-12-minimal.yaml")
    plan = dataclasses.replace(plan, output=dataclasses.replace(plan.output, directory=str(tmp_path / "out")))
    built = build_image(plan, work_parent=tmp_path / "work", rootfs_cache=rootfs_cache)
    head = subprocess.run(["dumpe2fs", "-h", str(built.image)], capture_output=True, text=True, check=True).stdout
    uuid = re.search(r"^Filesystem UUID:\s+(\S+)", head, re.M)
    assert uuid is not None
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {tree}", str(built.image)], check=True, capture_output=True)
    (tree / "boot" / "grub" / "menu.lst").unlink()
    (tree / "boot" / "grub" / "grub.cfg").write_text(
        f"menuentry Debian {{\n linux /boot/vmlinuz root=UUID={uuid.group(1)} ro quiet\n initrd /boot/initrd.img\n}}\n")
    stock = tmp_path / "stock.raw"
    with open(stock, "wb") as f:
        f.truncate(built.image.stat().st_size)
    shutil.rmtree(tmp_path / "out")
    assert (tree / "usr" / "sbin" / "init").is_symlink() or (tree / "sbin" / "init").exists()
    subprocess.run(["mkfs.ext4", "-q", "-F", "-U", uuid.group(1), "-d", str(tree), str(stock)], check=True)
    shutil.rmtree(tree)
    assert " 64bit" in _dumpe2fs_features(stock)
    assert not check_image(stock, Profile()).boots
    code, r = _convert([str(stock), "-o", str(tmp_path / "pv.raw")], capsys)
    assert code == 0, r.get("findings")
    stock.unlink()
    result = boot_image(tmp_path / "pv.raw", variant="hd0", timeout=900, log=Log(tmp_path / "boot.log"),
                        cache=cache_root() / "boot")
    report = result.to_json()
    assert result.reached_userspace, report
    assert report["entry"]["title"].startswith("Debian GNU/Linux 12 (bookworm), kernel ")
    assert report["cmdline"].startswith(f"root=UUID={uuid.group(1)} ro console=hvc0")
