"""`pvbuild boot` without QEMU: the console parser, the failure diagnosis, the dom0 files, the argument errors."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest

from pvbuild.boot import console, dom0files
from pvbuild.boot.console import analyse, clean, split_transcript
from pvbuild.boot.run import check_input
from pvbuild.boot.vm import Monitor, SerialLog
from pvbuild.cli import main
from pvbuild.errors import UsageError


def _guest(lines: list[tuple[float, str]], ident: str = "1") -> list[str]:
    return [f"[pvb {ident} {t:.2f}] {text}" for t, text in lines]


RUNNER_HEAD = [
    "PVBOOT TITLE 1 /dev/sda /boot/grub/menu.lst 0 Debian GNU/Linux 12 (newest kernel)",
    "PVBOOT TITLE 1 /dev/sda /boot/grub/menu.lst 1 Debian GNU/Linux 12 (previous kernel)",
    "PVBOOT FS 1 /dev/sda ext4 root probe=injected systemd=yes",
    "PVBOOT ROOTS 1 1",
    "PVBOOT START 1 variant=hd0 disk=/dev/sda timeout=300",
]
LOADER = [
    (1.0, 'Script started on 2026-11-25 [COMMAND="xl create -c /run/pvbuild/1.cfg"]'),
    (1.1, "Parsing config from /run/pvbuild/1.cfg"),
    (9.0, "\x1b[2J\x1b[HWelcome to GRUB!"),
    (9.5, "PVBUILD-LOADER hd0"),
    (9.6, "PVBUILD-LOADER menu (hd0)/boot/grub/menu.lst"),
]
KERNEL = [
    (20.0, "  Booting `Debian GNU/Linux 12 (newest kernel)'"),
    (20.5, "[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP"),
    (20.6, "[    0.000000] Command line: root=UUID=7c0a ro console=hvc0"),
    (30.0, "[    5.339519] Run /init as init process"),
]
GOOD = [
    (31.0, "[   35.057222] blkfront: xvda: flush diskcache: enabled; persistent grants: enabled"),
    (32.0, "[   53.124284] EXT4-fs (xvda): mounted filesystem with ordered data mode. Quota mode: none."),
    (35.0, "Welcome to \x1b[1mDebian GNU/Linux 12 (bookworm)\x1b[0m!"),
    (38.0, "PVBUILD-PROBE kernel=6.1.0-56-amd64"),
    (38.1, "PVBUILD-PROBE cmdline=root=UUID=7c0a ro console=hvc0"),
    (38.2, "PVBUILD-PROBE root=/dev/xvda"),
    (38.3, "PVBUILD-PROBE init=/usr/lib/systemd/systemd"),
    (38.4, "PVBUILD-PROBE-END"),
]


def _transcript(guest: list[tuple[float, str]], result: str, head: list[str] | None = None) -> console.Transcript:
    noise = ["(XEN) d1v0 some hypervisor line", "[pvb 2 3.00] another guest's line"]
    lines = [*noise, *(RUNNER_HEAD if head is None else head), *_guest(guest), f"PVBOOT RESULT 1 {result} 40.00"]
    return split_transcript(lines, "1")


def test_clean_strips_terminal_escapes() -> None:
    assert clean("\x1b[2J\x1b[HWelcome to GRUB!\x1b[0m\r") == "Welcome to GRUB!"
    assert clean("a\x07b\x1b(Bc") == "abc"


def test_transcript_keeps_only_its_guest() -> None:
    tr = _transcript(LOADER, "probe")
    assert [gl.text for gl in tr.lines][2] == "Welcome to GRUB!"
    assert len(tr.lines) == len(LOADER)
    assert tr.titles[1] == ("/dev/sda", "/boot/grub/menu.lst", 1, "Debian GNU/Linux 12 (previous kernel)")
    assert tr.roots == 1 and tr.result == "probe" and tr.result_s == 40.0


def test_good_boot_milestones_entry_and_probe() -> None:
    o = analyse(_transcript(LOADER + KERNEL + GOOD, "probe"), 300)
    assert o.reached_userspace and o.failure is None
    assert o.milestones == {"loader_s": 9.5, "kernel_s": 20.5, "root_mounted_s": 32.0, "userspace_s": 38.4}
    assert o.entry == {"index": 0, "title": "Debian GNU/Linux 12 (newest kernel)"}
    assert o.kernel_version == "6.1.0-56-amd64"
    assert o.cmdline == "root=UUID=7c0a ro console=hvc0"
    assert o.root_device == "/dev/xvda"
    assert o.menu == "(hd0)/boot/grub/menu.lst"


def test_kernel_messages_glued_to_the_probe_are_cut_off() -> None:
    """hvc0 interleaves printk output with the probe's echo (seen on a real boot)."""
    glued = [(t, text) for t, text in GOOD if "PVBUILD-PROBE" not in text] + [
        (38.0, "PVBUILD-PROBE kernel=6.1.0-56-amd64[   35.1] random: crng init done"),
        (38.1, "PVBUILD-PROBE cmdline=root=UUID=7c0a ro console=hvc0[   35.2] systemd[1]: Started foo."),
        (38.2, "PVBUILD-PROBE root=/dev/xvda[   35.065705] systemd[1]: modprobe@dm_mod.service: Deactivated."),
        (38.3, "PVBUILD-PROBE init=/usr/lib/systemd/systemd"),
        (38.4, "PVBUILD-PROBE-END"),
    ]
    o = analyse(_transcript(LOADER + KERNEL + glued, "probe"), 300)
    assert o.reached_userspace
    assert (o.kernel_version, o.cmdline, o.root_device) == ("6.1.0-56-amd64", "root=UUID=7c0a ro console=hvc0",
                                                            "/dev/xvda")
    assert console.probe_value("root", "  /dev/xvda2  ") == "/dev/xvda2"
    assert console.probe_value("cmdline", "ro  quiet") == "ro  quiet"


