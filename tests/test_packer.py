"""`pvbuild packer` under Debian's real Packer (1.6.6): examples/packer/'s HCL2 template (`file` builder) and legacy
JSON template (`null` builder + shell-local provisioner), each chaining the `manifest` and `shell-local`
post-processors. pvbuild's outputs are checked: the converted image boots (emulator), the manifest gained a
`pvbuild` build of the same run, and the registration path reaches a local moto server."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from pvbuild.cli import main
from pvbuild.convert import MenuOptions
from pvbuild.packer import PackerError, PackerRequest, image_of, pick_build, read_manifest
from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.profiles import Profile
from tests.conftest import REPO
from tests.motoserver import ENV, moto_endpoint
from tests.test_convert import stock_whole

EXAMPLES = REPO / "examples" / "packer"


def _packer() -> str:
    found = shutil.which("packer")
    if found is None:
        pytest.skip("packer is not installed (scripts/bootstrap installs Debian's)")
    return found


def _run_packer(template: Path, cwd: Path, variables: dict[str, str], extra_env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "PACKER_CONFIG_DIR": str(cwd / ".packer.d"),
           "PACKER_CACHE_DIR": str(cwd / "packer_cache"), "HOME": str(cwd), "PACKER_NO_COLOR": "1",
           **(extra_env or {})}
    # shell-local runs `pvbuild` in a shell: this interpreter, with this checkout on its path.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "builder"), env.get("PYTHONPATH", "")])
    argv = [_packer(), "build", "-color=false"]
    for k, v in {"pvbuild": f"{sys.executable} -m pvbuild", **variables}.items():
        argv += ["-var", f"{k}={v}"]
    return subprocess.run([*argv, str(template)], cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pvbuild_builds(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in manifest["builds"] if b["builder_type"] == "pvbuild"]


@pytest.mark.slow
def test_hcl2_file_builder_chain(tmp_path: Path) -> None:
    """The HCL2 example twice in one folder: each run converts its own build (picked by run UUID and name),
    and the manifest keeps every build of both runs."""
    source = stock_whole()
    before = _sha(source)
    first = _run_packer(EXAMPLES / "pvbuild.pkr.hcl", tmp_path, {"source_image": str(source)})
    assert first.returncode == 0, first.stdout + first.stderr
    second = _run_packer(EXAMPLES / "pvbuild.pkr.hcl", tmp_path,
                         {"source_image": str(source), "pvbuild_args": "--timeout 2"})
    assert second.returncode == 0, second.stdout + second.stderr
    assert _sha(source) == before
    doc = json.loads((tmp_path / "packer-manifest.json").read_text())
    assert [b["builder_type"] for b in doc["builds"]] == ["file", "pvbuild", "file", "pvbuild"]
    runs = [b["packer_run_uuid"] for b in doc["builds"]]
    assert runs[0] == runs[1] != runs[2] == runs[3] == doc["last_run_uuid"]
    entry = _pvbuild_builds(doc)[-1]
    assert entry["name"] == "disk"
    assert [f["name"] for f in entry["files"]] == ["output-disk/disk.pvgrub.raw",
                                                   "output-disk/disk.pvgrub.boot-report.json"]
    assert entry["artifact_id"] == "output-disk/disk.pvgrub.raw"
    assert entry["custom_data"]["boots"] == "true" and entry["custom_data"]["source_image"] == "output-disk/disk.raw"
    image = tmp_path / "output-disk" / "disk.pvgrub.raw"
    assert entry["files"][0]["size"] == image.stat().st_size
    report = check_image(image, Profile("1.05", "hd0", "x86_64"))
    assert report.boots
    saved = json.loads((tmp_path / "output-disk" / "disk.pvgrub.boot-report.json").read_text())
    assert saved["outcome"] == "boots" and "timeout 2\n" in saved["convert"]["menu"]


@pytest.mark.slow
def test_json_null_builder_registers_against_moto(tmp_path: Path) -> None:
    """The legacy JSON example: a null build (no files in its artifact: --image), converted, checked and
    registered as an EBS-backed PV-GRUB AMI on a local moto server; the AMI is the manifest's artifact_id."""
    source = stock_whole()
    with moto_endpoint() as url:
        env = {**ENV, "PVBUILD_EC2_ENDPOINT": url, "PVBUILD_EBS_ENDPOINT": url, "PVBUILD_S3_ENDPOINT": url}
        out = _run_packer(EXAMPLES / "pvbuild-null.json", tmp_path,
                          {"source_image": str(source),
                           "pvbuild_args": "--register --region us-east-1 --name pvbuild-packer-json --table"},
                          env)
        assert out.returncode == 0, out.stdout + out.stderr
        doc = json.loads((tmp_path / "packer-manifest.json").read_text())
        assert [b["builder_type"] for b in doc["builds"]] == ["null", "pvbuild"]
        entry = doc["builds"][1]
        assert entry["name"] == "null-disk" and entry["packer_run_uuid"] == doc["builds"][0]["packer_run_uuid"]
        region, _, ami = entry["artifact_id"].partition(":")
        assert region == "us-east-1" and ami.startswith("ami-")
        assert entry["custom_data"]["kernel_ids"] == "us-east-1:aki-5c21674b"  # the table's 1.05 hd0 x86_64
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url)
        images = ec2.describe_images(ImageIds=[ami])["Images"]
        assert images[0]["Name"] == "pvbuild-packer-json"
    assert check_image(tmp_path / "output-null" / "disk.pvgrub.raw", Profile()).boots


