"""The rootfs backend: mmdebstrap into a cached tarball, unpacked into a work folder on every build.

The tarball is keyed by every input of the bootstrap (all DistroPlan fields, the package set, the kernel package,
SOURCE_DATE_EPOCH, the setup hook, pvbuild's and mmdebstrap's versions), so a rebuild of the same plan skips the
bootstrap and only unpacks it (`tar --numeric-owner --xattrs -xpf`, a few seconds). The cache does not notice a
mirror that moved on: `refresh=True` (or deleting the file) bootstraps again.

The setup hook writes `/etc/kernel-img.conf` before any package is configured, so the kernel's postinst runs
`linux-update-symlinks` with `link_in_boot = yes`: Debian itself then keeps /boot/vmlinuz{,.old} and
/boot/initrd.img{,.old} pointing at the newest and the previous kernel (with one kernel, both pairs point at it),
also after `apt-get upgrade` inside the running guest. It also sets initramfs-tools to `MODULES=list` so the
bootstrap does not spend time building a 30 MB `MODULES=most` initrd that the pvgrub-initrd element replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from pvbuild import __version__
from pvbuild.build.run import Log, run
from pvbuild.build.workspace import file_lock
from pvbuild.errors import UsageError
from pvbuild.planmodel import Plan

ROOTFS_FORMAT = "1"  # bump when the bootstrap below changes in a way the key does not see

KERNEL_IMG_CONF = "do_symlinks = yes\nlink_in_boot = yes\n"
INITRAMFS_BOOTSTRAP_CONF = "# pvbuild: the pvgrub-initrd element replaces this initrd\nMODULES=list\n"
# A constant shell snippet (no input in it): mmdebstrap runs it with the chroot folder as $1, before any
# package is unpacked.
SETUP_HOOK = (
    'set -e; mkdir -p "$1/etc/initramfs-tools/conf.d"; '
    f"printf '%s' '{KERNEL_IMG_CONF}' > \"$1/etc/kernel-img.conf\"; "
    f"printf '%s' '{INITRAMFS_BOOTSTRAP_CONF}' > \"$1/etc/initramfs-tools/conf.d/pvbuild-bootstrap\""
)

# The compressor each initramfs-tools COMPRESS value needs in the guest.
COMPRESSOR_PACKAGES = {"zstd": "zstd", "xz": "xz-utils", "lzma": "xz-utils", "bzip2": "bzip2", "lz4": "lz4",
                       "lzop": "lzop", "gzip": "gzip"}


def user_cache_dir() -> Path:
    """$XDG_CACHE_HOME/pvbuild (or ~/.cache/pvbuild)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pvbuild"


def bootstrap_packages(plan: Plan) -> tuple[str, ...]:
    """What mmdebstrap installs: the plan's packages, the kernel, and what the elements run in the chroot."""
    pkgs = set(plan.distro.packages) | {plan.kernel.package}
    if plan.initrd.tool == "update-initramfs":
        pkgs.add("initramfs-tools")
    else:
        raise UsageError(f"initrd tool {plan.initrd.tool!r} is not supported by the build yet: use update-initramfs")
    comp = COMPRESSOR_PACKAGES.get(plan.initrd.compression)
    if comp:
        pkgs.add(comp)
    if any(u.sudo for u in plan.users):
        pkgs.add("sudo")
    for p in pkgs:
        _check_package_name(p)
    return tuple(sorted(pkgs))


def _check_package_name(name: str) -> None:
    """Debian package names (optionally with =version or /release): refuse anything that could be an option."""
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9+.\-]*([=/][A-Za-z0-9.+~:\-]+)?", name):
        raise UsageError(f"{name!r} is not a Debian package name")


def sources(plan: Plan) -> list[str]:
    """One-line apt sources: the release and its updates from the mirror, security from the security mirror."""
    d = plan.distro
    comps = " ".join(d.components)
    out = [f"deb {d.mirror} {d.release} {comps}", f"deb {d.mirror} {d.release}-updates {comps}"]
    if d.security_mirror:
        out.append(f"deb {d.security_mirror} {d.release}-security {comps}")
    for s in out:
        if "\n" in s or s.startswith("-"):
            raise UsageError(f"bad apt source line {s!r}")
    return out


