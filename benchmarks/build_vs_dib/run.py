#!/usr/bin/env python3
"""`pvbuild build` of the default recipe against diskimage-builder building the equivalent image, on this machine.

pvbuild builds recipes/debian-12-minimal.yaml (Debian 12 minbase, linux-image-amd64, initramfs-tools, one
partitionless 2 GiB ext4, menu.lst). diskimage-builder 3.43.0 (from PyPI, in its own virtualenv under
.cache/bench/dib-venv) builds `debian-minimal` for bookworm with the same extra packages into a partitionless
2 GiB raw image (a block-device config of local_loop + mkfs + mount: no partitioning, so no partition devices).

Each tool is timed cold (its caches emptied: pvbuild's rootfs cache, DIB's debootstrap tarball and apt cache)
and warm (caches kept from the build before). All caches live under one cache home of the benchmark's own
(.cache/bench/build_vs_dib/cache-home, given to both tools as XDG_CACHE_HOME, and to DIB as --image-cache), so
no user's cache is ever deleted. It prints wall and CPU times, the ratios against the project's goals, the
apparent and allocated size of each raw image, and what `pvbuild check` says about each image. It asserts
nothing about the figures; its exit code is 1 only when a build failed (and it then says why).

Run (as root, Debian 12): .venv/bin/python benchmarks/build_vs_dib/run.py [--skip-cold] [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pvbuild.distros.debian import host_mirrors

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".cache" / "bench" / "build_vs_dib"
CACHE_HOME = BENCH / "cache-home"  # XDG_CACHE_HOME of both tools during the benchmark
PVBUILD_CACHE = CACHE_HOME / "pvbuild"
DIB_CACHE = CACHE_HOME / "image-create"  # DIB's --image-cache (its default is ~/.cache/image-create)
WORK = BENCH / "work"
PV_WORK = WORK / "pvbuild"  # pvbuild's cwd: a recipe without output.directory writes to ./out/NAME/
DIB_WORK = WORK / "dib"
DIB_IMAGE_BASE = DIB_WORK / "debian-12-dib"  # -o: DIB appends .raw
LOGS = BENCH / "logs"
BLOCK_DEVICE_YAML = BENCH / "dib-block-device.yaml"

PVBUILD = REPO / ".venv" / "bin" / "pvbuild"
RECIPE = REPO / "recipes" / "debian-12-minimal.yaml"

DIB_VENV = REPO / ".cache" / "bench" / "dib-venv"
DIB_VERSION = "3.43.0"
DIB_CREATE = DIB_VENV / "bin" / "disk-image-create"
SYSTEM_PYTHON = Path("/usr/bin/python3")
SUITE = "bookworm"
DIB_ELEMENTS = ("debian-minimal",)  # no `vm`: no bootloader, as pvbuild installs none (PV-GRUB is the AKI's)
# debian-minimal installs linux-image-amd64 itself (its package-installs.yaml); initramfs-tools is what the
# kernel's dependency resolves to anyway; zstd is in pvbuild's package list (the initramfs compressor).
DIB_EXTRA_PACKAGES = ("initramfs-tools", "zstd")
DIB_IMAGE_SIZE_GIB = 2  # pvbuild's recipe: disk.size 2GiB

# Partitionless: one ext4 filesystem on the whole loop device. No `partitioning` node, so DIB never needs
# kpartx or partition devices (neither works here). type/mount/fstab are what DIB's own fallback config uses.
BLOCK_DEVICE_CONFIG = """\
# diskimage-builder block-device config of benchmarks/build_vs_dib: a partitionless raw image.
- local_loop:
    name: image0
- mkfs:
    name: mkfs_root
    base: image0
    type: ext4
    mount:
      mount_point: /
      fstab:
        options: "defaults"
        fsck-passno: 1
