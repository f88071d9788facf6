#!/usr/bin/env python3
"""`pvbuild check` side by side with its peers (Xen's pygrub, libguestfs) on a real Debian image.

Builds (once, cached under .cache/bench/ keyed by its inputs) a Debian 12 minbase tree with a kernel and an
initramfs, then two 2 GiB raw images of it: partitionless ext4 (menu.lst `root (hd0)`, the hd0 profile) and MBR
with one partition (`root (hd0,0)`, the hd00 profile). On each image it times, each run a fresh process:

* `pvbuild check IMAGE --json`: wall time, peak RSS, `bytes_read` from its report;
* Xen's pygrub, as `-n` (parse menu.lst, check the files exist) and as xl runs it (copy kernel and initrd out);
* libguestfs reading menu.lst, kernel and initrd (appliance under TCG);

and prints a table and the ratios. It asserts nothing about the figures: it reports them.

Run: .venv/bin/python benchmarks/check_vs_pygrub/run.py [--runs N] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import datetime as dt
import glob
import hashlib
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pvbuild.distros.debian import host_mirrors

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "bench"
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PVBUILD = REPO / ".venv" / "bin" / "pvbuild"
PYGRUB = Path("/usr/lib/xen-4.17/bin/pygrub")
SYSTEM_PYTHON = Path("/usr/bin/python3")  # python3-guestfs only exists for Debian's own Python

# What the image is made of. Every value here goes into the cache key.
RECIPE_VERSION = 1
SUITE = "bookworm"
MMDEBSTRAP_VARIANT = "minbase"
INCLUDE = ("linux-image-amd64", "initramfs-tools", "zstd")
SOURCE_DATE_EPOCH = 1747699200  # 2025-05-20T00:00:00Z
IMAGE_SIZE = 2 * 1024**3
SECTOR = 512
PART_START = 2048  # sectors: the partition of the MBR image starts at 1 MiB
FS_LABEL = "rootfs"
FS_UUID = "70766275-696c-4462-a56e-636865636b30"
FS_HASH_SEED = "70766275-696c-4462-a56e-686173687365"
MBR_DISK_ID = "0x70766275"
MKFS_OPTIONS = ("-q", "-F", "-t", "ext4", "-O", "^64bit", "-L", FS_LABEL, "-U", FS_UUID, "-E",
                f"hash_seed={FS_HASH_SEED}")
MENU_TEMPLATE = """\
default 0
timeout 0

title Debian GNU/Linux 12, kernel {ver}
  root {root}
  kernel /boot/vmlinuz-{ver} root=LABEL=rootfs ro console=hvc0
  initrd /boot/initrd.img-{ver}
"""
SFDISK_SCRIPT = f"""\
label: dos
label-id: {MBR_DISK_ID}
unit: sectors

start={PART_START}, type=83, bootable
"""

GUESTFS_TIMEOUT = 900.0  # s, one libguestfs run (appliance boot under TCG plus the reads)
TOOL_TIMEOUT = 300.0  # s, one run of any other tool

# Run by Debian's /usr/bin/python3 in a fresh process for each sample: argv is IMAGE DEVICE PATH...
GUESTFS_SCRIPT = """\
import hashlib, json, sys, time
t0 = time.perf_counter()
import guestfs
image, device, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
g = guestfs.GuestFS(python_return_dict=True)
g.add_drive_opts(image, readonly=1, format="raw")
g.launch()
t1 = time.perf_counter()
g.mount_ro(device, "/")
files = {}
for p in paths:
    data = g.read_file(p)
    files[p] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
t2 = time.perf_counter()
g.shutdown()
g.close()
t3 = time.perf_counter()
json.dump({"launch_s": t1 - t0, "read_s": t2 - t1, "shutdown_s": t3 - t2, "files": files}, sys.stdout)
"""

# Runs `pvbuild check` in-process and reports what it read through read()/pread() (/proc/self/io rchar), to
# cross-check the report's own bytes_read: argv is the pvbuild command line.
RCHAR_SCRIPT = """\
import atexit, json, sys
def _rchar():
    with open("/proc/self/io") as f:
        return dict(line.split(": ") for line in f.read().splitlines())
