#!/usr/bin/env python3
"""`pvbuild boot` timings on this machine: preparing the Xen test host, restoring the saved dom0, booting an image.

What it measures (every figure one wall-clock time, in seconds):

* prepare, cold: `prepare()` into an empty cache folder of the benchmark's own (mmdebstrap of the dom0 root,
  the loaders, the dom0 image, the accelerator probe, a cold boot of Xen + dom0 and its save), i.e. "from nothing";
* prepare, cached: the same call again (everything found in the cache);
* boot with the saved dom0: `boot_image()` of the default recipe's image (built once, cached under
  .cache/bench/boot_time), `--runs` times; also the restore time of each (QEMU `-incoming` until running), and the
  guest's milestones;
* boot without it: one `boot_image(use_snapshot=False)`: Xen and dom0 booted cold for the image.

and prints them next to the project's goals: at most 60 s per image with a prepared host on 2 cores, the host
prepared from nothing in at most 5 minutes, restore under 2 s. It asserts nothing: it reports what it measures.
The machine is shared (other jobs may be using the cores): the load average at start and end is printed.

Run (as root, Debian 12): .venv/bin/python benchmarks/boot_time/run.py [--runs N] [--skip-cold] [--keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pvbuild.boot.run import BootResult, boot_image, prepare
from pvbuild.boot.vm import qemu_version
from pvbuild.build.errors import CheckFailed
from pvbuild.build.pipeline import build
from pvbuild.build.run import Log
from pvbuild.plan import load_plan

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".cache" / "bench" / "boot_time"
COLD_CACHE = BENCH / "cold-cache"  # emptied before the cold prepare: never a user's cache
WARM_CACHE = BENCH / "cache"  # the host the boots use (kept between runs unless --keep is off and cold ran)
IMAGES = BENCH / "images"
LOGS = BENCH / "logs"
RECIPE = REPO / "recipes" / "debian-12-minimal.yaml"
GOAL_BOOT_S = 60.0
GOAL_PREPARE_S = 300.0
GOAL_RESTORE_S = 2.0


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def _image() -> Path:
    """The default recipe's image, built once (rootfs tarball cached) under the benchmark's folder."""
    plan = load_plan(RECIPE)
    plan = dataclasses.replace(plan, output=dataclasses.replace(plan.output, directory=str(IMAGES / plan.name)))
    image = IMAGES / plan.name / plan.output.image_name
    if image.is_file():
        return image
    work = BENCH / "work"
    work.mkdir(parents=True, exist_ok=True)
    try:
        return build(plan, work_parent=work, rootfs_cache=BENCH / "rootfs-cache").image
    except CheckFailed as e:
        sys.exit(f"the default recipe's image does not pass `pvbuild check`: {e}")


def _timed_prepare(cache: Path, name: str) -> tuple[float, dict[str, Any]]:
    t0 = time.monotonic()
    summary = prepare(Log(LOGS / f"{name}.log"), cache=cache)
    return time.monotonic() - t0, summary


def _boot(image: Path, cache: Path, *, snapshot: bool, name: str) -> BootResult:
    return boot_image(image, timeout=300, log=Log(LOGS / f"{name}.log"), cache=cache, use_snapshot=snapshot)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return f"{'meets' if value <= goal else 'MISSES'} the goal (<= {goal:g} s)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2, help="boots with the saved dom0 (2)")
    ap.add_argument("--skip-cold", action="store_true", help="do not time a prepare from an empty cache")
    ap.add_argument("--keep", action="store_true", help="keep the cold-prepare cache folder afterwards")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the host is built with mmdebstrap --mode=root")
    LOGS.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "machine": f"{platform.node()} {os.cpu_count()} cores", "qemu": qemu_version(),
                               "load_start": _load()}
    print(f"boot_time: {figures['machine']}, {figures['qemu']}, load {figures['load_start']}", flush=True)

    image = _image()
    figures["image"] = str(image)
    print(f"image: {image}", flush=True)

    if not args.skip_cold:
        shutil.rmtree(COLD_CACHE, ignore_errors=True)
        secs, summary = _timed_prepare(COLD_CACHE, "prepare-cold")
        figures["prepare_cold_s"] = secs
        figures["prepare_cold"] = summary
        print(f"prepare from nothing: {secs:.1f} s (dom0 cold boot {summary['dom0_cold_boot_s']} s, "
              f"{summary['accel']}: {summary['accel_reason']})", flush=True)
        cache = COLD_CACHE
    else:
        cache = WARM_CACHE
        _timed_prepare(cache, "prepare-first")
    secs, summary = _timed_prepare(cache, "prepare-cached")
    figures["prepare_cached_s"] = secs
    print(f"prepare, cached: {secs:.1f} s", flush=True)

    boots: list[dict[str, Any]] = []
    for i in range(args.runs):
        r = _boot(image, cache, snapshot=True, name=f"boot-snapshot-{i}")
        rep = r.to_json()
        boots.append(rep)
        print(f"boot {i + 1} with the saved dom0: {r.wall_s:.1f} s (restore {rep['dom0'].get('restore_s')} s; "
              f"userspace {_fmt(rep['milestones']['userspace_s'])} s after xl create; "
              f"reached userspace: {rep['reached_userspace']})", flush=True)
    cold = _boot(image, cache, snapshot=False, name="boot-cold")
    cold_rep = cold.to_json()
    print(f"boot without the saved dom0: {cold.wall_s:.1f} s (dom0 cold boot {cold_rep['dom0'].get('cold_boot_s')} s;"
          f" reached userspace: {cold_rep['reached_userspace']})", flush=True)

    walls = [b["wall_s"] for b in boots]
    restores = [float(b["dom0"]["restore_s"]) for b in boots if b["dom0"].get("restore_s") is not None]
    figures.update(boots=boots, cold_boot=cold_rep, load_end=_load())
    boot_median = statistics.median(walls) if walls else None
    restore_max = max(restores) if restores else None
    print()
    print("figure                                   seconds   goal")
    print(f"prepare from nothing                     {_fmt(figures.get('prepare_cold_s')):>7}   "
          f"{_verdict(figures.get('prepare_cold_s'), GOAL_PREPARE_S)}")
    print(f"prepare, cached                          {_fmt(figures['prepare_cached_s']):>7}")
    print(f"boot per image, saved dom0 (median of {len(walls)})  {_fmt(boot_median):>7}   "
          f"{_verdict(boot_median, GOAL_BOOT_S)}")
    print(f"boot per image, cold dom0                {_fmt(cold.wall_s):>7}")
    print(f"restore of the saved dom0 (max)          {_fmt(restore_max):>7}   {_verdict(restore_max, GOAL_RESTORE_S)}")
    for b in boots[:1]:
        ms = b["milestones"]
        print(f"guest milestones (first boot, from xl create): loader {_fmt(ms['loader_s'])}, kernel "
              f"{_fmt(ms['kernel_s'])}, root mounted {_fmt(ms['root_mounted_s'])}, userspace {_fmt(ms['userspace_s'])}")
    print(f"load average: start {figures['load_start']}, end {figures['load_end']}")
    out = BENCH / "results.json"
    out.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"figures: {out}")
    if not args.keep and not args.skip_cold:
        shutil.rmtree(COLD_CACHE, ignore_errors=True)
    ok = all(b["reached_userspace"] for b in boots) and cold_rep["reached_userspace"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
