"""`build(plan)`: rootfs -> elements -> disk -> check -> output folder. The only entry point of the build stage.

Output folder (`plan.output.directory`), written under a temporary name next to it (`.NAME.tmp-PID`) and renamed
only when complete: `NAME.raw`, `plan.json`, `boot-report.json` (the emulator's JSON for the plan's PV-GRUB
profile, `image` made relative), `packages.txt` (`name version` from dpkg-query in the chroot), `SHA256SUMS`
(of the four files before it) and `build.log`.

When the emulator says the image would not boot (or reports an error finding), the build fails with exit code 1
(`CheckFailed`), and the complete folder is kept — not at `plan.output.directory`, where a pipeline would take it
for a good image, but at `DIRECTORY.failed`, so the user can read boot-report.json and build.log and run
`pvbuild check` on the image. A later successful build removes that `.failed` folder.

Any other failure, or Ctrl-C / SIGTERM, at any stage leaves no output at all (no temporary folder, no mounts, no
processes); the build log of that attempt is saved as $XDG_CACHE_HOME/pvbuild/logs/NAME.last-failure.log and its
path is printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pvbuild.build import disk as disk_mod
from pvbuild.build import elements as elements_mod
from pvbuild.build import rootfs as rootfs_mod
from pvbuild.build.errors import CheckFailed
from pvbuild.build.run import Log
from pvbuild.build.workspace import atomic_dir_replace, remove_tree, sigterm_as_interrupt, work_dir
from pvbuild.planmodel import Plan
from pvbuild.sparse import data_ranges

MIB = 1024 * 1024


@dataclass(frozen=True)
class BuiltImage:
    """What a build produced; `directory` is the output folder (or DIRECTORY.failed when `boots` is False)."""

    directory: Path
    image: Path
    sha256: str
    boots: bool
    report: dict[str, Any]
    initrd_bytes: int  # the size of the initrd entry 0 loads
    image_bytes: int  # the image's apparent size
    allocated_bytes: int  # what it takes on disk (the image is sparse)
    rootfs_cached: bool
    seconds: float


def sha256_file(path: Path, log: Log | None = None) -> str:
    """The sha256 of a (sparse) image: holes are hashed as zeros without reading them, which would fill the
    page cache with zero pages and take most of a warm build's output stage."""
    h = hashlib.sha256()
    size = path.stat().st_size
    zeros = bytes(4 * MIB)

    def feed(advance: Callable[[int], None]) -> None:
        with open(path, "rb") as f:
            pos = 0
            for start, end in data_ranges(f.fileno(), size):
                while pos < start:
                    n = min(len(zeros), start - pos)
                    h.update(zeros[:n])
                    pos += n
                    advance(n)
                f.seek(start)
                while pos < end:
                    chunk = f.read(min(4 * MIB, end - pos))
                    if not chunk:
                        break
                    h.update(chunk)
                    pos += len(chunk)
                    advance(len(chunk))
            while pos < size:
                n = min(len(zeros), size - pos)
                h.update(zeros[:n])
                pos += n
                advance(n)

    if log is None:
        feed(lambda _n: None)
    else:
        with log.progress(f"sha256 {path.name}", size) as advance:
            feed(advance)
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _staging_dir(final: Path, log: Log) -> Iterator[Path]:
    """The output folder under its temporary name; removed unless the caller renamed it away."""
    final.parent.mkdir(parents=True, exist_ok=True)
    # Stale staging folders of builds that were killed outright (SIGKILL, power loss).
    for old in final.parent.glob(f".{final.name}.tmp-*"):
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            remove_tree(old, log)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    remove_tree(tmp, log)
    tmp.mkdir()
    try:
        yield tmp
    finally:
        remove_tree(tmp, log)


def _save_failure_log(log: Log, name: str) -> Path | None:
    if log.path is None or not log.path.exists():
        return None
    dest = rootfs_mod.user_cache_dir() / "logs" / f"{name}.last-failure.log"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log.path, dest)
    except OSError:
        return None
    return dest


