"""Real boots: images built from the example recipes, booted as Xen PV guests by `pvbuild boot` under QEMU.

One Xen test host serves the whole session (`xen_host`: prepared once and cached under the test cache folder,
like the build tests' rootfs tarballs), and every boot restores the same saved dom0. The images are built once
per session from the recipes (their rootfs tarballs are cached), with initrds of a few MiB: the GRUB 2 loader
reads them slowly. The broken-menu image is a sparse copy of the default image with its menu.lst rewritten.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvbuild.boot.run import BootResult, boot_image, prepare
from pvbuild.build.errors import CheckFailed
from pvbuild.build.pipeline import build
from pvbuild.build.run import Log, run
from pvbuild.plan import load_plan
from pvbuild.planmodel import Plan
from tests.buildplans import assert_image_hygiene, debian12, debugfs
from tests.conftest import REPO, cache_root

pytestmark = pytest.mark.slow
TIMEOUT = 300.0


def _cache() -> Path:
    d = cache_root() / "boot"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def boot_area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("boot-images")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def xen_host() -> dict[str, Any]:
    """The Xen test host with a saved dom0, prepared once (cached across sessions under the test cache)."""
    return prepare(Log(_cache() / "prepare.log"), cache=_cache())


def _plan(recipe: str, out: Path, **changes: Any) -> Plan:
    plan = load_plan(REPO / "recipes" / recipe)
    plan = dataclasses.replace(plan, output=dataclasses.replace(plan.output, directory=str(out / plan.name)))
    return dataclasses.replace(plan, **changes) if changes else plan


def _build(plan: Plan, area: Path) -> Path:
    work = area / "work"
    work.mkdir(exist_ok=True)
    rootfs_cache = cache_root() / "build" / "rootfs-cache"
    try:
        return build(plan, work_parent=work, rootfs_cache=rootfs_cache).image
    except CheckFailed as e:  # the emulator refused it; the image is kept aside for inspection (and for us)
        assert e.report_dir is not None
        return Path(e.report_dir) / plan.output.image_name


@pytest.fixture(scope="session")
def default_image(boot_area: Path) -> Path:
    return _build(_plan("debian-12-minimal.yaml", boot_area / "default"), boot_area)


@pytest.fixture(scope="session")
def mbr_image(boot_area: Path) -> Path:
    return _build(_plan("debian-12-mbr.yaml", boot_area / "mbr"), boot_area)


@pytest.fixture(scope="session")
def no_blkfront_image(boot_area: Path) -> Path:
    plan = _plan("debian-12-minimal.yaml", boot_area / "noblk")
    modules = tuple(m for m in plan.initrd.modules if m != "xen-blkfront")
    plan = dataclasses.replace(plan, name="noblk", initrd=dataclasses.replace(plan.initrd, modules=modules))
    return _build(plan, boot_area)


@pytest.fixture(scope="session")
def broken_menu_image(default_image: Path, boot_area: Path) -> Path:
    """The default image with a menu.lst whose every kernel line names a file that does not exist."""
    dest = boot_area / "broken" / "broken.raw"
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "--sparse=always", default_image, dest])
    menu = run(["debugfs", "-R", "cat /boot/grub/menu.lst", dest], capture=True).stdout.decode()
    broken = menu.replace("kernel /boot/vmlinuz", "kernel /boot/vmlinuz-MISSING")
    assert broken != menu
    src = boot_area / "broken" / "menu.lst"
    src.write_text(broken)
    run(["debugfs", "-w", "-R", "rm /boot/grub/menu.lst", dest])
    run(["debugfs", "-w", "-R", f"write {src} /boot/grub/menu.lst", dest])
    return dest


def _sha256(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split()[0]


def _boot(image: Path, variant: str) -> BootResult:
    return boot_image(image, variant=variant, timeout=TIMEOUT, log=Log(image.with_suffix(".boot.log")),
                      cache=_cache())


def _assert_report_shape(report: dict[str, Any]) -> None:
    assert set(report) >= {"reached_userspace", "variant", "accel", "entry", "kernel_version", "cmdline",
                           "root_device", "milestones", "failure", "console_log"}
    assert set(report["milestones"]) == {"loader_s", "kernel_s", "root_mounted_s", "userspace_s"}
    assert report["accel"] in ("tcg", "kvm")
    json.dumps(report)


def test_default_recipe_boots_to_userspace(xen_host: dict[str, Any], default_image: Path) -> None:
    before = _sha256(default_image)
    result = _boot(default_image, "hd0")
    report = result.to_json()
    _assert_report_shape(report)
    assert report["reached_userspace"], report["failure"]
    assert result.exit_code == 0 and report["failure"] is None
    titles = [line.split(None, 1)[1] for line in load_plan(REPO / "recipes" / "debian-12-minimal.yaml").menu.text
              .splitlines() if line.startswith("title ")]
    assert report["entry"] == {"index": 0, "title": titles[0]}
    assert report["kernel_version"].startswith("6.1.")
    assert "console=hvc0" in report["cmdline"] and "root=UUID=" in report["cmdline"]
    assert report["root_device"] == "/dev/xvda"
    ms = report["milestones"]
    assert 0 < ms["loader_s"] < ms["kernel_s"] < ms["root_mounted_s"] <= ms["userspace_s"]
    assert report["dom0"]["start"] == "restored"
    log = Path(report["console_log"])
    assert log.parent == default_image.parent and "PVBUILD-PROBE-END" in log.read_text()
    # read-only: the image is byte for byte what it was, and no probe is in it
    assert _sha256(default_image) == before
    listing = run(["debugfs", "-R", "ls /etc", default_image], capture=True).stdout.decode()
    assert "pvbuild-boot-probe" not in listing


def test_mbr_recipe_boots_with_the_hd00_loader(xen_host: dict[str, Any], mbr_image: Path) -> None:
    report = _boot(mbr_image, "hd00").to_json()
    _assert_report_shape(report)
    assert report["reached_userspace"], report["failure"]
    assert report["variant"] == "hd00" and report["menu"] == "(hd0,0)/boot/grub/menu.lst"
    assert report["root_device"] == "/dev/xvda1"
    assert report["entry"] is not None and report["entry"]["index"] == 0


def test_initrd_without_blkfront_does_not_mount_root(xen_host: dict[str, Any], no_blkfront_image: Path) -> None:
    result = _boot(no_blkfront_image, "hd0")
    report = result.to_json()
    assert not report["reached_userspace"] and result.exit_code == 1
    assert report["milestones"]["kernel_s"] is not None
    assert report["milestones"]["root_mounted_s"] is None
    assert report["failure"].startswith("root not mounted"), report["failure"]
    assert "xen-blkfront" in report["failure"]


def test_broken_menu_never_reaches_a_kernel(xen_host: dict[str, Any], broken_menu_image: Path) -> None:
    result = _boot(broken_menu_image, "hd0")
    report = result.to_json()
    assert not report["reached_userspace"] and result.exit_code == 1
    assert report["milestones"]["loader_s"] is not None
    assert report["milestones"]["kernel_s"] is None and report["kernel_version"] is None
    assert report["failure"].startswith("no kernel loaded"), report["failure"]
    assert "vmlinuz-MISSING" in report["failure"]


def test_diskimage_builder_image_is_clean_and_boots(xen_host: dict[str, Any], boot_area: Path) -> None:
    """`distro.backend: diskimage-builder`: disk-image-create (debian-minimal + pvbuild's elements, -t tar) makes
    the tree, pvbuild the disk. The image holds what the elements make and nothing of the build host, passes the
    emulator and boots to userspace."""
    plan = debian12(boot_area / "dib", name="dib", backend="diskimage-builder")
    work = boot_area / "work"
    work.mkdir(exist_ok=True)
    b = build(plan, work_parent=work, rootfs_cache=cache_root() / "build" / "rootfs-cache")
    assert b.boots and b.report["outcome"] == "boots" and not b.rootfs_cached
    img = b.image
    assert_image_hygiene(plan, img)
    # diskimage-builder made it (its manifests), and its tar's host device nodes are gone
    assert "dib_environment" in debugfs(img, "ls /etc/dib-manifests")
    dev = {n for n in debugfs(img, "ls /dev").split() if not n.startswith("(") and not n.isdigit()} - {".", ".."}
    assert dev == {"console", "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
                   "tty", "urandom", "zero"}
    pkgs = dict(line.split(" ", 1) for line in (b.directory / "packages.txt").read_text().splitlines())
    assert {"linux-image-amd64", "openssh-server", "initramfs-tools", "zstd"} <= set(pkgs)
    assert "cloud-init" not in pkgs  # no `base` element
    run(["e2fsck", "-fn", img])
    report = _boot(img, "hd0").to_json()
    _assert_report_shape(report)
    assert report["reached_userspace"], report["failure"]
    assert report["kernel_version"] == b.report["kernel"]["version"]
    assert report["root_device"] == "/dev/xvda" and report["entry"]["index"] == 0
    shutil.rmtree(b.directory)


def test_build_fails_when_the_emulator_and_the_real_boot_disagree(boot_area: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's wiring (recipe `boot: true`): a real boot that contradicts the emulator fails the build, and
    boot-report.json shows both verdicts. The real boot is replaced by a canned report: this is about the build."""
    from pvbuild.boot import stage

    def fake_boot(image: Path, variant: str, arch: str, log: Log, work: Path) -> dict[str, Any]:
        return {"reached_userspace": False, "variant": variant, "failure": "root not mounted: (canned)",
                "console_log": None}

    monkeypatch.setattr(stage, "real_boot", fake_boot)
    plan = dataclasses.replace(_plan("debian-12-minimal.yaml", boot_area / "disagree"), boot=True)
    work = boot_area / "work"
    work.mkdir(exist_ok=True)
    with pytest.raises(CheckFailed, match="the emulator says the image boots, the real boot says it does not"):
        build(plan, work_parent=work, rootfs_cache=cache_root() / "build" / "rootfs-cache")
    failed = Path(plan.output.directory + ".failed")
    report = json.loads((failed / "boot-report.json").read_text())
    assert report["outcome"] == "boots"
    assert report["real_boot"]["reached_userspace"] is False
    assert "root not mounted: (canned)" in report["disagreement"]
    assert not Path(plan.output.directory).exists()


def test_unusable_saved_state_falls_back_to_a_cold_dom0(xen_host: dict[str, Any], broken_menu_image: Path,
                                                        boot_area: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A saved state QEMU cannot load (here: garbage; in life: another QEMU build) costs a cold dom0 boot, and the
    report says so. The broken-menu image keeps the guest part short."""
    from pvbuild.boot import vm

    real_find = vm.find_snapshot
    garbage = boot_area / "garbage-state.bin"
    garbage.write_bytes(b"not a migration stream\n" * 64)

    def broken_find(host: Any, accel: str) -> tuple[vm.Snapshot | None, str]:
        snap, why = real_find(host, accel)
        assert snap is not None, why
        return dataclasses.replace(snap, state=garbage), ""

    monkeypatch.setattr(vm, "find_snapshot", broken_find)
    report = _boot(broken_menu_image, "hd0").to_json()
    assert report["dom0"]["start"] == "cold" and report["dom0"]["cold_boot_s"] > 0
    assert "did not restore" in report["dom0"]["note"]
    assert report["failure"].startswith("no kernel loaded")
