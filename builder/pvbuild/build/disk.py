"""The disk image from the finished tree, without partition devices (no kpartx, no losetup -P, no mounts).

- Every filesystem is made in a file of its own (`mke2fs -d TREE`, `mkfs.xfs -p protofile`) and copied into a
  fresh sparse image at its offset, data regions only (SEEK_DATA/SEEK_HOLE): the ranges mke2fs zeroes as
  unwritten extents (the journal) take no space. Partitionless: one filesystem at offset 0.
- MBR or GPT: `sfdisk` writes the table into the image file first (label-id, disk and partition GUIDs from the
  plan, so the table is reproducible).
- LVM root: the PV's label and metadata are written by lvm.py (no device-mapper), the filesystem at the LV's first
  extent; lvm2's tools read it back on a read-only loop device.
- ReiserFS and JFS (/boot only): mkfs, then the files copied in by a libguestfs appliance (no host driver needed),
  its clock at SOURCE_DATE_EPOCH: ReiserFS images are byte-identical, JFS ones are not (nanoseconds, journal).

PV-GRUB safety. `mke2fs -d` turns every all-zero block of a file into a hole, and PV-GRUB's ext4 extent code
misreads holes (it reads the next physical block, or fails with Error 16; the emulator's `file-sparse`). After
mkfs every regular file of the /boot filesystem's boot files gets `debugfs -w -R "fallocate FILE 0 LAST"`: the
holes become unwritten extents, which GRUB and Linux both read as zeros; e2fsck is clean.

Reproducibility. mke2fs/debugfs run with E2FSPROGS_FAKE_TIME=SOURCE_DATE_EPOCH and the built-in mke2fs.conf (not
the host's); `-U` and `-E hash_seed=` come from the plan; every mtime in the tree is clamped to
SOURCE_DATE_EPOCH before mkfs, and one `debugfs -w` pass sets atime, ctime and crtime (and their nanoseconds) of
every inode in use, since mke2fs copies them from the tree, where the ctime is whenever the tree was unpacked.
Two builds of the same plan give byte-identical ext images. XFS: `mkfs.xfs -p protofile` under `faketime` (a
stopped clock at SOURCE_DATE_EPOCH), also byte-identical; a protofile keeps no hard links (copies) and no extended
attributes (warned), and the sticky bit is set afterwards with xfs_db.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from pvbuild.build import lvm as lvm_mod
from pvbuild.build.reiserfs_clamp import clamp_reiserfs_times
from pvbuild.build.run import Log, run
from pvbuild.errors import UsageError
from pvbuild.planmodel import DiskPlan, FilesystemPlan, Plan
from pvbuild.sparse import data_ranges

SECTOR = 512
# Names debugfs commands can carry unquoted; anything else in the /boot filesystem is refused with a message.
_DEBUGFS_SAFE = re.compile(r"[A-Za-z0-9._+@%=,-]+")
# mkfs.xfs refuses filesystems under 300 MiB unless it thinks it runs under fstests.
XFS_SMALL_ENV = {"TEST_DIR": "1", "TEST_DEV": "1", "QA_CHECK_FS": "1"}
MIN_XFS_WITHOUT_ENV = 300 * 1024 * 1024


# --- the tree ---------------------------------------------------------------------------------------------
def walk(tree: Path) -> Iterator[Path]:
    """Every path below `tree` (itself included), never following symlinks."""
    yield tree
    for dirpath, dirnames, filenames in os.walk(tree, followlinks=False):
        for n in sorted(dirnames) + sorted(filenames):
            yield Path(dirpath) / n


def clamp_times(tree: Path, epoch: int) -> int:
    """Clamp every mtime to `epoch` (never move one forward) and set atime = mtime. Returns the paths changed."""
    limit = epoch * 1_000_000_000
    changed = 0
    for p in walk(tree):
        st = p.lstat()
        mtime = min(st.st_mtime_ns, limit)
        mtime -= mtime % 1_000_000_000  # whole seconds: the nanoseconds would differ between unpacks
        if mtime != st.st_mtime_ns or st.st_atime_ns != mtime:
            os.utime(p, ns=(mtime, mtime), follow_symlinks=False)
            changed += 1
    return changed


def split_boot(tree: Path, boot_tree: Path) -> None:
    """Move the contents of tree/boot into `boot_tree` (a separate /boot); tree/boot stays as the mount point."""
    src = tree / "boot"
    if src.is_symlink() or not src.is_dir():
        raise UsageError("/boot in the image is not a folder")
    boot_tree.mkdir(parents=True, exist_ok=True)
    st = src.lstat()
    os.chmod(boot_tree, stat.S_IMODE(st.st_mode))
    for child in sorted(src.iterdir()):
        os.rename(child, boot_tree / child.name)
    os.utime(boot_tree, ns=(st.st_mtime_ns, st.st_mtime_ns))
    os.utime(src, ns=(st.st_mtime_ns, st.st_mtime_ns))


def boot_files(boot_root: Path) -> list[str]:
    """Regular files of the /boot filesystem's tree, as paths inside that filesystem."""
    out = []
    for p in walk(boot_root):
        if p.is_file() and not p.is_symlink():
            rel = "/" + str(p.relative_to(boot_root))
            for part in rel.strip("/").split("/"):
                if not _DEBUGFS_SAFE.fullmatch(part):
                    raise UsageError(f"the boot file {rel} has a name pvbuild cannot pass to debugfs; rename it")
            out.append(rel)
    return out