"""

# Debian packages the benchmark needs; installed with apt-get when missing.
APT_PACKAGES = (
    "sudo",  # DIB runs everything through sudo, even as root
    "debootstrap",  # a DIB dependency (it uses mmdebstrap instead when that is installed, as it is for pvbuild)
    "mmdebstrap",  # pvbuild's bootstrap tool
    "qemu-utils",  # qemu-img: DIB's image conversion (a no-op for -t raw, but DIB expects it)
    "python3-venv",  # Debian's python3 -m venv for DIB's own virtualenv
    "e2fsprogs",  # mkfs.ext4 for both; dumpe2fs/debugfs for the image figures
)

BUILD_TIMEOUT = 3600.0  # s: a build still running after an hour is stopped and reported as failed


def log(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------------
# Host setup


def apt_install(packages: Sequence[str]) -> list[str]:
    """Install the Debian packages that are missing; returns the ones it installed."""
    missing = []
    for p in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False)
        if "install ok installed" not in out.stdout:
            missing.append(p)
    if not missing:
        return []
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("apt-get update")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return missing


def apt_mirrors() -> tuple[str, str | None, str]:
    """The host's Debian archive and security archive, from its apt sources: (archive, security, where)."""
    archive, security = host_mirrors()
    if archive is None:
        raise SystemExit("run.py: no Debian archive in the host's apt sources (/etc/apt/sources.list.d/*.sources "
                         "or /etc/apt/sources.list): DIB needs DIB_DISTRIBUTION_MIRROR")
    return archive.rstrip("/"), security.rstrip("/") if security else None, "the host's apt sources"


def installed_dib_version() -> str | None:
    py = DIB_VENV / "bin" / "python"
    if not py.exists() or not DIB_CREATE.exists():
        return None
    out = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('diskimage-builder'))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or None


def ensure_dib() -> str:
    """diskimage-builder DIB_VERSION in its own virtualenv (never the project's .venv); returns its version."""
    have = installed_dib_version()
    if have == DIB_VERSION:
        return have
    if not (DIB_VENV / "bin" / "pip").exists():
        log(f"creating {DIB_VENV}")
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(DIB_VENV)], check=True)
    log(f"pip install diskimage-builder=={DIB_VERSION} into {DIB_VENV}")
    subprocess.run([str(DIB_VENV / "bin" / "pip"), "install", "-q", f"diskimage-builder=={DIB_VERSION}"],
                   check=True)
    have = installed_dib_version()
    if have != DIB_VERSION:
        raise SystemExit(f"run.py: {DIB_VENV} has diskimage-builder {have}, not {DIB_VERSION}")
    return have


# ---------------------------------------------------------------------------------------------------------------
# Builds


@dataclasses.dataclass
class Build:
    tool: str  # "pvbuild" or "DIB"
    kind: str  # "cold" or "warm"
    index: int
    rc: int
    wall: float  # s, spawn to reap
    cpu: float  # s, user + system of the build and every descendant it waited for
    log: Path
    image: Path | None
    error: str = ""
    stages: dict[str, float] = dataclasses.field(default_factory=dict)  # s per stage (pvbuild) or phase (DIB)

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.image is not None and self.image.exists()


def _stop_group(pid: int) -> None:
    """SIGINT (lets DIB and mmdebstrap unmount), then SIGTERM, then SIGKILL to the build's process group."""
    for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    return
            time.sleep(0.2)


def timed_build(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, logf: Path) -> tuple[int, float, float]:
    """Run a build with stdout and stderr into logf: (exit code, wall s, CPU s). -9 means stopped at the timeout."""
    logf.parent.mkdir(parents=True, exist_ok=True)
    with open(logf, "wb") as out:
        out.write(f"$ {' '.join(argv)}\n(cwd {cwd})\n".encode())
        out.flush()
        t0 = time.monotonic()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env), cwd=cwd, start_new_session=True)
        try:
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - t0 > BUILD_TIMEOUT:
                    log(f"timeout after {BUILD_TIMEOUT:.0f} s: stopping {argv[0]}")
                    _stop_group(proc.pid)
                    proc.returncode = -9
                    return -9, time.monotonic() - t0, 0.0
                time.sleep(0.05)
        except KeyboardInterrupt:
            _stop_group(proc.pid)
            raise
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, wall, ru.ru_utime + ru.ru_stime


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(CACHE_HOME)
    path = env.get("PATH", "/usr/bin:/bin")
    for d in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if d not in path.split(":"):
            path += ":" + d
    env["PATH"] = path
    env.pop("PVBUILD_DEBUG", None)
    return env


