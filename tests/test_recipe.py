"""Recipes and plans: validation with file:line errors, the seeds' cross-field rules, and the menu.lst pvbuild
renders (parsed back with pvbuild's own GRUB 0.97 parser)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pvbuild.distros import FAMILIES, debian
from pvbuild.plan import load_plan
from pvbuild.pvgrub import menu as grubmenu
from pvbuild.recipe import RecipeError, json_schema, parse_size
from pvbuild.resources import RECIPES

ALL_RECIPES = sorted(RECIPES.glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def problems(path: Path) -> list[tuple[int, str, str]]:
    with pytest.raises(RecipeError) as e:
        load_plan(path)
    return [(pr.where.line, pr.field, pr.message) for pr in e.value.problems]


def test_the_four_example_recipes_exist() -> None:
    names = {p.stem for p in ALL_RECIPES}
    assert {"debian-12-minimal", "debian-12-mbr", "debian-12-separate-boot", "debian-12-xfs-root"} <= names


@pytest.mark.parametrize("path", ALL_RECIPES, ids=lambda p: p.stem)
def test_every_recipe_plans_and_its_menu_reads_back(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every example recipe plans without error, and GRUB 0.97's parser (pvgrub/menu.py) reads the rendered
    menu.lst back as planned: same entries, default, fallback and timeout, nothing dropped."""
    for family in FAMILIES.values():  # the other families' examples name no archive: the user gives it
        if family.name != "debian":
            monkeypatch.setenv(family.mirror_variable, f"http://{family.name}.mirror.invalid/")
    plan = load_plan(path)
    if plan.disk.table == "gpt":  # the one warning an example may carry: GPT numbering is UNVERIFIED
        assert len(plan.warnings) == 1 and "UNVERIFIED" in plan.warnings[0], plan.warnings
    else:
        assert not plan.warnings
    parsed = grubmenu.parse(plan.menu.text.encode())
    assert [e.title for e in parsed.entries] == [e.title for e in plan.menu.entries]
    assert parsed.state.default_entry == plan.menu.default
    assert tuple(parsed.state.fallbacks()) == plan.menu.fallback
    assert parsed.state.timeout == plan.menu.timeout
    assert not parsed.unknown and not parsed.dropped_titles and not parsed.ignored_globals
    for e, pe in zip(parsed.entries, plan.menu.entries, strict=True):
        cmds = [c for _, c in e.commands]
        assert cmds[0] == f"root {pe.root}"
        assert cmds[1] == f"kernel {pe.kernel} {pe.args}"
    boot = plan.disk.boot
    if boot.fstype.startswith("ext"):
        assert "^64bit" in boot.mkfs_options
    root = plan.disk.root
    want = f"root=/dev/mapper/{root.lvm.dm_name}" if root.lvm is not None else f"root=UUID={root.uuid}"
    assert plan.kernel.cmdline.startswith(want + " ") and "console=hvc0" in plan.kernel.cmdline
    assert {"xen-blkfront", "xen-netfront"} <= set(plan.initrd.modules)
    json.dumps(plan.to_json())


def test_separate_boot_paths_and_devices() -> None:
    """A separate /boot: menu.lst is /grub/menu.lst inside it and the kernel paths are relative to it."""
    plan = load_plan(RECIPES / "debian-12-separate-boot.yaml")
    assert plan.disk.boot.mountpoint == "/boot" and plan.disk.boot.grub_device == "(hd0,0)"
    assert plan.menu.path_in_boot_fs == "/grub/menu.lst"
    assert plan.menu.entries[0].kernel == "/vmlinuz"
    assert plan.disk.root.grub_device == "(hd0,1)" and plan.disk.root.linux_device == "/dev/xvda2"


def test_plan_is_deterministic() -> None:
    """UUIDs, hash seeds and the disk id come from the recipe: the same recipe, the same plan."""
    a = load_plan(RECIPES / "debian-12-mbr.yaml").to_json()
    b = load_plan(RECIPES / "debian-12-mbr.yaml").to_json()
    assert a == b
    assert a["disk"]["disk_id"].startswith("0x")


