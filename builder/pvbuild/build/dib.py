"""The diskimage-builder backend: `disk-image-create` makes the whole root tree, pvbuild makes the disk.

`distro.backend: diskimage-builder` runs diskimage-builder with the release's distro element (the plan's
`dib_element`, e.g. `debian-minimal`) and pvbuild's own elements from `elements/` — the same elements the
mmdebstrap backend runs through build/elements.py — and asks for `-t tar` output only. The tarball is unpacked
into the build's tree, and from there the build goes on exactly as with mmdebstrap: pvbuild lays out the disk
(mkfs -d, sfdisk on a file, LVM metadata written by pvbuild), so neither kpartx nor device-mapper is needed.
diskimage-builder's own disk stage (a loop device and one mkfs on a sparse file, which it needs even for
`-t tar`) happens inside the build's work folder and is thrown away.

What diskimage-builder is given (`dib_environment`):
- the archive and its apt sources from the plan (DIB_DISTRIBUTION_MIRROR, DIB_APT_SOURCES_CONF: the same lines
  the mmdebstrap backend uses), DIB_RELEASE and the components;
- the DIB_PVGRUB_* variables of the elements, and DIB_PVGRUB_DATA_DIR, the host folder holding the rendered
  menu.lst, fstab, users, keys and file overlays (the pvgrub-data element copies it into the image);
- `-n` (no `base` element: no cloud-init, no baseline tools; the image holds what the recipe asks for) and the
  recipe's packages with `-p`;
- its image cache under $XDG_CACHE_HOME/pvbuild/dib/<key of archive, release, arch, components>, with the
  bootstrap tarball cached (DIB_DEBOOTSTRAP_CACHE). Like pvbuild's rootfs cache, it does not notice a mirror that
  moved on: deleting that folder (or `build(refresh_rootfs=True)`) bootstraps again.
DIB_* variables of the calling shell are not passed on, so a build does not depend on who runs it.

Unlike the mmdebstrap backend, a diskimage-builder tree is not reproducible byte for byte (diskimage-builder
writes build-time files such as /etc/dib-manifests and does not clamp its bootstrap) and cannot be locked
(`pvbuild lock` refuses it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from pvbuild.build import elements as elements_mod
from pvbuild.build import rootfs as rootfs_mod
from pvbuild.build.errors import ToolMissing
from pvbuild.build.run import Log, run, which
from pvbuild.build.workspace import file_lock
from pvbuild.errors import EnvironmentProblem
from pvbuild.planmodel import Plan

# Host commands diskimage-builder runs for a Debian-family tree (besides what pvbuild's disk stage needs):
# sudo for everything (even as root), debootstrap (its version is read even when mmdebstrap does the
# bootstrap), losetup/mkfs for its throw-away disk stage, qemu-img for its image conversion.
DIB_HOST_TOOLS = ("sudo", "debootstrap", "mmdebstrap", "losetup", "mkfs.ext4", "qemu-img")
DIB_PACKAGES = {"sudo": "sudo", "debootstrap": "debootstrap", "qemu-img": "qemu-utils", "losetup": "mount",
                "mkfs.ext4": "e2fsprogs", "mmdebstrap": "mmdebstrap"}
# The elements pvbuild adds to the distro element; the same list build/elements.py runs.
PVBUILD_ELEMENTS = elements_mod.DEFAULT_ELEMENTS
APT_FAMILIES = ("debian",)  # the families pvbuild's elements configure (dpkg, update-initramfs, linux-version)


def disk_image_create() -> Path:
    """diskimage-builder's `disk-image-create`: the one next to the Python running pvbuild (its virtualenv),
    else the one on PATH."""
    here = Path(sys.executable).parent / "disk-image-create"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("disk-image-create")
    if found is None:
        raise ToolMissing("the diskimage-builder backend needs diskimage-builder's disk-image-create, which is not "
                          "installed: `pip install diskimage-builder` into pvbuild's virtualenv (scripts/bootstrap "
                          "does), or use `distro.backend: mmdebstrap`")
    return Path(found)


def preflight(plan: Plan) -> None:
    """What a diskimage-builder build needs here, checked before any work."""
    d = plan.distro
    if not d.dib_element:
        raise EnvironmentProblem(f"diskimage-builder has no element for {d.family} {d.version} (`pvbuild plan` "
                                 "names the element of each release)")
    if d.family not in APT_FAMILIES:
        raise EnvironmentProblem(
            f"cannot build {d.family} {d.version} with diskimage-builder yet: pvbuild's elements configure Debian "
            "trees (dpkg, update-initramfs, linux-update-symlinks); "
            f"{d.family} needs {plan.initrd.tool} support in pvgrub-kernel/pvgrub-initrd first "
            "(`pvbuild plan` shows the whole plan)")
    disk_image_create()
    for tool in DIB_HOST_TOOLS:
        try:
            which(tool)
        except ToolMissing:
            raise ToolMissing(f"the diskimage-builder backend needs the command {tool!r}, which is not installed "
                              f"(apt-get install {DIB_PACKAGES[tool]})") from None


def cache_dir(plan: Plan, cache: Path | None = None) -> Path:
    """diskimage-builder's --image-cache for this archive, release, arch and component set."""
    d = plan.distro
    key = hashlib.sha256(json.dumps([d.family, d.release, d.deb_arch, d.mirror, d.security_mirror,
                                     list(d.components)]).encode()).hexdigest()[:16]
    return (cache or rootfs_mod.user_cache_dir()) / "dib" / key


