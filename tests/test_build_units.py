"""The build stage's pieces, each driven for real but small: run(), Log, rootfs keys, element inputs, disk layout.

The real builds (mmdebstrap, chroot, whole images) are in test_build_images.py.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pvbuild.build import disk, elements, rootfs
from pvbuild.build.errors import CommandFailed, ToolMissing
from pvbuild.build.run import Log, run
from pvbuild.build.workspace import mounts_under, remove_tree, work_dir
from pvbuild.errors import EXIT_ENVIRONMENT, UsageError
from pvbuild.planmodel import FilesystemPlan, Plan
from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.profiles import Profile
from tests.buildplans import ROOT_UUID, debian12

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    return debian12(tmp_path / "out")


# --- run() and Log ------------------------------------------------------------------------------------------
def test_run_logs_command_and_output(tmp_path: Path) -> None:
    console = io.StringIO()
    log = Log(tmp_path / "build.log", verbose=True, console=console)
    r = run(["sh", "-c", "echo out; echo err >&2"], log=log)
    log.close()
    text = (tmp_path / "build.log").read_text()
    assert "$ /usr/bin/sh -c 'echo out; echo err >&2'" in text or "$ /bin/sh" in text
    assert "  out" in text and "! err" in text
    assert "sh -c" in console.getvalue()  # -v shows the commands
    assert r.returncode == 0 and r.stderr == b"err\n"


def test_run_quiet_console_without_verbose(tmp_path: Path) -> None:
    console = io.StringIO()
    log = Log(tmp_path / "build.log", console=console)
    run(["true"], log=log)
    log.close()
    assert console.getvalue() == ""
    assert "true" in (tmp_path / "build.log").read_text()


def test_run_failure_is_typed_and_carries_stderr() -> None:
    with pytest.raises(CommandFailed) as e:
        run(["sh", "-c", "echo something broke >&2; exit 7"])
    assert e.value.returncode == 7
    assert "something broke" in e.value.stderr and "something broke" in str(e.value)
    assert e.value.exit_code == EXIT_ENVIRONMENT


def test_run_capture_and_input() -> None:
    assert run(["cat"], input=b"abc", capture=True).stdout == b"abc"
    assert run(["sh", "-c", "exit 3"], ok=(0, 3)).returncode == 3


def test_run_missing_tool() -> None:
    with pytest.raises(ToolMissing, match="not installed"):
        run(["pvbuild-no-such-tool"])


def test_run_interrupt_ends_the_whole_process_group(tmp_path: Path) -> None:
    """SIGINT to the Python process: the child and its grandchildren are gone before the interrupt unwinds."""
    pidfile = tmp_path / "pids"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO / "builder")!r})
        import pvbuild.build.run as r
        from pvbuild.build.run import run
        r.GRACE_SIGINT = 1.0  # the child ignores SIGINT: SIGTERM follows after a second
        try:
            run(["sh", "-c", "sleep 300 & echo $! > {pidfile}; trap '' INT; sleep 300"])
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert "interrupted" in out
    time.sleep(0.2)
    assert not Path(f"/proc/{grandchild}").exists() or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]


def test_log_stage_lines(tmp_path: Path) -> None:
    console = io.StringIO()
    with Log(tmp_path / "l.log", console=console) as log:
        with log.stage("first"):
            pass
        with pytest.raises(RuntimeError), log.stage("second"):
            raise RuntimeError("x")
        with log.progress("p", 10) as advance:  # not a TTY: plain, no bar
            advance(5)
    lines = console.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("first") and lines[0].split()[1] == "done" and lines[0].endswith("s")
    assert lines[1].split()[1] == "failed"


# --- workspace ----------------------------------------------------------------------------------------------
def test_work_dir_unmounts_before_deleting(tmp_path: Path) -> None:
    with work_dir(tmp_path) as d:
        (d / "m").mkdir()
        run(["mount", "-t", "tmpfs", "tmpfs", d / "m"])
        (d / "m" / "f").write_text("x")
        assert mounts_under(d)
    assert not d.exists()
    assert not mounts_under(tmp_path)


def test_remove_tree_refuses_a_mount_it_cannot_unmount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "w"
    (d / "m").mkdir(parents=True)
    run(["mount", "-t", "tmpfs", "tmpfs", d / "m"])
    try:
        import pvbuild.build.workspace as ws

        monkeypatch.setattr(ws, "unmount_all", lambda path, log=None: None)
        with pytest.raises(RuntimeError, match="refusing"):
            remove_tree(d)
    finally:
        run(["umount", d / "m"])


# --- rootfs -------------------------------------------------------------------------------------------------
def test_rootfs_key_covers_every_input(plan: Plan) -> None:
    base = rootfs.rootfs_key(plan, "mmdebstrap 1.3.5")
    variants = [
        dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, mirror="http://example.invalid/debian")),
        dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, security_mirror="")),
        dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, packages=(*plan.distro.packages, "vim"))),
        dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, release="trixie")),
        dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, deb_arch="i386")),
        dataclasses.replace(plan, kernel=dataclasses.replace(plan.kernel, package="linux-image-6.1.0-55-amd64")),
        dataclasses.replace(plan, source_date_epoch=plan.source_date_epoch + 1),
        dataclasses.replace(plan, pvbuild_version="9.9"),
    ]
    keys = {rootfs.rootfs_key(v, "mmdebstrap 1.3.5") for v in variants}
    assert base not in keys and len(keys) == len(variants)
    assert rootfs.rootfs_key(plan, "mmdebstrap 1.4") != base
    # Things the bootstrap does not depend on do not invalidate the cache.
    assert rootfs.rootfs_key(dataclasses.replace(plan, hostname="other"), "mmdebstrap 1.3.5") == base


def test_mmdebstrap_argv(plan: Plan, tmp_path: Path) -> None:
    argv = rootfs.mmdebstrap_argv(plan, tmp_path / "x.tar")
    assert "--variant=minbase" in argv and "--architectures=amd64" in argv
    inc = next(a for a in argv if a.startswith("--include="))[len("--include="):].split(",")
    assert {"linux-image-amd64", "initramfs-tools", "zstd", "openssh-server"} <= set(inc)
    assert f"deb {plan.distro.security_mirror} bookworm-security main" in argv
    hook = next(a for a in argv if a.startswith("--setup-hook="))
    assert "link_in_boot = yes" in hook and "do_symlinks = yes" in hook


def test_setup_hook_writes_kernel_img_conf(tmp_path: Path) -> None:
    subprocess.run(["sh", "-c", rootfs.SETUP_HOOK, "hook", str(tmp_path)], check=True)
    assert (tmp_path / "etc/kernel-img.conf").read_text() == rootfs.KERNEL_IMG_CONF
    assert "MODULES=list" in (tmp_path / "etc/initramfs-tools/conf.d/pvbuild-bootstrap").read_text()


def test_package_names_are_checked(plan: Plan) -> None:
    bad = dataclasses.replace(plan, distro=dataclasses.replace(plan.distro, packages=("--root=/",)))
    with pytest.raises(UsageError):
        rootfs.bootstrap_packages(bad)


def test_user_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert rootfs.user_cache_dir() == tmp_path / "pvbuild"


# --- what the elements get ----------------------------------------------------------------------------------
def test_fstab_names_filesystems_like_root_arg(tmp_path: Path) -> None:
    p = debian12(tmp_path, table="mbr", separate_boot="ext4")
    text = elements.render_fstab(p)
    lines = [ln.split("\t") for ln in text.splitlines() if not ln.startswith("#")]
    assert lines[0][:3] == [f"UUID={ROOT_UUID}", "/", "ext4"] and lines[0][5] == "1"
    assert lines[1][1:3] == ["/boot", "ext4"] and lines[1][0].startswith("UUID=")
    by_label = dataclasses.replace(p, kernel=dataclasses.replace(p.kernel, root_arg="root=LABEL=rootfs"))
    assert "LABEL=rootfs\t/\t" in elements.render_fstab(by_label)


def test_users_file(plan: Plan) -> None:
    users, keys = elements.render_users(plan)
    assert users == "admin:adm:/bin/bash:0:\n"
    assert set(keys) == {"admin", "root"}
    bad = dataclasses.replace(plan, users=(dataclasses.replace(plan.users[0], shell="/bin/sh:x"),))  # noqa: S604
    with pytest.raises(UsageError):
        elements.render_users(bad)


def test_element_environment(tmp_path: Path) -> None:
    p = debian12(tmp_path, table="mbr", separate_boot="ext4")
    env = elements.element_environment(p)
    assert env["DIB_PVGRUB_MODULES"] == "xen-blkfront xen-netfront ext4"
    assert env["DIB_PVGRUB_MENU_PATH"] == "/boot/grub/menu.lst"  # /grub/menu.lst in the separate /boot
    assert env["DIB_PVGRUB_IMAGE_LINK"] == "/boot/vmlinuz"
    assert env["DIB_PVGRUB_SEPARATE_BOOT"] == "1"
    bad = dataclasses.replace(p, initrd=dataclasses.replace(p.initrd, modules=("xen-blkfront", "$(reboot)")))
    with pytest.raises(UsageError):
        elements.element_environment(bad)


def test_elements_exist_and_are_posix_sh() -> None:
    for el in elements.DEFAULT_ELEMENTS:
        phases = elements.HOST_PHASES + elements.PHASES
        scripts = [f for ph in phases for f in (elements.ELEMENTS_DIR / el / ph).glob("*")]
        assert scripts, el
        for s in scripts:
            assert s.read_text().startswith("#!/bin/sh\n"), s
            assert os.access(s, os.X_OK), s
            subprocess.run(["sh", "-n", str(s)], check=True)
            if Path("/usr/bin/checkbashisms").exists():
                subprocess.run(["checkbashisms", str(s)], check=True)


def test_resolve_in_root_never_escapes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc/passwd", root / "etc" / "abs")  # absolute: the image's /etc/passwd, not the host's
    os.symlink("../../../../..", root / "etc" / "up")
    assert elements.resolve_in_root(root, "/etc/abs") == root / "etc" / "passwd"
    assert elements.resolve_in_root(root, "/etc/up/x") == root / "x"
    elements.write_in_root(root, "/etc/abs", b"mine")
    assert (root / "etc" / "abs").read_bytes() == b"mine" and not (root / "etc" / "abs").is_symlink()
    elements.write_in_root(root, "/etc/up/new/file", b"x", 0o600)
    assert (root / "new" / "file").stat().st_mode & 0o777 == 0o600


def test_stage_hooks_merges_phases(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "tmp").mkdir(parents=True)
    scripts = elements._stage_hooks(tree, elements.DEFAULT_ELEMENTS, elements.ELEMENTS_DIR)
    assert scripts["install.d"] == ["50-pvgrub-kernel"]
    assert scripts["finalise.d"][-1] == "99-pvgrub-hygiene"
    assert (tree / "tmp/in_target.d/post-install.d/50-pvgrub-initrd").exists()


# --- disk ---------------------------------------------------------------------------------------------------
def _fs(tmp_path: Path, **kw: object) -> FilesystemPlan:
    return dataclasses.replace(debian12(tmp_path).disk.filesystems[0], size_bytes=64 * MIB, **kw)  # type: ignore[arg-type]


def test_mke2fs_argv_merges_extended_options(tmp_path: Path) -> None:
    fs = _fs(tmp_path, mkfs_options=("-O", "^64bit", "-E", "lazy_itable_init=0", "-Enodiscard"))
    argv = disk.mke2fs_argv(fs, tmp_path / "i", tmp_path / "t")
    assert argv.count("-E") == 1
    assert argv[argv.index("-E") + 1] == "lazy_itable_init=0,nodiscard,hash_seed=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert argv[argv.index("-U") + 1] == ROOT_UUID


def test_sfdisk_script_and_layout(tmp_path: Path) -> None:
    p = debian12(tmp_path, table="mbr", separate_boot="ext4")
    s = disk.sfdisk_script(p.disk)
    assert "label-id: 0x5eed1234" in s and "start=2048, size=524288, type=83" in s
    disk.check_layout(p.disk)
    overlapping = dataclasses.replace(p.disk, filesystems=(p.disk.filesystems[0],
                                                          dataclasses.replace(p.disk.filesystems[1], offset_bytes=MIB)))
    with pytest.raises(UsageError, match="overlaps"):
        disk.check_layout(overlapping)


def test_copy_into_skips_holes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    with open(src, "wb") as f:
        f.truncate(64 * MIB)
        f.seek(10 * MIB)
        f.write(b"A" * 4096)
        f.seek(60 * MIB)
        f.write(b"B" * 100)
    with open(dst, "wb") as f:
        f.truncate(128 * MIB)
    n = disk.copy_into(src, dst, 1 * MIB)
    assert n < 2 * MIB
    data = dst.read_bytes()
    assert data[11 * MIB: 11 * MIB + 4096] == b"A" * 4096 and data[61 * MIB: 61 * MIB + 100] == b"B" * 100
    assert dst.stat().st_blocks * 512 < 4 * MIB


def test_clamp_times(tmp_path: Path) -> None:
    (tmp_path / "old").write_text("x")
    (tmp_path / "new").write_text("y")
    os.symlink("old", tmp_path / "link")
    os.utime(tmp_path / "old", (1000, 1000))
    disk.clamp_times(tmp_path, 2000)
    assert (tmp_path / "old").stat().st_mtime == 1000
    assert (tmp_path / "new").stat().st_mtime == 2000
    assert (tmp_path / "link").lstat().st_mtime == 2000


def _boot_tree(root: Path) -> None:
    """A /boot whose kernel has all-zero blocks (mke2fs -d makes them holes) and a menu for the emulator."""
    (root / "boot/grub").mkdir(parents=True)
    blob = os.urandom(100_000) + bytes(3 * 4096) + os.urandom(5000)
    (root / "boot/vmlinuz-1").write_bytes(blob)
    os.symlink("vmlinuz-1", root / "boot/vmlinuz")
    (root / "boot/grub/menu.lst").write_text(
        "default 0\ntimeout 0\ntitle t\nroot (hd0)\nkernel /boot/vmlinuz root=/dev/xvda1 console=hvc0\n")


def _codes(image: Path) -> set[str]:
    return {f.code for f in check_image(image, Profile("1.05", "hd0", "x86_64")).findings}


def test_make_ext_boot_files_have_no_holes(tmp_path: Path) -> None:
    """Without densify the emulator sees file-sparse (the bug); with make_ext's fallocate pass it does not."""
    tree = tmp_path / "tree"
    _boot_tree(tree)
    fs = _fs(tmp_path)
    log = Log(None)
    plain = tmp_path / "plain.img"
    with open(plain, "wb") as f:
        f.truncate(fs.size_bytes)
    run(disk.mke2fs_argv(fs, plain, tree), env=disk._e2_env(1))
    # The emulator says file-sparse (GRUB reads the wrong block) or, as here, Error 16 (fs-corrupt).
    assert {"file-sparse", "fs-corrupt"} & _codes(plain)
    fixed = tmp_path / "fixed.img"
    disk.make_filesystem(fs, fixed, tree, 1_700_000_000, log, holds_boot=True, boot_root=tree / "boot")
    assert not {"file-sparse", "fs-corrupt"} & _codes(fixed)
    out = run(["debugfs", "-R", "cat /boot/vmlinuz-1", fixed], capture=True).stdout
    assert out == (tree / "boot/vmlinuz-1").read_bytes()


