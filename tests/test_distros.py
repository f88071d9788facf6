"""Distro profiles: every family x release x architecture plans, or is refused with its reason at its line.

The matrix below is written out by hand (REFUSED): a profile change that flips a row must change this test too,
and the README's support table is compared with the one the profiles generate.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest

from pvbuild.distros import FAMILIES, support_table
from pvbuild.distros.profile import Kernel, series_tuple
from pvbuild.errors import EXIT_ENVIRONMENT, EnvironmentProblem
from pvbuild.plan import load_plan
from pvbuild.planmodel import Plan
from pvbuild.recipe import RecipeError
from pvbuild.resources import RECIPES

REPO = Path(__file__).resolve().parent.parent

# (family, release, arch) -> words of the refusal. Every other combination must plan.
REFUSED: dict[tuple[str, str, str], str] = {
    ("debian", "bullseye", "i386"): "removed 32-bit PV guests in 5.9",
    ("debian", "bookworm", "i386"): "removed 32-bit PV guests in 5.9",
    ("debian", "trixie", "x86_64"): "zstd-compressed",
    ("debian", "trixie", "i386"): "removed 32-bit PV guests in 5.9",
    ("ubuntu", "focal", "x86_64"): "lz4-compressed",
    ("ubuntu", "jammy", "x86_64"): "zstd-compressed",
    ("ubuntu", "noble", "x86_64"): "zstd-compressed",
    **{("ubuntu", r, "i386"): "no i386 kernel" for r in ("focal", "jammy", "noble")},
    **{("fedora", str(v), "x86_64"): "zstd-compressed" for v in range(32, 43)},
    **{("fedora", str(v), "i386"): "no i386 kernel" for v in range(31, 43)},
    **{("centos", r, "x86_64"): "Xen PV guest" for r in ("8", "8-stream", "9-stream")},
    **{("centos", r, "i386"): "no i386 kernel" for r in ("7", "8", "8-stream", "9-stream")},
    **{("rhel", r, "x86_64"): "Xen PV guest" for r in ("8", "9")},
    **{("rhel", r, "i386"): "no i386 kernel" for r in ("7", "8", "9")},
    **{("opensuse", r, "i386"): "no i386 kernel" for r in ("15.5", "15.6")},
    **{("sles", r, "i386"): "no i386 kernel" for r in ("12", "15")},
    ("amazon", "2", "i386"): "no i386 kernel",
    ("amazon", "2023", "x86_64"): "Xen PV guest",
    ("amazon", "2023", "i386"): "no i386 kernel",
    ("gentoo", "rolling", "x86_64"): "zstd-compressed",
    ("gentoo", "rolling", "i386"): "removed 32-bit PV guests in 5.9",
}
ALL = [(f.name, r.name, arch) for f in FAMILIES.values() for r in f.releases for arch in ("x86_64", "i386")]


@pytest.fixture(autouse=True)
def mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    """pvbuild names no archive: every non-Debian family gets one from its environment variable."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1735689600")
    for family in FAMILIES.values():
        if family.name != "debian":
            monkeypatch.setenv(family.mirror_variable, f"http://{family.name}.mirror.invalid/")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def recipe(tmp_path: Path, family: str, release: str, arch: str = "x86_64", extra: str = "") -> Path:
    return write(tmp_path, f"name: t\ndistro:\n  family: {family}\n  release: '{release}'\narch: {arch}\n{extra}")


def problems(path: Path) -> list[tuple[int, str, str, str]]:
    with pytest.raises(RecipeError) as e:
        load_plan(path)
    return [(pr.where.line, pr.field, pr.message, pr.hint) for pr in e.value.problems]


def test_the_matrix_names_only_real_rows() -> None:
    assert set(REFUSED) <= set(ALL), set(REFUSED) - set(ALL)