# --- ext2/3/4 ---------------------------------------------------------------------------------------------
def _e2_env(epoch: int) -> dict[str, str]:
    # MKE2FS_CONFIG naming a missing file makes mke2fs use its built-in mke2fs.conf: the same features on
    # every host with this e2fsprogs version, whatever the host's /etc/mke2fs.conf says.
    return {**os.environ, "E2FSPROGS_FAKE_TIME": str(epoch), "MKE2FS_CONFIG": "/nonexistent/pvbuild-mke2fs.conf",
            "LC_ALL": "C"}


def mke2fs_argv(fs: FilesystemPlan, image: Path, tree: Path) -> list[str]:
    """mke2fs for one filesystem: the plan's options with every `-E` merged (mke2fs keeps only the last)."""
    opts = list(fs.mkfs_options)
    extended: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(opts):
        o = opts[i]
        if o == "-E" and i + 1 < len(opts):
            extended.append(opts[i + 1])
            i += 2
            continue
        if o.startswith("-E") and len(o) > 2:
            extended.append(o[2:])
        else:
            rest.append(o)
        i += 1
    if fs.hash_seed:
        extended.append(f"hash_seed={fs.hash_seed}")
    argv = ["mke2fs", "-F", "-q", "-t", fs.fstype, "-L", fs.label, "-U", fs.uuid, *rest]
    if extended:
        argv += ["-E", ",".join(extended)]
    return [*argv, "-d", str(tree), str(image)]


def _used_inodes(image: Path, epoch: int, log: Log) -> list[int]:
    """Inodes in use (root and from the first non-reserved one), from dumpe2fs' per-group free ranges."""
    out = run(["dumpe2fs", image], log=log, env=_e2_env(epoch), capture=True, quiet=True).stdout.decode()
    count = int(re.search(r"^Inode count:\s+(\d+)", out, re.M).group(1))  # type: ignore[union-attr]
    m = re.search(r"^First inode:\s+(\d+)", out, re.M)
    first = int(m.group(1)) if m else 11
    free = bytearray(count + 1)
    for line in out.splitlines():
        if not line.startswith("  Free inodes:"):
            continue  # the per-group lines are indented; the superblock's total is not
        for r in line.split(":", 1)[1].split(","):
            r = r.strip()
            if not r:
                continue
            lo, _, hi = r.partition("-")
            a, b = int(lo), int(hi or lo)
            free[a:b + 1] = b"\1" * (b - a + 1)
    return [2] + [i for i in range(first, count + 1) if not free[i]]


def debugfs_script(image: Path, commands: list[str], epoch: int, log: Log) -> None:
    """Run debugfs -w over a command file; debugfs reports errors on stderr without failing, so check it."""
    cmdfile = image.with_name(image.name + ".debugfs")
    cmdfile.write_text("\n".join(commands) + "\n")
    try:
        r = run(["debugfs", "-w", "-f", cmdfile, image], log=log, env=_e2_env(epoch), capture=True)
    finally:
        cmdfile.unlink(missing_ok=True)
    bad = [ln for ln in r.stderr.decode(errors="replace").splitlines()
           if ln.strip() and not ln.startswith("debugfs ")]
    if bad:
        from pvbuild.build.errors import CommandFailed

        raise CommandFailed(["debugfs"], 0, "\n".join(bad[-20:]))