def pvbuild_plan() -> dict[str, Any]:
    """`pvbuild plan --json` of the recipe, run where the build runs (the output directory depends on cwd)."""
    PV_WORK.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([str(PVBUILD), "plan", "--json", str(RECIPE)], cwd=PV_WORK, env=base_env(),
                         capture_output=True, text=True, check=True)
    plan: dict[str, Any] = json.loads(out.stdout)
    return plan


_STAGE = re.compile(r"^(\S.*?)\s+(done|failed|interrupted)\s+([0-9.]+)s\s*$")


def pvbuild_stages(logf: Path) -> dict[str, float]:
    """The per-stage lines pvbuild prints (`NAME  done  12.3s`)."""
    stages: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in logf.read_text(errors="replace").splitlines():
            m = _STAGE.match(line)
            if m:
                stages[m.group(1).strip()] = stages.get(m.group(1).strip(), 0.0) + float(m.group(3))
    return stages


def pvbuild_output_dirs(plan: Mapping[str, Any]) -> list[Path]:
    """The output folder of a good build, and the `.failed` one of a build whose image would not boot."""
    out_dir = Path(plan["output"]["directory"])
    return [out_dir, out_dir.with_name(out_dir.name + ".failed")]


def empty_pvbuild_cache() -> None:
    """Empty the benchmark's pvbuild cache (rootfs tarballs and whatever else it keeps), keeping its logs/."""
    if not PVBUILD_CACHE.exists():
        return
    for entry in PVBUILD_CACHE.iterdir():
        if entry.name == "logs":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def build_pvbuild(kind: str, index: int, plan: Mapping[str, Any]) -> Build:
    out_dir = Path(plan["output"]["directory"])
    name = plan["output"]["image_name"]
    # Never time a build that could reuse its previous output: remove the output folder and the `.failed` one a
    # build that the emulator rejected leaves.
    for d in pvbuild_output_dirs(plan):
        shutil.rmtree(d, ignore_errors=True)
    if kind == "cold":
        empty_pvbuild_cache()
    logf = LOGS / f"pvbuild-{kind}-{index}.log"
    log(f"pvbuild {kind} build #{index} (log: {logf})")
    rc, wall, cpu = timed_build([str(PVBUILD), "build", str(RECIPE)], env=base_env(), cwd=PV_WORK, logf=logf)
    image = next((d / name for d in pvbuild_output_dirs(plan) if (d / name).exists()), None)
    b = Build("pvbuild", kind, index, rc, wall, cpu, logf, image, stages=pvbuild_stages(logf))
    if not b.ok:
        b.error = f"exit code {rc}" + (f"; image left in {image.parent}" if image else f"; no image in {out_dir}")
    log(f"pvbuild {kind} #{index}: {'ok' if b.ok else 'FAILED'} in {wall:.1f} s")
    return b


def dib_env(archive: str, security: str | None) -> dict[str, str]:
    env = base_env()
    env["PATH"] = f"{DIB_VENV / 'bin'}:{env['PATH']}"
    env.update({
        "DIB_RELEASE": SUITE,
        "DIB_DISTRIBUTION_MIRROR": archive,
        "DIB_DEBOOTSTRAP_CACHE": "1",  # write the debootstrap tarball into the image cache ...
        "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE": "1",  # ... and start from it when it is there
        "DIB_BLOCK_DEVICE_CONFIG": f"file://{BLOCK_DEVICE_YAML}",
    })
    if security:
        env["DIB_DEBIAN_SECURITY_MIRROR"] = security
    return env