@pytest.mark.parametrize(("family", "release", "arch"), ALL, ids=["-".join(x) for x in ALL])
def test_every_profile_release_and_arch_plans_or_is_refused(tmp_path: Path, family: str, release: str,
                                                            arch: str) -> None:
    path = recipe(tmp_path, family, release, arch)
    words = REFUSED.get((family, release, arch))
    if words is not None:
        got = problems(path)
        assert len(got) == 1, got
        line, field, message, hint = got[0]
        assert words in message, message
        assert field == ("arch" if field == "arch" else "distro.release")
        assert line == (5 if field == "arch" else 4)
        assert hint
        return
    plan = load_plan(path)
    fam = FAMILIES[family]
    rel = fam.resolve(release)
    assert rel is not None
    kernel = rel.kernel(arch)  # type: ignore[arg-type]
    assert isinstance(kernel, Kernel)
    d = plan.distro
    assert (d.family, d.release, d.version) == (family, rel.name, rel.version)
    assert d.backend == ("mmdebstrap" if family == "debian" else "diskimage-builder")
    assert d.dib_element == rel.dib_element and d.kernel_compression == kernel.compression
    assert d.deb_arch == ("amd64" if arch == "x86_64" else "i386")
    assert plan.kernel.package == kernel.package and fam.package(kernel.package) in d.packages
    assert plan.initrd.tool == rel.initrd_tool
    assert f"console={kernel.console}" in plan.kernel.cmdline
    assert plan.initrd.compression == ("zstd" if series_tuple(kernel.series) >= (5, 9) else "gzip")
    assert plan.menu.entries[0].title == rel.title
    assert not plan.warnings
    json.dumps(plan.to_json())


# --- the refusals, one by one -------------------------------------------------------------------------------
def test_zstd_kernel_is_refused_with_the_loader_s_words(tmp_path: Path) -> None:
    (line, field, message, hint), = problems(recipe(tmp_path, "ubuntu", "jammy"))
    assert (line, field) == (4, "distro.release")
    assert "zstd" in message and "unknown compression format" in message and "5.15" in message
    assert "does not recompress" in hint


def test_lz4_kernel_is_refused(tmp_path: Path) -> None:
    (_, _, message, _), = problems(recipe(tmp_path, "ubuntu", "20.04"))
    assert "lz4-compressed" in message and "gzip" in message  # it says what PV-GRUB reads


def test_i386_on_a_kernel_from_5_9_on_is_refused(tmp_path: Path) -> None:
    (line, field, message, hint), = problems(recipe(tmp_path, "debian", "bookworm", "i386"))
    assert (line, field) == (5, "arch") and "no Xen PV" in message and "6.1" in message
    assert hint == "build x86_64"


def test_a_kernel_without_xen_pv_is_refused(tmp_path: Path) -> None:
    (_, field, message, _), = problems(recipe(tmp_path, "amazon", "al2023"))
    assert field == "distro.release" and "CONFIG_XEN_PV is not set" in message


def test_unknown_release_lists_the_known_ones(tmp_path: Path) -> None:
    (line, field, message, hint), = problems(recipe(tmp_path, "ubuntu", "hardy"))
    assert (line, field) == (4, "distro.release") and "unknown Ubuntu release 'hardy'" in message
    assert all(r.name in hint for r in FAMILIES["ubuntu"].releases) and "bionic (18.04)" in hint


def test_dracut_is_refused_on_debian_and_allowed_where_the_family_uses_it(tmp_path: Path) -> None:
    (_, field, message, _), = problems(write(tmp_path, "name: t\ninitrd:\n  tool: dracut\n"))
    assert field == "initrd.tool" and "not built yet" in message
    plan = load_plan(recipe(tmp_path, "fedora", "31", extra="initrd:\n  tool: dracut\n"))
    assert plan.initrd.tool == "dracut" and "dracut" in plan.distro.packages
    plan = load_plan(recipe(tmp_path, "centos", "5", extra="initrd:\n  tool: mkinitrd\n"))
    assert plan.initrd.tool == "mkinitrd" and "mkinitrd" in plan.distro.packages
    (_, field, message, hint), = problems(recipe(tmp_path, "centos", "7", extra="initrd:\n  tool: mkinitrd\n"))
    assert field == "initrd.tool" and "makes its initrd with dracut" in message and "dracut" in hint


