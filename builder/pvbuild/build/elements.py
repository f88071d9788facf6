"""pvbuild's runner for the diskimage-builder-style elements in `elements/` (repo root).

It runs them as diskimage-builder does, so the same elements serve both backends (mmdebstrap with this runner,
and `disk-image-create` in build/dib.py): extra-data.d scripts run on the build host with TMP_HOOKS_PATH set to
the tree's /tmp/in_target.d; the hook folders of every element are merged into /tmp/in_target.d/<phase>/ inside
the tree and the scripts run in the chroot in name order, phase by phase (pre-install.d, install.d,
post-install.d, finalise.d), with DIB-style environment variables (`element_environment`); cleanup.d scripts
run last, on the build host, with TARGET_ROOT set to the tree. The data the elements
install (menu.lst, fstab, users, keys) is rendered by pvbuild into a host folder (`stage_data`, named by
DIB_PVGRUB_DATA_DIR); the pvgrub-data element copies it to /tmp/in_target.d/pvbuild/, where variables such as
DIB_PVGRUB_MENU_LST name the files.

The chroot gets /proc, /sys, /dev and /dev/pts mounted, the host's resolv.conf (for apt), and a policy-rc.d that
stops package scripts from starting daemons; all of it is undone in reverse order, also on Ctrl-C. The plan's
file overlays are copied in by the pvgrub-files element at the end of post-install.d, before finalise.d (so
hygiene still applies to them).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from pvbuild.build.run import Log, run
from pvbuild.build.workspace import mounted
from pvbuild.errors import UsageError
from pvbuild.planmodel import Plan

ELEMENTS_DIR = Path(__file__).resolve().parents[3] / "elements"
DEFAULT_ELEMENTS = ("pvgrub-data", "pvgrub-kernel", "pvgrub-initrd", "pvgrub-users", "pvgrub-files", "pvgrub-menu",
                    "pvgrub-fstab", "pvgrub-hygiene")
HOST_PHASES_BEFORE = ("extra-data.d",)  # run on the build host, outside the chroot, before the chroot's phases
PHASES = ("pre-install.d", "install.d", "post-install.d", "finalise.d")  # run in the chroot
HOST_PHASES_AFTER = ("cleanup.d",)  # run on the build host after them
HOST_PHASES = HOST_PHASES_BEFORE + HOST_PHASES_AFTER
IN_TARGET = "/tmp/in_target.d"
DATA = f"{IN_TARGET}/pvbuild"
POLICY_RC_D = "#!/bin/sh\n# pvbuild: no daemon starts while the image is built\nexit 101\n"
MAX_SYMLINK_HOPS = 40

_MODULE_RE = re.compile(r"[A-Za-z0-9_-]+")
_COMPRESS = {"zstd", "gzip", "xz", "lz4", "lzma", "bzip2", "lzop"}


# --- pure parts: what the elements get ----------------------------------------------------------------------
def separate_boot(plan: Plan) -> bool:
    return any(f.mountpoint == "/boot" for f in plan.disk.filesystems)


def in_rootfs(plan: Plan, boot_fs_path: str) -> str:
    """A path of the /boot filesystem's view (e.g. /vmlinuz in a separate /boot) as the root filesystem sees it."""
    return "/boot" + boot_fs_path if separate_boot(plan) else boot_fs_path


def _fs_spec(plan: Plan, uuid: str, label: str, device: str) -> str:
    """Name filesystems in fstab the way the menu's root= names the root: UUID, LABEL, or the device.

    An LVM volume is named by its /dev/mapper path (as root= names it); the others of an LVM image by UUID."""
    if device.startswith("/dev/mapper/"):
        return device
    root_arg = plan.kernel.root_arg
    if root_arg.startswith("root=LABEL="):
        return f"LABEL={label}"
    if root_arg.startswith(("root=UUID=", "root=/dev/mapper/")) or not device:
        return f"UUID={uuid}"
    return device


def render_fstab(plan: Plan) -> str:
    lines = ["# /etc/fstab written by pvbuild from the plan",
             "# <file system> <mount point> <type> <options> <dump> <pass>"]
    for fs in sorted(plan.disk.filesystems, key=lambda f: f.mountpoint.count("/") + (f.mountpoint != "/")):
        spec = _fs_spec(plan, fs.uuid, fs.label, fs.linux_device)
        opts = "defaults,errors=remount-ro" if fs.mountpoint == "/" and fs.fstype.startswith("ext") else "defaults"
        passno = 1 if fs.mountpoint == "/" else 2
        if fs.fstype in ("xfs", "btrfs"):
            passno = 0  # fsck.xfs does nothing; btrfs has no boot-time fsck
        lines.append(f"{spec}\t{fs.mountpoint}\t{fs.fstype}\t{opts}\t0\t{passno}")
    return "\n".join(lines) + "\n"