def _manifest(tmp_path: Path, builds: list[dict[str, Any]]) -> Path:
    path = tmp_path / "packer-manifest.json"
    path.write_text(json.dumps({"builds": builds, "last_run_uuid": "r2"}))
    return path


def test_manifest_picking_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    img = tmp_path / "a.raw"
    img.write_bytes(b"x")
    builds: list[dict[str, Any]] = [{"name": "a", "builder_type": "qemu", "files": [{"name": str(img), "size": 1}],
               "packer_run_uuid": "r1"},
              {"name": "a", "builder_type": "qemu", "files": [{"name": str(img), "size": 1},
                                                              {"name": "a.log", "size": 3}],
               "packer_run_uuid": "r2"},
              {"name": "b", "builder_type": "null", "files": None, "packer_run_uuid": "r2"}]
    path = _manifest(tmp_path, builds)
    doc = read_manifest(path)
    assert pick_build(doc, "a", "r2") is doc["builds"][1]
    req = PackerRequest(manifest=path, options=MenuOptions())
    assert image_of(doc["builds"][1], req, path) == img  # the image among the files
    with pytest.raises(PackerError, match=r"no build named 'c' of run r2.*'a' \(qemu, run r1\)"):
        pick_build(doc, "c", "r2")
    with pytest.raises(PackerError, match="--image"):
        image_of(doc["builds"][2], req, path)
    # Through the command line: no PACKER_* variables is bad input (2), with the way out.
    monkeypatch.delenv("PACKER_BUILD_NAME", raising=False)
    monkeypatch.delenv("PACKER_RUN_UUID", raising=False)
    assert main(["packer", "--manifest", str(path)]) == 2
    assert "PACKER_BUILD_NAME" in capsys.readouterr().err
    monkeypatch.setenv("PACKER_BUILD_NAME", "b")
    monkeypatch.setenv("PACKER_RUN_UUID", "r2")
    assert main(["packer", "--manifest", str(path)]) == 2
    assert "--image" in capsys.readouterr().err
    assert main(["packer", "--manifest", str(tmp_path / "nope.json")]) == 2
    assert "manifest" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1]")
    assert main(["packer", "--manifest", str(tmp_path / "bad.json")]) == 2


