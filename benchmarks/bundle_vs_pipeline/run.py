#!/usr/bin/env python3
"""`pvbuild bundle` against the ec2-bundle-image pipeline in shell, on a sparse 4 GiB real Debian image.

The pipeline is what ec2-bundle-image runs, at the same gzip level:

    tar -c -S --owner 0 --group 0 -f - -C DIR IMAGE | gzip -9 | openssl enc -aes-128-cbc -K KEY -iv IV
        | split -b 10M - OUT/IMAGE.part.

pvbuild does the same work (one-member GNU sparse tar, gzip -9 as one standard member, AES-128-CBC, 10 MiB
parts) plus what the shell line leaves out: the SHA-1 of the tar stream and of every part, the RSA-encrypted key
and IV and the signed manifest. Its gzip runs on every core (pvbuild.aws.pgzip); the pipeline's on one.

The image is built once by pvbuild itself (recipes/debian-12-minimal.yaml with a 4 GiB disk) and cached under
.cache/bench/bundle_vs_pipeline/. A second build of the same recipe with a 1 GiB disk gives the "time grows with
data, not size" rows: that image as it is (1 GiB) and the same bytes in an 8 GiB sparse file.

Every sample is a fresh process, page cache warm, median of --runs (3). It prints wall and CPU time, MB/s of data
(the bytes in the image's data regions, not its apparent size), the bundle sizes and the ratio pipeline/pvbuild.
It asserts nothing about the figures.

Run (as root, Debian 12): .venv/bin/python benchmarks/bundle_vs_pipeline/run.py [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pvbuild.sparse import data_ranges

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".cache" / "bench" / "bundle_vs_pipeline"
PVBUILD = REPO / ".venv" / "bin" / "pvbuild"
RECIPE = REPO / "recipes" / "debian-12-minimal.yaml"
RECIPE_VERSION = "1"  # bump to rebuild the cached images when the way they are made changes
ACCOUNT = "123456789012"
GZIP_LEVEL = 9
PART = "10M"
MIB = 1024 * 1024
GIB = 1024 * MIB


def log(msg: str) -> None:
    sys.stderr.write(f"[bench] {msg}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------------------------------
# The images


def recipe_variant(size: str) -> tuple[str, Path]:
    """The default recipe with another disk size, and the cache folder its image is built into (keyed by the
    recipe's text, so a changed recipe is rebuilt)."""
    doc = yaml.safe_load(RECIPE.read_text())
    doc["name"] = f"debian-12-bundle-{size.lower()}"
    doc["disk"]["size"] = size
    body = yaml.safe_dump(doc, sort_keys=True)
    key = hashlib.sha256(f"{RECIPE_VERSION}\n{body}".encode()).hexdigest()[:16]
    out = BENCH / f"image-{size.lower()}-{key}"
    doc.setdefault("output", {})["directory"] = str(out)
    return "# benchmarks/bundle_vs_pipeline: recipes/debian-12-minimal.yaml with disk.size " \
           f"{size}\n" + yaml.safe_dump(doc, sort_keys=False), out


def ensure_image(size: str = "4GiB") -> Path:
    """The raw image of the recipe variant, built by pvbuild's own build when it is not cached yet."""
    text, out = recipe_variant(size)
    name = f"debian-12-bundle-{size.lower()}.raw"
    image = out / name
    if image.is_file():
        return image
    from pvbuild.build.pipeline import build
    from pvbuild.plan import load_plan

    BENCH.mkdir(parents=True, exist_ok=True)
    recipe = BENCH / f"recipe-{size.lower()}.yaml"
    recipe.write_text(text)
    log(f"building {image} with pvbuild ({recipe}); cached for the next runs")
    t0 = time.monotonic()
    built = build(load_plan(recipe))
    log(f"built {built.image} in {time.monotonic() - t0:.0f} s (boots: {built.boots})")
    if built.image != image:
        raise SystemExit(f"run.py: pvbuild wrote {built.image}, expected {image}")
    return image


def data_bytes(image: Path) -> tuple[int, int]:
    """(bytes in data regions, number of regions)."""
    with image.open("rb") as f:
        ranges = list(data_ranges(f.fileno(), os.fstat(f.fileno()).st_size))
    return sum(e - s for s, e in ranges), len(ranges)


def sparse_copy(src: Path, dst: Path, size: int) -> Path:
    """`src`'s data regions at the same offsets in a sparse file of `size` bytes (made once, then reused)."""
    if dst.is_file() and dst.stat().st_size == size and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    tmp = dst.with_name(f".{dst.name}.tmp")
    with src.open("rb") as f, tmp.open("wb") as g:
        g.truncate(size)
        for start, end in data_ranges(f.fileno(), os.fstat(f.fileno()).st_size):
            f.seek(start)
            g.seek(start)
            pos = start
            while pos < end:
                chunk = f.read(min(8 * MIB, end - pos))
                if not chunk:
                    break
                g.write(chunk)
                pos += len(chunk)
    os.utime(tmp, (src.stat().st_atime, src.stat().st_mtime))
    tmp.rename(dst)
    return dst


def warm(image: Path) -> None:
    """Read the data regions once, so that every timed run starts with the image in the page cache."""
    with image.open("rb") as f:
        for start, end in data_ranges(f.fileno(), os.fstat(f.fileno()).st_size):
            f.seek(start)
            left = end - start
            while left > 0 and (chunk := f.read(min(8 * MIB, left))):
                left -= len(chunk)


# ---------------------------------------------------------------------------------------------------------------
# Keys (a throwaway identity for the user and one for "EC2")


def identity(name: str) -> tuple[Path, Path]:
    d = BENCH / "keys"
    d.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = d / f"{name}.key", d / f"{name}.pem"
    if key_path.is_file() and cert_path.is_file():
        return key_path, cert_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pvbuild benchmark {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650)).sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