def _check_user_field(value: str, what: str) -> str:
    if any(c in value for c in ":\n\r\0"):
        raise UsageError(f"user {what} {value!r} cannot contain ':' or a line break")
    return value


def render_users(plan: Plan) -> tuple[str, dict[str, str]]:
    """The DIB_PVGRUB_USERS file and the authorized_keys of each user (root included)."""
    lines: list[str] = []
    keys: dict[str, str] = {}
    for u in plan.users:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", u.name) or u.name == "root":
            raise UsageError(f"bad user name {u.name!r}")
        for g in u.groups:
            if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", g):
                raise UsageError(f"bad group name {g!r} for user {u.name}")
        fields = [u.name, ",".join(u.groups), _check_user_field(u.shell, "shell"), "1" if u.sudo else "0",
                  _check_user_field(u.password_hash or "", "password hash")]
        lines.append(":".join(fields))
        if u.ssh_authorized_keys:
            keys[u.name] = "".join(_check_key(k) + "\n" for k in u.ssh_authorized_keys)
    if plan.root_ssh_authorized_keys:
        keys["root"] = "".join(_check_key(k) + "\n" for k in plan.root_ssh_authorized_keys)
    return ("\n".join(lines) + "\n" if lines else ""), keys


def _check_key(key: str) -> str:
    key = key.strip()
    if "\n" in key or "\r" in key or not key:
        raise UsageError("an SSH authorized key must be one non-empty line")
    return key


def element_environment(plan: Plan) -> dict[str, str]:
    """The environment the element scripts see in the chroot (DIB's names plus DIB_PVGRUB_*)."""
    for m in plan.initrd.modules:
        if not _MODULE_RE.fullmatch(m):
            raise UsageError(f"bad kernel module name {m!r}")
    if plan.initrd.compression not in _COMPRESS:
        raise UsageError(f"initrd compression {plan.initrd.compression!r} is not one of {', '.join(sorted(_COMPRESS))}")
    k = plan.kernel
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
        "SOURCE_DATE_EPOCH": str(plan.source_date_epoch),
        "DIB_DEBUG_TRACE": "0",
        "DISTRO_NAME": plan.distro.family,
        "DIB_RELEASE": plan.distro.release,
        "DIB_DISTRIBUTION_MIRROR": plan.distro.mirror,
        "ARCH": plan.distro.deb_arch,
        "DIB_INIT_SYSTEM": "systemd",
        "DIB_ROOT_LABEL": plan.disk.root.label,
        "DIB_IMAGE_ROOT_FS_UUID": plan.disk.root.uuid,
        "DIB_BOOT_LABEL": plan.disk.boot.label,
        "DIB_PVGRUB_KERNEL_PACKAGE": k.package,
        "DIB_PVGRUB_IMAGE_LINK": in_rootfs(plan, k.image_link),
        "DIB_PVGRUB_INITRD_LINK": in_rootfs(plan, k.initrd_link),
        "DIB_PVGRUB_OLD_IMAGE_LINK": in_rootfs(plan, k.old_image_link),
        "DIB_PVGRUB_OLD_INITRD_LINK": in_rootfs(plan, k.old_initrd_link),
        "DIB_PVGRUB_MODULES": " ".join(plan.initrd.modules),
        "DIB_PVGRUB_INITRD_COMPRESS": plan.initrd.compression,
        "DIB_PVGRUB_MENU_LST": f"{DATA}/menu.lst",
        "DIB_PVGRUB_MENU_PATH": in_rootfs(plan, plan.menu.path_in_boot_fs),
        "DIB_PVGRUB_SEPARATE_BOOT": "1" if separate_boot(plan) else "0",
        "DIB_PVGRUB_FSTAB": f"{DATA}/fstab",
        "DIB_PVGRUB_USERS": f"{DATA}/users",
        "DIB_PVGRUB_SSH_KEYS_DIR": f"{DATA}/keys",
        "DIB_PVGRUB_FILES": f"{DATA}/files",
        "DIB_PVGRUB_HOSTNAME": plan.hostname,
    }


# --- paths inside the tree, never escaping it ---------------------------------------------------------------
def resolve_in_root(root: Path, path: str, *, follow_last: bool = True) -> Path:
    """`path` as the chroot sees it, mapped under `root`: symlinks (absolute ones too) resolve inside `root`.

    Writing to the result never touches the build host, whatever symlinks the tree holds.
    """
    if not path.startswith("/"):
        raise UsageError(f"{path!r} is not an absolute path in the image")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        cand = root.joinpath(*done, name)
        if cand.is_symlink() and (parts or follow_last):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise UsageError(f"too many symlinks resolving {path} in the image")
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(name)
    return root.joinpath(*done)