DIB_ENV_KEYS = ("DIB_RELEASE", "DIB_DISTRIBUTION_MIRROR", "DIB_DEBIAN_SECURITY_MIRROR", "DIB_DEBOOTSTRAP_CACHE",
                "DIB_DEBIAN_USE_DEBOOTSTRAP_CACHE", "DIB_BLOCK_DEVICE_CONFIG", "XDG_CACHE_HOME")


def dib_argv() -> list[str]:
    return [str(DIB_CREATE), "--image-size", str(DIB_IMAGE_SIZE_GIB), "--image-cache", str(DIB_CACHE),
            "-o", str(DIB_IMAGE_BASE), "-t", "raw", "-p", ",".join(DIB_EXTRA_PACKAGES), *DIB_ELEMENTS]


_DIB_TARGET = re.compile(r"dib-run-parts Target: (\S+)\s*$")
_DIB_SCRIPT = re.compile(r"dib-run-parts (\S+)\s+([0-9]+\.[0-9]+)\s*$")


def dib_phases(logf: Path) -> dict[str, float]:
    """Seconds per DIB hook phase (root.d, install.d, ...), from the timing table dib-run-parts prints per phase."""
    phases: dict[str, float] = {}
    current: str | None = None
    with contextlib.suppress(OSError):
        for line in logf.read_text(errors="replace").splitlines():
            m = _DIB_TARGET.search(line)
            if m:
                current = m.group(1)
                phases.setdefault(current, 0.0)
                continue
            m = _DIB_SCRIPT.search(line)
            if m and current is not None:
                phases[current] += float(m.group(2))
            elif "Running hooks from" in line:
                current = None
    return phases


def build_dib(kind: str, index: int, env: Mapping[str, str]) -> Build:
    image = DIB_IMAGE_BASE.with_name(DIB_IMAGE_BASE.name + ".raw")
    shutil.rmtree(DIB_WORK, ignore_errors=True)  # DIB renames an old image aside; start from nothing
    DIB_WORK.mkdir(parents=True)
    if kind == "cold":
        shutil.rmtree(DIB_CACHE, ignore_errors=True)
    logf = LOGS / f"dib-{kind}-{index}.log"
    log(f"DIB {kind} build #{index} (log: {logf})")
    rc, wall, cpu = timed_build(dib_argv(), env=env, cwd=DIB_WORK, logf=logf)
    b = Build("DIB", kind, index, rc, wall, cpu, logf, image if image.exists() else None, stages=dib_phases(logf))
    if not b.ok:
        b.error = f"exit code {rc}" + ("" if image.exists() else f"; no image at {image}")
    log(f"DIB {kind} #{index}: {'ok' if b.ok else 'FAILED'} in {wall:.1f} s")
    return b


# ---------------------------------------------------------------------------------------------------------------
# Images


@dataclasses.dataclass
class ImageFacts:
    path: Path
    apparent: int  # st_size
    allocated: int  # st_blocks * 512
    du: int | None  # `du --block-size=1`, the same figure as a cross-check
    fs_used: int | None  # (block count - free blocks) * block size, from dumpe2fs -h
    fs_features: str
    kernel: str  # /boot/vmlinuz-* in the image (debugfs)
    boot_files: dict[str, int]  # /boot/{vmlinuz,initrd.img}-* sizes
    packages: int | None  # "install ok installed" stanzas in /var/lib/dpkg/status


def _debugfs(image: Path, request: str) -> str:
    out = subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=False,
                         errors="replace")
    return out.stdout