# ---------------------------------------------------------------------------------------------------------------
# Timed runs


@dataclasses.dataclass
class Sample:
    tool: str
    image: str
    run: int
    wall: float
    cpu: float
    bundled: int
    parts: int
    ok: bool
    error: str = ""


def timed(argv: Sequence[str]) -> tuple[float, float, int, str]:
    """(wall s, CPU s of the process tree it waited for, exit status, stderr tail)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, ru.ru_utime + ru.ru_stime, proc.returncode, err.decode(errors="replace").strip()[-500:]


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def run_pvbuild(image: Path, label: str, i: int, user: tuple[Path, Path], ec2: tuple[Path, Path]) -> Sample:
    out = fresh_dir(BENCH / "out" / "pvbuild")
    argv = [str(PVBUILD), "bundle", str(image), "-c", str(user[1]), "-k", str(user[0]), "-u", ACCOUNT,
            "-r", "x86_64", "--ec2cert", str(ec2[1]), "-d", str(out), "-p", image.name]
    wall, cpu, rc, err = timed(argv)
    parts = sorted(out.glob(f"{image.name}.part.*"))
    return Sample("pvbuild bundle", label, i, wall, cpu, sum(p.stat().st_size for p in parts), len(parts), rc == 0,
                  "" if rc == 0 else f"exit {rc}: {err}")


def pipeline_cmd(image: Path, out: Path, key: str, iv: str) -> str:
    return (f"set -o pipefail; tar -c -S --owner 0 --group 0 -f - -C '{image.parent}' '{image.name}' "
            f"| gzip -{GZIP_LEVEL} | openssl enc -aes-128-cbc -K {key} -iv {iv} "
            f"| split -b {PART} - '{out}/{image.name}.part.'")


def run_pipeline(image: Path, label: str, i: int) -> Sample:
    out = fresh_dir(BENCH / "out" / "pipeline")
    key, iv = secrets.token_hex(16), secrets.token_hex(16)
    wall, cpu, rc, err = timed(["bash", "-c", pipeline_cmd(image, out, key, iv)])
    parts = sorted(out.glob(f"{image.name}.part.*"))
    return Sample("shell pipeline", label, i, wall, cpu, sum(p.stat().st_size for p in parts), len(parts), rc == 0,
                  "" if rc == 0 else f"exit {rc}: {err}")


def verify_pvbuild_bundle(image: Path, user: tuple[Path, Path]) -> str:
    """Unpack the last pvbuild bundle with the reference tools (openssl pkeyutl/enc, gunzip, sha1sum) and compare
    with the manifest's digest, and count the gzip members (exactly one is the format)."""
    out = BENCH / "out" / "pvbuild"
    manifest = out / f"{image.name}.manifest.xml"
    root = ET.parse(manifest).getroot()  # noqa: S314 - our own manifest
    vals = []
    for field in ("user_encrypted_key", "user_encrypted_iv"):
        blob = out / "cipher.bin"
        blob.write_bytes(bytes.fromhex(root.findtext(f"image/{field}") or ""))
        vals.append(subprocess.run(["openssl", "pkeyutl", "-decrypt", "-inkey", str(user[0]), "-in", str(blob)],
                                   capture_output=True, check=True).stdout.decode())
        blob.unlink()
    parts = " ".join(f"'{out / (p.findtext('filename') or '')}'" for p in root.iterfind("image/parts/part"))
    cmd = f"set -o pipefail; cat {parts} | openssl enc -d -aes-128-cbc -K {vals[0]} -iv {vals[1]} | gunzip | sha1sum"
    got = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=False)
    digest = root.findtext("image/digest") or ""
    if got.returncode != 0:
        return f"FAILED: reference pipeline exit {got.returncode}: {got.stderr.strip()[-300:]}"
    sha1 = got.stdout.split()[0]
    members = gzip_members(out, root, vals[0], vals[1])
    verdict = "ok" if sha1 == digest and members == 1 else "MISMATCH"
    return (f"{verdict}: `openssl enc -d | gunzip | sha1sum` = {sha1}, manifest digest {digest}; "
            f"gzip members: {members}")


