"""Layouts and /boot filesystems beyond MBR + ext4/XFS: GPT (PV-GRUB 1.04+), an LVM root next to a plain /boot,
and /boot on ReiserFS, JFS and btrfs.

The fast tests (plan rules, the GPT sfdisk script, the LVM metadata read back by lvm2 on a read-only loop device)
run everywhere; the real builds are `slow`. Every build here plans a recipe (so the plan rules are what is
tested) with the same package set and SOURCE_DATE_EPOCH, so they share one cached bootstrap (lvm2 included).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvbuild.build import lvm
from pvbuild.build.disk import sfdisk_script
from pvbuild.build.errors import CheckFailed
from pvbuild.build.pipeline import BuiltImage, build
from pvbuild.build.run import Log, run
from pvbuild.plan import load_plan
from pvbuild.planmodel import FilesystemPlan, Plan
from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.profiles import Profile
from pvbuild.recipe import RecipeError
from tests.conftest import cache_root

MIB = 1024 * 1024
EPOCH = 1735689600
GPT_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
GPT_LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"


def _recipe(d: Path, name: str, body: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.yaml"
    # One package set for every build here (lvm2 included): one cached bootstrap.
    path.write_text(f"name: {name}\nsource_date_epoch: {EPOCH}\npackages: [lvm2]\nmenu:\n  timeout: 1\n"
                    + textwrap.dedent(body))
    return path


def _plan(d: Path, name: str, body: str) -> Plan:
    plan = load_plan(_recipe(d, name, body))
    return dataclasses.replace(plan, output=dataclasses.replace(plan.output, directory=str(d / "out" / name)))


def _problems(d: Path, name: str, body: str) -> list[str]:
    with pytest.raises(RecipeError) as e:
        load_plan(_recipe(d, name, body))
    return [f"{p.field}: {p.message} — {p.hint}" for p in e.value.problems]


GPT = """\
disk:
  size: 1536MiB
  table: gpt
  partitions:
    - {mountpoint: /boot, size: 256MiB}
    - {mountpoint: /}
"""

LVM = """\
disk:
  size: 1536MiB
  table: mbr
  partitions:
    - {mountpoint: /boot, size: 256MiB}
    - {mountpoint: /, lvm: true, vg: pvvg, lv: rootlv}
"""


def _boot_fs(fstype: str, extra: str = "") -> str:
    return f"""\