def densify(image: Path, files: list[str], tree_root: Path, block_size: int, epoch: int, log: Log) -> None:
    """Turn every hole of the boot files into an unwritten extent (PV-GRUB cannot read holes)."""
    cmds = []
    for rel in files:
        size = (tree_root / rel.lstrip("/")).stat().st_size
        if size == 0:
            continue
        last = math.ceil(size / block_size) - 1
        cmds.append(f"fallocate {rel} 0 {last}")
    if cmds:
        debugfs_script(image, cmds, epoch, log)


def normalise_inode_times(image: Path, epoch: int, log: Log) -> int:
    """atime, ctime, crtime = epoch and no nanoseconds, for every inode in use; mtimes were clamped before."""
    cmds = []
    for ino in _used_inodes(image, epoch, log):
        cmds += [f"sif <{ino}> atime @{epoch}", f"sif <{ino}> ctime @{epoch}", f"sif <{ino}> crtime @{epoch}",
                 f"sif <{ino}> atime_extra 0", f"sif <{ino}> ctime_extra 0", f"sif <{ino}> crtime_extra 0",
                 f"sif <{ino}> mtime_extra 0"]
    debugfs_script(image, cmds, epoch, log)
    return len(cmds) // 7


def block_size(image: Path, epoch: int, log: Log) -> int:
    out = run(["dumpe2fs", "-h", image], log=log, env=_e2_env(epoch), capture=True, quiet=True).stdout.decode()
    m = re.search(r"^Block size:\s+(\d+)", out, re.M)
    if not m:
        raise UsageError(f"{image}: dumpe2fs shows no block size")
    return int(m.group(1))


def make_ext(fs: FilesystemPlan, image: Path, tree: Path, epoch: int, log: Log, *, is_boot: bool,
             boot_root: Path | None = None) -> None:
    """An ext2/3/4 filesystem holding `tree` in the (already sized) file `image`, PV-GRUB-readable, reproducible.

    `is_boot`: this filesystem holds the boot files: those under `boot_root` (the tree itself for a separate
    /boot, tree/boot otherwise) are made dense.
    """
    run(mke2fs_argv(fs, image, tree), log=log, env=_e2_env(epoch))
    if is_boot:
        root = boot_root if boot_root is not None else tree
        prefix = "" if root == tree else "/" + str(root.relative_to(tree))
        files = [prefix + f for f in boot_files(root)]
        densify(image, files, tree, block_size(image, epoch, log), epoch, log)
    n = normalise_inode_times(image, epoch, log)
    log.info(f"{fs.mountpoint}: {n} inodes, times set to {epoch}")
    run(["e2fsck", "-fn", image], log=log, env=_e2_env(epoch), quiet=True)


# --- XFS (a /boot PV-GRUB can read: V4, ftype=0; or a root filesystem) ---------------------------------
def _proto_name(name: str) -> str:
    if not name or any(c.isspace() for c in name) or name in ("$", ":"):
        raise UsageError(f"mkfs.xfs protofiles cannot hold the name {name!r}; rename it or use ext4")
    return name