def write_in_root(root: Path, path: str, data: bytes, mode: int = 0o644) -> Path:
    """Create or replace a regular file in the tree (parents made 0755, owned by root)."""
    parent = resolve_in_root(root, os.path.dirname(path.rstrip("/")) or "/")
    dest = parent / os.path.basename(path.rstrip("/"))
    parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if dest.is_symlink() or (dest.exists() and not dest.is_file()):
        if dest.is_dir() and not dest.is_symlink():
            raise UsageError(f"{path} is a folder in the image; cannot write a file there")
        dest.unlink()
    tmp = dest.with_name(f".{dest.name}.pvbuild-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fchown(fd, 0, 0)
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    return dest


# --- the chroot -------------------------------------------------------------------------------------------
@contextmanager
def chroot_ready(tree: Path, log: Log) -> Iterator[None]:
    """/proc, /sys, /dev, /dev/pts, resolv.conf and policy-rc.d for running scripts in `tree`; all undone after."""
    with ExitStack() as stack:
        for sub in ("proc", "sys", "dev"):
            d = tree / sub
            if d.is_symlink():
                raise UsageError(f"/{sub} in the image is a symlink; refusing to mount over it")
            d.mkdir(exist_ok=True)
        stack.enter_context(mounted(["-t", "proc"], "proc", tree / "proc", log))
        stack.enter_context(mounted(["--bind"], "/sys", tree / "sys", log))
        stack.enter_context(mounted(["--bind"], "/dev", tree / "dev", log))
        if (tree / "dev" / "pts").is_dir():
            stack.enter_context(mounted(["--bind"], "/dev/pts", tree / "dev" / "pts", log))
        stack.enter_context(_temporary_file(tree, "/usr/sbin/policy-rc.d", POLICY_RC_D.encode(), 0o755))
        stack.enter_context(_host_resolv_conf(tree))
        yield


@contextmanager
def _temporary_file(tree: Path, path: str, data: bytes, mode: int) -> Iterator[None]:
    dest = resolve_in_root(tree, path, follow_last=False)
    if dest.exists() or dest.is_symlink():
        yield  # the image brings its own: leave it
        return
    write_in_root(tree, path, data, mode)
    try:
        yield
    finally:
        dest.unlink(missing_ok=True)


@contextmanager
def _host_resolv_conf(tree: Path) -> Iterator[None]:
    """The host's resolv.conf for apt in the chroot. A symlink there (systemd-resolved) is put back after;
    a regular file is left to the hygiene element, which removes it."""
    dest = tree / "etc" / "resolv.conf"
    link = os.readlink(dest) if dest.is_symlink() else None
    host = Path("/etc/resolv.conf")
    if link is not None:
        dest.unlink()
    if host.exists():
        write_in_root(tree, "/etc/resolv.conf", host.read_bytes(), 0o644)
    try:
        yield
    finally:
        if link is not None:
            dest.unlink(missing_ok=True)
            os.symlink(link, dest)


def chroot_run(tree: Path, argv: Sequence[str], env: dict[str, str], log: Log, *, capture: bool = False) -> bytes:
    """Run argv inside the tree with exactly `env` (no host variables leak in)."""
    envargs = [f"{k}={v}" for k, v in sorted(env.items())]
    r = run(["chroot", tree, "/usr/bin/env", "-i", *envargs, *argv], log=log, capture=capture,
            shown=["chroot", str(tree), *argv])
    return r.stdout


# --- the runner -------------------------------------------------------------------------------------------
def stage_data(plan: Plan, dest: Path) -> Path:
    """Render the files the elements install (menu.lst, fstab, users, keys/NAME.keys) into the host folder `dest`
    (made afresh); the pvgrub-data element copies them into the image's hook folder."""
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "keys").mkdir(parents=True, mode=0o700)
    (dest / "menu.lst").write_text(plan.menu.text)
    (dest / "fstab").write_text(render_fstab(plan))
    users, keys = render_users(plan)
    (dest / "users").write_text(users)
    for name, text in keys.items():
        (dest / "keys" / f"{name}.keys").write_text(text)
    files = dest / "files"
    files.mkdir()
    listing = []
    for i, ov in enumerate(plan.files):
        if not ov.dest.startswith("/") or any(c in ov.dest for c in "\n\r\0"):
            raise UsageError(f"file overlay destination {ov.dest!r} must be an absolute path on one line")
        if ov.content is not None:
            data = ov.content.encode()
        else:
            src = Path(ov.source)
            if not src.is_file():
                raise UsageError(f"file overlay source {src} does not exist or is not a regular file")
            data = src.read_bytes()
        (files / str(i)).write_bytes(data)
        mode = (ov.mode if ov.mode is not None else 0o644) & 0o7777
        listing.append(f"{i} {mode:o} {ov.dest}\n")
    (files / "list").write_text("".join(listing))
    return dest


