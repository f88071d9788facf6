"""docs/ci.md's GitHub Actions and GitLab CI examples, run command by command (slow: a build and a real boot each).

Each pipeline's commands run in their own folder (so their outputs do not land in the checkout), with `./pvbuild`
being this checkout's wrapper and `recipes/` this checkout's recipes; CI expressions get test values, and the
optional register step runs against a local moto server with dummy credentials.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.motoserver import ENV, moto_endpoint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "ci.md"


def blocks() -> dict[str, Any]:
    """The fenced YAML blocks of docs/ci.md by their tag (```yaml github-actions / ```yaml gitlab-ci)."""
    found = dict(re.findall(r"```yaml ([a-z-]+)\n(.*?)```", DOC.read_text(), flags=re.S))
    return {tag: yaml.safe_load(text) for tag, text in found.items()}


def github_commands(doc: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    job = doc["jobs"]["image"]
    assert job["container"]["image"] == "debian:12" and "--privileged" in job["container"]["options"]
    out = []
    for step in job["steps"]:
        if "run" not in step:
            assert step["uses"].startswith(("actions/checkout", "actions/upload-artifact"))
            continue
        env = {k: "testing" for k in step.get("env", {})}
        out.append((step["run"], env))
    return out


def gitlab_commands(doc: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    job = doc["pv-image"]
    assert job["image"] == "debian:12"
    return [(line, {}) for line in job["script"]]


def _expand(cmd: str) -> str:
    cmd = cmd.replace("${{ github.run_id }}", "gha-test")
    assert "${{" not in cmd, cmd
    return cmd.replace("./pvbuild", str(REPO / "pvbuild"))


def _run_all(commands: list[tuple[str, dict[str, str]]], folder: Path, endpoint: str) -> None:
    folder.mkdir()
    (folder / "recipes").symlink_to(REPO / "recipes")
    base = {**os.environ, **ENV, "PVBUILD_REGISTER": "yes", "CI_PIPELINE_ID": "gitlab-test",
            "PVBUILD_EC2_ENDPOINT": endpoint, "PVBUILD_EBS_ENDPOINT": endpoint, "PVBUILD_S3_ENDPOINT": endpoint}
    for cmd, env in commands:
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", _expand(cmd)], cwd=folder,
                           env={**base, **env}, capture_output=True, text=True, check=False)
        assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-4000:])


def _assert_outputs(folder: Path) -> None:
    build = json.loads((folder / "build.json").read_text())
    assert build["boots"] is True and Path(build["image"]).is_file()
    assert json.loads((folder / "check.json").read_text())["outcome"] == "boots"
    assert json.loads((folder / "boot.json").read_text())["reached_userspace"] is True
    amis = json.loads((folder / "amis.json").read_text())["amis"]
    assert [a["region"] for a in amis] == ["us-east-1", "eu-west-1"]
    assert all(a["ami_id"].startswith("ami-") and a["kernel_id"].startswith("aki-") for a in amis)


@pytest.mark.parametrize("tag", ["github-actions", "gitlab-ci"])
def test_ci_example_runs(tag: str, tmp_path: Path) -> None:
    doc = blocks()[tag]
    commands = github_commands(doc) if tag == "github-actions" else gitlab_commands(doc)
    assert len(commands) == 4
    with moto_endpoint() as url:
        _run_all(commands, tmp_path / tag, url)
    _assert_outputs(tmp_path / tag)
