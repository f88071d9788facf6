"""The shipping commands' CLI: output, JSON and exit codes (the logic is tested in test_aws_*.py)."""

from __future__ import annotations

import json
import subprocess
import sys

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