def gzip_members(out: Path, root: ET.Element, key: str, iv: str) -> int:
    """How many gzip members the decrypted stream holds (zlib, member by member)."""
    import zlib

    parts = [out / (p.findtext("filename") or "") for p in root.iterfind("image/parts/part")]
    cat = subprocess.Popen(["bash", "-c", "cat " + " ".join(f"'{p}'" for p in parts)
                            + f" | openssl enc -d -aes-128-cbc -K {key} -iv {iv}"], stdout=subprocess.PIPE)
    assert cat.stdout is not None
    members = 0
    d: Any = None
    pending = b""
    while True:
        data = pending or cat.stdout.read(4 * MIB)
        pending = b""
        if not data:
            break
        if d is None:
            d, members = zlib.decompressobj(31), members + 1
        d.decompress(data)
        while d.unconsumed_tail:
            d.decompress(d.unconsumed_tail)
        if d.eof:
            pending, d = d.unused_data, None
    cat.wait()
    return members


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
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), {mem}, "
            f"{platform.system()} {platform.release()}, Debian {debian}, Python {platform.python_version()}")


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def tool_versions() -> str:
    out = []
    for argv in (["tar", "--version"], ["gzip", "--version"], ["openssl", "version"]):
        with contextlib.suppress(OSError):
            text = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
            out.append(text.splitlines()[0] if text else "?")
    return "; ".join(out)