def test_release_aliases(tmp_path: Path) -> None:
    assert load_plan(recipe(tmp_path, "ubuntu", "18.04")).distro.release == "bionic"
    assert load_plan(recipe(tmp_path, "centos", "6")).distro.release == "6"
    assert load_plan(recipe(tmp_path, "opensuse", "leap-15.6")).distro.release == "15.6"
    assert load_plan(recipe(tmp_path, "amazon", "amzn2")).distro.release == "2"
    assert load_plan(write(tmp_path, "name: t\ndistro:\n  family: ubuntu\n")).distro.release == "bionic"
    assert load_plan(write(tmp_path, "name: t\n")).distro.release == "bookworm"


def test_a_non_debian_family_needs_a_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PVBUILD_FEDORA_MIRROR")
    (line, field, message, _), = problems(recipe(tmp_path, "fedora", "31"))
    assert (line, field) == (2, "distro.mirror")
    assert "give distro.mirror" in message and "$PVBUILD_FEDORA_MIRROR" in message
    plan = load_plan(write(tmp_path, "name: t\ndistro:\n  family: fedora\n  release: '31'\n"
                                     "  mirror: http://x.invalid/fedora/\n"))
    assert plan.distro.mirror == "http://x.invalid/fedora"
    monkeypatch.setenv("PVBUILD_FEDORA_MIRROR", "http://env.invalid/fedora")
    assert load_plan(recipe(tmp_path, "fedora", "31")).distro.mirror == "http://env.invalid/fedora"


def test_apt_only_fields_and_backends(tmp_path: Path) -> None:
    got = problems(write(tmp_path, "name: t\ndistro:\n  family: fedora\n  release: '31'\n  components: [main]\n"
                                   "  backend: mmdebstrap\n"))
    assert {f for _, f, _, _ in got} == {"distro.components", "distro.backend"}
    plan = load_plan(write(tmp_path, "name: t\ndistro:\n  family: ubuntu\n  backend: mmdebstrap\n"))
    assert (plan.distro.backend, plan.distro.variant, plan.distro.components) == ("mmdebstrap", "minbase", ("main",))
    plan = load_plan(write(tmp_path, "name: t\ndistro:\n  backend: diskimage-builder\n"))
    assert (plan.distro.backend, plan.distro.dib_element, plan.distro.variant) == ("diskimage-builder",
                                                                                    "debian-minimal", "")


def test_initrd_compression_follows_the_kernel(tmp_path: Path) -> None:
    assert load_plan(recipe(tmp_path, "ubuntu", "trusty")).initrd.compression == "gzip"
    assert load_plan(recipe(tmp_path, "opensuse", "15.6")).initrd.compression == "zstd"
    assert load_plan(write(tmp_path, "name: t\n")).initrd.compression == "zstd"
    (_, field, message, _), = problems(recipe(tmp_path, "ubuntu", "trusty", extra="initrd:\n  compression: zstd\n"))
    assert field == "initrd.compression" and "3.13" in message and "5.9" in message
    plan = load_plan(recipe(tmp_path, "ubuntu", "trusty", extra="initrd:\n  compression: xz\n"))
    assert plan.initrd.compression == "xz"


def test_a_kernel_the_recipe_names_is_trusted_and_left_to_the_build_s_check(tmp_path: Path) -> None:
    plan = load_plan(recipe(tmp_path, "ubuntu", "jammy", extra="kernel:\n  package: linux-image-5.4.0-1060-aws\n"))
    assert plan.kernel.package == "linux-image-5.4.0-1060-aws" and plan.distro.kernel_compression == ""
    assert "linux-image-5.4.0-1060-aws" in plan.distro.packages and "linux-image-virtual" not in plan.distro.packages
    # Naming the profile's own package changes nothing: it is still refused.
    assert problems(recipe(tmp_path, "ubuntu", "jammy", extra="kernel:\n  package: linux-image-virtual\n"))