def xfs_protofile(tree: Path, log: Log | None = None) -> tuple[str, list[str]]:
    """An mkfs.xfs protofile (mkfs.xfs(8) -p) for `tree`, and the folders with the sticky bit.

    Protofiles express files, folders, symlinks, devices and fifos with owners, modes, setuid and setgid — not
    the sticky bit (`make_xfs` sets it afterwards with xfs_db), hard links (each name becomes a copy) or
    extended attributes (dropped, with a warning).
    """
    lines = ["pvbuild", "0 0"]
    sticky: list[str] = []
    links: dict[tuple[int, int], str] = {}
    notes: list[str] = []

    def perms(st: os.stat_result) -> str:
        m = st.st_mode
        return ("u" if m & stat.S_ISUID else "-") + ("g" if m & stat.S_ISGID else "-") + f"{m & 0o777:03o}"

    def walk_dir(d: Path, depth: int) -> None:
        ind = " " * depth
        for p in sorted(d.iterdir(), key=lambda x: x.name):
            st = p.lstat()
            n = _proto_name(p.name)
            own = f"{st.st_uid} {st.st_gid}"
            rel = "/" + str(p.relative_to(tree))
            if st.st_mode & stat.S_ISVTX:
                sticky.append(rel)
            if not stat.S_ISLNK(st.st_mode):
                try:
                    if os.listxattr(p, follow_symlinks=False):
                        notes.append(f"extended attributes of {rel} are not kept on XFS")
                except OSError:
                    pass
            if stat.S_ISLNK(st.st_mode):
                lines.append(f"{ind}{n} l{perms(st)} {own} {_proto_name(os.readlink(p))}")
            elif stat.S_ISDIR(st.st_mode):
                lines.append(f"{ind}{n} d{perms(st)} {own}")
                walk_dir(p, depth + 1)
                lines.append(f"{ind}$")
            elif stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    first = links.setdefault((st.st_dev, st.st_ino), rel)
                    if first != rel:
                        notes.append(f"{rel} is a hard link to {first}: a copy on XFS")
                lines.append(f"{ind}{n} -{perms(st)} {own} {_proto_name(os.path.abspath(p))}")
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
                lines.append(f"{ind}{n} {kind}{perms(st)} {own} {os.major(st.st_rdev)} {os.minor(st.st_rdev)}")
            elif stat.S_ISFIFO(st.st_mode):
                lines.append(f"{ind}{n} p{perms(st)} {own}")
            else:
                raise UsageError(f"{rel}: a socket cannot be put in an XFS image")

    rst = tree.lstat()
    lines.append(f"d{perms(rst)} {rst.st_uid} {rst.st_gid}")
    if rst.st_mode & stat.S_ISVTX:
        sticky.append("/")
    walk_dir(tree, 1)
    lines.append("$")
    if log is not None and notes:
        for note in notes:
            log.info(note)
        copies = sum("hard link" in n for n in notes)
        log.warn(f"XFS protofile: {copies} hard link(s) became copies, {len(notes) - copies} file(s) lost extended "
                 "attributes (ACLs, capabilities); build.log names them")
    return "\n".join(lines) + "\n", sticky


def make_xfs(fs: FilesystemPlan, image: Path, tree: Path, epoch: int, log: Log) -> None:
    """mkfs.xfs -p from the tree (no mount), under a stopped clock when `faketime` is installed."""
    proto = image.with_name(image.name + ".proto")
    text, sticky = xfs_protofile(tree, log)
    proto.write_text(text)
    env = {**os.environ, "LC_ALL": "C"}
    if fs.fs_size_bytes < MIN_XFS_WITHOUT_ENV:
        env.update(XFS_SMALL_ENV)
    argv = ["mkfs.xfs", "-q", "-f", *fs.mkfs_options, "-L", fs.label, "-m", f"uuid={fs.uuid}", "-p", str(proto),
            str(image)]
    faketime = shutil.which("faketime")
    if faketime:
        # An absolute FAKETIME (no '@') is a stopped clock: every inode gets exactly this time.
        stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        argv = [faketime, "-f", stamp, *argv]
        env["TZ"] = "UTC"
    else:
        log.warn("faketime is not installed: the XFS filesystem's inode times are the build's wall clock "
                 "(apt-get install faketime for byte-identical rebuilds)")
    try:
        run(argv, log=log, env=env)
    finally:
        proto.unlink(missing_ok=True)
    for path in sticky:  # protofiles have no sticky bit: set it in the inode (mode with the type bits)
        mode = (tree / path.lstrip("/")).lstat().st_mode
        run(["xfs_db", "-x", "-c", f"path {path}", "-c", f"write core.mode 0{mode:o}", image], log=log)
    run(["xfs_repair", "-n", image], log=log, quiet=True)


# --- ReiserFS and JFS (a /boot PV-GRUB reads), btrfs -----------------------------------------------------------
# Neither mkfs.reiserfs nor mkfs.jfs can fill a filesystem from a tree, and a loop mount needs the host kernel's
# driver: Linux dropped ReiserFS in 6.13 and many hosts have no jfs module. So the files are copied in by a
# libguestfs appliance (its own Debian kernel has both drivers) from a tar of the tree: `guestfish tar-in`.
# Nested KVM often cannot run the appliance; TCG boots it in about half a minute and is the default
# ($LIBGUESTFS_BACKEND_SETTINGS overrides it).
GUESTFS_ENV = {"LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS": "force_tcg"}


def _guestfs_env() -> dict[str, str]:
    env = {**os.environ, "LC_ALL": "C"}
    for k, v in GUESTFS_ENV.items():
        env.setdefault(k, v)
    return env