def test_fallback_entry_is_the_one_reported() -> None:
    guest = [*LOADER, (12.0, "  Booting `Debian GNU/Linux 12 (newest kernel)'"),
             (13.0, "error: file `/boot/vmlinuz' not found."),
             (14.0, "   Falling back to `Debian GNU/Linux 12 (previous kernel)'"), *KERNEL[1:], *GOOD]
    o = analyse(_transcript(guest, "probe"), 300)
    assert o.entry == {"index": 1, "title": "Debian GNU/Linux 12 (previous kernel)"}


def test_xfs_root_and_systemd_banner_count_as_mounted() -> None:
    xfs = [(31.0, "[   9.1] XFS (xvda2): Ending clean mount")]
    assert analyse(_transcript(LOADER + KERNEL + xfs, "timeout"), 300).milestones["root_mounted_s"] == 31.0
    banner = [(33.0, "Welcome to Debian GNU/Linux 12 (bookworm)!")]
    assert analyse(_transcript(LOADER + KERNEL + banner, "timeout"), 300).milestones["root_mounted_s"] == 33.0


def test_broken_menu_is_no_kernel_loaded() -> None:
    guest = [*LOADER, (12.0, "  Booting `Debian GNU/Linux 12 (newest kernel)'"),
             (13.0, "error: file `/boot/vmlinuz-MISSING' not found."),
             (14.0, "   Falling back to `Debian GNU/Linux 12 (previous kernel)'"),
             (15.0, "error: file `/boot/vmlinuz-MISSING.old' not found."),
             (16.0, "  Failed to boot both default and fallback entries.")]
    o = analyse(_transcript(guest, "stopped"), 300)
    assert not o.reached_userspace
    assert o.milestones["kernel_s"] is None and o.kernel_version is None
    assert o.failure is not None and o.failure.startswith("no kernel loaded: no menu.lst entry could be booted")
    assert "vmlinuz-MISSING.old" in o.failure


def test_missing_menu_lst() -> None:
    guest = [*LOADER[:4], (10.0, "PVBUILD-LOADER-FAIL menu.lst not found: no /boot/grub/menu.lst on (hd0)")]
    o = analyse(_transcript(guest, "stopped"), 300)
    assert o.failure == "menu.lst not found: no /boot/grub/menu.lst on (hd0)"
    assert o.entry is None


def test_root_never_appears_without_blkfront() -> None:
    guest = [*LOADER, *KERNEL, (40.0, "Begin: Waiting for root file system ... ")]
    o = analyse(_transcript(guest, "root-stall"), 300)
    assert o.milestones["root_mounted_s"] is None
    assert o.failure is not None and o.failure.startswith("root not mounted")
    assert "xen-blkfront" in o.failure
    alert = [*guest, (220.0, "Gave up waiting for root file system device."),
             (221.0, "ALERT!  UUID=7c0a does not exist.  Dropping to a shell!")]
    o = analyse(_transcript(alert, "stopped"), 300)
    assert "ALERT!  UUID=7c0a does not exist" in (o.failure or "") and "xen-blkfront" in (o.failure or "")