_start = {k: int(v) for k, v in _rchar().items()}
def _report():
    end = {k: int(v) for k, v in _rchar().items()}
    sys.stderr.write("\\nRCHAR " + json.dumps({k: end[k] - _start[k] for k in ("rchar", "syscr")}) + "\\n")
atexit.register(_report)
from pvbuild.cli import main
sys.argv[0] = "pvbuild"
sys.exit(main(sys.argv[1:]))
"""


def log(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------------
# Host setup


_APT_STATE = {"updated": False}


def apt_install(packages: Sequence[str]) -> list[str]:
    """Install the Debian packages that are missing (root, Debian 12); returns the ones it installed."""
    missing = []
    for p in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True, check=False)
        if "install ok installed" not in out.stdout:
            missing.append(p)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise SystemExit(f"run.py: needs {' '.join(missing)} installed; run as root to let it apt-get them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _APT_STATE["updated"]:
        log("apt-get update")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
        _APT_STATE["updated"] = True
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return missing


def host_has_kernel() -> bool:
    """supermin (libguestfs' appliance builder) needs a kernel of the host's architecture, with its modules."""
    return bool(glob.glob("/boot/vmlinuz-*") or glob.glob("/lib/modules/*/vmlinuz"))


def apt_mirror() -> tuple[str, str]:
    """The host's Debian mirror, from its apt sources: (URI, where it came from)."""
    archive, _ = host_mirrors()
    if archive is None:
        raise SystemExit("run.py: no `deb` source in /etc/apt/sources.list(.d)")
    return archive.rstrip("/"), "the host's apt sources"


# ---------------------------------------------------------------------------------------------------------------
# The images


@dataclasses.dataclass(frozen=True)
class Image:
    name: str  # hd0 | hd00
    path: Path
    variant: str  # pvbuild --variant
    guest_device: str  # the filesystem's device inside the libguestfs appliance
    size: int


@dataclasses.dataclass(frozen=True)
class Built:
    key: str
    dir: Path
    kernel_version: str
    kernel_path: str
    initrd_path: str
    hashes: dict[str, str]  # sha256 of every /boot file a tool may hand back, by path in the image
    sizes: dict[str, int]
    images: list[Image]
    build_seconds: float | None  # None: came from the cache


def cache_key(mirror: str) -> str:
    inputs = {
        "recipe": RECIPE_VERSION, "suite": SUITE, "variant": MMDEBSTRAP_VARIANT, "include": list(INCLUDE),
        "mirror": mirror, "source_date_epoch": SOURCE_DATE_EPOCH, "image_size": IMAGE_SIZE, "mkfs": list(MKFS_OPTIONS),
        "menu": MENU_TEMPLATE, "sfdisk": SFDISK_SCRIPT, "part_start": PART_START,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def run_logged(argv: Sequence[str], logf: Path, env: Mapping[str, str] | None = None) -> None:
    with logf.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        r = subprocess.run(list(argv), stdout=f, stderr=subprocess.STDOUT, env=dict(env) if env else None,
                           check=False)
    if r.returncode != 0:
        raise SystemExit(f"run.py: `{' '.join(argv)}` failed with exit {r.returncode}; see {logf}")


def _write_menu(tree: Path, ver: str, root: str) -> None:
    menu = tree / "boot" / "grub" / "menu.lst"
    menu.parent.mkdir(parents=True, exist_ok=True)
    menu.write_text(MENU_TEMPLATE.format(ver=ver, root=root))
    os.utime(menu, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
    os.utime(menu.parent, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))


def _mkfs(tree: Path, out: Path, size: int, logf: Path) -> None:
    with out.open("wb") as f:
        f.truncate(size)
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(SOURCE_DATE_EPOCH))
    run_logged(["mkfs.ext4", *MKFS_OPTIONS, "-d", str(tree), str(out)], logf, env)


def build_images(keep: bool) -> Built:
    mirror, mirror_src = apt_mirror()
    key = cache_key(mirror)
    d = CACHE / key
    meta_path = d / "meta.json"
    images = [
        Image("hd0", d / "debian12-hd0.raw", "hd0", "/dev/sda", IMAGE_SIZE),
        Image("hd00", d / "debian12-mbr-hd00.raw", "hd00", "/dev/sda1", IMAGE_SIZE),
    ]
    if meta_path.exists() and all(i.path.exists() for i in images):
        meta = json.loads(meta_path.read_text())
        log(f"images cached in {d.relative_to(REPO)}")
        return Built(key, d, meta["kernel_version"], meta["kernel_path"], meta["initrd_path"], meta["hashes"],
                     meta["sizes"], images, None)

    t0 = time.perf_counter()
    d.mkdir(parents=True, exist_ok=True)
    logf = d / "build.log"
    tree = d / "tree"
    tree_ok = d / "tree.ok"
    if not tree_ok.exists():
        apt_install(["mmdebstrap", "e2fsprogs", "fdisk"])
        if tree.exists():
            shutil.rmtree(tree)
        log(f"mmdebstrap {SUITE} ({MMDEBSTRAP_VARIANT}, mirror from {mirror_src}) into {tree.relative_to(REPO)}")
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH))
        run_logged(["mmdebstrap", f"--variant={MMDEBSTRAP_VARIANT}", f"--include={','.join(INCLUDE)}", SUITE,
                    str(tree), mirror], logf, env)
        tree_ok.write_text(mirror_src + "\n")
    else:
        apt_install(["e2fsprogs", "fdisk"])
        log(f"reusing the kept tree {tree.relative_to(REPO)}")

    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise SystemExit(f"run.py: expected one kernel in {tree}/boot, found {[k.name for k in kernels]}")
    ver = kernels[0].name.removeprefix("vmlinuz-")
    initrd = tree / "boot" / f"initrd.img-{ver}"
    if not initrd.exists():
        raise SystemExit(f"run.py: {initrd} missing: linux-image-amd64's postinst did not run update-initramfs")
    hashes, sizes = {}, {}
    for bootfile in sorted((tree / "boot").iterdir()):
        if bootfile.is_file():
            hashes[f"/boot/{bootfile.name}"] = sha256_file(bootfile)
            sizes[f"/boot/{bootfile.name}"] = bootfile.stat().st_size

    # Partitionless: the filesystem is the whole disk (PV-GRUB's (hd0)).
    log("mkfs.ext4 -d: partitionless image")
    _write_menu(tree, ver, "(hd0)")
    tmp0 = images[0].path.with_suffix(".tmp")
    _mkfs(tree, tmp0, IMAGE_SIZE, logf)
    tmp0.rename(images[0].path)

    # MBR: the filesystem is made in a file of its own and copied in at the partition's offset (no loop devices).
    log("mkfs.ext4 -d + sfdisk: MBR image")
    _write_menu(tree, ver, "(hd0,0)")
    part = d / "part.fs"
    _mkfs(tree, part, IMAGE_SIZE - PART_START * SECTOR, logf)
    tmp1 = images[1].path.with_suffix(".tmp")
    with tmp1.open("wb") as f:
        f.truncate(IMAGE_SIZE)
    with logf.open("a") as f:
        f.write(f"$ sfdisk {tmp1}\n")
        f.flush()
        subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", str(tmp1)], input=SFDISK_SCRIPT.encode(),
                       stdout=f, stderr=subprocess.STDOUT, check=True)
    run_logged(["dd", f"if={part}", f"of={tmp1}", "bs=1M", f"seek={PART_START * SECTOR // 2**20}",
                "conv=notrunc,sparse", "status=none"], logf)
    part.unlink()
    tmp1.rename(images[1].path)

    if not keep:
        shutil.rmtree(tree)
        tree_ok.unlink()
    meta = {"kernel_version": ver, "kernel_path": f"/boot/vmlinuz-{ver}", "initrd_path": f"/boot/initrd.img-{ver}",
            "hashes": hashes, "sizes": sizes, "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return Built(key, d, ver, meta["kernel_path"], meta["initrd_path"], hashes, sizes, images,
                 time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------------------
# Timing


@dataclasses.dataclass
class Sample:
    wall: float  # s
    maxrss_kib: int  # largest resident set of the process or of any descendant it waited for
    rc: int
    stdout: str
    stderr: str


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def timed(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = TOOL_TIMEOUT) -> Sample:
    """Run argv as a fresh process; wall time from spawn to reap, peak RSS from wait4's rusage."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, start_new_session=True)
        killer = threading.Timer(timeout, _kill_group, (proc.pid,))
        killer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Sample(wall, ru.ru_maxrss, proc.returncode, out.read(), err.read())


@dataclasses.dataclass
class Series:
    tool: str
    image: str
    samples: list[Sample]
    ok: bool
    note: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def walls(self) -> list[float]:
        return [s.wall for s in self.samples]

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def rss_mib(self) -> float:
        return max(s.maxrss_kib for s in self.samples) / 1024


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def python_env(pyc_cache: bool) -> dict[str, str]:
    """The environment of the Python tools: as inherited, or with bytecode cached under the cache directory
    (PYTHONPYCACHEPREFIX, so no __pycache__ is written into the source trees), as an installed program has it."""
    env = dict(os.environ)
    if pyc_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(CACHE / "pycache")
    return env


def bench_pvbuild(img: Image, runs: int, env: Mapping[str, str], warmup: bool) -> Series:
    argv = [str(PVBUILD), "check", str(img.path), "--json", "--variant", img.variant]
    if warmup:
        timed(argv, env)
    samples = [timed(argv, env) for _ in range(runs)]
    reports: list[dict[str, Any]] = []
    for s in samples:
        try:
            reports.append(json.loads(s.stdout))
        except ValueError:
            err = last_line(s.stderr) or f"exit {s.rc}, no output"
            return Series("pvbuild check", img.name, samples, False, f"FAILED (exit {s.rc}): {err}")
    rep = reports[-1]
    if any(r.get("bytes_read") != rep.get("bytes_read") or r.get("outcome") != rep.get("outcome") for r in reports):
        note = "runs disagree on outcome/bytes_read"
    else:
        note = f"outcome {rep.get('outcome')}, exit {samples[-1].rc}"
    return Series("pvbuild check", img.name, samples, True, note, {"report": rep})


def bench_pvbuild_rchar(img: Image, env: Mapping[str, str]) -> dict[str, int] | str:
    """One extra run of the same check in a wrapper that reads /proc/self/io: what read()s really fetched."""
    s = timed([str(VENV_PYTHON), "-c", RCHAR_SCRIPT, "check", str(img.path), "--json", "--variant", img.variant],
              env)
    m = re.search(r"^RCHAR (\{.*\})$", s.stderr, re.MULTILINE)
    if not m:
        return f"no figure (exit {s.rc}: {last_line(s.stderr)})"
    got: dict[str, int] = json.loads(m.group(1))
    return got


def bench_python_floor(runs: int, env: Mapping[str, str]) -> Series:
    """The interpreter's start plus `import pvbuild.cli`: the floor under any `pvbuild` command."""
    timed([str(VENV_PYTHON), "-c", "import pvbuild.cli"], env)
    samples = [timed([str(VENV_PYTHON), "-c", "import pvbuild.cli"], env) for _ in range(runs)]
    return Series("python -c 'import pvbuild.cli'", "-", samples, all(s.rc == 0 for s in samples))


def parse_simple(out: str) -> dict[str, str]:
    got: dict[str, str] = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        if k in ("kernel", "ramdisk", "args"):
            got[k] = v
    return got


def bench_pygrub(img: Image, runs: int, built: Built, full: bool, keep_dir: Path | None, env: Mapping[str, str],
                 warmup: bool) -> Series:
    tool = "pygrub (copies kernel+initrd)" if full else "pygrub -n"
    samples: list[Sample] = []
    chosen: dict[str, str] = {}
    if warmup:
        with tempfile.TemporaryDirectory(prefix="pygrub-") as out_dir:
            timed([str(PYGRUB), "-q", "-n", f"--output-directory={out_dir}", str(img.path)], env)
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="pygrub-") as out_dir:
            argv = [str(PYGRUB), "-q", *([] if full else ["-n"]), "--output-format=simple",
                    f"--output-directory={out_dir}", str(img.path)]
            s = timed(argv, env)
            samples.append(s)
            if s.rc != 0:
                return Series(tool, img.name, samples, False, f"FAILED (exit {s.rc}): {last_line(s.stderr)}")
            got = parse_simple(s.stdout)
            if i == 0:
                chosen = {"args": got.get("args", "")}
                # pygrub prints the temp files it wrote, not paths in the image: name them by their content.
                by_hash = {h: p for p, h in built.hashes.items()}
                for k in ("kernel", "ramdisk"):
                    f = got.get(k, "None")
                    if f != "None" and Path(f).is_file():
                        chosen[k] = by_hash.get(sha256_file(Path(f)), f"? (copy of {Path(f).stat().st_size} bytes "
                                                                          "matching no /boot file)")
                        if keep_dir is not None:
                            keep_dir.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(f, keep_dir / f"{img.name}-{k}")
            leftovers = os.listdir(out_dir)
            if full and len(leftovers) != 2:
                chosen["leftovers"] = ",".join(sorted(leftovers))
    note = f"chose {chosen.get('kernel', '(not reported by -n)')}"
    return Series(tool, img.name, samples, True, note, {"chosen": chosen})