# Run in the appliance after `tar-in`: the appliance's clock is the host's, so every inode's ctime would be the
# build's wall clock. For each path (deepest first), set the clock to SOURCE_DATE_EPOCH and re-set the path's own
# mtime (atime = mtime, as on ext4): its ctime becomes SOURCE_DATE_EPOCH. The tree's mtimes are clamped to
# SOURCE_DATE_EPOCH (`clamp_times`), so a later one was made in the appliance after the clock was set (a folder
# ReiserFS changed while `tar-in` ran, a second or more into a slow run): it is clamped again. Paths come from
# `find -print0`; the epoch is a number checked by the caller. A constant script: no input is interpolated into
# shell text but it.
_GUESTFS_TIMES = """#!/bin/sh
set -e
E=@EPOCH@
cd /sysroot
find . -depth -print0 | \\
  xargs -0 -n 1 sh -c 'm=$(stat -c %Y "$1"); [ "$m" -le "$0" ] || m=$0
    date -s "@$0" >/dev/null; touch -h -d "@$m" "$1"' "$E"
date -s "@$E" >/dev/null
"""


def fill_with_guestfs(image: Path, tree: Path, epoch: int, log: Log) -> None:
    """Copy `tree` into the filesystem in `image` (owners, modes, mtimes, symlinks) through a libguestfs appliance,
    then give every inode the ctime SOURCE_DATE_EPOCH (with whole seconds, as ReiserFS keeps them, the result is
    byte-identical; JFS keeps the nanoseconds of the moment, so it is not)."""
    tar = image.with_name(image.name + ".tar")
    script = image.with_name(image.name + ".times.sh")
    clock = image.with_name(image.name + ".clock.sh")
    try:
        run(["tar", "--numeric-owner", "--sort=name", "--format=gnu", "-C", tree, "-cf", tar, "."], log=log)
        script.write_text(_GUESTFS_TIMES.replace("@EPOCH@", str(int(epoch))))
        clock.write_text(f"#!/bin/sh\ndate -s @{int(epoch)} >/dev/null\n")
        # The clock is set before the mount too: ReiserFS makes its hidden .reiserfs_priv at the first mount.
        run(["guestfish", "--format=raw", "-a", image, "--", "run", ":",
             "debug-upload", clock, "/tmp/pvbuild-clock.sh", "0755", ":",
             "debug-upload", script, "/tmp/pvbuild-times.sh", "0755", ":",
             "debug", "sh", "/tmp/pvbuild-clock.sh", ":", "mount", "/dev/sda", "/", ":", "tar-in", tar, "/", ":",
             "debug", "sh", "/tmp/pvbuild-times.sh", ":", "umount-all", ":", "sync"], log=log, env=_guestfs_env())
    finally:
        for p in (tar, script, clock):
            p.unlink(missing_ok=True)


def _faketime(argv: list[str], epoch: int) -> tuple[list[str], dict[str, str]]:
    """argv under a stopped clock at `epoch` when faketime is installed (mkfs stamps its creation time)."""
    env = {**os.environ, "LC_ALL": "C"}
    faketime = shutil.which("faketime")
    if not faketime:
        return argv, env
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return [faketime, "-f", stamp, *argv], {**env, "TZ": "UTC"}


def make_reiserfs(fs: FilesystemPlan, image: Path, tree: Path, epoch: int, log: Log) -> None:
    """ReiserFS 3.6 (the format PV-GRUB's reiserfs driver reads), filled by libguestfs, checked by reiserfsck."""
    argv, env = _faketime(["mkfs.reiserfs", "-q", "-f", "-f", "--format", "3.6", "-l", fs.label, "-u", fs.uuid,
                           *fs.mkfs_options, str(image)], epoch)
    run(argv, log=log, env=env)
    fill_with_guestfs(image, tree, epoch, log)
    clamped = clamp_reiserfs_times(image, epoch)  # .reiserfs_priv's times: the appliance clock at the mount
    log.info(f"reiserfs: {clamped} inode times after SOURCE_DATE_EPOCH clamped")
    argv, env = _faketime(["reiserfsck", "--check", "--yes", "--quiet", str(image)], epoch)
    run(argv, log=log, quiet=True, env=env)