def test_vfs_panic_names_vfs() -> None:
    guest = [*LOADER, *KERNEL[:3], (30.0, "[ 5.0] xvda: xvda1"),
             (31.0, "[ 5.1] VFS: Unable to mount root fs on unknown-block(0,0)"),
             (31.1, "[ 5.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)")]
    o = analyse(_transcript(guest, "stopped"), 300)
    assert o.failure == "root not mounted: VFS: Unable to mount root fs on unknown-block(0,0)"


def test_no_init_and_no_root_to_probe() -> None:
    guest = [*LOADER, *KERNEL, GOOD[1], (40.0, "Target filesystem doesn't have requested /sbin/init.")]
    o = analyse(_transcript(guest, "stopped"), 300)
    assert o.failure is not None and "has no init" in o.failure
    head = [*RUNNER_HEAD[:2], "PVBOOT FS 1 /dev/sda squashfs unmountable: read-only", "PVBOOT ROOTS 1 0",
            RUNNER_HEAD[4]]
    o = analyse(_transcript([*LOADER, *KERNEL, GOOD[1]], "timeout", head), 300)
    assert o.failure is not None and o.failure.startswith("userspace not proven: pvbuild found no root")


def test_no_result_and_empty_console() -> None:
    tr = split_transcript(["PVBOOT START 1 variant=hd0 disk=/dev/sda timeout=300"], "1")
    assert "gave no result" in (analyse(tr, 300).failure or "")
    tr = split_transcript(["PVBOOT RESULT 1 ended 2.00"], "1")
    assert "did not start" in (analyse(tr, 300).failure or "")


def test_render_console_has_times_and_runner_notes() -> None:
    text = console.render_console(_transcript(LOADER, "probe"))
    assert text.startswith("# pvbuild boot: TITLE /dev/sda")
    assert "[    9.50] PVBUILD-LOADER hd0" in text


# --- dom0 files ---------------------------------------------------------------------------------------------
def test_runner_script_is_complete_bash() -> None:
    script = dom0files.runner_script()
    assert "@" not in "".join(line for line in script.splitlines() if "@" in line and "@" in line.split("@", 1)[1])
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
    assert "PVBUILD-LOADER-FAIL" in script and "\\(initramfs\\) " in script


def test_probe_script_is_valid_sh() -> None:
    subprocess.run(["sh", "-n"], input=dom0files.PROBE_SCRIPT.encode(), check=True)
    assert "WantedBy=sysinit.target" in dom0files.PROBE_UNIT


def test_loader_configs_read_menu_lst() -> None:
    assert "set root=hd0\n" in dom0files.LOADER_CONFIGS["hd0"]
    assert "set root=hd0,1\n" in dom0files.LOADER_CONFIGS["hd00"]
    for cfg in dom0files.LOADER_CONFIGS.values():
        assert "legacy_configfile" in cfg and "PVBUILD-LOADER-FAIL menu.lst not found" in cfg


def test_ere_escape() -> None:
    assert dom0files.ere_escape("(initramfs) ") == "\\(initramfs\\) "
    assert dom0files.ere_escape("a.b|c") == "a\\.b\\|c"


# --- QEMU plumbing without QEMU -----------------------------------------------------------------------------
def test_serial_log_reads_whole_lines_incrementally(tmp_path: Path) -> None:
    p = tmp_path / "serial.log"
    log = SerialLog(p)
    assert log.poll() == []
    p.write_bytes(b"one\r\ntw")
    assert log.poll() == ["one"]
    with open(p, "ab") as f:
        f.write(b"o\nthree\n")
    assert log.poll() == ["two", "three"]
    assert log.lines == ["one", "two", "three"]


def test_monitor_speaks_hmp(tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"QEMU 7.2 monitor\r\n(qemu) ")
        buf = b""
        while b"\n" not in buf:
            buf += conn.recv(100)
        conn.sendall(b"info status\r\nVM status: running\r\n(qemu) ")
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    mon = Monitor(path, timeout=5)
    assert mon.cmd("info status").strip() == "VM status: running"
    mon.close()
    t.join()
    srv.close()



def test_monitor_reset_by_an_exiting_qemu_is_a_vm_error(tmp_path: Path) -> None:
    """QEMU that exits with the command unread (a saved state it cannot load) resets the socket: the monitor says
    so as a VmError, which the boot turns into a cold dom0 boot, never an OSError escaping the report."""
    from pvbuild.boot.vm import VmError

    path = tmp_path / "m.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.sendall(b"QEMU 7.2 monitor\r\n(qemu) ")
        conn.recv(1, socket.MSG_PEEK)  # the command arrived; close without reading it
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    mon = Monitor(path, timeout=5)
    with pytest.raises(VmError, match="QEMU's monitor closed"):
        mon.cmd("info migrate")
    mon.close()
    t.join()
    srv.close()