def test_errors_name_file_line_field_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        name: t
        disk:
          size: 2GB
          tabel: mbr
          partitions:
            - mountpoint: /
              fstype: ext5
              size: lots
        menu:
          timeout: five
        """)
    got = problems(path)
    assert (4, "disk.tabel", "unknown field") in got
    assert any(line == 7 and field == "disk.partitions[0].fstype" for line, field, _ in got)
    assert any(line == 8 and "not a size" in msg for line, _, msg in got)
    assert any(line == 10 and field == "menu.timeout" for line, field, _ in got)
    with pytest.raises(RecipeError) as e:
        load_plan(path)
    assert "did you mean `table`" in str(e.value)
    assert str(path) in str(e.value)


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    assert problems(write(tmp_path, "name: t\ndisk: [unclosed\n"))[0][0] in (2, 3)
    dup = problems(write(tmp_path, "name: t\nname: u\n"))
    assert dup[0][0] == 2 and "twice" in dup[0][2]


@pytest.mark.parametrize(("body", "line", "field", "words"), [
    ("arch: x86_64\npvgrub:\n  arch: i386\n", 3, "pvgrub.arch", "32-bit PV-GRUB cannot start a 64-bit"),
    ("arch: i386\n", 1, "arch", "no Xen PV"),
    ("aws:\n  ramdisk_id: ari-12345678\n", 2, "aws.ramdisk_id", "ARI"),
    ("disk:\n  table: gpt\npvgrub:\n  version: '1.03'\n  variant: hd00\n", 2, "disk.table", "GPT"),
    ("pvgrub:\n  variant: hd00\n", 2, "pvgrub.variant", "partitionless"),
    ("disk:\n  table: mbr\npvgrub:\n  variant: hd0\n", 4, "pvgrub.variant", "partition table"),
    ("disk:\n  partitions:\n    - mountpoint: /\n      fstype: xfs\n      mkfs_options: [-m, crc=1]\n", 5,
     "disk.partitions[0].mkfs_options", "v5"),
    ("disk:\n  partitions:\n    - mountpoint: /\n      mkfs_options: [-O, 64bit]\n", 4,
     "disk.partitions[0].mkfs_options", "64bit"),
    ("disk:\n  partitions:\n    - mountpoint: /\n      fstype: btrfs\n", 4, "disk.partitions[0].fstype", "btrfs"),
    ("disk:\n  partitions:\n    - mountpoint: /\n      lvm: true\n", 4, "disk.partitions[0].lvm", "LVM"),
    ("disk:\n  partitions:\n    - mountpoint: /boot\n      size: 256MiB\n    - mountpoint: /\n", 1, "disk.table",
     "separate /boot needs a partition table"),
    ("menu:\n  fallback: [1, 1, 0]\n", 2, "menu.fallback", "repeated"),
    ("menu:\n  default: 7\n", 2, "menu.default", "does not exist"),
    ("kernel:\n  cmdline: [root=/dev/sda1]\n", 2, "kernel.cmdline[0]", "set by pvbuild"),
    ("menu:\n  entries:\n    - title: x\n      kernel: vmlinuz\n", 4, "menu.entries[0].kernel", "Error 1"),
    ("initrd:\n  tool: mkinitrd\n", 2, "initrd.tool", "mkinitrd"),
    ("initrd:\n  tool: dracut\n", 2, "initrd.tool", "not built yet"),
    ("disk:\n  size: 100MiB\n  table: mbr\n  partitions:\n    - mountpoint: /boot\n      size: 200MiB\n"
     "    - mountpoint: /\npvgrub:\n  variant: hd00\n", 2, "disk.size", "cannot hold"),
])
def test_cross_field_rules_are_plan_errors(tmp_path: Path, body: str, line: int, field: str, words: str) -> None:
    """The seeds' rules (64/32-bit, no ARI, GPT <= 1.03, readable /boot, LVM needs /boot, i386 PV, hd0/hd00 vs
    the table) and GRUB 0.97's own traps are errors before any work, each pointing at its line."""
    path = write(tmp_path, "name: t\n" + body)
    got = problems(path)
    match = [g for g in got if g[1] == field]
    assert match, got
    assert any(words.lower() in msg.lower() for _, _, msg in match), match
    assert match[0][0] == line + 1, (match, body)


def test_timeout_null_is_a_warning(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, "name: t\nmenu:\n  timeout: null\n"))
    assert any("forever" in w for w in plan.warnings)
    assert "timeout" not in plan.menu.text.split("title")[0].replace("# ", "")


def test_files_and_users(tmp_path: Path) -> None:
    (tmp_path / "motd").write_text("hi\n")
    plan = load_plan(write(tmp_path, """\
        name: t
        files:
          - {src: motd, dest: /etc/motd, mode: "0644"}
          - {content: "x=1\\n", dest: /etc/x.conf}
        users:
          - name: admin
            sudo: true
            ssh_authorized_keys: ["ssh-ed25519 AAAAC3Nza admin@host"]
        """))
    assert plan.files[0].source == str(tmp_path / "motd") and plan.files[0].mode == 0o644
    assert plan.files[1].content == "x=1\n"
    assert {"openssh-server", "sudo"} <= set(plan.distro.packages)
    got = problems(write(tmp_path, "name: t\nfiles:\n  - {src: nope, dest: etc/x}\nusers:\n  - name: u\n"
                                   "    password_hash: hunter2\n", "bad.yaml"))
    fields = {f for _, f, _ in got}
    assert {"files[0].src", "files[0].dest", "users[0].password_hash"} <= fields


def test_sizes() -> None:
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("512M") == 512 * 1024**2
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("2GB") == 2 * 1000**3
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("lots")


def test_mirror_from_host_sources(tmp_path: Path) -> None:
    """The mirror comes from the host's apt sources (deb822 or one-line), never from pvbuild's code."""
    d = tmp_path / "etc/apt/sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm "
                                      "bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: "
                                      "http://mirror.example/debian-security\nSuites: bookworm-security\n"
                                      "Components: main\n")
    assert debian.host_mirrors(tmp_path) == ("http://mirror.example/debian",
                                             "http://mirror.example/debian-security")
    (d / "debian.sources").unlink()
    (tmp_path / "etc/apt/sources.list").write_text("# comment\ndeb [arch=amd64] http://m.example/debian bookworm "
                                                   "main\ndeb http://m.example/sec bookworm-security main\n")
    assert debian.host_mirrors(tmp_path) == ("http://m.example/debian", "http://m.example/sec")


def test_cli_plan_menu_schema(tmp_path: Path) -> None:
    recipe = str(RECIPES / "debian-12-minimal.yaml")
    run = [sys.executable, "-m", "pvbuild"]
    out = subprocess.run([*run, "plan", recipe, "--json"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pvgrub"] == {"version": "1.05", "variant": "hd0", "arch": "x86_64"}
    out = subprocess.run([*run, "menu", recipe], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "kernel /boot/vmlinuz root=UUID=" in out.stdout
    out = subprocess.run([*run, "schema"], capture_output=True, text=True, check=False)
    assert json.loads(out.stdout) == json_schema()
    bad = write(tmp_path, "name: t\narch: sparc\n")
    out = subprocess.run([*run, "plan", str(bad)], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and f"{bad}:2: arch" in out.stderr and "Traceback" not in out.stderr