disk:
  size: 1536MiB
  table: mbr
  partitions:
    - {{mountpoint: /boot, size: 256MiB, fstype: {fstype}}}
    - {{mountpoint: /}}
{extra}"""


# --- plan rules (fast) ------------------------------------------------------------------------------------------
def test_gpt_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "g", GPT)
    d = plan.disk
    assert d.table == "gpt" and plan.pvgrub.variant == "hd00" and plan.pvgrub.version == "1.05"
    boot, root = d.filesystems
    assert (boot.grub_device, root.grub_device) == ("(hd0,0)", "(hd0,1)")  # GPT entry index, as the emulator
    assert (boot.linux_device, root.linux_device) == ("/dev/xvda1", "/dev/xvda2")
    assert boot.part_type == root.part_type == GPT_LINUX
    assert boot.offset_bytes == MIB and root.offset_bytes == 257 * MIB
    assert root.offset_bytes + root.size_bytes == d.size_bytes - MIB  # room for the backup GPT
    assert len({boot.part_uuid, root.part_uuid, d.disk_id}) == 3
    assert plan.menu.entries[0].root == "(hd0,0)"
    assert any("UNVERIFIED" in w for w in plan.warnings)
    # deterministic: the same recipe plans the same GUIDs
    assert _plan(tmp_path / "again", "g", GPT).disk == d


def test_gpt_refused_for_pvgrub_103(tmp_path: Path) -> None:
    got = _problems(tmp_path, "g", GPT + "pvgrub:\n  version: '1.03'\n")
    assert any(p.startswith("disk.table: PV-GRUB 1.03 does not support GPT") for p in got), got


def test_gpt_sfdisk_script(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "g", GPT)
    script = sfdisk_script(plan.disk)
    assert script.startswith("label: gpt\n") and f"label-id: {plan.disk.disk_id}\n" in script
    assert f"start=2048, size={256 * 2048}, type={GPT_LINUX}, uuid={plan.disk.boot.part_uuid}, name=\"boot\"" \
        in script
    # sfdisk writes the same bytes twice (no random GUID, no timestamp)
    if shutil.which("sfdisk") is None:
        pytest.skip("no sfdisk")
    digests = []
    for n in range(2):
        img = tmp_path / f"t{n}.img"
        with open(img, "wb") as f:
            f.truncate(plan.disk.size_bytes)
        subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", img], input=script.encode(), check=True)
        with open(img, "rb") as f:
            head = f.read(MIB)
            f.seek(plan.disk.size_bytes - 33 * 512)
            tail = f.read()
        digests.append((head, tail))
    assert digests[0] == digests[1]


def test_lvm_plan(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "l", LVM)
    boot, root = plan.disk.filesystems
    assert root.lvm is not None and boot.lvm is None
    lv = root.lvm
    assert (lv.vg, lv.lv, lv.dm_name) == ("pvvg", "rootlv", "pvvg-rootlv")
    assert root.part_type == "8e" and boot.part_type == "83"
    assert root.linux_device == "/dev/mapper/pvvg-rootlv"
    assert plan.kernel.root_arg == "root=/dev/mapper/pvvg-rootlv"
    assert lv.pe_start_bytes == MIB and lv.extent_bytes == 4 * MIB
    assert lv.lv_bytes == (root.size_bytes - MIB) // (4 * MIB) * 4 * MIB
    assert root.fs_offset_bytes == root.offset_bytes + MIB and root.fs_size_bytes == lv.lv_bytes
    assert "lvm2" in plan.distro.packages and "dm-mod" in plan.initrd.modules
    # defaults: the recipe's name and "root"; dashes doubled in the device-mapper name
    plan2 = _plan(tmp_path, "my-img", LVM.replace(", vg: pvvg, lv: rootlv", ""))
    assert plan2.disk.root.lvm is not None and plan2.disk.root.linux_device == "/dev/mapper/my--img-root"
    # GPT: the LVM type GUID
    gpt = _plan(tmp_path, "lg", LVM.replace("table: mbr", "table: gpt"))
    assert gpt.disk.root.part_type == GPT_LVM
    for u in (lv.pv_uuid, lv.vg_uuid, lv.lv_uuid):
        assert len(u) == 38 and [len(x) for x in u.split("-")] == [6, 4, 4, 4, 4, 4, 6]


def test_lvm_plan_rules(tmp_path: Path) -> None:
    got = _problems(tmp_path, "l", "disk:\n  partitions:\n    - {mountpoint: /, lvm: true}\n")
    assert any("separate /boot" in p for p in got), got
    got = _problems(tmp_path, "l", LVM.replace("{mountpoint: /boot, size: 256MiB}",
                                               "{mountpoint: /boot, size: 256MiB, lvm: true}"))
    assert any(p.startswith("disk.partitions[0].lvm: PV-GRUB cannot read LVM") for p in got), got
    got = _problems(tmp_path, "l", LVM.replace("lvm: true, ", ""))
    assert any("without lvm" in p for p in got), got
    got = _problems(tmp_path, "l", LVM.replace("vg: pvvg", "vg: '-bad'"))
    assert any(p.startswith("disk.partitions[1].vg:") for p in got), got


def test_boot_filesystem_plan_rules(tmp_path: Path) -> None:
    for fstype in ("reiserfs", "jfs"):
        plan = _plan(tmp_path, fstype, _boot_fs(fstype))
        assert plan.disk.boot.fstype == fstype and plan.disk.boot.grub_device == "(hd0,0)"
        # the kernel never mounts /boot before the root: only the root's module goes into the initrd
        assert fstype not in plan.initrd.modules
    got = _problems(tmp_path, "r", _boot_fs("reiserfs").replace("size: 256MiB", "size: 32MiB"))
    assert any("reiserfs needs at least 64 MiB" in p for p in got), got
    got = _problems(tmp_path, "j", _boot_fs("ext4").replace("- {mountpoint: /}", "- {mountpoint: /, fstype: jfs}"))
    assert any("for /boot only" in p for p in got), got
    # btrfs: without the opt-in, the old refusal; with it, the emulator profile's verdict (no btrfs driver)
    got = _problems(tmp_path, "b", _boot_fs("btrfs"))
    assert any("allow_btrfs_beta" in p for p in got), got
    assert not Profile("1.05").btrfs
    got = _problems(tmp_path, "b", _boot_fs("btrfs", "pvgrub:\n  allow_btrfs_beta: true\n"))
    assert any("a btrfs /boot cannot boot" in p and "Error 17" in p for p in got), got


# --- LVM metadata, read back by lvm2 (fast; needs root and a loop device) ------------------------------------
def _lvm_usable() -> bool:
    return os.geteuid() == 0 and shutil.which("lvm") is not None and shutil.which("losetup") is not None


def test_lvm_crc() -> None:
    # lvm2's calc_crc over nothing is its initial value; one byte as computed by lvm2's table walk
    assert lvm.lvm_crc(b"") == lvm.INITIAL_CRC
    assert lvm.lvm_crc(b"LVM2") != lvm.lvm_crc(b"LVM3")


@pytest.mark.skipif(not _lvm_usable(), reason="needs root, lvm2 and losetup")
def test_lvm_metadata_read_back_by_lvm2(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "l", LVM)
    root = plan.disk.root
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(plan.disk.size_bytes)
    lvm.write_pv(root, img, plan.hostname, plan.source_date_epoch)
    log = Log(tmp_path / "log")
    lvm.verify(root, img, tmp_path / "work", log)  # raises unless lvm2 sees the planned VG/LV/UUIDs/extents
    assert img.stat().st_blocks * 512 <= 64 * 1024  # label + metadata only: the image stays sparse
    assert lvm.header_bytes(root.lvm, root.size_bytes, "x", 1) == lvm.header_bytes(  # type: ignore[arg-type]
        root.lvm, root.size_bytes, "x", 1)  # type: ignore[arg-type]
    text = lvm.metadata_text(root.lvm, root.size_bytes, plan.hostname, plan.source_date_epoch)  # type: ignore[arg-type]
    assert f"creation_time = {EPOCH}".encode() in text and b"/dev/loop" not in text


# --- real builds (slow) ------------------------------------------------------------------------------------------
def _cache() -> Path:
    d = cache_root() / "build" / "rootfs-cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("build-layouts")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _build(plan: Plan, area: Path) -> BuiltImage:
    work = area / "work"
    work.mkdir(exist_ok=True)
    return build(plan, work_parent=work, rootfs_cache=_cache())


def _error_codes(report: dict[str, Any]) -> list[str]:
    return [f["code"] for f in report["findings"] if f["severity"] == "error"]


def _extract(image: Path, fs: FilesystemPlan, dest: Path) -> Path:
    """The filesystem's byte range (the LV's on LVM) as a file of its own."""
    run(["dd", f"if={image}", f"of={dest}", "bs=1M", f"skip={fs.fs_offset_bytes // MIB}",
         f"count={fs.fs_size_bytes // MIB}", "conv=sparse", "status=none"])
    return dest


@pytest.mark.slow
def test_gpt_image_boots_on_105_hd00(area: Path) -> None:
    plan = _plan(area, "gpt", GPT)
    b = _build(plan, area)
    assert b.boots and _error_codes(b.report) == [], b.report
    assert b.report["layout"]["scheme"] == "gpt"
    for version in ("1.04", "1.05"):
        r = check_image(b.image, Profile(version, "hd00", "x86_64"))
        assert r.boots, (version, [f.to_json() for f in r.findings])
        assert r.run.menu is not None and str(r.run.menu[0]) == "(hd0,0)"
    # PV-GRUB 1.03 reads no GPT: the emulator refuses the built image, as the plan refuses the recipe
    assert not check_image(b.image, Profile("1.03", "hd00", "x86_64")).boots
    dump = json.loads(run(["sfdisk", "--json", b.image], capture=True).stdout)["partitiontable"]
    assert dump["label"] == "gpt" and dump["id"] == plan.disk.disk_id
    assert [(p["start"] * 512, p["type"], p["uuid"]) for p in dump["partitions"]] == [
        (f.offset_bytes, f.part_type, f.part_uuid) for f in plan.disk.filesystems]
    fstab = run(["debugfs", "-R", "cat /etc/fstab", f"{b.image}?offset={plan.disk.root.offset_bytes}"],
                capture=True).stdout.decode()
    assert f"UUID={plan.disk.boot.uuid}\t/boot\text4" in fstab
    shutil.rmtree(b.directory)


@pytest.fixture(scope="session")
def lvm_built(area: Path) -> tuple[Plan, BuiltImage]:
    plan = _plan(area, "lvm", LVM)
    return plan, _build(plan, area)


@pytest.mark.slow
def test_lvm_root_image(lvm_built: tuple[Plan, BuiltImage], area: Path) -> None:
    """/boot ext4 on (hd0,0), the root ext4 on an LV of the PV in partition 2: PV-GRUB boots from /boot; lvm2 sees
    the VG in the image; the LV's byte range is a clean ext4 holding the root; the initrd can activate it."""
    plan, b = lvm_built
    assert b.boots and _error_codes(b.report) == [], b.report
    assert b.report["cmdline"] == plan.kernel.cmdline and "root=/dev/mapper/pvvg-rootlv" in b.report["cmdline"]
    root, boot = plan.disk.root, plan.disk.boot
    assert root.lvm is not None
    # the emulator still says PV-GRUB cannot read the LVM partition itself
    from pvbuild.pvgrub.blockio import Disk
    from pvbuild.pvgrub.disk import Device
    from pvbuild.pvgrub.errors import GrubError
    from pvbuild.pvgrub.files import FileLayer

    with Disk(b.image) as disk:
        layer = FileLayer(disk, Profile("1.05", "hd00", "x86_64"))
        with pytest.raises(GrubError) as e:
            layer.mount(Device(0x80, 1))
    assert "LVM" in e.value.detail
    # lvm2's tools on a read-only loop device of partition 2 see the planned VG and LV
    with lvm.loop_device(b.image, root.offset_bytes, root.size_bytes, Log(area / "lvm.log")) as dev:
        rep = lvm.lvm_report(dev, area / "lvm-conf", Log(area / "lvm.log"))
        assert run(["losetup", "--list", "--noheadings", "-O", "RO", dev], capture=True).stdout.decode().strip() == "1"
    assert rep["pv"]["vg_name"] == "pvvg" and rep["pv"]["pv_uuid"] == root.lvm.pv_uuid
    assert rep["lv"]["lv_name"] == "rootlv" and rep["lv"]["lv_uuid"] == root.lvm.lv_uuid
    assert int(rep["lv"]["lv_size"]) == root.lvm.lv_bytes
    # the LV's range, cut out of the image, is a clean ext4: the root, with its fstab
    part = _extract(b.image, root, area / "lv.img")
    run(["e2fsck", "-fn", part])
    fstab = run(["debugfs", "-R", "cat /etc/fstab", part], capture=True).stdout.decode()
    assert "/dev/mapper/pvvg-rootlv\t/\text4" in fstab and f"UUID={boot.uuid}\t/boot\text4" in fstab
    lvm_conf = run(["debugfs", "-R", "stat /usr/sbin/lvm", part], capture=True)
    assert b"Type: regular" in lvm_conf.stdout
    part.unlink()
    # the initrd carries lvm2's hook: the lvm binary, its udev rules (activation on the PV's uevent), dm-mod
    from pvbuild.pvgrub.initrd import inspect_initrd

    version = b.report["kernel"]["version"]
    data = run(["debugfs", "-R", f"cat /initrd.img-{version}", f"{b.image}?offset={boot.offset_bytes}"],
               capture=True).stdout
    info = inspect_initrd(data)
    assert info.files is not None
    assert {"usr/sbin/lvm", "usr/lib/udev/rules.d/69-lvm.rules"} & info.files or any(
        f.endswith("sbin/lvm") for f in info.files), sorted(info.files)[:50]
    assert any(f.endswith("rules.d/69-lvm.rules") for f in info.files)
    assert "dm_mod" in {m.replace("-", "_") for m in info.modules}