# --- argument errors ----------------------------------------------------------------------------------------
def test_bad_image_path_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", str(tmp_path / "missing.raw")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["boot", str(tmp_path)]) == 2
    assert main(["boot"]) == 2
    for bad in (["--variant", "hd1"], ["--arch", "i386"], ["--timeout", "soon"]):
        with pytest.raises(SystemExit) as e:
            main(["boot", "x.raw", *bad])
        assert e.value.code == 2


def test_qcow2_and_tiny_files_are_refused(tmp_path: Path) -> None:
    q = tmp_path / "a.qcow2"
    q.write_bytes(b"QFI\xfb" + bytes(1 << 20))
    with pytest.raises(UsageError, match="qcow2"):
        check_input(q, "hd0", "x86_64", 300)
    t = tmp_path / "tiny.raw"
    t.write_bytes(b"x")
    with pytest.raises(UsageError, match="too small"):
        check_input(t, "hd0", "x86_64", 300)
    with pytest.raises(UsageError, match="timeout"):
        check_input(q, "hd0", "x86_64", 0)


def test_disagreement_and_build_flag() -> None:
    from pvbuild.boot.stage import disagreement
    from pvbuild.cli import build_parser

    assert disagreement(True, {"reached_userspace": True}) is None
    assert disagreement(False, {"reached_userspace": False}) is None
    assert disagreement(True, {"skipped": "i386"}) is None
    assert "real boot says it does not (root not mounted)" in (
        disagreement(True, {"reached_userspace": False, "failure": "root not mounted"}) or "")
    assert "real boot reached userspace" in (disagreement(False, {"reached_userspace": True}) or "")
    assert build_parser().parse_args(["build", "r.yaml", "--boot"]).boot is True


def test_missing_qemu_is_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1 << 20))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert main(["boot", str(image)]) == 3
    assert "apt-get install qemu-system-x86" in capsys.readouterr().err


def test_console_log_falls_back_to_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pvbuild.boot.run import _save_console, console_log_path
    from pvbuild.build.run import Log

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ok = tmp_path / "img.raw"
    assert _save_console(ok, "x\n", Log()) == console_log_path(ok)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    saved = _save_console(not_a_dir / "img.raw", "y\n", Log())
    assert saved == tmp_path / "cache" / "pvbuild" / "logs" / "img.raw.boot-console.log"
    assert saved.read_text() == "y\n" and not list(saved.parent.glob(".*tmp*"))


def test_stale_temporary_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    import os

    from pvbuild.boot.host import remove_stale

    gone = 2**22 + 12345  # above the default pid_max: never a live process
    (tmp_path / f".abc.tmp-{gone}").mkdir()
    (tmp_path / f".dom0-base-x.tmp-{gone}.tar").write_text("")
    (tmp_path / f".mine.tmp-{os.getpid()}").mkdir()
    (tmp_path / "kept").mkdir()
    remove_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".mine.tmp-{os.getpid()}", "kept"]


def test_root_on_a_logical_volume_counts_as_mounted() -> None:
    lvm = [(31.0, "[   9.1] EXT4-fs (dm-0): mounted filesystem with ordered data mode. Quota mode: none.")]
    assert analyse(_transcript(LOADER + KERNEL + lvm, "timeout"), 300).milestones["root_mounted_s"] == 31.0


@pytest.mark.parametrize(("script", "variant", "words"), [
    (None, "hd0", "no partition table"),
    ("label: dos\nstart=2048, type=83\n", "hd00", "an MBR partition table"),
    ("label: gpt\nstart=2048, size=4096, type=L\n", "hd00", "a GPT partition table"),
])
def test_the_loader_follows_the_images_layout(tmp_path: Path, script: str | None, variant: str, words: str) -> None:
    from pvbuild.boot.run import choose_variant, variant_for
    from pvbuild.build.run import Log

    image = tmp_path / "disk.raw"
    with open(image, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    if script is not None:
        subprocess.run(["sfdisk", "-q", str(image)], input=script.encode(), check=True)
    got, why = variant_for(image)
    assert got == variant and words in why
    assert choose_variant(image, None, Log()) == (variant, f"chosen: {why}")
    assert choose_variant(image, variant, Log()) == (variant, "given")
    other = "hd0" if variant == "hd00" else "hd00"
    chosen, reason = choose_variant(image, other, Log())
    assert chosen == other and f"{variant} expected" in reason
