#!/usr/bin/env python3
"""`pvbuild snapshot` (EBS direct APIs) against a local moto server: blocks sent vs image size, and MB/s.

The image is the default recipe's real Debian 12 image, built by pvbuild itself into this benchmark's own folder
(.cache/bench/snapshot_upload/) and then copied, sparse, into files of 2, 4, 8 and 16 GiB apparent size holding
the same data. For each, `pvbuild.aws.snapshot.snapshot_image` uploads it to a moto server running in its own
process on 127.0.0.1 (restarted per sample: moto keeps every block in memory). The peer is the plain way to do
it — every 512 KiB block of the image sent in order by one worker, as a script looping over put_snapshot_block
would — run on the 2 GiB image only (16 GiB of zeros through moto would measure nothing but moto).

Printed per row: apparent size, data (allocated) MB, blocks sent / skipped, wall seconds, MB/s of data sent and,
for the peer row, the ratio peer/pvbuild. moto does no network I/O and verifies nothing, so the MB/s are an upper
bound of pvbuild's own overhead, not of AWS's throughput. It asserts nothing about the figures.

Run (as root, Debian 12): .venv/bin/python benchmarks/snapshot_upload/run.py [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from pvbuild.aws.snapshot import BLOCK, snapshot_image

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".cache" / "bench" / "snapshot_upload"
RECIPE = REPO / "recipes" / "debian-12-minimal.yaml"
SIZES_GIB = (2, 4, 8, 16)
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
       "AWS_EC2_METADATA_DISABLED": "true"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto in its own process, so its request handling does not share pvbuild's interpreter."""
    port = _free_port()
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ENV})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        else:
            raise SystemExit("moto_server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def base_image() -> Path:
    """The default recipe's image, built by pvbuild into the benchmark's folder (cached)."""
    image = BENCH / "out" / "debian-12-minimal" / "debian-12-minimal.raw"
    if not image.is_file():
        BENCH.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(REPO / ".venv" / "bin" / "pvbuild"), "build", str(RECIPE)], cwd=BENCH, check=True)
    return image


def sized_copy(image: Path, gib: int) -> Path:
    dest = BENCH / f"image-{gib}g.raw"
    if not dest.is_file() or dest.stat().st_size != gib * 1024**3:
        subprocess.run(["cp", "--sparse=always", str(image), str(dest)], check=True)
        os.truncate(dest, gib * 1024**3)
    return dest


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def naive_upload(ebs: Any, image: Path) -> tuple[int, float]:
    """Every block, in order, one worker: the plain loop."""
    size = image.stat().st_size
    t0 = time.monotonic()
    snap = ebs.start_snapshot(VolumeSize=-(-size // 1024**3), ClientToken=str(uuid.uuid4()))["SnapshotId"]
    digests = []
    with open(image, "rb") as f:
        for index in range(-(-size // BLOCK)):
            data = f.read(BLOCK).ljust(BLOCK, b"\0")
            d = hashlib.sha256(data).digest()
            digests.append(d)
            ebs.put_snapshot_block(SnapshotId=snap, BlockIndex=index, BlockData=data, DataLength=BLOCK,
                                   Checksum=base64.b64encode(d).decode(), ChecksumAlgorithm="SHA256")
    ebs.complete_snapshot(SnapshotId=snap, ChangedBlocksCount=len(digests),
                          Checksum=base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode(),
                          ChecksumAlgorithm="SHA256", ChecksumAggregationMethod="LINEAR")
    return len(digests), time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    os.environ.update(ENV)
    image = base_image()
    rows: list[dict[str, Any]] = []
    print(f"image: {image} ({image.stat().st_size / 2**30:.0f} GiB apparent, {allocated(image) / 2**20:.0f} MiB "
          f"allocated); {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}")
    print(f"{'what':<22}{'size':>7}{'data MB':>9}{'sent':>8}{'skipped':>9}{'wall s':>9}{'MB/s':>8}")
    for gib in SIZES_GIB:
        copy = sized_copy(image, gib)
        walls: list[float] = []
        sent = skipped = 0
        for _ in range(args.runs):
            with moto_server() as url:
                ebs = boto3.client("ebs", region_name="us-east-1", endpoint_url=url)
                t0 = time.monotonic()
                result = snapshot_image(ebs, copy)
                walls.append(time.monotonic() - t0)
                sent, skipped = result.blocks_sent, result.blocks_skipped
        wall = statistics.median(walls)
        mb = sent * BLOCK / 1e6
        rows.append({"what": "pvbuild snapshot", "gib": gib, "data_mb": allocated(copy) / 1e6, "sent": sent,
                     "skipped": skipped, "wall_s": wall, "mb_s": mb / wall})
        print(f"{'pvbuild snapshot':<22}{gib:>5}Gi{allocated(copy) / 1e6:>9.0f}{sent:>8}{skipped:>9}{wall:>9.2f}"
              f"{mb / wall:>8.0f}")
    copy = sized_copy(image, SIZES_GIB[0])
    with moto_server() as url:
        ebs = boto3.client("ebs", region_name="us-east-1", endpoint_url=url)
        n, wall = naive_upload(ebs, copy)
    ours = rows[0]["wall_s"]
    rows.append({"what": "every block, 1 worker", "gib": SIZES_GIB[0], "sent": n, "skipped": 0, "wall_s": wall,
                 "mb_s": n * BLOCK / 1e6 / wall, "ratio": wall / ours})
    print(f"{'every block, 1 worker':<22}{SIZES_GIB[0]:>5}Gi{allocated(copy) / 1e6:>9.0f}{n:>8}{0:>9}{wall:>9.2f}"
          f"{n * BLOCK / 1e6 / wall:>8.0f}")
    print(f"\nblocks sent are the same at every size ({', '.join(str(r['sent']) for r in rows[:-1])}): they follow "
          f"the data, not the size.\nratio (every block, 1 worker) / pvbuild on {SIZES_GIB[0]} GiB: "
          f"{wall / ours:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    for gib in SIZES_GIB:
        with contextlib.suppress(FileNotFoundError):
            (BENCH / f"image-{gib}g.raw").unlink()
    shutil.rmtree(BENCH / "tmp", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