def preflight(plan: Plan) -> None:
    """Fail in a second, before any work, when the build cannot run here: not root, or a tool is missing."""
    from pvbuild.build.run import which
    from pvbuild.errors import EnvironmentProblem

    d = plan.distro
    if d.backend == "diskimage-builder":
        from pvbuild.build import dib

        dib.preflight(plan)
    elif d.family != "debian":
        raise EnvironmentProblem(f"cannot build {d.family} {d.version} with mmdebstrap yet: pvbuild's elements "
                                 "configure Debian trees only (`pvbuild plan` shows the whole plan)")
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"pvbuild build must run as root: {d.backend}, chroot and mounts need it "
                                 "(run it with sudo, or as root in a container/VM)")
    tools = ["mmdebstrap", "tar", "chroot", "mount", "umount", "mke2fs", "debugfs", "dumpe2fs", "e2fsck"]
    if plan.disk.table in ("mbr", "gpt"):
        tools.append("sfdisk")
    if any(f.lvm is not None for f in plan.disk.filesystems):
        tools += ["losetup", "lvm"]
    fstypes = {f.fstype for f in plan.disk.filesystems}
    if "reiserfs" in fstypes:
        tools += ["mkfs.reiserfs", "reiserfsck", "guestfish"]
    if "jfs" in fstypes:
        tools += ["mkfs.jfs", "jfs_tune", "fsck.jfs", "guestfish"]
    if "btrfs" in fstypes:
        tools += ["mkfs.btrfs", "btrfs"]
    if any(f.fstype == "xfs" for f in plan.disk.filesystems):
        tools += ["mkfs.xfs", "xfs_db", "xfs_repair"]
    for t in tools:
        which(t)