def mmdebstrap_version() -> str:
    r = run(["mmdebstrap", "--version"], capture=True, check=False)
    return r.stdout.decode(errors="replace").strip()


def rootfs_key(plan: Plan, tool_version: str = "") -> str:
    """A hash of every input of the bootstrap."""
    doc = {
        "format": ROOTFS_FORMAT,
        "distro": asdict(plan.distro),
        "packages": bootstrap_packages(plan),
        "sources": sources(plan),
        "source_date_epoch": plan.source_date_epoch,
        "setup_hook": SETUP_HOOK,
        "pvbuild": plan.pvbuild_version or __version__,
        "mmdebstrap": tool_version,
    }
    if plan.locked:  # only then, so that unlocked plans keep their cache keys
        doc["locked"] = [list(p) for p in plan.locked]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


PINS_IN_CHROOT = "/etc/apt/preferences.d/pvbuild-lock"


def mmdebstrap_argv(plan: Plan, out_tar: Path, pins_file: Path | None = None) -> list[str]:
    """`pins_file` (a locked build): apt preferences uploaded before any package is chosen, removed at the end so
    the image's own apt is not held back."""
    d = plan.distro
    hooks = [f"--setup-hook={SETUP_HOOK}"]
    if pins_file is not None:
        hooks += [f"--setup-hook=upload {pins_file} {PINS_IN_CHROOT}",
                  f'--customize-hook=rm -f "$1{PINS_IN_CHROOT}"']
    return [
        "mmdebstrap", "--mode=root", "--format=tar", f"--variant={d.variant}",
        f"--architectures={d.deb_arch}", f"--components={','.join(d.components)}",
        f"--include={','.join(bootstrap_packages(plan))}",
        *hooks,
        d.release, str(out_tar), *sources(plan),
    ]


def ensure_rootfs(plan: Plan, log: Log, *, tmp_parent: Path, refresh: bool = False,
                  cache: Path | None = None) -> tuple[Path, bool]:
    """The cached rootfs tarball of this plan, bootstrapping it when missing. Returns (path, was_cached).

    `tmp_parent` is the build's work folder: mmdebstrap's own temporary chroot lives there, so the work folder's
    clean-up also catches anything an interrupted mmdebstrap left mounted.
    """
    folder = (cache or user_cache_dir()) / "rootfs"
    key = rootfs_key(plan, mmdebstrap_version())
    tarball = folder / f"{key}.tar"
    with file_lock(folder / f"{key}.lock"):
        if tarball.exists() and not refresh:
            log.info(f"rootfs: cached {tarball}")
            _check_locked(plan, tarball, built=False)
            return tarball, True
        tmp = folder / f".{key}.{os.getpid()}.tmp.tar"
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(plan.source_date_epoch), "TMPDIR": str(tmp_parent),
               "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8"}
        pins_file = None
        if plan.locked:
            from pvbuild.lock import pins

            pins_file = tmp_parent / "pvbuild-lock.pref"
            pins_file.write_text(pins(plan.locked))
        try:
            with log.progress("bootstrap (mmdebstrap)", None) as advance:
                run(mmdebstrap_argv(plan, tmp, pins_file), log=log, env=env, on_line=lambda _l: advance(1))
            _check_locked(plan, tmp, built=True)
            os.replace(tmp, tarball)
        finally:
            tmp.unlink(missing_ok=True)
        (folder / f"{key}.json").write_text(json.dumps({"key": key, "distro": asdict(plan.distro),
                                                        "packages": bootstrap_packages(plan)}, indent=2))
        return tarball, False


def _check_locked(plan: Plan, tarball: Path, *, built: bool) -> None:
    """A locked build installs exactly the lock's packages; anything else is an error listing the differences."""
    if not plan.locked:
        return
    from pvbuild.lock import LockMismatch, installed, installed_vs_lock

    diffs = installed_vs_lock(installed(tarball), plan.locked)
    if diffs:
        what = "the pinned bootstrap installed" if built else "the cached rootfs holds"
        raise LockMismatch(Path(plan.recipe).with_suffix(".lock"), [f"{what}: {d}" for d in diffs])


def unpack(tarball: Path, tree: Path, log: Log) -> None:
    """Unpack the cached rootfs with owners, modes and extended attributes as they were."""
    tree.mkdir(parents=True, exist_ok=True)
    run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarball, "-C", tree], log=log)