def make_jfs(fs: FilesystemPlan, image: Path, tree: Path, epoch: int, log: Log) -> None:
    """JFS (mkfs.jfs has no UUID option: jfs_tune -U sets the plan's), filled by libguestfs, checked by fsck.jfs."""
    argv, env = _faketime(["mkfs.jfs", "-q", "-L", fs.label, *fs.mkfs_options, str(image)], epoch)
    run(argv, log=log, env=env)
    run(["jfs_tune", "-U", fs.uuid, image], log=log, quiet=True)
    fill_with_guestfs(image, tree, epoch, log)
    argv, env = _faketime(["fsck.jfs", "-n", str(image)], epoch)
    run(argv, log=log, quiet=True, env=env)


def make_btrfs(fs: FilesystemPlan, image: Path, tree: Path, epoch: int, log: Log) -> None:
    """mkfs.btrfs --rootdir (no mount). The plan refuses btrfs for /boot (PV-GRUB has no btrfs driver); the
    builder still makes it, for images planned by hand and for the tests that show the check's verdict."""
    argv, env = _faketime(["mkfs.btrfs", "-q", "-f", "-L", fs.label, "-U", fs.uuid, *fs.mkfs_options, "--rootdir",
                           str(tree), str(image)], epoch)
    # mkfs.btrfs refuses a UUID that libblkid's cache has seen (a previous build of the same plan): no cache.
    run(argv, log=log, env={**env, "BLKID_FILE": "/dev/null"})
    run(["btrfs", "check", "--readonly", image], log=log, quiet=True)


# --- the disk ---------------------------------------------------------------------------------------------
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_PARTNAME = re.compile(r"[A-Za-z0-9._-]{1,36}")
GPT_FIRST_LBA = 2048


def sfdisk_script(disk: DiskPlan) -> str:
    """The sfdisk script of an MBR (dos) or GPT label: every identifier from the plan, so the table is reproducible.

    GPT: the disk GUID and each partition's GUID are the plan's; the entries are in plan order (GRUB's (hd0,N) is
    the entry index); the partition name is the filesystem label. sfdisk also writes the protective MBR and the
    backup header and entries in the disk's last 33 sectors.
    """
    gpt = disk.table == "gpt"
    lines = ["label: gpt" if gpt else "label: dos"]
    if disk.disk_id:
        if gpt and not _GUID.fullmatch(disk.disk_id):
            raise UsageError(f"bad GPT disk GUID {disk.disk_id!r}")
        if not gpt and not re.fullmatch(r"0x[0-9a-fA-F]{1,8}", disk.disk_id):
            raise UsageError(f"bad MBR label-id {disk.disk_id!r} (want 0x and up to 8 hex digits)")
        lines.append(f"label-id: {disk.disk_id}")
    lines += ["unit: sectors", "sector-size: 512"]
    if gpt:
        lines.append(f"first-lba: {GPT_FIRST_LBA}")
    lines.append("")
    for fs in disk.filesystems:
        where = f"start={fs.offset_bytes // SECTOR}, size={fs.size_bytes // SECTOR}"
        if gpt:
            if not _GUID.fullmatch(fs.part_type) or not _GUID.fullmatch(fs.part_uuid):
                raise UsageError(f"bad GPT type {fs.part_type!r} or GUID {fs.part_uuid!r} for {fs.mountpoint}")
            name = f', name="{fs.label}"' if _PARTNAME.fullmatch(fs.label) else ""
            lines.append(f"{where}, type={fs.part_type}, uuid={fs.part_uuid}{name}")
            continue
        if not re.fullmatch(r"[0-9a-fA-F]{1,2}", fs.part_type):
            raise UsageError(f"bad MBR partition type {fs.part_type!r} for {fs.mountpoint}")
        lines.append(f"{where}, type={fs.part_type}")
    return "\n".join(lines) + "\n"


def check_layout(disk: DiskPlan) -> None:
    if disk.table == "none":
        if len(disk.filesystems) != 1 or disk.filesystems[0].offset_bytes != 0:
            raise UsageError("a partitionless disk holds exactly one filesystem, at offset 0")
        return
    gpt = disk.table == "gpt"
    end = 0
    first = GPT_FIRST_LBA * SECTOR if gpt else SECTOR
    for fs in sorted(disk.filesystems, key=lambda f: f.offset_bytes):
        if fs.offset_bytes % SECTOR or fs.size_bytes % SECTOR or fs.size_bytes <= 0:
            raise UsageError(f"{fs.mountpoint}: offset and size must be whole 512-byte sectors")
        if fs.offset_bytes < max(end, first):
            raise UsageError(f"{fs.mountpoint}: partition overlaps the partition table or the partition before it")
        end = fs.offset_bytes + fs.size_bytes
    limit = disk.size_bytes - (33 * SECTOR if gpt else 0)  # GPT: the backup entries and header
    if end > limit:
        raise UsageError(f"partitions end at {end} bytes, beyond the {limit} the disk has for them")
    if not gpt and len(disk.filesystems) > 4:
        raise UsageError("pvbuild writes at most 4 primary MBR partitions")