def apt_sources_conf(plan: Plan) -> str:
    """DIB_APT_SOURCES_CONF (`NAME:LINE` a line): the apt sources of the mmdebstrap backend, named."""
    names = ("default", "updates", "security")
    return "\n".join(f"{name}:{line}" for name, line in zip(names, rootfs_mod.sources(plan), strict=False))


def dib_environment(plan: Plan, data_dir: Path, work: Path) -> dict[str, str]:
    """The whole environment of disk-image-create (see the module's doc)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_") and k != "ELEMENTS_PATH"}
    path = [str(disk_image_create().parent), *env.get("PATH", "/usr/bin:/bin").split(":")]
    for extra in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if extra not in path:
            path.append(extra)
    el_env = elements_mod.element_environment(plan)
    env.update({k: v for k, v in el_env.items()
                if k.startswith("DIB_PVGRUB_") or k in ("SOURCE_DATE_EPOCH", "DIB_ROOT_LABEL",
                                                         "DIB_IMAGE_ROOT_FS_UUID")})
    d = plan.distro
    env.update({
        "PATH": ":".join(path),
        "TMPDIR": str(work),  # diskimage-builder's build folder and throw-away disk image live in the work folder
        "ELEMENTS_PATH": str(elements_mod.ELEMENTS_DIR),
        "DIB_RELEASE": d.release,
        "DIB_DISTRIBUTION_MIRROR": d.mirror,
        "DIB_DEBIAN_COMPONENTS": ",".join(d.components),
        "DIB_APT_SOURCES_CONF": apt_sources_conf(plan),
        "DIB_DEBOOTSTRAP_CACHE": "1",
        "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1",
        "DIB_DEBUG_TRACE": "0",
        "DIB_NO_TIMESTAMP": "1",
        "DIB_QUIET": "0",
        "DIB_PVGRUB_DATA_DIR": str(data_dir),
        "DEBIAN_FRONTEND": "noninteractive",
    })
    return env


def dib_argv(plan: Plan, output_base: Path, cache: Path) -> list[str]:
    packages = sorted(set(rootfs_mod.bootstrap_packages(plan)))
    assert plan.distro.dib_element is not None
    return [str(disk_image_create()), "-a", plan.distro.deb_arch, "-n", "--no-tmpfs", "--image-cache", str(cache),
            "-o", str(output_base), "-t", "tar", "-p", ",".join(packages), plan.distro.dib_element, *PVBUILD_ELEMENTS]


def build_tree(plan: Plan, tree: Path, work: Path, log: Log, *, refresh: bool = False,
               cache: Path | None = None) -> str:
    """Build the root tree with disk-image-create into `tree`; returns packages.txt (`name version` lines)."""
    preflight(plan)
    elements_mod.check_elements(PVBUILD_ELEMENTS, elements_mod.ELEMENTS_DIR)
    image_cache = cache_dir(plan, cache)
    data = elements_mod.stage_data(plan, work / "pvgrub-data")
    dib_work = work / "dib"
    dib_work.mkdir(exist_ok=True)
    output_base = dib_work / "rootfs"
    env = dib_environment(plan, data, dib_work)
    image_cache.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(image_cache.with_suffix(".lock")):
        if refresh and image_cache.exists():
            shutil.rmtree(image_cache)
        image_cache.mkdir(parents=True, exist_ok=True)
        argv = dib_argv(plan, output_base, image_cache)
        log.write("diskimage-builder environment: " + " ".join(
            f"{k}={v!r}" for k, v in sorted(env.items()) if k.startswith(("DIB_", "ELEMENTS_PATH"))))
        with log.progress("diskimage-builder (disk-image-create -t tar)", None) as advance:
            run(argv, log=log, env=env, cwd=dib_work, on_line=lambda _l: advance(1))
    tarball = output_base.with_suffix(".tar")
    if not tarball.is_file():
        raise EnvironmentProblem(f"disk-image-create finished but wrote no {tarball.name}; see the build log")
    rootfs_mod.unpack(tarball, tree, log)
    tarball.unlink()
    shutil.rmtree(data, ignore_errors=True)
    # diskimage-builder's tar leaves out /proc and /sys themselves; the guest mounts them.
    for sub in ("proc", "sys"):
        (tree / sub).mkdir(mode=0o555, exist_ok=True)
        os.chmod(tree / sub, 0o555)  # noqa: S103 - what every Debian tree has
    reset_dev(tree)
    return installed_packages(tree, log)


# The /dev of a bootstrapped tree (mmdebstrap's and debootstrap's set): the guest mounts devtmpfs over it, but the
# tree must not carry the build host's device nodes, which diskimage-builder's tar picks up (loop, kvm, md ...).
DEV_NODES = {"console": (5, 1), "full": (1, 7), "null": (1, 3), "ptmx": (5, 2), "random": (1, 8), "tty": (5, 0),
             "urandom": (1, 9), "zero": (1, 5)}
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}


def reset_dev(tree: Path) -> None:
    """Make the tree's /dev hold exactly the bootstrap's device nodes, links and folders (pts, shm)."""
    import stat

    dev = tree / "dev"
    if dev.is_symlink():
        raise EnvironmentProblem("/dev in the diskimage-builder tree is a symlink; refusing to touch it")
    if dev.exists():
        shutil.rmtree(dev)
    dev.mkdir(mode=0o755)
    os.chmod(dev, 0o755)  # noqa: S103 - the bootstrap's modes
    for name, (major, minor) in DEV_NODES.items():
        os.mknod(dev / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)  # noqa: S103 - null, zero, tty ... are world-writable
    for name, target in DEV_LINKS.items():
        os.symlink(target, dev / name)
    for sub in ("pts", "shm"):
        (dev / sub).mkdir(mode=0o755)
        os.chmod(dev / sub, 0o755)  # noqa: S103 - the bootstrap's modes


def installed_packages(tree: Path, log: Log) -> str:
    """packages.txt of a Debian tree, read from its dpkg database by the host's dpkg-query."""
    r = run(["dpkg-query", f"--admindir={tree / 'var/lib/dpkg'}", "-W", "--showformat=${Package} ${Version}\\n"],
            log=log, capture=True)
    return "\n".join(sorted(r.stdout.decode().splitlines())) + "\n"