def summary(samples: Sequence[Sample], tool: str, label: str) -> dict[str, float] | None:
    ok = [s for s in samples if s.tool == tool and s.image == label and s.ok]
    if not ok:
        return None
    walls = [s.wall for s in ok]
    return {"runs": len(ok), "wall": statistics.median(walls), "min": min(walls), "max": max(walls),
            "cpu": statistics.median(s.cpu for s in ok), "bundled": ok[-1].bundled, "parts": ok[-1].parts}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3, metavar="N", help="samples per row (3); medians are reported")
    ap.add_argument("--no-scaling", action="store_true", help="skip the 1 GiB / 8 GiB rows")
    ap.add_argument("--no-main", action="store_true", help="skip the 4 GiB comparison (the scaling rows only)")
    ap.add_argument("--scaling-pipeline", action="store_true",
                    help="also time the shell pipeline on the 1 GiB and 8 GiB images (slow)")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write all samples as JSON")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if not PVBUILD.exists():
        raise SystemExit(f"run.py: {PVBUILD} missing: run ./pvbuild once (it bootstraps .venv)")
    for tool in ("tar", "gzip", "openssl", "split", "bash"):
        if shutil.which(tool) is None:
            raise SystemExit(f"run.py: {tool} is needed for the reference pipeline")

    start_load = load()
    image4 = ensure_image("4GiB")
    images: list[tuple[str, Path]] = [] if args.no_main else [("4 GiB", image4)]
    if not args.no_scaling:
        image1 = ensure_image("1GiB")
        image8 = sparse_copy(image1, BENCH / "debian-12-bundle-1gib-in-8gib.raw", 8 * GIB)
        images += [("1 GiB", image1), ("8 GiB, 1 GiB's data", image8)]
    user, ec2 = identity("user"), identity("ec2")
    facts: dict[str, dict[str, Any]] = {}
    for label, path in images:
        data, regions = data_bytes(path)
        facts[label] = {"path": str(path), "size": path.stat().st_size, "data": data, "regions": regions}
        warm(path)

    samples: list[Sample] = []

    def record(s: Sample) -> None:
        samples.append(s)
        log(f"{s.tool:<15} {s.image:<22} #{s.run}: {s.wall:7.1f} s wall {s.cpu:7.1f} s CPU "
            f"{'ok' if s.ok else 'FAILED ' + s.error} (load {load()})")

    # The main comparison, the tools alternating; then the scaling rows.
    verified = "not run (--no-main)"
    if not args.no_main:
        for i in range(1, args.runs + 1):
            record(run_pipeline(image4, "4 GiB", i))
            record(run_pvbuild(image4, "4 GiB", i, user, ec2))
        verified = verify_pvbuild_bundle(image4, user)
    for label, path in images:
        if label == "4 GiB":
            continue
        for i in range(1, args.runs + 1):
            record(run_pvbuild(path, label, i, user, ec2))
            if args.scaling_pipeline:
                record(run_pipeline(path, label, i))

    p = print
    p("== bundle_vs_pipeline: pvbuild bundle vs the ec2-bundle-image shell pipeline ==")
    p(f"machine:  {machine_line()}")
    p(f"load:     {start_load} at start, {load()} at the end (1/5/15 min averages)")
    p(f"tools:    {tool_versions()}; pvbuild gzip workers: {os.cpu_count()} (os.cpu_count())")
    p(f"pipeline: {pipeline_cmd(Path('DIR/IMAGE'), Path('OUT'), 'KEY', 'IV')}")
    p(f"pvbuild:  {PVBUILD.relative_to(REPO)} bundle IMAGE -c CERT -k KEY -u {ACCOUNT} -r x86_64 --ec2cert CERT "
      "-d OUT -p IMAGE")
    for label, f in facts.items():
        p(f"image {label}: {f['path']}: {f['size'] / GIB:.0f} GiB apparent, {f['data']:,} B of data "
          f"({f['data'] / MIB:.0f} MiB) in {f['regions']} regions")
    p("")
    p(f"{'tool':<15} {'image':<22} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7} "
      f"{'CPU/wall':>8} {'MB/s':>7} {'bundle MiB':>10} {'parts':>5}")
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for label, _ in images:
        for tool in ("shell pipeline", "pvbuild bundle"):
            s = summary(samples, tool, label)
            if s is None:
                continue
            rows[(tool, label)] = s
            mbps = facts[label]["data"] / 1e6 / s["wall"]
            p(f"{tool:<15} {label:<22} {s['runs']:>4.0f} {s['wall']:>9.1f} {s['min']:>7.1f} {s['max']:>7.1f} "
              f"{s['cpu']:>7.1f} {s['cpu'] / s['wall']:>8.2f} {mbps:>7.1f} {s['bundled'] / MIB:>10.1f} "
              f"{s['parts']:>5.0f}")
    failed = [s for s in samples if not s.ok]
    for bad in failed:
        p(f"FAILED: {bad.tool} on {bad.image} #{bad.run}: {bad.error}")
    p("")
    pipe, pv = rows.get(("shell pipeline", "4 GiB")), rows.get(("pvbuild bundle", "4 GiB"))
    if pipe and pv:
        r = pipe["wall"] / pv["wall"]
        p(f"ratio pipeline / pvbuild (wall, 4 GiB): {r:.2f}x   goal >= 1.5x: {'met' if r >= 1.5 else 'NOT met'}")
        p(f"ratio pipeline / pvbuild (CPU, 4 GiB):  {pipe['cpu'] / pv['cpu']:.2f}")
        p(f"bundle size pvbuild / pipeline:         {pv['bundled'] / pipe['bundled']:.4f} "
          f"({pv['bundled']:,} B vs {pipe['bundled']:,} B)")
    one, eight = rows.get(("pvbuild bundle", "1 GiB")), rows.get(("pvbuild bundle", "8 GiB, 1 GiB's data"))
    if one and eight:
        p(f"pvbuild 8 GiB / 1 GiB, same data (wall): {eight['wall'] / one['wall']:.2f} "
          f"(apparent size 8x; {eight['wall']:.1f} s vs {one['wall']:.1f} s)")
    pone, peight = rows.get(("shell pipeline", "1 GiB")), rows.get(("shell pipeline", "8 GiB, 1 GiB's data"))
    if pone and peight:
        p(f"pipeline 8 GiB / 1 GiB, same data (wall): {peight['wall'] / pone['wall']:.2f}")
    p(f"pvbuild's bundle of the 4 GiB image through the reference tools: {verified}")

    if args.json is not None:
        doc = {"machine": machine_line(), "load_start": start_load, "load_end": load(), "images": facts,
               "samples": [dataclasses.asdict(s) for s in samples], "verified": verified}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if not failed and (args.no_main or verified.startswith("ok")) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