@pytest.mark.slow
def test_lvm_rebuild_is_byte_identical(lvm_built: tuple[Plan, BuiltImage], area: Path) -> None:
    """LVM metadata included: pvbuild writes it with the plan's UUIDs, SOURCE_DATE_EPOCH and hostname."""
    plan, first = lvm_built
    again = _build(dataclasses.replace(plan, output=dataclasses.replace(
        plan.output, directory=str(area / "out" / "lvm-again"))), area)
    assert again.rootfs_cached and again.sha256 == first.sha256
    shutil.rmtree(again.directory)


@pytest.mark.slow
def test_lvm_image_boots_with_pvbuild_boot(lvm_built: tuple[Plan, BuiltImage]) -> None:
    """A real Xen PV boot (`pvbuild boot`, hd00): GRUB reads the plain /boot, the initrd activates the VG, the kernel
    mounts the LV as root, and the image's systemd runs from it: the probe that `pvbuild boot`'s dom0 put into the
    LV (dom0 activates the VG around the injection and deactivates it before the guest starts) reports from
    userspace."""
    from pvbuild.boot.run import boot_image, prepare

    cache = cache_root() / "boot"
    cache.mkdir(parents=True, exist_ok=True)
    prepare(Log(cache / "prepare.log"), cache=cache)
    plan, b = lvm_built
    result = boot_image(b.image, variant="hd00", timeout=300.0, log=Log(b.image.with_suffix(".boot.log")),
                        cache=cache)
    report = result.to_json()
    log = Path(report["console_log"]).read_text(errors="replace") if report.get("console_log") else ""
    keep = os.environ.get("PVBUILD_TEST_KEEP_CONSOLE")
    if keep:
        Path(keep).write_text(log)
    assert report["kernel_version"] is not None, report["failure"]
    assert "root=/dev/mapper/pvvg-rootlv" in report["cmdline"]
    assert report["milestones"]["root_mounted_s"] is not None, report
    assert "EXT4-fs (dm-0): mounted filesystem" in log, log[-3000:]  # the LV, activated by the initrd
    assert report["reached_userspace"], report["failure"]
    assert report["root_device"] == "/dev/mapper/pvvg-rootlv"
    # dom0 found the root in the LV and deactivated the VG again before the guest started
    assert "# pvbuild boot: FS /dev/pvvg/rootlv ext4 root probe=injected" in log, log[:2000]
    assert "stays active" not in log
    assert plan.disk.root.lvm is not None