def bench_guestfs(img: Image, runs: int, built: Built, kvm: bool) -> Series:
    env = dict(os.environ, LIBGUESTFS_BACKEND="direct")
    if not kvm:
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    paths = ["/boot/grub/menu.lst", built.kernel_path, built.initrd_path]
    argv = [str(SYSTEM_PYTHON), "-c", GUESTFS_SCRIPT, str(img.path), img.guest_device, *paths]
    tool = "libguestfs " + ("(KVM if usable)" if kvm else "(TCG)")
    samples: list[Sample] = []
    inner: list[dict[str, Any]] = []
    for i in range(runs):
        log(f"  libguestfs {img.name} run {i + 1}/{runs}")
        s = timed(argv, env, GUESTFS_TIMEOUT)
        samples.append(s)
        try:
            inner.append(json.loads(s.stdout))
        except ValueError:
            why = "timed out" if s.wall >= GUESTFS_TIMEOUT else f"exit {s.rc}"
            return Series(tool, img.name, samples, False, f"FAILED ({why}): {last_line(s.stderr)}")
    files = inner[-1]["files"]
    wrong = [p for p in (built.kernel_path, built.initrd_path) if files[p]["sha256"] != built.hashes[p]]
    launch = statistics.median(r["launch_s"] for r in inner)
    read = statistics.median(r["read_s"] for r in inner)
    note = f"launch {launch:.1f} s + read {read:.2f} s (medians)"
    if wrong:
        note += f"; CONTENT MISMATCH {wrong}"
    return Series(tool, img.name, samples, True, note, {"inner": inner})