def image_facts(image: Path) -> ImageFacts:
    st = image.stat()
    du: int | None = None
    with contextlib.suppress(subprocess.CalledProcessError, ValueError, IndexError):
        du = int(subprocess.run(["du", "--block-size=1", str(image)], capture_output=True, text=True,
                                check=True).stdout.split()[0])
    fs_used: int | None = None
    features = ""
    head = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=False).stdout
    fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in head.splitlines()) if v}
    with contextlib.suppress(KeyError, ValueError):
        fs_used = (int(fields["Block count"]) - int(fields["Free blocks"])) * int(fields["Block size"])
    features = fields.get("Filesystem features", "")
    boot: dict[str, int] = {}
    for line in _debugfs(image, "ls -l /boot").splitlines():
        parts = line.split()
        # debugfs ls -l: inode mode (links) uid gid size date time name
        if len(parts) == 9 and parts[-1].startswith(("vmlinuz-", "initrd.img-")):
            with contextlib.suppress(ValueError):
                boot[parts[-1]] = int(parts[5])
    kernel = ", ".join(sorted(k.removeprefix("vmlinuz-") for k in boot if k.startswith("vmlinuz-"))) or "?"
    status = _debugfs(image, "cat /var/lib/dpkg/status")
    packages = status.count("Status: install ok installed") if status else None
    return ImageFacts(image, st.st_size, st.st_blocks * 512, du, fs_used, features, kernel, boot, packages)


def pvbuild_check(image: Path, profile: Mapping[str, str]) -> dict[str, Any]:
    argv = [str(PVBUILD), "check", "--json", "--pvgrub", profile["version"], "--variant", profile["variant"],
            "--arch", profile["arch"], str(image)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    try:
        rep: dict[str, Any] = json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"outcome": f"no report (exit {out.returncode}): {out.stderr.strip()[-300:]}", "findings": [],
                "exit": out.returncode}
    rep["exit"] = out.returncode
    return rep


def find_boot_report(out_dir: Path) -> Path | None:
    path = out_dir / "boot-report.json"
    return path if path.exists() else None


def summarize_report(rep: Mapping[str, Any]) -> str:
    errors = [f["code"] for f in rep.get("findings", []) if isinstance(f, dict) and f.get("severity") == "error"]
    warnings = [f["code"] for f in rep.get("findings", []) if isinstance(f, dict) and f.get("severity") == "warning"]
    entry = rep.get("entry")
    what = str(rep.get("outcome", "?"))
    if isinstance(entry, dict):
        what += f" (entry {entry.get('index')}: {entry.get('title')})"
    parts = [what]
    if "exit" in rep:
        parts.append(f"exit {rep['exit']}")
    parts.append("errors: " + (", ".join(dict.fromkeys(errors)) or "none"))
    if warnings:
        parts.append("warnings: " + ", ".join(dict.fromkeys(warnings)))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Report


def machine_line() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem = f"{kib / 2**20:.0f} GiB"
    debian = "?"
    with contextlib.suppress(OSError):
        debian = Path("/etc/debian_version").read_text().strip()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{dt.date.today().isoformat()}, {os.cpu_count()} cores ({cpu}), {mem}, {platform.system()} "
            f"{platform.release()}, Debian {debian}, load average at start {load}")


def fmt_s(x: float) -> str:
    return f"{x:.1f}"


def fmt_b(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n:,} ({n / 2**20:,.0f} MiB)"


def median_wall(builds: Sequence[Build]) -> float | None:
    ok = [b.wall for b in builds if b.ok]
    return statistics.median(ok) if ok else None


def ratio_line(name: str, num: float | None, den: float | None, goal: float, why: str) -> str:
    if num is None or den is None:
        return f"{name:<28} {'n/a':>7}   goal <= {goal:.2f}   n/a: {why}"
    r = num / den
    verdict = "met" if r <= goal else "NOT met"
    return f"{name:<28} {r:7.3f}   goal <= {goal:.2f}   {verdict} ({fmt_s(num)} s / {fmt_s(den)} s)"


