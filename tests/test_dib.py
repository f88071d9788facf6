"""The diskimage-builder backend's parts that need no build: what disk-image-create is given, refusals, the /dev
reset, and the data the elements read. The real build and boot are in tests/test_boot_images.py."""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
from pathlib import Path

import pytest

from pvbuild.build import dib, elements, rootfs
from pvbuild.build.errors import ToolMissing
from pvbuild.errors import EnvironmentProblem, UsageError
from pvbuild.plan import load_plan
from pvbuild.planmodel import FileOverlay, Plan
from tests.buildplans import debian12
from tests.conftest import REPO


def _plan(tmp_path: Path) -> Plan:
    return debian12(tmp_path, backend="diskimage-builder")


def test_the_example_recipe_plans_debian_minimal() -> None:
    plan = load_plan(REPO / "recipes" / "debian-12-dib.yaml")
    assert plan.distro.backend == "diskimage-builder" and plan.distro.dib_element == "debian-minimal"
    assert plan.distro.variant == ""


def test_argv_is_the_distro_element_and_pvbuilds_elements_as_a_tarball(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    argv = dib.dib_argv(plan, tmp_path / "rootfs", tmp_path / "cache")
    assert Path(argv[0]).name == "disk-image-create"
    assert argv[argv.index("-t") + 1] == "tar"
    assert argv[argv.index("-a") + 1] == "amd64"
    assert argv[argv.index("-o") + 1] == str(tmp_path / "rootfs")
    assert argv[argv.index("--image-cache") + 1] == str(tmp_path / "cache")
    assert "-n" in argv and "--no-tmpfs" in argv  # no `base` element (no cloud-init); no tmpfs
    assert argv[argv.index("-p") + 1].split(",") == list(rootfs.bootstrap_packages(plan))
    # the same elements the mmdebstrap backend runs, after the distro element
    assert argv[-len(elements.DEFAULT_ELEMENTS) - 1:] == ["debian-minimal", *elements.DEFAULT_ELEMENTS]
    for el in elements.DEFAULT_ELEMENTS:
        assert (elements.ELEMENTS_DIR / el / "README.rst").is_file(), el


def test_environment_carries_the_plan_and_nothing_of_the_callers_dib_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIB_RELEASE", "sid")
    monkeypatch.setenv("DIB_DEBIAN_COMPONENTS", "main,contrib,non-free")
    monkeypatch.setenv("DIB_SOMETHING_ELSE", "1")
    monkeypatch.setenv("ELEMENTS_PATH", "/elsewhere")
    plan = _plan(tmp_path)
    env = dib.dib_environment(plan, tmp_path / "data", tmp_path / "work")
    assert env["DIB_RELEASE"] == "bookworm" and env["DIB_DEBIAN_COMPONENTS"] == "main"
    assert "DIB_SOMETHING_ELSE" not in env
    assert env["ELEMENTS_PATH"] == str(elements.ELEMENTS_DIR)
    assert env["DIB_PVGRUB_DATA_DIR"] == str(tmp_path / "data")
    assert env["TMPDIR"] == str(tmp_path / "work")
    assert env["DIB_DISTRIBUTION_MIRROR"] == plan.distro.mirror
    # the apt sources are the mmdebstrap backend's lines, named
    conf = env["DIB_APT_SOURCES_CONF"].splitlines()
    assert [c.split(":", 1)[1] for c in conf] == rootfs.sources(plan)
    assert [c.split(":", 1)[0] for c in conf] == ["default", "updates", "security"][:len(conf)]
    # every variable the elements read
    for k, v in elements.element_environment(plan).items():
        if k.startswith("DIB_PVGRUB_"):
            assert env[k] == v, k
    assert env["SOURCE_DATE_EPOCH"] == str(plan.source_date_epoch)
    assert env["PATH"].split(":")[0] == str(dib.disk_image_create().parent)


def test_cache_is_per_archive_release_and_arch(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    other = dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, mirror="http://mirror.invalid/debian"))
    assert dib.cache_dir(plan, tmp_path) != dib.cache_dir(other, tmp_path)
    assert dib.cache_dir(plan, tmp_path) == dib.cache_dir(_plan(tmp_path), tmp_path)
    assert dib.cache_dir(plan, tmp_path).parent == tmp_path / "dib"


def test_non_debian_families_and_missing_elements_are_refused(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    fedora = dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, family="fedora", version="31",
                                                                  release="31", dib_element="fedora"))
    with pytest.raises(EnvironmentProblem, match="configure Debian trees"):
        dib.preflight(fedora)
    none = dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, dib_element=None))
    with pytest.raises(EnvironmentProblem, match="no element"):
        dib.preflight(none)


def test_missing_disk_image_create_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="pip install diskimage-builder"):
        dib.disk_image_create()


def test_reset_dev_leaves_exactly_the_bootstrap_set(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "dev" / "mapper").mkdir(parents=True)
    os.mknod(tree / "dev" / "loop0", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mknod(tree / "dev" / "kvm", stat.S_IFCHR | 0o660, os.makedev(10, 232))
    dib.reset_dev(tree)
    names = sorted(p.name for p in (tree / "dev").iterdir())
    assert names == sorted([*dib.DEV_NODES, *dib.DEV_LINKS, "pts", "shm"])
    st = os.lstat(tree / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_IMODE(st.st_mode) == 0o666
    assert os.readlink(tree / "dev" / "fd") == "/proc/self/fd"
    evil = tmp_path / "evil"
    evil.mkdir()
    os.symlink("/dev", evil / "dev")
    with pytest.raises(EnvironmentProblem, match="symlink"):
        dib.reset_dev(evil)


def test_stage_data_lists_the_overlays_for_pvgrub_files(tmp_path: Path) -> None:
    src = tmp_path / "banner"
    src.write_bytes(b"from a file\n")
    plan = dataclasses.replace(_plan(tmp_path), files=(
        FileOverlay("", "/etc/motd", 0o644, "hello\n"),
        FileOverlay(str(src), "/usr/local/bin/with space", 0o755, None),
    ))
    d = elements.stage_data(plan, tmp_path / "data")
    assert (d / "menu.lst").read_text() == plan.menu.text
    assert (d / "files" / "list").read_text() == "0 644 /etc/motd\n1 755 /usr/local/bin/with space\n"
    assert (d / "files" / "0").read_text() == "hello\n"
    assert (d / "files" / "1").read_bytes() == b"from a file\n"
    assert (d / "keys" / "root.keys").read_text().strip() == plan.root_ssh_authorized_keys[0]
    bad = dataclasses.replace(plan, files=(FileOverlay("", "/etc/a\nb", 0o644, "x"),))
    with pytest.raises(UsageError, match="one line"):
        elements.stage_data(bad, tmp_path / "data")
