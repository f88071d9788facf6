"""The Xen test host: Xen, a Debian dom0 and the two GRUB 2 loaders, built by pvbuild and cached.

Everything comes from Debian packages through mmdebstrap (the same backend as `pvbuild build`), so the host
needs only mmdebstrap, mke2fs and QEMU: Xen 4.17 (`xen-system-amd64`), the dom0 kernel and initrd, `xl`, and
`grub-xen-bin`, whose `grub-mkimage -O x86_64-xen` (run in the dom0 tree) makes the loaders. Debian's own
pvgrub2 image is of no use here: its memdisk config never reads menu.lst.

Cache layout, `$XDG_CACHE_HOME/pvbuild/xenhost/<key>/` (the key hashes every input: packages, mirror, the files
of `dom0files`, pvbuild's and mmdebstrap's versions), each folder complete or absent (written under a temporary
name and renamed); the dom0 root as mmdebstrap made it is kept as `xenhost/dom0-base-<key>.tar` (keyed by the
packages and mirror only), so a change to pvbuild's own dom0 files costs a minute, not a bootstrap:

    xen  vmlinuz  initrd.img  dom0.img (read-only raw ext4)  host.json
    snapshot-<accel>-<qemu key>/  dom0.qcow2 (dom0's disk at save time)  state.bin (QEMU migration stream)
                                  snapshot.json (the exact QEMU command line to restore with)

The snapshot is keyed by the QEMU build and the accelerator: a migration stream only loads into the same QEMU
build with the same machine type and devices.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pvbuild import __version__
from pvbuild.boot import dom0files
from pvbuild.build.rootfs import mmdebstrap_version, user_cache_dir
from pvbuild.build.run import Log, run, which
from pvbuild.build.workspace import file_lock, remove_tree, work_dir
from pvbuild.errors import EnvironmentProblem

HOST_FORMAT = "1"  # bump when the steps below change in a way the key does not see
SUITE = "bookworm"
DOM0_PACKAGES = (
    "linux-image-amd64", "xen-system-amd64", "xen-utils-common", "xenstore-utils", "grub-xen-bin",
    "grub-common", "systemd-sysv", "udev", "kmod", "initramfs-tools", "util-linux", "procps", "e2fsprogs",
    "xfsprogs", "btrfs-progs",
    "lvm2",  # the runner activates a guest's volume group to put the probe into a root on LVM
)
DOM0_IMAGE_BYTES = 3 * 1024**3
VARIANTS = ("hd0", "hd00")


@dataclass(frozen=True)
class XenHost:
    """A prepared host: the files QEMU boots, read-only."""

    folder: Path
    key: str
    xen: Path
    kernel: Path
    initrd: Path
    dom0_image: Path


def cache_dir(cache: Path | None = None) -> Path:
    return (cache or user_cache_dir()) / "xenhost"


def host_inputs(mirror: str, security: str, tool_version: str) -> dict[str, object]:
    """Every input of the host build; its hash is the cache key."""
    return {
        "format": HOST_FORMAT,
        "suite": SUITE,
        "packages": DOM0_PACKAGES,
        "mirror": mirror,
        "security": security,
        "runner": dom0files.runner_script(),
        "runner_unit": dom0files.RUNNER_UNIT,
        "block_script": dom0files.BLOCK_SCRIPT,
        "loaders": dom0files.LOADER_CONFIGS,
        "loader_modules": dom0files.LOADER_MODULES,
        "modules": dom0files.DOM0_MODULES,
        "masked": dom0files.DOM0_MASKED,
        "image_bytes": DOM0_IMAGE_BYTES,
        "pvbuild": __version__,
        "mmdebstrap": tool_version,
    }


def host_key(inputs: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


def _mirrors() -> tuple[str, str]:
    from pvbuild.distros.debian import mirrors

    return mirrors(None, None)


def remove_stale(folder: Path) -> None:
    """Temporary folders and files (`.NAME.tmp-PID...`) of pvbuild processes that were killed outright."""
    for old in folder.glob(".*.tmp-*"):
        pid = old.name.rsplit(".tmp-", 1)[-1].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if old.is_dir() and not old.is_symlink():
            remove_tree(old)
        else:
            old.unlink(missing_ok=True)


def _load(folder: Path, key: str) -> XenHost:
    return XenHost(folder, key, folder / "xen", folder / "vmlinuz", folder / "initrd.img", folder / "dom0.img")


def find_host(cache: Path | None = None) -> XenHost | None:
    """The prepared host for the current inputs, or None."""
    mirror, security = _mirrors()
    key = host_key(host_inputs(mirror, security, mmdebstrap_version()))
    folder = cache_dir(cache) / key
    if (folder / "host.json").is_file():
        return _load(folder, key)
    return None


def preflight() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("preparing the Xen test host needs root (mmdebstrap --mode=root and chroot): run "
                                 "`pvbuild boot --prepare` with sudo, or as root in a container/VM")
    for tool in ("mmdebstrap", "mke2fs", "chroot"):
        which(tool)


def ensure_host(log: Log, *, cache: Path | None = None, work_parent: Path | None = None) -> tuple[XenHost, bool]:
    """The prepared host, built when missing. Returns (host, was_cached)."""
    mirror, security = _mirrors()
    inputs = host_inputs(mirror, security, mmdebstrap_version())
    key = host_key(inputs)
    root = cache_dir(cache)
    folder = root / key
    with file_lock(root / f"{key}.lock"):
        if (folder / "host.json").is_file():
            log.info(f"xen host: cached {folder}")
            return _load(folder, key), True
        preflight()
        with work_dir(work_parent, prefix="pvbuild-xenhost-", log=log) as work:
            remove_stale(root)
            tmp = root / f".{key}.tmp-{os.getpid()}"
            remove_tree(tmp)
            tmp.mkdir(parents=True)
            try:
                _build(tmp, work, mirror, security, log, root)
                (tmp / "host.json").write_text(json.dumps({"key": key, "inputs": inputs,
                                                           "built": time.time()}, indent=2) + "\n")
                os.rename(tmp, folder)
            finally:
                remove_tree(tmp)
    return _load(folder, key), False


def _sources(mirror: str, security: str) -> list[str]:
    out = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
    if security:
        out.append(f"deb {security} {SUITE}-security main")
    return out


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def base_key(mirror: str, security: str, tool_version: str) -> str:
    """The dom0 root tarball's key: only what mmdebstrap sees (so changing pvbuild's files does not bootstrap)."""
    doc = {"format": HOST_FORMAT, "suite": SUITE, "packages": DOM0_PACKAGES, "sources": _sources(mirror, security),
           "mmdebstrap": tool_version}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def _build(out: Path, work: Path, mirror: str, security: str, log: Log, base_cache: Path) -> None:
    tree = work / "dom0"
    key = base_key(mirror, security, mmdebstrap_version())
    tarball = base_cache / f"dom0-base-{key}.tar"
    env = {**os.environ, "TMPDIR": str(work), "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
    with file_lock(base_cache / f"dom0-base-{key}.lock"):
        if not tarball.is_file():
            tmp = base_cache / f".dom0-base-{key}.tmp-{os.getpid()}.tar"
            try:
                with log.stage("xen host: dom0 root (mmdebstrap)"):
                    run(["mmdebstrap", "--mode=root", "--format=tar", "--variant=minbase",
                         "--aptopt=APT::Install-Recommends \"false\"", f"--include={','.join(DOM0_PACKAGES)}",
                         SUITE, tmp, *_sources(mirror, security)], log=log, env=env)
                os.replace(tmp, tarball)
            finally:
                tmp.unlink(missing_ok=True)
    with log.stage("xen host: unpack dom0 root"):
        tree.mkdir()
        run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarball, "-C", tree], log=log)
    with log.stage("xen host: runner, loaders"):
        _customize(tree, log)
    with log.stage("xen host: boot files, dom0 image"):
        _export_boot_files(tree, out)
        image = out / "dom0.img"
        with open(image, "wb") as f:
            f.truncate(DOM0_IMAGE_BYTES)
        run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "pvb-dom0", "-d", tree, image], log=log)
        os.chmod(image, 0o444)


def _customize(tree: Path, log: Log) -> None:
    _write(tree / "etc/hostname", "pvbuild-xenhost\n")
    _write(tree / "etc/fstab", "/dev/vda / ext4 defaults 0 1\n")
    _write(tree / "etc/modules-load.d/pvbuild.conf", dom0files.DOM0_MODULES)
    # dom0 never activates a guest's volume groups by itself (lvm2's udev rule would, on hot-plug, and keep them
    # active while the guest runs): the runner activates one around the probe and deactivates it before the boot
    _write(tree / "etc/udev/rules.d/69-lvm.rules", "# pvbuild: no event activation of LVM in dom0\n")
    _write(tree / dom0files.RUNNER_PATH.lstrip("/"), dom0files.runner_script(), 0o755)
    _write(tree / dom0files.BLOCK_SCRIPT_PATH.lstrip("/"), dom0files.BLOCK_SCRIPT, 0o755)
    _write(tree / "etc/systemd/system" / dom0files.RUNNER_UNIT_NAME, dom0files.RUNNER_UNIT)
    run(["chroot", tree, "systemctl", "enable", dom0files.RUNNER_UNIT_NAME], log=log)
    run(["chroot", tree, "systemctl", "mask", *dom0files.DOM0_MASKED], log=log)
    loaders = tree / "opt/pvbuild"
    loaders.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        d = tree / "tmp" / f"loader-{variant}"
        d.mkdir(parents=True)
        (d / "grub.cfg").write_text(dom0files.LOADER_CONFIGS[variant])
        (d / "bootstrap.cfg").write_text(dom0files.LOADER_BOOTSTRAP)
        run(["tar", "-C", d, "-cf", d / "memdisk.tar", "grub.cfg"], log=log)
        inside = f"/tmp/loader-{variant}"
        run(["chroot", tree, "grub-mkimage", "-O", "x86_64-xen", "-o", f"/opt/pvbuild/pvgrub-{variant}.bin",
             "-c", f"{inside}/bootstrap.cfg", "-m", f"{inside}/memdisk.tar", "-p", "(memdisk)/boot/grub",
             *dom0files.LOADER_MODULES], log=log)
        shutil.rmtree(d)
    for p in (tree / "var/cache/apt/archives").glob("*.deb"):
        p.unlink()
    shutil.rmtree(tree / "var/lib/apt/lists", ignore_errors=True)
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)


def _newest(paths: list[Path], what: str) -> Path:
    if not paths:
        raise EnvironmentProblem(f"the dom0 tree has no {what}: did the Debian packages change? "
                                 "(delete the xenhost cache folder and prepare again)")
    return sorted(paths)[-1]


def _export_boot_files(tree: Path, out: Path) -> None:
    """Xen (gunzipped: QEMU's multiboot loader cannot read gzip), the dom0 kernel and initrd, for QEMU -kernel."""
    xen = _newest([p for p in (tree / "boot").glob("xen-*.gz")], "Xen hypervisor (/boot/xen-*.gz)")
    with gzip.open(xen, "rb") as src, open(out / "xen", "wb") as dst:
        shutil.copyfileobj(src, dst)
    kernel = _newest(list((tree / "boot").glob("vmlinuz-*")), "kernel (/boot/vmlinuz-*)")
    version = kernel.name.removeprefix("vmlinuz-")
    initrd = tree / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise EnvironmentProblem(f"the dom0 tree has no initrd for {version}")
    shutil.copyfile(kernel, out / "vmlinuz")
    shutil.copyfile(initrd, out / "initrd.img")
    for name in ("xen", "vmlinuz", "initrd.img"):
        os.chmod(out / name, 0o444)