def print_report(builds: list[Build], facts: dict[str, ImageFacts], checks: dict[str, str], boot_report: str,
                 header: list[str], stage_lines: list[str]) -> None:
    p = print
    p("== build_vs_dib: pvbuild vs diskimage-builder ==")
    for h in header:
        p(h)
    for tool in ("pvbuild", "DIB"):
        bad = [b for b in builds if b.tool == tool and not b.ok]
        if bad:
            p(f"NOTE: {len(bad)} {tool} build(s) FAILED here ({bad[0].error}); their figures are missing below, and "
              "the end of each log is under FAILED BUILDS at the end")
    p("")
    p(f"{'build':<14} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7}  status")
    for tool in ("pvbuild", "DIB"):
        for kind in ("cold", "warm"):
            bs = [b for b in builds if b.tool == tool and b.kind == kind]
            if not bs:
                continue
            ok = [b for b in bs if b.ok]
            status = "ok" if len(ok) == len(bs) else f"{len(bs) - len(ok)} of {len(bs)} FAILED"
            if ok:
                walls = [b.wall for b in ok]
                cpu = statistics.median(b.cpu for b in ok)
                p(f"{tool + ' ' + kind:<14} {len(bs):>4} {fmt_s(statistics.median(walls)):>9} "
                  f"{fmt_s(min(walls)):>7} {fmt_s(max(walls)):>7} {fmt_s(cpu):>7}  {status}")
            else:
                p(f"{tool + ' ' + kind:<14} {len(bs):>4} {'-':>9} {'-':>7} {'-':>7} {'-':>7}  {status}")
    p("")
    pw = median_wall([b for b in builds if b.tool == "pvbuild" and b.kind == "warm"])
    dw = median_wall([b for b in builds if b.tool == "DIB" and b.kind == "warm"])
    pc = median_wall([b for b in builds if b.tool == "pvbuild" and b.kind == "cold"])
    dc = median_wall([b for b in builds if b.tool == "DIB" and b.kind == "cold"])
    cold_ran = any(b.kind == "cold" for b in builds)

    def why(a: float | None, b: float | None, what: str) -> str:
        if not cold_ran and what == "cold":
            return "cold builds skipped (--skip-cold)"
        missing = [n for n, v in ((f"pvbuild {what}", a), (f"DIB {what}", b)) if v is None]
        return ", ".join(missing) + " failed or did not run"

    p("ratio (wall time, medians)")
    p(ratio_line("pvbuild warm / DIB warm", pw, dw, 0.25, why(pw, dw, "warm")))
    p(ratio_line("pvbuild cold / DIB cold", pc, dc, 0.75, why(pc, dc, "cold")))
    p("")
    p("images (from the last build of each tool that left one)")
    for tool, f in facts.items():
        p(f"  {tool}: {f.path}")
        p(f"    apparent size          {fmt_b(f.apparent)}")
        p(f"    allocated (st_blocks)  {fmt_b(f.allocated)}   du --block-size=1: {f.du if f.du is not None else '?'}")
        p(f"    ext4 blocks in use     {fmt_b(f.fs_used)}")
        p(f"    ext4 features          {f.fs_features or '?'}")
        boot = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sorted(f.boot_files.items())) or "?"
        p(f"    /boot                  {boot}")
        p(f"    packages installed     {f.packages if f.packages is not None else '?'}")
    if "pvbuild" in facts and "DIB" in facts:
        pv_alloc, dib_alloc = facts["pvbuild"].allocated, facts["DIB"].allocated
        verdict = "met" if pv_alloc < dib_alloc else "NOT met"
        p(f"  allocated pvbuild / DIB: {pv_alloc / dib_alloc:.3f} ({pv_alloc:,} B vs {dib_alloc:,} B); "
          f"goal pvbuild smaller: {verdict}")
    else:
        p("  allocated pvbuild / DIB: n/a (an image is missing)")
    p("")
    p("pvbuild check")
    p(f"  pvbuild's image, boot-report.json of the build: {boot_report}")
    for tool, text in checks.items():
        p(f"  {tool}'s image, `pvbuild check --json`: {text}")
    if "DIB" in checks:
        p("  (DIB without the `vm` element installs no bootloader, and with `vm` it writes a GRUB2 grub.cfg, never "
          "menu.lst: PV-GRUB cannot boot either; menu-not-found is expected)")
    if stage_lines:
        p("")
        p("where the time goes (median of the successful builds of each kind)")
        for line in stage_lines:
            p(line)
    failed = [b for b in builds if not b.ok]
    if failed:
        p("")
        p("FAILED BUILDS: " + ", ".join(f"{b.tool} {b.kind} #{b.index}" for b in failed)
          + " (no figure above comes from them; the end of each log follows)")
        for b in failed:
            p(f"--- {b.tool} {b.kind} #{b.index}: {b.error} after {fmt_s(b.wall)} s; full log: {b.log}")
            for line in tail(b.log).splitlines():
                p(f"    | {line}")