def profile_pvbuild(img: Image, top: int) -> str:
    """cProfile one in-process check (cumulative and own time, top entries)."""
    sys.path.insert(0, str(REPO / "builder"))
    from pvbuild.cli import main as pvbuild_main

    prof = cProfile.Profile()
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        prof.runcall(pvbuild_main, ["check", str(img.path), "--json", "--variant", img.variant])
    out = io.StringIO()
    st = pstats.Stats(prof, stream=out).strip_dirs()
    st.sort_stats("cumulative").print_stats(top)
    st.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Report


def fmt_s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def machine_line() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{dt.date.today().isoformat()}, {os.cpu_count()} cores ({cpu}), {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, load average at start {load}")


def kernel_of(rep: Mapping[str, Any]) -> str | None:
    k = rep.get("kernel")
    return str(k["path"]) if isinstance(k, dict) and k.get("path") else None


def bytecode_mode(env: Mapping[str, str]) -> str:
    if env.get("PYTHONPYCACHEPREFIX"):
        return "cached (PYTHONPYCACHEPREFIX, warm-up run first)"
    if env.get("PYTHONDONTWRITEBYTECODE"):
        return "not cached (PYTHONDONTWRITEBYTECODE is set: every run compiles the tools' modules)"
    return "inherited (__pycache__ next to the sources)"


def print_report(built: Built, series: list[Series], rchar: dict[str, dict[str, int] | str], runs: int,
                 guestfs_runs: int, bytecode: str) -> None:
    p = print
    p()
    p(f"machine: {machine_line()}")
    p(f"images:  {built.dir.relative_to(REPO)}  (kernel {built.kernel_version}: vmlinuz "
      f"{built.sizes[built.kernel_path] / 2**20:.1f} MiB, initrd {built.sizes[built.initrd_path] / 2**20:.1f} MiB; "
      + (f"built in {built.build_seconds:.0f} s)" if built.build_seconds is not None else "from cache)"))
    p(f"runs:    {runs} per tool and image (libguestfs: {guestfs_runs}); each a fresh process; warm page cache")
    p(f"python:  bytecode {bytecode}")
    p()
    hdr = f"{'tool':<32} {'image':<5} {'median s':>9} {'min s':>8} {'max s':>8} {'peak RSS MiB':>13}  notes"
    p(hdr)
    p("-" * len(hdr))
    for s in series:
        if not s.samples:
            continue
        p(f"{s.tool:<32} {s.image:<5} {fmt_s(s.median):>9} {fmt_s(min(s.walls)):>8} {fmt_s(max(s.walls)):>8} "
          f"{s.rss_mib:>13.1f}  {s.note}")
    p()
    for img in built.images:
        p(f"== {img.name} ({img.path.name}, {img.size / 2**30:.0f} GiB) ==")
        by = {s.tool: s for s in series if s.image == img.name}
        pv = by.get("pvbuild check")
        if pv is None or not pv.ok:
            p(f"  pvbuild check: {pv.note if pv else 'not run'} -- no ratios")
            continue
        for s in by.values():
            if s is pv or not s.ok:
                continue
            r = s.median / pv.median
            who = f"pvbuild {1 / r:.1f}x slower" if r < 1 else f"pvbuild {r:.1f}x faster"
            p(f"  {s.tool} / pvbuild check wall: {r:.3g} ({who})")
        rep: dict[str, Any] = pv.extra["report"]
        br = rep.get("bytes_read")
        if isinstance(br, int):
            p(f"  pvbuild bytes_read: {br:,} B = {100 * br / img.size:.2f} % of the image (goal < 5 %)")
        else:
            p(f"  pvbuild bytes_read: missing from the report ({br!r})")
        rc = rchar.get(img.name)
        if isinstance(rc, dict):
            p(f"  cross-check, read() bytes during the run (/proc/self/io rchar, includes lazily imported modules): "
              f"{rc['rchar']:,} B in {rc['syscr']:,} calls")
        elif rc is not None:
            p(f"  cross-check /proc/self/io: {rc}")
        p(f"  pvbuild wall {pv.median:.3f} s (goal < 1 s), peak RSS {pv.rss_mib:.1f} MiB")
        full = by.get("pygrub (copies kernel+initrd)")
        pvk = kernel_of(rep)
        if full is not None and full.ok:
            chosen: dict[str, str] = full.extra["chosen"]
            pgk = chosen.get("kernel")
            verdict = "MATCH" if rep.get("outcome") == "boots" and pvk is not None and pvk == pgk else "DIFFER"
            p(f"  verdict vs pygrub: pvbuild outcome {rep.get('outcome')!r}, kernel {pvk!r}; "
              f"pygrub kernel {pgk!r} -> {verdict}")
            init = rep.get("initrd")
            pvi = init.get("path") if isinstance(init, dict) else None
            p(f"    initrd: pvbuild {pvi!r}, pygrub {chosen.get('ramdisk')!r}; cmdline: pvbuild "
              f"{rep.get('cmdline')!r}, pygrub args {chosen.get('args')!r}")
        else:
            p("  verdict vs pygrub: pygrub did not run to completion")
        p()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per tool and image (5); the median is reported")
    ap.add_argument("--guestfs-runs", type=int, default=None, metavar="N",
                    help="libguestfs runs per image (default: --runs); 0 skips libguestfs")
    ap.add_argument("--guestfs-kvm", action="store_true",
                    help="let libguestfs use KVM when /dev/kvm opens (default: force TCG)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the unpacked Debian tree (reused by the next build of the same key) and pygrub's "
                         "copies of kernel and initrd, under the cache directory")
    ap.add_argument("--pyc-cache", action="store_true",
                    help="run the Python tools with bytecode cached (PYTHONPYCACHEPREFIX under the cache directory, "
                         "one untimed warm-up run) instead of with the inherited environment")
    ap.add_argument("--profile", action="store_true", help="also cProfile one in-process `pvbuild check` per image")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write all figures as JSON")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    guestfs_runs = args.runs if args.guestfs_runs is None else args.guestfs_runs

    if not PVBUILD.exists():
        raise SystemExit(f"run.py: {PVBUILD} missing: run ./pvbuild once (it bootstraps .venv)")
    needed = ["xen-utils-4.17"]
    if guestfs_runs:
        needed.append("python3-guestfs")
        if not host_has_kernel():
            needed.append("linux-image-amd64")  # supermin builds libguestfs' appliance from the host's kernel
    installed = apt_install(needed)
    if installed:
        log(f"installed: {' '.join(installed)}")
    built = build_images(args.keep)

    env = python_env(args.pyc_cache)
    series: list[Series] = [bench_python_floor(args.runs, env)]
    rchar: dict[str, dict[str, int] | str] = {}
    keep_dir = built.dir / "pygrub-out" if args.keep else None
    for img in built.images:
        log(f"{img.name}: pvbuild check x{args.runs}")
        series.append(bench_pvbuild(img, args.runs, env, args.pyc_cache))
        if series[-1].ok:
            rchar[img.name] = bench_pvbuild_rchar(img, env)
        log(f"{img.name}: pygrub x{args.runs} (-n, then full)")
        series.append(bench_pygrub(img, args.runs, built, False, keep_dir, env, args.pyc_cache))
        series.append(bench_pygrub(img, args.runs, built, True, keep_dir, env, False))
        if guestfs_runs:
            log(f"{img.name}: libguestfs x{guestfs_runs}")
            series.append(bench_guestfs(img, guestfs_runs, built, args.guestfs_kvm))

    print_report(built, series, rchar, args.runs, guestfs_runs, bytecode_mode(env))

    if args.profile:
        for img in built.images:
            print(f"== cProfile: pvbuild check {img.name} ==")
            try:
                print(profile_pvbuild(img, 25))
            except Exception as e:
                print(f"profiling failed: {type(e).__name__}: {e}")

    if args.json is not None:
        doc = {
            "machine": machine_line(), "bytecode": bytecode_mode(env), "cache_key": built.key,
            "kernel_version": built.kernel_version,
            "series": [{"tool": s.tool, "image": s.image, "ok": s.ok, "note": s.note, "walls": s.walls,
                        "maxrss_kib": [x.maxrss_kib for x in s.samples], "extra": s.extra} for s in series],
            "rchar": rchar,
        }
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
