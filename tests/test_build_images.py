"""Real builds of Debian 12 images (mmdebstrap, chroot, mkfs), each proved by the PV-GRUB emulator.

The rootfs tarballs are cached under `cache_root()/build/rootfs` (the first run bootstraps, about a minute per
package set; later runs only unpack), so a warm run of this module takes a few minutes. Images are written
under pytest's tmp folders and deleted at the end of the session.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from pvbuild.build import elements
from pvbuild.build.errors import CheckFailed
from pvbuild.build.pipeline import BuiltImage, build
from pvbuild.build.run import Log, run
from pvbuild.build.workspace import mounted, mounts_under
from pvbuild.planmodel import Plan
from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.initrd import inspect_initrd
from pvbuild.pvgrub.profiles import Profile
from tests.buildplans import assert_image_hygiene, debian12, debugfs
from tests.conftest import cache_root

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


def _cache() -> Path:
    d = cache_root() / "build" / "rootfs-cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="session")
def area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Outputs and work folders of this module (on disk, large), removed at the end."""
    d = tmp_path_factory.mktemp("build-images")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _build(plan: Plan, area: Path) -> BuiltImage:
    work = area / "work"
    work.mkdir(exist_ok=True)
    return build(plan, work_parent=work, rootfs_cache=_cache())


@pytest.fixture(scope="session")
def partitionless(area: Path) -> tuple[Plan, BuiltImage]:
    plan = debian12(area / "a")
    return plan, _build(plan, area)


def _error_codes(report: dict[str, Any]) -> list[str]:
    return [f["code"] for f in report["findings"] if f["severity"] == "error"]


# --- the default image --------------------------------------------------------------------------------------
def test_partitionless_image_boots(partitionless: tuple[Plan, BuiltImage]) -> None:
    plan, b = partitionless
    r = b.report
    assert b.boots and r["outcome"] == "boots" and r["entry"]["index"] == 0
    assert _error_codes(r) == []
    assert not [f for f in r["findings"] if f["code"] in ("file-sparse", "fs-corrupt")]
    assert r["kernel"]["xen_pv"] and r["kernel"]["version"].startswith("6.1.")
    assert r["initrd"]["has_blkfront"] and r["initrd"]["compression"] == "zstd"
    assert r["cmdline"] == plan.kernel.cmdline
    # every PV-GRUB version of the hd0 AKI finds the menu and boots it
    for version in ("1.03", "1.04"):
        assert check_image(b.image, Profile(version, "hd0", "x86_64")).boots


