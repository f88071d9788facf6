"""The shipping commands' CLI: output, JSON and exit codes (the logic is tested in test_aws_*.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = [sys.executable, "-m", "pvbuild"]


def test_aki_from_the_table() -> None:
    out = subprocess.run([*RUN, "aki", "--region", "us-east-1", "--arch", "x86_64", "--version", "1.03", "--json"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert (got["aki_id"], got["name"], got["source"]) == ("aki-88aa75e1", "pv-grub-hd0_1.03-x86_64.gz", "table")
    out = subprocess.run([*RUN, "aki", "--region", "us-east-1"], capture_output=True, text=True, check=False)
    assert out.stdout.startswith("aki-5c21674b  pv-grub-hd0_1.05-x86_64.gz")


def test_aki_unknown_region_lists_what_exists() -> None:
    out = subprocess.run([*RUN, "aki", "--region", "mars-1"], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "us-east-1: 1.03" in out.stderr and "Traceback" not in out.stderr


def test_bundle_unbundle_cli_round_trip(tmp_path: Path) -> None:
    """`pvbuild bundle` with ec2-bundle-image's flags, then `pvbuild unbundle`: the identical image, exit codes."""
    from tests.test_aws_bundle import _identity, _sparse_image

    user, ec2 = _identity(tmp_path, "user"), _identity(tmp_path, "ec2")
    image = _sparse_image(tmp_path / "disk.raw")
    out = subprocess.run([*RUN, "bundle", str(image), "-c", str(user.cert), "-k", str(user.key), "-u",
                          "123456789012", "-r", "x86_64", "-d", str(tmp_path / "b"), "--kernel", "aki-5c21674b",
                          "--ec2cert", str(ec2.cert), "-B", "ami=sda1,root=/dev/sda1"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    manifest = Path(out.stdout.strip())
    assert "<kernel_id>aki-5c21674b</kernel_id>" in manifest.read_text()
    out = subprocess.run([*RUN, "unbundle", str(manifest), "--user-key", str(user.key), "--user-cert",
                          str(user.cert), "-o", str(tmp_path / "u")], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).read_bytes() == image.read_bytes()
    bad = subprocess.run([*RUN, "bundle", str(image), "-c", str(user.cert), "-k", str(user.key), "-u", "12",
                          "--ec2cert", str(ec2.cert)], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_bundle_and_snapshot_json(tmp_path: Path) -> None:
    """CI mode: --json on the shipping commands, stable keys; the snapshot against a local moto server."""
    import os

    from tests.motoserver import ENV, moto_endpoint
    from tests.test_aws_bundle import _identity, _sparse_image

    user = _identity(tmp_path, "user")
    image = _sparse_image(tmp_path / "disk.raw")
    out = subprocess.run([*RUN, "bundle", str(image), "-c", str(user.cert), "-k", str(user.key), "-u",
                          "123456789012", "-d", str(tmp_path / "b"), "--json"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"manifest", "parts", "digest_sha1", "size", "bundled_size"} and doc["parts"]
    with moto_endpoint() as url:
        env = {**os.environ, **ENV, "PVBUILD_EBS_ENDPOINT": url, "PVBUILD_EC2_ENDPOINT": url}
        snap = subprocess.run([*RUN, "snapshot", str(image), "--region", "us-east-1", "--json"],
                              capture_output=True, text=True, check=False, env=env)
    assert snap.returncode == 0, snap.stderr
    s = json.loads(snap.stdout)
    assert s["snapshot_id"].startswith("snap-") and s["volume_size_gib"] == 1 and s["blocks_sent"] > 0
