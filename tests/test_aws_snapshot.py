"""EBS direct snapshots against a real moto server on 127.0.0.1: only data blocks are sent, the content reads
back identical, the LINEAR aggregate checksum is the documented one (moto does not verify checksums, so the test
recomputes it from the blocks it reads back)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pvbuild.aws.snapshot import BLOCK, SnapshotError, data_blocks, snapshot_image
from tests.motoserver import moto_endpoint


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def sparse_image(path: Path) -> Path:
    """33 MiB + 1 byte: data in blocks 0, 3, 4 (straddling), 20, a written zero block at 10, a partial last block."""
    with open(path, "wb") as f:
        f.truncate(33 * 1024 * 1024 + 1)
        f.seek(0)
        f.write(b"boot" * 100)
        f.seek(3 * BLOCK + BLOCK - 10)
        f.write(b"straddles-two-blocks")
        f.seek(10 * BLOCK)
        f.write(bytes(BLOCK))  # allocated, but all zeros: never sent
        f.seek(20 * BLOCK + 5)
        f.write(b"x" * 1000)
        f.seek(33 * 1024 * 1024)
        f.write(b"!")
    return path


def test_data_blocks_follow_allocation(tmp_path: Path) -> None:
    img = sparse_image(tmp_path / "d.raw")
    assert set(data_blocks(img)) >= {0, 3, 4, 20, 66}


def test_snapshot_sends_only_data_blocks_and_reads_back(tmp_path: Path, endpoint: str) -> None:
    img = sparse_image(tmp_path / "d.raw")
    ebs = boto3.client("ebs", endpoint_url=endpoint, region_name="us-east-1")
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")
    sent: list[int] = []
    result = snapshot_image(ebs, img, description="pvbuild test", tags={"Name": "t"}, progress=sent.append, ec2=ec2)
    assert result.volume_size_gib == 1
    assert result.blocks_sent == 5  # 0, 3, 4, 20 and the partial last block 66
    assert result.blocks_skipped == 67 - 5
    assert len(sent) == 5
    blocks = ebs.list_snapshot_blocks(SnapshotId=result.snapshot_id)["Blocks"]
    indexes = sorted(b["BlockIndex"] for b in blocks)
    assert indexes == [0, 3, 4, 20, 66]
    data = img.read_bytes()
    digests = []
    for b in sorted(blocks, key=lambda b: b["BlockIndex"]):
        got = ebs.get_snapshot_block(SnapshotId=result.snapshot_id, BlockIndex=b["BlockIndex"],
                                     BlockToken=b["BlockToken"])["BlockData"].read()
        want = data[b["BlockIndex"] * BLOCK:(b["BlockIndex"] + 1) * BLOCK]
        assert got == want + bytes(BLOCK - len(want))
        digests.append(hashlib.sha256(got).digest())
    assert result.checksum == base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    snap = ec2.describe_snapshots(SnapshotIds=[result.snapshot_id])["Snapshots"][0]
    assert snap["State"] == "completed"
    assert {"Key": "Name", "Value": "t"} in snap.get("Tags", [])


def test_missing_or_empty_image_is_a_usage_error(tmp_path: Path, endpoint: str) -> None:
    ebs = boto3.client("ebs", endpoint_url=endpoint, region_name="us-east-1")
    with pytest.raises(SnapshotError):
        snapshot_image(ebs, tmp_path / "nope.raw")
    (tmp_path / "empty.raw").write_bytes(b"")
    with pytest.raises(SnapshotError):
        snapshot_image(ebs, tmp_path / "empty.raw")


def test_cli(tmp_path: Path, endpoint: str) -> None:
    import os
    import subprocess
    import sys

    from tests.motoserver import ENV

    img = sparse_image(tmp_path / "d.raw")
    env = {**os.environ, **ENV, "PVBUILD_EBS_ENDPOINT": endpoint, "PVBUILD_EC2_ENDPOINT": endpoint}
    out = subprocess.run([sys.executable, "-m", "pvbuild", "snapshot", str(img), "--region", "us-east-1", "--tag",
                          "Name=cli"], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("snap-") and "5 blocks sent" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "pvbuild", "snapshot", str(img), "--region", "us-east-1", "--tag",
                          "novalue"], capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