def test_cli_packer_without_packer(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`pvbuild packer` on a hand-written manifest (as Packer's qemu builder writes one), qcow2 image, output
    manifest elsewhere."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img is not installed")
    qcow = tmp_path / "build" / "disk.qcow2"
    qcow.parent.mkdir()
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(stock_whole()), str(qcow)],
                   check=True)
    path = _manifest(tmp_path, [{"name": "q", "builder_type": "qemu", "build_time": 1,
                                 "files": [{"name": str(qcow), "size": qcow.stat().st_size}],
                                 "artifact_id": "VM", "packer_run_uuid": "r9", "custom_data": None}])
    monkeypatch.setenv("PACKER_BUILD_NAME", "q")
    monkeypatch.setenv("PACKER_RUN_UUID", "r9")
    out_manifest = tmp_path / "pv" / "manifest.json"
    code = main(["packer", "--manifest", str(path), "--output-manifest", str(out_manifest), "--json"])
    entry = json.loads(capsys.readouterr().out)
    assert code == 0
    assert entry["files"][0]["name"] == str(tmp_path / "build" / "disk.pvgrub.raw")
    assert json.loads(out_manifest.read_text())["builds"] == [entry]
    assert len(json.loads(path.read_text())["builds"]) == 1  # Packer's own manifest is left as it was
    assert check_image(tmp_path / "build" / "disk.pvgrub.raw", Profile()).boots


def test_image_that_does_not_boot_fails_the_build_and_is_not_registered(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A converted image the emulator says does not boot (here: under the 1.03 hd00 AKI, which looks only in
    (hd0,0), a partitionless image) is recorded in the manifest with boots=false and exit 1, which fails Packer's
    build; --register is not acted on (no AWS endpoint is reachable here: any attempt would fail differently)."""
    image = tmp_path / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(stock_whole()), str(image)], check=True)
    path = _manifest(tmp_path, [{"name": "f", "builder_type": "file", "files": [{"name": str(image), "size": 1}],
                                 "packer_run_uuid": "r5"}])
    monkeypatch.setenv("PACKER_BUILD_NAME", "f")
    monkeypatch.setenv("PACKER_RUN_UUID", "r5")
    monkeypatch.setenv("PVBUILD_EC2_ENDPOINT", "http://127.0.0.1:9")
    code = main(["packer", "--manifest", str(path), "--pvgrub", "1.03", "--variant", "hd00", "--register",
                 "--region", "us-east-1", "--name", "never", "--table", "--json"])
    entry = json.loads(capsys.readouterr().out)
    assert code == 1
    assert entry["custom_data"]["boots"] == "false" and "amis" not in entry["custom_data"]
    assert entry["artifact_id"] == str(tmp_path / "disk.pvgrub.raw")
    assert json.loads(path.read_text())["builds"][-1] == entry


@pytest.mark.slow
def test_s3_backed_registration(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--register --s3-bucket: the converted image is bundled (ec2-bundle-image format), uploaded and registered
    with its ImageLocation; the manifest records the AMI and the bundle's location."""
    from tests.test_aws_bundle import _identity

    image = tmp_path / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(stock_whole()), str(image)], check=True)
    path = _manifest(tmp_path, [{"name": "s", "builder_type": "file", "files": [{"name": str(image), "size": 1}],
                                 "packer_run_uuid": "r7"}])
    user = _identity(tmp_path, "user")
    with moto_endpoint() as url:
        for k, v in {"PVBUILD_EC2_ENDPOINT": url, "PVBUILD_EBS_ENDPOINT": url, "PVBUILD_S3_ENDPOINT": url,
                     "PACKER_BUILD_NAME": "s", "PACKER_RUN_UUID": "r7"}.items():
            monkeypatch.setenv(k, v)
        code = main(["packer", "--manifest", str(path), "--register", "--region", "eu-west-1", "--name",
                     "pvbuild-packer-s3", "--table", "--s3-bucket", "pvbuild-packer-{region}", "--s3-prefix", "p",
                     "-u", "123456789012", "-c", str(user.cert), "-k", str(user.key), "--json"])
        entry = json.loads(capsys.readouterr().out)
        assert code == 0
        region, _, ami = entry["artifact_id"].partition(":")
        assert region == "eu-west-1" and ami.startswith("ami-")
        assert entry["custom_data"]["image_locations"] == \
            "eu-west-1:pvbuild-packer-eu-west-1/p/disk.pvgrub.raw.manifest.xml"
        assert entry["custom_data"]["kernel_ids"] == "eu-west-1:aki-dc9ed9af"
        s3 = boto3.client("s3", region_name="eu-west-1", endpoint_url=url)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="pvbuild-packer-eu-west-1")["Contents"]]
        assert "p/disk.pvgrub.raw.manifest.xml" in keys