def test_output_folder(partitionless: tuple[Plan, BuiltImage]) -> None:
    plan, b = partitionless
    d = b.directory
    assert d == Path(plan.output.directory)
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["debian12.raw", "plan.json", "boot-report.json", "packages.txt", "SHA256SUMS", "build.log"])
    assert not list(d.parent.glob(".*tmp*"))
    for line in (d / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, name
    assert json.loads((d / "plan.json").read_text()) == json.loads(json.dumps(plan.to_json()))
    assert json.loads((d / "boot-report.json").read_text())["image"] == "debian12.raw"
    pkgs = dict(line.split(" ", 1) for line in (d / "packages.txt").read_text().splitlines())
    assert "linux-image-amd64" in pkgs and "openssh-server" in pkgs and "initramfs-tools" in pkgs
    log = (d / "build.log").read_text()
    assert "initrd /boot/initrd.img" in log and "MiB" in log
    assert b.allocated_bytes < b.image_bytes


def test_initrd_is_small_and_has_exactly_the_listed_modules(partitionless: tuple[Plan, BuiltImage]) -> None:
    _plan, b = partitionless
    assert b.initrd_bytes < 12 * 1024 * 1024
    version = b.report["kernel"]["version"]
    data = run(["debugfs", "-R", f"cat /boot/initrd.img-{version}", b.image], capture=True).stdout
    assert len(data) == b.initrd_bytes
    info = inspect_initrd(data)
    mods = info.modules
    assert {"xen-blkfront", "xen-netfront", "ext4"} <= {m.replace("_", "-") for m in mods}
    # MODULES=list: the listed modules and their dependencies, no hardware drivers of the build host
    assert len(mods) < 20, sorted(mods)
    assert not any(m.startswith(("virtio", "e1000", "ahci", "nvme")) for m in mods)


def test_image_hygiene(partitionless: tuple[Plan, BuiltImage]) -> None:
    plan, b = partitionless
    assert_image_hygiene(plan, b.image)


def test_rebuild_is_byte_identical(partitionless: tuple[Plan, BuiltImage], area: Path) -> None:
    _plan, first = partitionless
    again = _build(debian12(area / "again"), area)
    assert again.rootfs_cached
    assert again.sha256 == first.sha256
    def sums(b: BuiltImage) -> list[str]:  # plan.json names the output folder, which differs here
        return [ln for ln in (b.directory / "SHA256SUMS").read_text().splitlines() if not ln.endswith("plan.json")]

    assert sums(again) == sums(first)


def test_check_failure_keeps_the_folder_aside(area: Path) -> None:
    """A menu PV-GRUB would hang on (no timeout): exit 1, nothing at the output path, everything in .failed."""
    plan = debian12(area / "bad", name="bad")
    import dataclasses

    broken = dataclasses.replace(plan, menu=dataclasses.replace(
        plan.menu, text=plan.menu.text.replace("timeout 1\n", "")))
    with pytest.raises(CheckFailed) as e:
        _build(broken, area)
    assert e.value.exit_code == 1
    assert not Path(plan.output.directory).exists()
    failed = Path(plan.output.directory + ".failed")
    assert e.value.report_dir == str(failed)
    report = json.loads((failed / "boot-report.json").read_text())
    assert "menu-no-timeout" in _error_codes(report)
    assert (failed / "bad.raw").exists() and (failed / "build.log").exists()
    shutil.rmtree(failed)


# --- MBR (hd00) with a separate /boot -----------------------------------------------------------------------
@pytest.mark.parametrize("boot_fs", ["ext4", "xfs"])
def test_mbr_separate_boot(area: Path, boot_fs: str) -> None:
    plan = debian12(area / f"mbr-{boot_fs}", name=f"mbr-{boot_fs}", table="mbr", separate_boot=boot_fs)
    b = _build(plan, area)
    assert b.boots and _error_codes(b.report) == []
    assert b.report["layout"]["scheme"] == "mbr"
    # 1.03 reads only (hd0,0)/boot/grub/menu.lst: the boot -> . symlink makes it resolve on the /boot partition
    for version in ("1.03", "1.04", "1.05"):
        r = check_image(b.image, Profile(version, "hd00", "x86_64"))
        assert r.boots, (version, [f.to_json() for f in r.findings])
        assert r.run.menu is not None and str(r.run.menu[0]) == "(hd0,0)"
    out = run(["sfdisk", "--dump", b.image], capture=True).stdout.decode()
    assert "label-id: 0x5eed1234" in out
    root = plan.disk.root
    if boot_fs == "ext4":
        assert "boot" in debugfs(b.image, "ls /", offset=plan.disk.boot.offset_bytes)
    # the root filesystem has an empty /boot (the mount point) and an fstab naming both
    ls = debugfs(b.image, "ls /boot", offset=root.offset_bytes).split()
    assert [n for n in ls if not n.startswith("(") and not n.isdigit()] == [".", ".."]
    fstab = debugfs(b.image, "cat /etc/fstab", offset=root.offset_bytes)
    assert f"UUID={plan.disk.boot.uuid}\t/boot\t{boot_fs}" in fstab
    if boot_fs == "xfs":  # mkfs.xfs under a stopped clock (faketime): reproducible too
        again = _build(debian12(area / "mbr-xfs-again", name="mbr-xfs", table="mbr", separate_boot="xfs"), area)
        assert again.sha256 == b.sha256
        shutil.rmtree(again.directory)
    shutil.rmtree(b.directory)


def test_xfs_root(area: Path) -> None:
    """An XFS root (the kernel reads it, PV-GRUB does not) next to an ext4 /boot; the sticky bit survives."""
    plan = debian12(area / "xfs-root", name="xfs-root", table="mbr", separate_boot="ext4", root_fs="xfs",
                    disk_mib=2048)
    b = _build(plan, area)
    assert b.boots and _error_codes(b.report) == []
    part = area / "xfs-root.part"
    root = plan.disk.root
    run(["dd", f"if={b.image}", f"of={part}", "bs=1M", f"skip={root.offset_bytes // (1 << 20)}",
         f"count={root.size_bytes // (1 << 20)}", "conv=sparse", "status=none"])
    out = run(["xfs_db", "-r", "-c", "path /tmp", "-c", "print core.mode", "-c", "path /etc/hostname",
               "-c", "print core.mode", part], capture=True).stdout.decode()
    assert out.splitlines() == ["core.mode = 041777", "core.mode = 0100644"]
    run(["xfs_repair", "-n", part])
    part.unlink()
    shutil.rmtree(b.directory)


# --- apt-get upgrade in the running guest -------------------------------------------------------------------
def _kernel_abis() -> list[str]:
    def search() -> list[str]:
        out = subprocess.run(["apt-cache", "search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"],
                             capture_output=True, text=True, check=False).stdout
        names = [ln.split()[0].removeprefix("linux-image-") for ln in out.splitlines() if ln.strip()]
        return sorted(names, key=lambda n: int(n.split("-")[1]))

    abis = search()
    if len(abis) < 2:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        abis = search()
    if len(abis) < 2:
        pytest.skip("the apt lists show fewer than two Debian 12 kernel ABIs")
    return abis


def _download(package: str) -> Path:
    d = cache_root() / "build" / "debs"
    d.mkdir(parents=True, exist_ok=True)
    found = sorted(d.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=d, check=True, capture_output=True)
        found = sorted(d.glob(f"{package}_*.deb"))
    return found[-1]


def test_kernel_upgrade_in_the_guest_keeps_booting(area: Path) -> None:
    """An image built with the previous kernel ABI, then `dpkg -i` of the newest in the image (as apt-get upgrade
    would do in the running guest): entry 0 boots the new kernel, the fallback boots the old one."""
    older, newer = _kernel_abis()[-2:]
    plan = debian12(area / "upgrade", name="upgrade", kernel_package=f"linux-image-{older}")
    b = _build(plan, area)
    assert b.report["kernel"]["version"] == older
    deb = _download(f"linux-image-{newer}")
    mnt = area / "mnt"
    mnt.mkdir(exist_ok=True)
    log = Log(area / "upgrade.log")
    env = elements.element_environment(plan)
    with ExitStack() as stack:
        stack.enter_context(mounted(["-o", "loop"], str(b.image), mnt, log))
        shutil.copyfile(deb, mnt / "tmp" / deb.name)
        stack.enter_context(elements.chroot_ready(mnt, log))
        elements.chroot_run(mnt, ["dpkg", "-i", f"/tmp/{deb.name}"], env, log)
        (mnt / "tmp" / deb.name).unlink()
    assert not mounts_under(mnt)
    links = {n: debugfs(b.image, f"stat /boot/{n}") for n in ("vmlinuz", "vmlinuz.old", "initrd.img",
                                                              "initrd.img.old")}
    assert f"Fast link dest: \"vmlinuz-{newer}\"" in links["vmlinuz"]
    assert f"Fast link dest: \"vmlinuz-{older}\"" in links["vmlinuz.old"]
    assert f"Fast link dest: \"initrd.img-{newer}\"" in links["initrd.img"]
    assert f"Fast link dest: \"initrd.img-{older}\"" in links["initrd.img.old"]
    r = check_image(b.image, Profile("1.05", "hd0", "x86_64"))
    rj = r.to_json()
    assert r.boots, rj["findings"]
    assert rj["entry"]["index"] == 0 and rj["kernel"]["version"] == newer
    assert rj["initrd"]["has_blkfront"]
    # the new kernel's initrd was made by the image's own initramfs-tools with MODULES=list: still small
    size = int(debugfs(b.image, f"stat /boot/initrd.img-{newer}").split("Size: ")[1].split()[0])
    assert size < 12 * 1024 * 1024
    # entry 0 broken (its kernel gone): the fallback entry boots the previous kernel
    copy = area / "fallback.raw"
    run(["cp", "--sparse=always", b.image, copy])
    run(["debugfs", "-w", "-R", "rm /boot/vmlinuz", copy])
    r2 = check_image(copy, Profile("1.05", "hd0", "x86_64")).to_json()
    assert r2["outcome"] == "boots" and r2["entry"]["index"] == 1, r2
    assert r2["kernel"]["version"] == older
    copy.unlink()
    shutil.rmtree(b.directory)


# --- Ctrl-C at each stage -----------------------------------------------------------------------------------
def _spawn(out: Path, work: Path, cache: Path, xdg: Path) -> subprocess.Popen[str]:
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / "builder")!r}]
        from pathlib import Path
        from tests.buildplans import assert_image_hygiene, debian12, debugfs
        from pvbuild.build.pipeline import build
        b = build(debian12(Path({str(out)!r})), work_parent=Path({str(work)!r}), rootfs_cache=Path({str(cache)!r}))
        print("BUILT", b.sha256, flush=True)
    """)
    env = {**os.environ, "XDG_CACHE_HOME": str(xdg)}
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env)


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _log_has(work: Path, marker: str) -> bool:
    return any(marker in p.read_text(errors="replace") for p in work.glob("*/build.log"))


def _processes_mentioning(path: Path) -> list[str]:
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            root = os.readlink(p / "root")
        except OSError:
            continue
        if str(path) in cmd or root.startswith(str(path)):
            found.append(f"{p.name}: {cmd[:200]}")
    return found


def _loop_devices() -> str:
    return run(["losetup", "-a"], capture=True).stdout.decode()


# (stage marker in build.log, extra condition, signal)
STAGES = {
    "bootstrap": ("=== rootfs", "mount", signal.SIGINT),
    "unpack": ("=== rootfs unpack", "", signal.SIGINT),
    "elements": ("=== elements", "mount", signal.SIGINT),
    "elements-sigterm": ("element script post-install.d", "mount", signal.SIGTERM),
    "disk": ("=== disk", "", signal.SIGINT),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_interrupt_leaves_nothing(area: Path, stage: str, partitionless: tuple[Plan, BuiltImage]) -> None:
    marker, extra, sig = STAGES[stage]
    base = area / f"intr-{stage}"
    out, work, xdg = base / "out", base / "work", base / "xdg"
    for d in (out, work, xdg):
        d.mkdir(parents=True)
    # the bootstrap stage needs a cold cache so mmdebstrap really runs; the others use the warm one
    cache = base / "cold-cache" if stage == "bootstrap" else _cache()
    loops = _loop_devices()
    p = _spawn(out, work, cache, xdg)
    try:
        assert _wait_for(lambda: _log_has(work, marker), 120), "the build never reached " + marker
        if extra == "mount":
            # mid-stage, with something mounted under the work folder (mmdebstrap's or the chroot's)
            _wait_for(lambda: bool(mounts_under(work)), 90 if stage == "bootstrap" else 20)
        p.send_signal(sig)
        output, _ = p.communicate(timeout=180)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "BUILT" not in output, "the build finished before the interrupt; the stage was too quick to hit"
    assert p.returncode != 0
    assert not mounts_under(work) and not mounts_under(base)
    assert list(work.iterdir()) == [], output
    assert list(out.iterdir()) == []
    assert _processes_mentioning(base) == []
    assert _loop_devices() == loops
    rootfs_dir = cache / "rootfs"
    if rootfs_dir.exists():
        assert not list(rootfs_dir.glob("*.tmp.tar"))
    assert list((xdg / "pvbuild" / "logs").glob("*.last-failure.log"))
    if stage == "bootstrap":
        shutil.rmtree(cache)
    # and the next build works, in the same folders
    p = _spawn(out, work, _cache(), xdg)
    output, _ = p.communicate(timeout=600)
    assert p.returncode == 0, output
    assert f"BUILT {partitionless[1].sha256}" in output
    shutil.rmtree(base)


# --- shipping a built image ----------------------------------------------------------------------------------
def test_built_image_bundle_round_trips_with_the_reference_pipeline(partitionless: tuple[Plan, BuiltImage],
                                                                      area: Path) -> None:
    """The built image, bundled: the reference shell pipeline (openssl pkeyutl/enc, gunzip, tar) and
    `pvbuild unbundle` both give back the identical image."""
    from pvbuild.aws.bundle import bundle, unbundle
    from pvbuild.build.pipeline import sha256_file
    from tests.test_aws_bundle import _identity, _reference_pipeline

    _, b = partitionless
    d = area / "bundle-round-trip"
    (d / "b").mkdir(parents=True)
    try:
        user, ec2 = _identity(d, "user"), _identity(d, "ec2")
        res = bundle(b.image, user_cert=user.cert, user_key=user.key, ec2_cert=ec2.cert, user="123456789012",
                     arch="x86_64", destination=d / "b", kernel_id="aki-5c21674b")
        assert res.size == b.image_bytes and res.bundled_size < b.allocated_bytes  # holes never reach the tar
        (d / "ref").mkdir()
        _reference_pipeline(res.manifest, user.key, d / "ref", "tar -x")
        assert sha256_file(d / "ref" / b.image.name) == b.sha256
        (d / "ref" / b.image.name).unlink()
        mine = unbundle(res.manifest, user_key=user.key, destination=d / "ref", user_cert=user.cert)
        assert sha256_file(mine) == b.sha256
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_built_image_ships_to_every_region(partitionless: tuple[Plan, BuiltImage]) -> None:
    """The build's ship stage (a recipe's aws section) against moto: one snapshot, one AMI per region with that
    region's AKI, amis.json beside the image; the build's boot report and SHA256SUMS vouch for the image."""
    from dataclasses import replace

    from pvbuild.aws.register import ship_built
    from pvbuild.planmodel import AwsPlan
    from tests.motoserver import moto_endpoint
    from tests.test_aws_register import Recorder

    plan, b = partitionless
    aws = AwsPlan(regions=("us-east-1", "ap-northeast-1"), ami_name="pvbuild-built", description="built",
                  backing="ebs", volume_size_gib=None, volume_type="gp2", delete_on_termination=True, bundle=None,
                  tags=(("recipe", plan.name),), aki_lookup="table", replace=False, root_device="/dev/sda1",
                  table_akis=())
    try:
        with moto_endpoint() as url:
            rec = Recorder(url)
            amis = ship_built(replace(plan, aws=aws), b.image, clients=rec)
            assert [(a.region, a.kernel_id) for a in amis] == [("us-east-1", "aki-5c21674b"),
                                                               ("ap-northeast-1", "aki-7077ab11")]
            written = json.loads((b.directory / "amis.json").read_text())["amis"]
            assert [a["ami_id"] for a in written] == [a.ami_id for a in amis]
            assert len(rec.ops("StartSnapshot")) == 1 and len(rec.ops("CopySnapshot")) == 1
            for a in amis:
                [wire] = rec.ops("RegisterImage", a.region)
                assert wire["KernelId"] == a.kernel_id and wire["Architecture"] == "x86_64"
                assert str(wire["BlockDeviceMapping.1.Ebs.VolumeSize"]) == str(-(-b.image_bytes // 2**30))
    finally:
        (b.directory / "amis.json").unlink(missing_ok=True)