def stage_summary(builds: Sequence[Build]) -> list[str]:
    lines: list[str] = []
    for tool in ("pvbuild", "DIB"):
        for kind in ("cold", "warm"):
            ok = [b for b in builds if b.tool == tool and b.kind == kind and b.ok and b.stages]
            if not ok:
                continue
            names = list(dict.fromkeys(n for b in ok for n in b.stages))
            med = {n: statistics.median(b.stages.get(n, 0.0) for b in ok) for n in names}
            total = statistics.median(b.wall for b in ok)
            shown = ", ".join(f"{n} {v:.1f}" for n, v in med.items() if v >= 0.05)
            rest = total - sum(med.values())
            label = "hook phases" if tool == "DIB" else "stages"
            lines.append(f"  {tool} {kind}: {label} (s): {shown}; outside them {rest:.1f} of {total:.1f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--skip-cold", action="store_true",
                    help="keep the caches and time warm builds only (a tool whose cache is empty still gets one "
                         "build first to fill it, shown as cold, since that is what it is)")
    ap.add_argument("--runs", type=int, default=1, metavar="N",
                    help="builds of each kind per tool (1); the median is reported")
    ap.add_argument("--only", choices=["pvbuild", "dib"], default=None, help="build with one tool only")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write all figures as JSON")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if os.geteuid() != 0:
        raise SystemExit("run.py: run as root (both tools mount filesystems and chroot)")
    if not PVBUILD.exists():
        raise SystemExit(f"run.py: {PVBUILD} missing: run ./pvbuild once (it bootstraps .venv)")

    installed = apt_install(APT_PACKAGES)
    tools = ("pvbuild", "DIB") if args.only is None else ("pvbuild",) if args.only == "pvbuild" else ("DIB",)
    dib_version = ensure_dib() if "DIB" in tools else "(not run)"
    archive, security, mirror_src = apt_mirrors()
    BENCH.mkdir(parents=True, exist_ok=True)
    CACHE_HOME.mkdir(parents=True, exist_ok=True)
    BLOCK_DEVICE_YAML.write_text(BLOCK_DEVICE_CONFIG)
    denv = dib_env(archive, security)
    plan = pvbuild_plan()

    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pvbuild"
    user_cache_before = user_cache.stat().st_mtime if user_cache.exists() else None

    header = [
        f"machine: {machine_line()}",
        f"pvbuild: {PVBUILD} build {RECIPE.relative_to(REPO)} (cwd {PV_WORK}); image "
        f"{plan['output']['directory']}/{plan['output']['image_name']}",
        f"DIB:     diskimage-builder {dib_version} in {DIB_VENV}: {' '.join(dib_argv())}",
        "         env: " + " ".join(f"{k}={denv[k]}" for k in DIB_ENV_KEYS if k in denv),
        f"         block-device config {BLOCK_DEVICE_YAML}: local_loop + mkfs ext4 + mount, no partitioning",
        f"mirror:  {archive} (security: {security or 'none'}) from {mirror_src}",
        f"caches:  XDG_CACHE_HOME={CACHE_HOME} (pvbuild: {PVBUILD_CACHE}, DIB: {DIB_CACHE})",
        f"apt:     installed now: {' '.join(installed) or 'nothing (all present)'}; needs {' '.join(APT_PACKAGES)}",
    ]
    for h in header:
        log(h)

    def cache_empty(tool: str) -> bool:
        d = PVBUILD_CACHE if tool == "pvbuild" else DIB_CACHE
        return not d.exists() or not any(e.name != "logs" for e in d.iterdir())

    def one(tool: str, kind: str, i: int) -> Build:
        return build_pvbuild(kind, i, plan) if tool == "pvbuild" else build_dib(kind, i, denv)

    builds: list[Build] = []
    # Cold builds first, alternating the tools, then the warm builds: each warm build follows a build of the
    # same tool, so its cache is filled.
    for i in range(1, args.runs + 1):
        for tool in tools:
            if not args.skip_cold:
                builds.append(one(tool, "cold", i))
            elif i == 1 and cache_empty(tool):
                log(f"{tool}: cache empty, so the first build is a cold one")
                builds.append(one(tool, "cold", i))
    for i in range(1, args.runs + 1):
        for tool in tools:
            builds.append(one(tool, "warm", i))

    facts: dict[str, ImageFacts] = {}
    checks: dict[str, str] = {}
    reports: dict[str, Any] = {}
    profile = {k: str(v) for k, v in plan["pvgrub"].items()}
    for tool in tools:
        # The last build that left an image: a good one, or else one that pvbuild's own check rejected.
        last = [b for b in builds if b.tool == tool and b.ok] or [b for b in builds if b.tool == tool and b.image]
        if not last or last[-1].image is None:
            continue
        img = last[-1].image
        facts[tool] = image_facts(img)
        rep = pvbuild_check(img, profile)
        reports[tool] = rep
        checks[tool] = summarize_report(rep)
    boot_report = "pvbuild not run (--only dib)" if "pvbuild" not in tools else "no pvbuild build left one"
    br = next((r for r in map(find_boot_report, pvbuild_output_dirs(plan)) if r is not None), None)
    if "pvbuild" in tools and br is not None:
        try:
            doc = json.loads(br.read_text())
            boot_report = f"{br}: {summarize_report(doc)}"
            reports["pvbuild boot-report.json"] = doc
        except (OSError, json.JSONDecodeError) as e:
            boot_report = f"{br}: unreadable ({e})"
    elif "pvbuild" in facts:
        boot_report = f"none written under {plan['output']['directory']}"

    user_cache_after = user_cache.stat().st_mtime if user_cache.exists() else None
    if user_cache != PVBUILD_CACHE and user_cache_after != user_cache_before:
        header.append(f"WARNING: {user_cache} changed during the benchmark: pvbuild does not honour XDG_CACHE_HOME")
    if any(b.tool == "pvbuild" and b.ok for b in builds) and cache_empty("pvbuild"):
        header.append(f"WARNING: {PVBUILD_CACHE} is empty after the builds: pvbuild kept no cache there")

    print_report(builds, facts, checks, boot_report, header, stage_summary(builds))

    if args.json is not None:
        doc = {
            "machine": machine_line(), "header": header, "dib_argv": dib_argv(),
            "dib_env": {k: denv[k] for k in DIB_ENV_KEYS if k in denv}, "block_device_config": BLOCK_DEVICE_CONFIG,
            "builds": [dataclasses.asdict(b) | {"ok": b.ok} for b in builds],
            "images": {t: dataclasses.asdict(f) for t, f in facts.items()}, "checks": reports,
        }
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0 if all(b.ok for b in builds) else 1


if __name__ == "__main__":
    sys.exit(main())
