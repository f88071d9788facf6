"""Golden images: `pvbuild lock` and `--locked` (pvbuild.lock).

The unit tests use hand-made indices; the archive tests read the host's real mirror (the signed InRelease checked
with gpgv, the Packages index against it); the slow test locks a real bootstrap, builds it locked twice (the
second bootstrapping again) and gets the same image sha256, then finds a tampered lock refused with its list.
"""

from __future__ import annotations

import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pvbuild.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from pvbuild.lock import (
    IndexEntry,
    LockError,
    LockMismatch,
    Suite,
    differences,
    installed_vs_lock,
    load_lock,
    parse_stanzas,
    pins,
    suites,
    verified_release,
    write_lock,
)
from tests.buildplans import debian12
from tests.conftest import cache_root


def _entry(name: str, version: str, sha: str = "a" * 64, arch: str = "amd64") -> IndexEntry:
    deb = f"pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb"
    return IndexEntry(name, version, arch, sha, deb, 1, "bookworm")


def _lock(plan: Any, packages: list[dict[str, str]]) -> dict[str, Any]:
    from pvbuild.lock import inputs

    return {"lock_format": 1, "source_date_epoch": plan.source_date_epoch, "inputs": inputs(plan),
            "packages": packages}


def test_stanzas_take_first_lines_and_skip_continuations() -> None:
    text = "Package: a\nVersion: 1\nDescription: x\n more\n\nPackage: b\nVersion: 2\n"
    assert list(parse_stanzas(text)) == [{"Package": "a", "Version": "1", "Description": "x"},
                                         {"Package": "b", "Version": "2"}]


def test_pins_are_apt_preferences() -> None:
    text = pins([("bash", "5.2.15-2+b7", "amd64"), ("tzdata", "2024a-0+deb12u1", "all")])
    assert text == ("Package: bash:amd64\nPin: version 5.2.15-2+b7\nPin-Priority: 1001\n\n"
                    "Package: tzdata\nPin: version 2024a-0+deb12u1\nPin-Priority: 1001\n")


def test_installed_vs_lock_lists_every_difference() -> None:
    got = [("bash", "5.2", "amd64"), ("new", "1", "amd64"), ("same", "1", "all")]
    want = [("bash", "5.1", "amd64"), ("gone", "3", "amd64"), ("same", "1", "all")]
    assert installed_vs_lock(got, want) == ["bash (amd64): installed 5.2, locked 5.1",
                                            "gone (amd64): installed nothing, locked 3",
                                            "new (amd64): installed 1, locked nothing"]


def test_differences_name_lost_versions_changed_hashes_and_recipe_drift(tmp_path: Path) -> None:
    plan = debian12(tmp_path)
    index = {(e.name, e.version, e.arch): e for e in (_entry("bash", "5.2"), _entry("dash", "0.5", "b" * 64))}
    lock = _lock(plan, [{"name": "bash", "version": "5.1", "arch": "amd64", "sha256": "a" * 64},
                        {"name": "dash", "version": "0.5", "arch": "amd64", "sha256": "c" * 64},
                        {"name": "zz", "version": "1", "arch": "amd64", "sha256": "d" * 64}])
    assert differences(plan, lock, index) == [
        "bash 5.1 (amd64): no longer served; the mirror has 5.2",
        f"dash 0.5 (amd64): sha256 {'b' * 64} on the mirror, {'c' * 64} in the lock",
        "zz 1 (amd64): no longer served; the mirror has no such package"]
    moved = replace(plan, distro=replace(plan.distro, packages=(*plan.distro.packages, "vim")),
                    source_date_epoch=plan.source_date_epoch + 1)
    drift = differences(moved, lock, index)
    assert any("source_date_epoch" in d for d in drift) and any("added since the lock: vim" in d for d in drift)


