"""EBS snapshots straight from a raw image with the EBS direct APIs (the way awslabs/coldsnap uploads).

start_snapshot (size rounded up to whole GiB, an idempotency token, tags) -> put_snapshot_block for every 512 KiB
block that holds data (SHA-256 each, in parallel, retried with backoff) -> complete_snapshot with the LINEAR
aggregate checksum (SHA-256 over the raw block digests in index order) -> wait for `completed`. Zero blocks are
never read from holes nor sent; the counts of blocks sent and skipped are reported.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvbuild.errors import UsageError
from pvbuild.sparse import data_ranges

BLOCK = 512 * 1024  # EBS direct APIs' block size (moto reports 512 bytes; AWS uses 524288)
GiB = 1024**3
_ZERO = bytes(BLOCK)
RETRYABLE = {"ThrottlingException", "RequestThrottledException", "InternalServerException",
             "ServiceUnavailableException", "RequestTimeout", "InternalError"}


class SnapshotError(UsageError):
    """The image cannot be snapshotted as asked (exit 2)."""


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: str
    volume_size_gib: int
    blocks_sent: int
    blocks_skipped: int
    checksum: str  # base64 of the LINEAR aggregate SHA-256


def data_blocks(path: Path) -> Iterator[int]:
    """Indexes of the 512 KiB blocks that overlap allocated data; holes are never read."""
    with open(path, "rb") as f:
        last = -1
        for start, end in data_ranges(f.fileno(), os.fstat(f.fileno()).st_size):
            for index in range(max(start // BLOCK, last + 1), (end - 1) // BLOCK + 1):
                last = index
                yield index


def _read_block(path: Path, index: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(index * BLOCK)
        data = f.read(BLOCK)
    return data + bytes(BLOCK - len(data)) if len(data) < BLOCK else data


def _put(ebs: Any, snapshot_id: str, index: int, data: bytes, retries: int) -> bytes:
    """One block, retried with exponential backoff on throttling and server errors; returns its raw digest."""
    from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

    digest = hashlib.sha256(data).digest()
    for attempt in range(retries + 1):
        try:
            ebs.put_snapshot_block(SnapshotId=snapshot_id, BlockIndex=index, BlockData=data, DataLength=BLOCK,
                                   Checksum=base64.b64encode(digest).decode(), ChecksumAlgorithm="SHA256")
            return digest
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in RETRYABLE or attempt == retries:
                raise
        except (ConnectionError, ReadTimeoutError):
            if attempt == retries:
                raise
        time.sleep(min(0.2 * 2**attempt, 10.0))
    raise AssertionError("unreachable")


def snapshot_image(ebs: Any, image: Path, *, description: str = "", tags: dict[str, str] | None = None,
                   client_token: str | None = None, workers: int = 16, retries: int = 8,
                   progress: Callable[[int], None] | None = None, ec2: Any = None,
                   wait_seconds: float = 600.0) -> SnapshotResult:
    """Upload `image` as a new EBS snapshot; with `ec2`, wait until EC2 says it is completed."""
    if not image.is_file():
        raise SnapshotError(f"{image}: no such image file")
    size = image.stat().st_size
    if size == 0:
        raise SnapshotError(f"{image} is empty")
    gib = -(-size // GiB)
    started = ebs.start_snapshot(
        VolumeSize=gib, Timeout=60, ClientToken=client_token or str(uuid.uuid4()), Description=description,
        Tags=[{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())])
    snapshot_id = started["SnapshotId"]
    digests: dict[int, bytes] = {}
    in_flight: set[Future[tuple[int, bytes]]] = set()

    def job(index: int, data: bytes) -> tuple[int, bytes]:
        return index, _put(ebs, snapshot_id, index, data, retries)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ebs-put") as pool:
        for index in data_blocks(image):
            data = _read_block(image, index)
            if data == _ZERO:
                continue
            in_flight.add(pool.submit(job, index, data))
            if len(in_flight) >= 2 * workers:  # bounded memory: at most 2*workers blocks held
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    i, d = fut.result()
                    digests[i] = d
                    if progress:
                        progress(BLOCK)
        for fut in in_flight:
            i, d = fut.result()
            digests[i] = d
            if progress:
                progress(BLOCK)
    skipped = -(-size // BLOCK) - len(digests)  # holes and written zero blocks alike
    aggregate = hashlib.sha256(b"".join(digests[i] for i in sorted(digests))).digest()
    checksum = base64.b64encode(aggregate).decode()
    ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=len(digests), Checksum=checksum,
                          ChecksumAlgorithm="SHA256", ChecksumAggregationMethod="LINEAR")
    if ec2 is not None:
        ec2.get_waiter("snapshot_completed").wait(
            SnapshotIds=[snapshot_id], WaiterConfig={"Delay": 5, "MaxAttempts": max(1, int(wait_seconds // 5))})
    return SnapshotResult(snapshot_id, gib, len(digests), skipped, checksum)