def test_make_ext_is_reproducible(tmp_path: Path) -> None:
    """Same tree unpacked twice (different ctimes, atimes, inode order on the host): identical images."""
    images = []
    for n in range(2):
        tree = tmp_path / f"tree{n}"
        _boot_tree(tree)
        if n:
            time.sleep(1.1)  # a different ctime for every file
        (tree / "boot/vmlinuz-1").write_bytes((tmp_path / "tree0/boot/vmlinuz-1").read_bytes() if n else
                                              (tree / "boot/vmlinuz-1").read_bytes())
        disk.clamp_times(tree, 1_700_000_000)
        img = tmp_path / f"{n}.img"
        disk.make_filesystem(_fs(tmp_path), img, tree, 1_700_000_000, Log(None), holds_boot=True,
                             boot_root=tree / "boot")
        images.append(img.read_bytes())
    assert images[0] == images[1]


def test_xfs_protofile(tmp_path: Path) -> None:
    tree = tmp_path / "b"
    (tree / "grub").mkdir(parents=True)
    (tree / "grub/menu.lst").write_text("x")
    os.symlink(".", tree / "boot")
    os.mkfifo(tree / "fifo")
    (tree / "tmp").mkdir()
    os.chmod(tree / "tmp", 0o1777)  # noqa: S103 - a /tmp-like folder
    os.link(tree / "grub/menu.lst", tree / "hard")
    text, sticky = disk.xfs_protofile(tree)
    assert " boot l--777 0 0 .\n" in text and " grub d--755 0 0\n" in text
    assert " fifo p--644 0 0\n" in text and " tmp d--777 0 0\n" in text and sticky == ["/tmp"]
    assert " hard ---644 0 0 " in text  # the hard link becomes a copy
    (tree / "bad name").write_text("x")
    with pytest.raises(UsageError):
        disk.xfs_protofile(tree)