@pytest.mark.slow
def test_gpt_image_boots_with_pvbuild_boot(area: Path) -> None:
    """A real Xen PV boot of the GPT image (`pvbuild boot`, hd00: its GRUB 2 loader reads GPT): userspace."""
    from pvbuild.boot.run import boot_image, prepare

    cache = cache_root() / "boot"
    cache.mkdir(parents=True, exist_ok=True)
    prepare(Log(cache / "prepare.log"), cache=cache)
    plan = _plan(area, "gpt-boot", GPT)
    b = _build(plan, area)
    report = boot_image(b.image, variant="hd00", timeout=300.0, log=Log(b.image.with_suffix(".boot.log")),
                        cache=cache).to_json()
    assert report["reached_userspace"], report["failure"]
    assert report["root_device"] == "/dev/xvda2" and report["entry"]["index"] == 0
    shutil.rmtree(b.directory)


# --- /boot on every filesystem PV-GRUB reads (built, checked, booted) and btrfs (refused: what the check would say)
@pytest.mark.slow
@pytest.mark.parametrize("fstype", ["ext2", "ext3", "xfs", "reiserfs", "jfs"])
def test_boot_filesystem_image_boots(area: Path, fstype: str) -> None:
    """A separate /boot on each filesystem the seeds list (ext4 has its own tests): made with mkfs -d / a protofile
    (ext2/3, XFS V4) or mkfs and libguestfs (ReiserFS, JFS). The emulator's readers boot it under every version
    of the hd00 AKI (1.03 through the `boot -> .` link), and a real Xen PV boot (`pvbuild boot`, hd00: its loader
    has GRUB's ext2, xfs, reiserfs and jfs modules) reads the kernel and initrd from it and reaches userspace."""
    from pvbuild.boot.run import boot_image, prepare

    plan = _plan(area, f"boot-{fstype}", _boot_fs(fstype))
    b = _build(plan, area)
    report = b.report
    assert report["outcome"] == "boots" and _error_codes(report) == [], report
    image = b.image
    boot = plan.disk.boot
    ident = run(["blkid", "-p", "-o", "export", "--offset", str(boot.offset_bytes), image], capture=True,
                check=False).stdout.decode()
    assert f"TYPE={fstype}" in ident and f"UUID={boot.uuid}" in ident
    for version in ("1.03", "1.04", "1.05"):
        assert check_image(image, Profile(version, "hd00", "x86_64")).boots, version
    if fstype == "reiserfs":  # whole-second inode times, all SOURCE_DATE_EPOCH: byte-identical (JFS is not)
        again = _build(dataclasses.replace(plan, output=dataclasses.replace(
            plan.output, directory=str(area / "out" / "boot-reiserfs-again"))), area)
        assert again.sha256 == b.sha256
        shutil.rmtree(again.directory)
    cache = cache_root() / "boot"
    cache.mkdir(parents=True, exist_ok=True)
    prepare(Log(cache / "prepare.log"), cache=cache)
    real = boot_image(image, variant="hd00", timeout=300.0, log=Log(image.with_suffix(".boot.log")),
                      cache=cache).to_json()
    assert real["reached_userspace"], real["failure"]
    assert real["kernel_version"] == report["kernel"]["version"] and real["entry"]["index"] == 0
    assert real["root_device"] == "/dev/xvda2"  # /boot is the first partition, / the second
    shutil.rmtree(b.directory)


@pytest.mark.slow
def test_btrfs_boot_built_anyway_fails_its_check(area: Path) -> None:
    """The plan refuses a btrfs /boot; a plan made by hand (an ext4 /boot turned btrfs) builds, and the check
    fails it exactly as the plan said: PV-GRUB has no btrfs driver."""
    plan = _plan(area, "boot-btrfs", _boot_fs("ext4"))
    fss = tuple(dataclasses.replace(f, fstype="btrfs", mkfs_options=(), hash_seed=None)
                if f.mountpoint == "/boot" else f for f in plan.disk.filesystems)
    plan = dataclasses.replace(plan, disk=dataclasses.replace(plan.disk, filesystems=fss))
    with pytest.raises(CheckFailed) as e:
        _build(plan, area)
    assert e.value.report_dir is not None
    report = json.loads((Path(e.value.report_dir) / "boot-report.json").read_text())
    assert report["outcome"] != "boots"
    assert "btrfs" in json.dumps(report["findings"])
    shutil.rmtree(e.value.report_dir)