def test_lock_files_are_checked_and_written_whole(tmp_path: Path) -> None:
    plan = debian12(tmp_path)
    path = tmp_path / "r.lock"
    with pytest.raises(LockError, match="run `pvbuild lock"):
        load_lock(path)
    path.write_text("lock_format: 99\n")
    with pytest.raises(LockError, match="not a pvbuild lock"):
        load_lock(path)
    path.write_text("lock_format: 1\npackages: [{name: a}]\n")
    with pytest.raises(LockError, match=r"packages\[0\]"):
        load_lock(path)
    doc = _lock(plan, [{"name": "bash", "version": "5.2", "arch": "amd64", "sha256": "a" * 64}])
    write_lock(path, doc)
    assert load_lock(path)["packages"] == doc["packages"]
    assert path.read_text().startswith("# pvbuild lock")
    assert [p.name for p in tmp_path.iterdir()] == ["r.lock"]


def _mirror_reachable(plan: Any) -> bool:
    try:
        urllib.request.urlopen(f"{plan.distro.mirror.rstrip('/')}/dists/bookworm/InRelease", timeout=10).close()  # noqa: S310
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = debian12(tmp_path_factory.mktemp("lock"))
    if not _mirror_reachable(p):
        pytest.skip("the host's Debian mirror is not reachable")
    return p


def test_release_files_are_verified_with_the_archive_keyring(plan: Any, tmp_path: Path) -> None:
    """The real InRelease verifies; a copy with one byte changed (served from a file:// mirror) does not."""
    suite = suites(plan)[0]
    listed = verified_release(suite)
    assert any(p.endswith("binary-amd64/Packages.xz") for p in listed)
    with urllib.request.urlopen(f"{suite.mirror.rstrip('/')}/dists/{suite.suite}/InRelease", timeout=60) as r:  # noqa: S310
        data = bytearray(r.read())
    i = data.index(b"SHA256:") + 100
    data[i] = ord("0") if data[i] != ord("0") else ord("1")
    fake = tmp_path / "dists" / suite.suite
    fake.mkdir(parents=True)
    (fake / "InRelease").write_bytes(bytes(data))
    with pytest.raises(EnvironmentProblem, match="signature does not verify") as e:
        verified_release(Suite(f"file://{tmp_path}", suite.suite, suite.components))
    assert e.value.exit_code == EXIT_ENVIRONMENT


@pytest.mark.slow
def test_locked_builds_are_identical_and_a_lost_version_is_refused(plan: Any, tmp_path: Path) -> None:
    from pvbuild.build.pipeline import build
    from pvbuild.lock import lock_recipe, locked_plan

    cache = cache_root() / "build" / "rootfs-cache"
    Path(plan.recipe).parent.mkdir(parents=True, exist_ok=True)
    path, doc = lock_recipe(plan, rootfs_cache=cache)
    assert path == Path(plan.recipe).with_suffix(".lock")
    names = {p["name"] for p in doc["packages"]}
    assert {"linux-image-amd64", "initramfs-tools", "base-files"} <= names
    assert all(len(p["sha256"]) == 64 and p["filename"].endswith(".deb") for p in doc["packages"])
    assert doc["source_date_epoch"] == plan.source_date_epoch

    locked = locked_plan(plan)
    assert len(locked.locked) == len(doc["packages"])
    work = tmp_path / "work"
    work.mkdir()
    first = build(replace(locked, output=replace(locked.output, directory=str(tmp_path / "one"))),
                  work_parent=work, rootfs_cache=cache)
    again = build(replace(locked, output=replace(locked.output, directory=str(tmp_path / "two"))),
                  work_parent=work, rootfs_cache=cache, refresh_rootfs=True)
    assert not again.rootfs_cached and again.sha256 == first.sha256
    pkgs = (tmp_path / "one" / "packages.txt").read_text()
    assert all(f"{p['name']} {p['version']}" in pkgs for p in doc["packages"] if p["name"] == "linux-image-amd64")
    from tests.buildplans import debugfs  # the pins are removed from the image

    listing = debugfs(first.image, "ls -l /etc/apt/preferences.d")
    assert "pvbuild-lock" not in listing

    lock = yaml.safe_load(path.read_text())
    for p in lock["packages"]:
        if p["name"] == "bash":
            p["version"] = "0.0-lost"
    path.write_text(yaml.safe_dump(lock))
    with pytest.raises(LockMismatch) as e:
        locked_plan(plan)
    assert any(d.startswith("bash 0.0-lost (amd64): no longer served; the mirror has ") for d in e.value.differences)
    assert e.value.exit_code == EXIT_ENVIRONMENT