def test_preflight_needs_root(plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    from pvbuild.build.pipeline import preflight
    from pvbuild.errors import EnvironmentProblem

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="root") as e:
        preflight(plan)
    assert e.value.exit_code == EXIT_ENVIRONMENT


def test_sha256_of_sparse_file_skips_holes_with_the_same_digest(tmp_path: Path) -> None:
    """sha256_file hashes holes as zeros without reading them; the digest is the plain one."""
    import hashlib

    from pvbuild.build.pipeline import sha256_file

    p = tmp_path / "sparse.raw"
    with open(p, "wb") as f:
        f.truncate(64 * 1024 * 1024 + 123)
        f.seek(5 * 1024 * 1024 + 7)
        f.write(b"data" * 5000)
        f.seek(40 * 1024 * 1024)
        f.write(b"more")
    assert sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
    dense = tmp_path / "dense.raw"
    dense.write_bytes(b"x" * 10_000_001)
    assert sha256_file(dense) == hashlib.sha256(dense.read_bytes()).hexdigest()


def test_reiserfs_clamp_patches_only_late_stat_data_times(tmp_path: Path) -> None:
    """build/reiserfs_clamp.py: a leaf holding a 3.6 stat data one second late (as `.reiserfs_priv` gets when the
    appliance mounts slowly), a 3.5 one on time, and a directory item whose bytes look like late times: only the
    late stat-data times change, to SOURCE_DATE_EPOCH, in the leaf and its copy; other blocks are left alone."""
    import struct

    from pvbuild.build import reiserfs_clamp as rc

    epoch = 1_735_689_600
    bs = 4096
    leaf = bytearray(bs)
    sd2 = struct.pack("<HHIQIIIIIII", 0o40700, 0, 2, 48, 0, 0, epoch + 1, epoch + 1, epoch + 1, 1, 0)
    sd1 = struct.pack("<HHHHIIIIII", 0o40755, 2, 0, 0, 48, epoch, epoch - 5, epoch, 1, 0)
    fake_dir = struct.pack("<I", epoch + 9) * 8
    bodies = [(struct.pack("<IIQ", 2, 3, 0), sd2, 1), (struct.pack("<IIII", 1, 2, 0, 0), sd1, 0),
              (struct.pack("<IIQ", 2, 3, (500 << 4) | 3), fake_dir, 1)]
    loc = bs
    for i, (key, body, version) in enumerate(bodies):
        loc -= len(body)
        leaf[loc:loc + len(body)] = body
        struct.pack_into("<16sHHHH", leaf, rc.BLOCK_HEAD + i * rc.ITEM_HEAD, key, 0, len(body), loc, version)
    used = sum(rc.ITEM_HEAD + len(b) for _, b, _ in bodies)
    struct.pack_into("<HHHH", leaf, 0, 1, len(bodies), bs - rc.BLOCK_HEAD - used, 0)
    image = tmp_path / "fs.img"
    data = bytearray(32 * bs)
    struct.pack_into("<H", data, rc.SUPERBLOCK_OFFSET + 44, bs)
    data[20 * bs:21 * bs] = leaf
    data[25 * bs:26 * bs] = leaf  # the journal's copy
    not_leaf = bytearray(leaf)
    struct.pack_into("<H", not_leaf, 0, 2)  # an internal node: never touched
    data[27 * bs:28 * bs] = not_leaf
    image.write_bytes(bytes(data))
    assert rc.clamp_reiserfs_times(image, epoch) == 6
    out = image.read_bytes()
    want = bytearray(leaf)
    sd2_at = bs - len(sd2)
    for off in rc.SD_V2_TIMES:
        struct.pack_into("<I", want, sd2_at + off, epoch)
    assert out[20 * bs:21 * bs] == want and out[25 * bs:26 * bs] == want
    assert out[27 * bs:28 * bs] == not_leaf
    assert rc.clamp_reiserfs_times(image, epoch) == 0  # idempotent