def copy_into(src: Path, dst: Path, offset: int) -> int:
    """Copy the data regions of `src` into `dst` at `offset`, skipping holes. Returns the bytes copied."""
    copied = 0
    with open(src, "rb") as s, open(dst, "r+b") as d:
        sfd, dfd = s.fileno(), d.fileno()
        size = os.fstat(sfd).st_size
        for data, hole in data_ranges(sfd, size):
            left, at = hole - data, data
            while left > 0:
                n = os.copy_file_range(sfd, dfd, min(left, 64 << 20), at, offset + at)
                if n <= 0:
                    raise OSError(f"copy_file_range copied nothing at {at} of {src}")
                left -= n
                at += n
                copied += n
    return copied


def make_filesystem(fs: FilesystemPlan, image: Path, tree: Path, epoch: int, log: Log, *, holds_boot: bool,
                    boot_root: Path | None) -> None:
    with open(image, "wb") as f:
        f.truncate(fs.fs_size_bytes)  # the partition, or the logical volume in it
    if fs.fstype in ("ext2", "ext3", "ext4"):
        make_ext(fs, image, tree, epoch, log, is_boot=holds_boot, boot_root=boot_root)
    elif fs.fstype == "xfs":
        make_xfs(fs, image, tree, epoch, log)
    elif fs.fstype == "reiserfs":
        make_reiserfs(fs, image, tree, epoch, log)
    elif fs.fstype == "jfs":
        make_jfs(fs, image, tree, epoch, log)
    elif fs.fstype == "btrfs":
        make_btrfs(fs, image, tree, epoch, log)
    else:
        raise UsageError(f"the build cannot make {fs.fstype} filesystems yet")


def make_disk(plan: Plan, tree: Path, image: Path, work: Path, log: Log) -> None:
    """Write the plan's disk into `image` from the finished root tree (which this consumes for a separate /boot)."""
    disk = plan.disk
    check_layout(disk)
    epoch = plan.source_date_epoch
    separate = any(f.mountpoint == "/boot" for f in disk.filesystems)
    trees = {"/": tree}
    if separate:
        boot_tree = work / "boot-tree"
        split_boot(tree, boot_tree)
        trees["/boot"] = boot_tree
    for fs in disk.filesystems:
        if fs.mountpoint not in trees:
            raise UsageError(f"the build handles / and /boot filesystems only, not {fs.mountpoint}")
    for t in trees.values():
        clamp_times(t, epoch)

    def boot_root_of(fs: FilesystemPlan) -> tuple[bool, Path | None]:
        if separate:
            return fs.mountpoint == "/boot", trees["/boot"] if fs.mountpoint == "/boot" else None
        return fs.mountpoint == "/", tree / "boot"

    # Each filesystem is made in a file of its own and copied into a fresh sparse image, data regions only:
    # the zeroed ranges mke2fs leaves as unwritten extents (the journal) take no space in the image.
    with open(image, "wb") as f:
        f.truncate(disk.size_bytes)
    if disk.table in ("mbr", "gpt"):
        run(["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "never", "-q", image], log=log,
            input=sfdisk_script(disk).encode(), env={**os.environ, "LC_ALL": "C"})
    for fs in disk.filesystems:
        part = work / f"part{fs.offset_bytes}.img"
        holds, broot = boot_root_of(fs)
        make_filesystem(fs, part, trees[fs.mountpoint], epoch, log, holds_boot=holds, boot_root=broot)
        if fs.lvm is not None:
            # The PV's label and metadata first, then the filesystem at the LV's first extent (lvm.py).
            lvm_mod.write_pv(fs, image, plan.hostname, epoch)
        n = copy_into(part, image, fs.fs_offset_bytes)
        log.info(f"{fs.mountpoint}: {n} bytes of data copied at offset {fs.fs_offset_bytes}")
        part.unlink()
        if fs.lvm is not None:
            lvm_mod.verify(fs, image, work, log)


def allocated_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512