def test_other_kernels_the_profile_knows_are_checked_too(tmp_path: Path) -> None:
    extra = "kernel:\n  package: linux-image-cloud-amd64\n"
    (line, field, message, _), = problems(recipe(tmp_path, "debian", "bookworm", extra=extra))
    assert (line, field) == (7, "kernel.package") and "lz4-compressed" in message
    plan = load_plan(recipe(tmp_path, "ubuntu", "bionic", extra="kernel:\n  package: linux-image-aws\n"))
    assert (plan.distro.kernel_compression, plan.initrd.compression) == ("gzip", "gzip")
    assert problems(recipe(tmp_path, "ubuntu", "focal", extra="kernel:\n  package: linux-image-aws\n"))


def test_xen_patched_kernels_default_to_xvc0(tmp_path: Path) -> None:
    assert "console=xvc0" in load_plan(recipe(tmp_path, "centos", "5")).kernel.cmdline
    assert "console=xvc0" in load_plan(recipe(tmp_path, "opensuse", "11.2", "i386")).kernel.cmdline
    plan = load_plan(recipe(tmp_path, "centos", "5", extra="kernel:\n  console: hvc0\n"))
    assert "console=hvc0" in plan.kernel.cmdline


def test_package_names_follow_the_family(tmp_path: Path) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKkQ2pgg8GOhvVpdPR8iz7ncBdzbw8yLNyJmoqZMT2hq t@t"
    extra = f"ssh_authorized_keys: ['{key}']\nusers:\n  - name: admin\n    sudo: true\n"
    assert {"openssh", "sudo"} <= set(load_plan(recipe(tmp_path, "opensuse", "15.6", extra=extra)).distro.packages)
    packages = set(load_plan(write(tmp_path, "name: t\ndistro:\n  family: gentoo\nkernel:\n  package: "
                                             f"sys-kernel/gentoo-kernel\n{extra}")).distro.packages)
    assert {"net-misc/openssh", "app-admin/sudo", "sys-kernel/dracut", "sys-kernel/gentoo-kernel"} <= packages


# --- the build stops early, with the reason -----------------------------------------------------------------
@pytest.mark.parametrize(("body", "words"), [
    ("distro:\n  family: ubuntu\n", "cannot build ubuntu 18.04 with diskimage-builder yet: pvbuild's elements"),
    ("distro:\n  family: amazon\n", "diskimage-builder has no element for amazon 2"),
    ("distro:\n  backend: diskimage-builder\n", "must run as root: diskimage-builder"),  # Debian: it builds
    ("distro:\n  family: ubuntu\n  backend: mmdebstrap\n", "cannot build ubuntu 18.04 with mmdebstrap yet"),
])
def test_build_of_a_family_it_cannot_build_stops_at_once(tmp_path: Path, body: str, words: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from pvbuild.build.pipeline import preflight

    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the reason comes before "must run as root"
    plan: Plan = load_plan(write(tmp_path, "name: t\n" + body))
    with pytest.raises(EnvironmentProblem) as e:
        preflight(plan)
    assert words in str(e.value) and e.value.exit_code == EXIT_ENVIRONMENT


# --- what the README and recipes/ say -----------------------------------------------------------------------
def test_readme_support_table_is_the_profiles_table() -> None:
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- support-table -->\n(.*?)<!-- /support-table -->", readme, re.S)
    assert m, "README.md has no generated support table"
    assert m.group(1) == support_table(), "regenerate it: python -c 'from pvbuild.distros import support_table; " \
                                          "print(support_table(), end=\"\")'"


def test_every_family_module_has_an_example_recipe_that_plans() -> None:
    families = {re.search(r"family: (\w+)", p.read_text()).group(1)  # type: ignore[union-attr]
                for p in RECIPES.glob("*.yaml") if "family:" in p.read_text()}
    assert {"debian", "ubuntu", "fedora", "centos", "opensuse", "amazon", "gentoo"} <= families


def test_profiles_name_no_archive_host() -> None:
    for path in (REPO / "builder" / "pvbuild" / "distros").glob("*.py"):
        assert "://" not in path.read_text(), path