def build(plan: Plan, *, verbose: bool = False, console: TextIO | None = None, refresh_rootfs: bool = False,
          work_parent: Path | None = None, rootfs_cache: Path | None = None, boot: bool = False) -> BuiltImage:
    """Build the plan's image, check it with the emulator, and write the output folder.

    Raises `CheckFailed` (exit 1) when the image would not boot, `CommandFailed`/`ToolMissing` (exit 3) when a
    tool fails or is missing, `UsageError` (exit 2) for a plan the build cannot make, KeyboardInterrupt on Ctrl-C
    and `BuildInterrupted` on SIGTERM — in every case after releasing all it acquired.
    `work_parent` (default $PVBUILD_WORKDIR, $TMPDIR or /var/tmp) holds the rootfs tree while building;
    `rootfs_cache` (default $XDG_CACHE_HOME/pvbuild) holds the bootstrap tarballs.
    `boot` (or the recipe's `boot: true`) also boots the image as a Xen PV guest after the check (`pvbuild boot`):
    boot-report.json gains `real_boot` and `disagreement`, and the build fails when the two verdicts differ.
    """
    from pvbuild.pvgrub.check import check_image
    from pvbuild.pvgrub.profiles import Profile

    preflight(plan)
    t0 = time.monotonic()
    final = Path(plan.output.directory)
    failed_dir = final.with_name(final.name + ".failed")
    name = plan.output.image_name
    if "/" in name or name.startswith("."):
        from pvbuild.errors import UsageError

        raise UsageError(f"bad image name {name!r}")
    with sigterm_as_interrupt(), work_dir(work_parent) as work:
        log = Log(work / "build.log", verbose=verbose, console=console)
        try:
            log.write(f"pvbuild build of {plan.name} ({plan.recipe}), SOURCE_DATE_EPOCH={plan.source_date_epoch}")
            for fmt in plan.output.formats:
                if fmt != "raw":
                    log.warn(f"output format {fmt!r} is not made by the build yet; writing the raw image only")
            with _staging_dir(final, log) as out:
                tree = work / "tree"
                if plan.distro.backend == "diskimage-builder":
                    from pvbuild.build import dib

                    cached = False
                    with log.stage("rootfs and elements (diskimage-builder)"):
                        packages = dib.build_tree(plan, tree, work, log, refresh=refresh_rootfs,
                                                  cache=rootfs_cache)
                else:
                    with log.stage("rootfs (mmdebstrap or cache)"):
                        tarball, cached = rootfs_mod.ensure_rootfs(plan, log, tmp_parent=work,
                                                                   refresh=refresh_rootfs, cache=rootfs_cache)
                    log.info(f"rootfs tarball {tarball} ({'cached' if cached else 'bootstrapped'})")
                    with log.stage("rootfs unpack"):
                        rootfs_mod.unpack(tarball, tree, log)
                    with log.stage("elements (kernel, initrd, menu)"):
                        packages = elements_mod.run_elements(plan, tree, log, work=work)
                initrds = elements_mod.initrd_report(plan, tree)
                for link, path, size in initrds:
                    # Loaders read the initrd slowly (GRUB 2's Xen loader at ~2 MB/s): say so when it is big.
                    slow = "; a large initrd slows every boot" if size > 16 * MIB else ""
                    log.say(f"initrd {link} -> {path}: {size / MIB:.1f} MiB ({size} bytes{slow})")
                initrd_bytes = initrds[0][2] if initrds else 0
                image = out / name
                with log.stage("disk (mkfs, layout)"):
                    disk_mod.make_disk(plan, tree, image, work, log)
                remove_tree(tree, log)
                with log.stage("check (PV-GRUB emulator)"):
                    p = plan.pvgrub
                    report = check_image(image, Profile(p.version, p.variant, p.arch))
                    rj = report.to_json()
                    rj["image"] = name
                boots = report.boots
                verdict = "boots" if boots else f"does NOT boot ({rj.get('outcome')})"
                log.say(f"check: {name} {verdict} under PV-GRUB {p.version} {p.variant} {p.arch}")
                for f in rj.get("findings", []):
                    if f.get("severity") in ("error", "warning"):
                        log.say(f"  {f.get('severity')}: {f.get('code')}: {f.get('message')}")
                if boot or plan.boot:
                    from pvbuild.boot.stage import disagreement, real_boot

                    with log.stage("boot (Xen PV guest under QEMU)"):
                        rj["real_boot"] = real_boot(image, p.variant, p.arch, log, work)
                    rj["disagreement"] = disagreement(boots, rj["real_boot"])
                    boots = boots and rj["disagreement"] is None
                with log.stage("output (hashes, reports)"):
                    (out / "plan.json").write_text(json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n")
                    (out / "boot-report.json").write_text(json.dumps(rj, indent=2) + "\n")
                    (out / "packages.txt").write_text(packages)
                    digest = sha256_file(image, log)
                    sums = [f"{digest}  {name}"]
                    for extra in ("plan.json", "boot-report.json", "packages.txt"):
                        sums.append(f"{sha256_file(out / extra)}  {extra}")
                    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
                alloc = disk_mod.allocated_bytes(image)
                size = image.stat().st_size
                log.say(f"image {name}: {size / MIB:.0f} MiB, {alloc / MIB:.0f} MiB allocated, sha256 {digest}")
                log.say(f"total {time.monotonic() - t0:.1f}s")
                log.close()
                shutil.copyfile(work / "build.log", out / "build.log")
                dest = final if boots else failed_dir
                atomic_dir_replace(out, dest, log)
            if boots:
                remove_tree(failed_dir, None)
        except BaseException:
            log.close()
            saved = _save_failure_log(log, plan.name)
            if saved is not None:
                (console or log.console).write(f"pvbuild: the build log is in {saved}\n")
            raise
        finally:
            log.close()
    built = BuiltImage(directory=dest, image=dest / name, sha256=digest, boots=boots, report=rj,
                       initrd_bytes=initrd_bytes, image_bytes=size, allocated_bytes=alloc, rootfs_cached=cached,
                       seconds=time.monotonic() - t0)
    if not boots:
        if rj.get("disagreement"):
            raise CheckFailed(f"{rj['disagreement']}; the image and its boot-report.json (both verdicts) are in "
                              f"{dest}", str(dest))
        why = rj.get("grub_error") or [f["code"] for f in rj.get("findings", []) if f.get("severity") == "error"]
        raise CheckFailed(f"the image would not boot under PV-GRUB {p.version} {p.variant} {p.arch} ({why}); "
                          f"the image and its boot-report.json are in {dest}", str(dest))
    return built