def check_elements(elements: Sequence[str], elements_dir: Path) -> None:
    for el in elements:
        if not (elements_dir / el).is_dir():
            raise UsageError(f"element {el} not found in {elements_dir}")


def _stage_hooks(tree: Path, elements: Sequence[str], elements_dir: Path) -> dict[str, list[str]]:
    """Merge the elements' hook folders into /tmp/in_target.d/<phase>/ as diskimage-builder does."""
    scripts: dict[str, list[str]] = {}
    for phase in HOST_PHASES_BEFORE + PHASES + HOST_PHASES_AFTER:
        dest = resolve_in_root(tree, f"{IN_TARGET}/{phase}")
        dest.mkdir(parents=True, exist_ok=True)
        names: dict[str, str] = {}
        for el in elements:
            src = elements_dir / el / phase
            if not src.is_dir():
                continue
            for f in sorted(src.iterdir()):
                if not f.is_file():
                    continue
                if f.name in names:
                    raise UsageError(f"elements {names[f.name]} and {el} both have {phase}/{f.name}")
                names[f.name] = el
                if phase in HOST_PHASES:
                    continue  # run from the elements folder, never from the tree
                shutil.copyfile(f, dest / f.name)
                os.chmod(dest / f.name, 0o755)  # noqa: S103 - a script run in the chroot
        scripts[phase] = sorted(names)
    return scripts


def run_elements(plan: Plan, tree: Path, log: Log, *, work: Path, elements: Sequence[str] = DEFAULT_ELEMENTS,
                 elements_dir: Path = ELEMENTS_DIR, extra_env: dict[str, str] | None = None) -> str:
    """Run the elements' phases (extra-data.d and cleanup.d on the host, the others in the chroot); returns
    packages.txt (`name version` lines from dpkg-query). `work` is the build's work folder (the rendered data
    goes there)."""
    check_elements(elements, elements_dir)
    tmp = tree / "tmp"
    if tmp.is_symlink() or not tmp.is_dir():
        raise UsageError("/tmp in the image must be a folder")
    data = stage_data(plan, work / "pvgrub-data")
    env = {**element_environment(plan), **(extra_env or {})}
    in_target = resolve_in_root(tree, IN_TARGET)
    try:
        scripts = _stage_hooks(tree, elements, elements_dir)
        log.write("element environment: " + " ".join(f"{k}={v}" for k, v in sorted(env.items())))
        host_env = {**env, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "TMP_HOOKS_PATH": str(in_target), "TARGET_ROOT": str(tree), "DIB_PVGRUB_DATA_DIR": str(data)}
        _run_host_phases(HOST_PHASES_BEFORE, scripts, elements, elements_dir, host_env, log)
        with chroot_ready(tree, log):
            for phase in PHASES:
                for name in scripts[phase]:
                    log.info(f"element script {phase}/{name}")
                    chroot_run(tree, ["/bin/sh", f"{IN_TARGET}/{phase}/{name}"], env, log)
            query = ["dpkg-query", "-W", "--showformat=${Package} ${Version}\\n"]
            out = chroot_run(tree, query, env, log, capture=True)
        _run_host_phases(HOST_PHASES_AFTER, scripts, elements, elements_dir, host_env, log)
    finally:
        if in_target.exists():
            shutil.rmtree(in_target)
        shutil.rmtree(data, ignore_errors=True)
    return "\n".join(sorted(out.decode().splitlines())) + "\n"


def _run_host_phases(phases: Sequence[str], scripts: dict[str, list[str]], elements: Sequence[str],
                     elements_dir: Path, env: dict[str, str], log: Log) -> None:
    """Run these phases' scripts on the build host, from the elements folder (never from the tree)."""
    for phase in phases:
        for name in scripts[phase]:
            el = next(el for el in elements if (elements_dir / el / phase / name).is_file())
            log.info(f"element script {phase}/{name} (build host)")
            run(["/bin/sh", elements_dir / el / phase / name], log=log, env=env)


def initrd_report(plan: Plan, tree: Path) -> list[tuple[str, str, int]]:
    """(link, file, size) of the initrds the menu names, for the log (PV-GRUB's loader reads them slowly)."""
    out = []
    for link in (plan.kernel.initrd_link, plan.kernel.old_initrd_link):
        p = resolve_in_root(tree, in_rootfs(plan, link))
        if p.exists() and stat.S_ISREG(p.stat().st_mode):
            out.append((link, "/" + str(p.relative_to(tree)), p.stat().st_size))
    return out
