"""pvbuild.aws.upload (ec2-upload-bundle) against a real moto S3 server, and the shipped EC2 certificates.

moto's gaps, handled here: it stores the canned ACL aws-exec-read as owner-only (its get_canned_acl has a TODO
for EC2's READ grant), so the tests check the x-amz-acl header of every captured PutObject and that no grant is
ever public; it does not enforce BucketOwnerEnforced on PUTs with an ACL, so the pre-flight
GetBucketOwnershipControls is what the test drives (and AccessControlListNotSupported on a PUT is injected to drive
the other path); it does not verify Content-MD5, so the header itself is checked against the file's MD5.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from pvbuild.aws.bundle import BundleCheckFailed, BundleResult, bundle
from pvbuild.aws.certs import CERT_FILES, HERE, NoEc2Certificate
from pvbuild.aws.upload import (
    ACL,
    BucketAclsDisabled,
    UploadEnvironmentError,
    UploadError,
    ec2_cert_for,
    upload_bundle,
)
from pvbuild.errors import EXIT_CHECK_FAILED, EXIT_ENVIRONMENT, EXIT_USAGE
from tests.motoserver import ENV, moto_endpoint
from tests.test_aws_bundle import ACCOUNT, Identity, _identity, _sparse_image

RUN = [sys.executable, "-m", "pvbuild"]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    return _identity(tmp_path_factory.mktemp("keys"), "user")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, user: Identity) -> BundleResult:
    """A real bundle of a small sparse image (about 3 MiB of data in 512 KiB parts), for EC2's shipped cert."""
    d = tmp_path_factory.mktemp("bundle")
    image = _sparse_image(d / "disk.img")
    out = d / "out"
    out.mkdir()
    return bundle(image, user_cert=user.cert, user_key=user.key, ec2_cert=ec2_cert_for("eu-west-1"), user=ACCOUNT,
                  arch="x86_64", destination=out, prefix="pvimage", kernel_id="aki-dc9ed9af",
                  part_size=512 * 1024)


@pytest.fixture
def copy(made: BundleResult, tmp_path: Path) -> Path:
    """A private copy of the bundle a test may damage; returns its manifest."""
    for f in [made.manifest, *made.parts]:
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / made.manifest.name


_bucket_serial = iter(range(1, 10_000))


def _bucket() -> str:
    return f"pvbuild-test-{os.getpid()}-{next(_bucket_serial)}"


@dataclass
class Recorder:
    """Every S3 call the client makes, in order, with the PutObject requests as sent (botocore event hooks)."""

    events: list[tuple[str, str, str]] = field(default_factory=list)  # (start|end, operation, key)
    puts: dict[str, Any] = field(default_factory=dict)  # key -> the last prepared PutObject request
    attempts: dict[str, int] = field(default_factory=dict)  # key -> PutObject calls
    inject: Callable[[str, int], dict[str, Any] | None] | None = None  # (key, attempt) -> error to answer with
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, s3: Any) -> None:
        s3.meta.events.register("before-parameter-build.s3.*", self._params)
        s3.meta.events.register("before-call.s3.*", self._before)
        s3.meta.events.register("after-call.s3.*", self._after)
        s3.meta.events.register("before-send.s3.PutObject", self._send)

    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["pv_key"] = params.get("Key", "")

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        key = context.get("pv_key", "")
        with self.lock:
            self.events.append(("start", model.name, key))
            if model.name != "PutObject":
                return None
            attempt = self.attempts.get(key, 0)
            self.attempts[key] = attempt + 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        error = self.inject(key, attempt) if self.inject else None
        if error is None:
            return None
        status = int(error["ResponseMetadata"]["HTTPStatusCode"])
        return AWSResponse("http://injected", status, {}, None), error

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.events.append(("end", model.name, context.get("pv_key", "")))
            self.in_flight -= model.name == "PutObject"

    def _send(self, request: Any, **_: Any) -> None:
        key = request.url.split("?", 1)[0].split("/", 4)[-1]
        with self.lock:
            self.puts[key] = request

    def operations(self) -> list[str]:
        return [op for kind, op, _ in self.events if kind == "start"]


def _error(code: str, status: int) -> dict[str, Any]:
    return {"Error": {"Code": code, "Message": f"injected {code}"}, "ResponseMetadata": {"HTTPStatusCode": status}}


def _client(endpoint: str, region: str, recorder: Recorder | None = None) -> Any:
    s3 = boto3.client("s3", region_name=region, endpoint_url=endpoint)
    if recorder is not None:
        recorder.attach(s3)
    return s3


def _md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()  # noqa: S324


# ---------------------------------------------------------------- upload

def test_upload_real_bundle_parts_then_manifest(endpoint: str, made: BundleResult) -> None:
    """A fresh bucket in eu-west-1: created there with ACLs allowed; every part, then the manifest, each with the
    aws-exec-read ACL and Content-MD5; the ImageLocation RegisterImage wants."""
    region, bucket, rec = "eu-west-1", _bucket(), Recorder()
    s3 = _client(endpoint, region, rec)
    result = upload_bundle(s3, made.manifest, bucket, "/images//pv/", region=region, workers=3)

    manifest_key = "images/pv/pvimage.manifest.xml"
    assert result.bucket == bucket and result.manifest_key == manifest_key
    assert result.image_location == f"{bucket}/{manifest_key}"
    assert result.parts == len(made.parts) >= 5
    assert result.bytes == made.bundled_size + made.manifest.stat().st_size

    check = _client(endpoint, region)
    assert check.get_bucket_location(Bucket=bucket)["LocationConstraint"] == region
    assert rec.operations().index("CreateBucket") < rec.operations().index("PutObject")
    rules = check.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "ObjectWriter"}]

    listed = check.list_objects_v2(Bucket=bucket)["Contents"]
    local = {f"images/pv/{p.name}": p for p in [*made.parts, made.manifest]}
    assert sorted(o["Key"] for o in listed) == sorted(local)
    for key, path in local.items():
        assert check.get_object(Bucket=bucket, Key=key)["Body"].read() == path.read_bytes()

    # The manifest's PUT starts only after every part's PUT has ended.
    ends = [i for i, (kind, op, key) in enumerate(rec.events) if kind == "end" and op == "PutObject"
            and key != manifest_key]
    manifest_start = rec.events.index(("start", "PutObject", manifest_key))
    assert len(ends) == len(made.parts) and max(ends) < manifest_start
    assert [k for kind, op, k in rec.events if op == "PutObject" and kind == "start"][-1] == manifest_key
    assert 1 <= rec.most_in_flight <= 3  # the pool is bounded by `workers`

    # Every PUT as sent: the canned ACL and the file's own MD5 as Content-MD5.
    assert sorted(rec.puts) == sorted(local)
    for key, request in rec.puts.items():
        assert request.headers["x-amz-acl"] == ACL.encode() or request.headers["x-amz-acl"] == ACL
        md5 = request.headers["Content-MD5"]
        assert (md5.decode() if isinstance(md5, bytes) else md5) == _md5_b64(local[key])

    # moto keeps aws-exec-read as owner FULL_CONTROL only (a TODO in moto); on AWS it adds READ for EC2. Either
    # way the owner keeps full control and nothing is ever readable by everyone.
    for key in local:
        grants = check.get_object_acl(Bucket=bucket, Key=key)["Grants"]
        full = [g for g in grants if g["Permission"] == "FULL_CONTROL"]
        assert len(full) == 1 and full[0]["Grantee"]["Type"] == "CanonicalUser"
        for g in grants:
            if g not in full:
                assert g["Permission"] == "READ" and "URI" not in g["Grantee"], g  # EC2's READ, never a group


def test_us_east_1_bucket_has_no_location_constraint(endpoint: str, made: BundleResult) -> None:
    bucket, seen = _bucket(), []
    s3 = _client(endpoint, "us-east-1")
    s3.meta.events.register("before-parameter-build.s3.CreateBucket",
                            lambda params, **_: seen.append(dict(params)))
    upload_bundle(s3, made.manifest, bucket, region="us-east-1")
    assert len(seen) == 1 and "CreateBucketConfiguration" not in seen[0]
    assert seen[0]["ObjectOwnership"] == "ObjectWriter"
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] in (None, "")


def test_existing_bucket_is_reused_and_checked(endpoint: str, made: BundleResult) -> None:
    region, bucket = "ap-northeast-1", _bucket()
    s3 = _client(endpoint, region)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region},
                     ObjectOwnership="BucketOwnerPreferred")
    result = upload_bundle(s3, made.manifest, bucket, region=region, create_bucket=False)
    assert result.image_location == f"{bucket}/pvimage.manifest.xml"
    # The same bucket asked for from another region: RegisterImage there could not read it.
    with pytest.raises(UploadError, match=rf"bucket {bucket} is in ap-northeast-1, not eu-west-1"):
        upload_bundle(_client(endpoint, "eu-west-1"), made.manifest, bucket, region="eu-west-1")


def test_missing_bucket_without_create(endpoint: str, made: BundleResult) -> None:
    rec = Recorder()
    with pytest.raises(UploadError, match="does not exist") as err:
        upload_bundle(_client(endpoint, "us-west-2", rec), made.manifest, _bucket(), region="us-west-2",
                      create_bucket=False)
    assert err.value.exit_code == EXIT_USAGE
    assert "PutObject" not in rec.operations() and "CreateBucket" not in rec.operations()


def test_bucket_owner_enforced_is_a_clear_error(endpoint: str, made: BundleResult) -> None:
    """ACLs disabled on the bucket: the pre-flight GetBucketOwnershipControls says so before any PUT."""
    region, bucket, rec = "eu-west-1", _bucket(), Recorder()
    s3 = _client(endpoint, region, rec)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]})
    with pytest.raises(BucketAclsDisabled) as err:
        upload_bundle(s3, made.manifest, bucket, region=region)
    message = str(err.value)
    assert f"bucket {bucket}" in message and "BucketOwnerEnforced" in message
    assert f"aws s3api put-bucket-ownership-controls --bucket {bucket}" in message and "ObjectWriter" in message
    assert err.value.exit_code == EXIT_USAGE
    assert "GetBucketOwnershipControls" in rec.operations() and "PutObject" not in rec.operations()
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_acl_not_supported_on_put_is_the_same_clear_error(endpoint: str, made: BundleResult) -> None:
    """Where the pre-flight cannot see it (no permission to read the controls), S3's refusal of the ACL on the
    PUT gives the same message, and the manifest is never sent."""
    region, bucket = "eu-west-1", _bucket()
    rec = Recorder(inject=lambda key, attempt: _error("AccessControlListNotSupported", 400))
    with pytest.raises(BucketAclsDisabled, match="put-bucket-ownership-controls"):
        upload_bundle(_client(endpoint, region, rec), made.manifest, bucket, region=region, retries=3)
    assert all(n == 1 for n in rec.attempts.values())  # not retried
    assert "pvimage.manifest.xml" not in rec.attempts


def test_throttled_part_is_retried(endpoint: str, made: BundleResult, caplog: pytest.LogCaptureFixture) -> None:
    region, bucket = "us-east-1", _bucket()
    target = made.parts[2].name
    rec = Recorder(inject=lambda key, attempt: _error("SlowDown", 503) if key == target and attempt == 0 else None)
    s3 = _client(endpoint, region, rec)
    with caplog.at_level(logging.INFO, logger="pvbuild.aws.upload"):
        result = upload_bundle(s3, made.manifest, bucket, region=region)
    assert result.parts == len(made.parts)
    assert rec.attempts[target] == 2
    assert all(n == 1 for key, n in rec.attempts.items() if key != target)
    assert s3.get_object(Bucket=bucket, Key=target)["Body"].read() == made.parts[2].read_bytes()
    retries = [r for r in caplog.records if "SlowDown" in r.getMessage()]
    assert len(retries) == 1 and "retry 1 of 5" in retries[0].getMessage()
    assert any("1 retried requests" in r.getMessage() for r in caplog.records)


def test_a_part_that_keeps_failing_stops_the_upload_before_the_manifest(endpoint: str, made: BundleResult) -> None:
    region, bucket = "us-east-1", _bucket()
    target = made.parts[0].name
    rec = Recorder(inject=lambda key, attempt: _error("InternalError", 500) if key == target else None)
    s3 = _client(endpoint, region, rec)
    with pytest.raises(UploadEnvironmentError, match=rf"{target}: InternalError after 3 attempts") as err:
        upload_bundle(s3, made.manifest, bucket, region=region, retries=2, workers=2)
    assert err.value.exit_code == EXIT_ENVIRONMENT
    assert rec.attempts[target] == 3
    assert "pvimage.manifest.xml" not in rec.attempts
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "pvimage.manifest.xml" not in keys


@pytest.mark.parametrize(("code", "status", "message"), [
    ("InvalidAccessKeyId", 403, "credentials come from boto3's normal chain"),
    ("InvalidRequest", 400, "S3 refused s3://"),
])
def test_refusals_are_not_retried(endpoint: str, made: BundleResult, code: str, status: int, message: str) -> None:
    """Wrong credentials or a request S3 will never take: no retries, exit 3 with S3's words, no manifest."""
    rec = Recorder(inject=lambda key, attempt: _error(code, status))
    with pytest.raises(UploadEnvironmentError, match=message) as err:
        upload_bundle(_client(endpoint, "us-east-1", rec), made.manifest, _bucket(), region="us-east-1", workers=1)
    assert err.value.exit_code == EXIT_ENVIRONMENT
    assert list(rec.attempts.values()) == [1]  # the first part, once; nothing after it started
    assert "pvimage.manifest.xml" not in rec.attempts


def test_missing_part_fails_before_any_request(endpoint: str, copy: Path) -> None:
    (copy.parent / "pvimage.part.03").unlink()
    rec = Recorder()
    with pytest.raises(UploadError, match=r"part pvimage.part.03 is listed in the manifest but .* missing") as err:
        upload_bundle(_client(endpoint, "us-east-1", rec), copy, _bucket(), region="us-east-1")
    assert err.value.exit_code == EXIT_USAGE
    assert rec.events == []  # not even the bucket was looked at


def test_damaged_part_fails_before_any_request(endpoint: str, copy: Path) -> None:
    part = copy.parent / "pvimage.part.01"
    data = bytearray(part.read_bytes())
    data[100] ^= 1
    part.write_bytes(bytes(data))
    rec = Recorder()
    with pytest.raises(BundleCheckFailed, match=r"pvimage\.part\.01: SHA-1") as err:
        upload_bundle(_client(endpoint, "us-east-1", rec), copy, _bucket(), region="us-east-1")
    assert err.value.exit_code == EXIT_CHECK_FAILED
    assert rec.events == []


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("<version>2007-10-10</version>", "<version>2007-08-29</version>"), "version '2007-08-29'"),
    (lambda t: t.replace("<filename>pvimage.part.00</filename>", "<filename>../pvimage.part.00</filename>"),
     "plain file names"),
    (lambda t: t.replace('index="1"', 'index="0"'), "appears twice"),
    (lambda t: t[: len(t) // 2], "not XML"),
    (lambda t: '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "x">]>' + t.split("?>", 1)[1], "DOCTYPE"),
    (lambda t: t.replace("<bundled_size>", "<bundled_size>1"), "bundled_size"),
])
def test_bad_manifest_fails_before_any_request(endpoint: str, copy: Path, edit: Callable[[str], str],
                                               message: str) -> None:
    copy.write_text(edit(copy.read_text()))
    rec = Recorder()
    with pytest.raises(UploadError, match=message):
        upload_bundle(_client(endpoint, "us-east-1", rec), copy, _bucket(), region="us-east-1")
    assert rec.events == []


def test_bad_arguments(made: BundleResult) -> None:
    with pytest.raises(UploadError, match="not a valid S3 bucket name"):
        upload_bundle(None, made.manifest, "Bad_Bucket", region="us-east-1")
    with pytest.raises(UploadError, match=re.escape("'..'")):
        upload_bundle(None, made.manifest, "good-bucket", "a/../b", region="us-east-1")
    with pytest.raises(UploadError, match=r"(?i)no such file"):
        upload_bundle(None, made.manifest.with_name("nope.manifest.xml"), "good-bucket", region="us-east-1")


# ---------------------------------------------------------------- shipped EC2 certificates

def test_shipped_certificates_are_x509_rsa() -> None:
    now = datetime.datetime.now(datetime.UTC)
    readme = (HERE / "README.txt").read_text()
    assert (HERE / "LICENSE-ASL.txt").read_text().startswith("Amazon Software License")
    assert "0f23e456ed42d18d3ee33784f2ecaa261caaa6e5" in readme
    for name in CERT_FILES:
        path = HERE / name
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        key = cert.public_key()
        assert isinstance(key, RSAPublicKey), name
        assert key.key_size >= 1024
        assert hashlib.sha256(path.read_bytes()).hexdigest() in readme, f"{name}: README.txt's digest is stale"
        if cert.not_valid_after_utc < now:  # shipped anyway: EC2 decrypts with the matching key; noted in README
            assert f"{name:<24} " in readme and str(cert.not_valid_after_utc.date()) in readme, name


@pytest.mark.parametrize(("region", "name"), [
    ("us-east-1", "cert-ec2.pem"), ("eu-west-1", "cert-ec2.pem"), ("ap-northeast-1", "cert-ec2.pem"),
    ("us-gov-west-1", "cert-ec2-gov.pem"), ("us-gov-east-1", "cert-ec2-gov.pem"),
    ("cn-north-1", "cert-ec2-cn-north-1.pem"), ("cn-northwest-1", "cert-ec2-cn-north-1.pem"),
])
def test_ec2_cert_for_region(region: str, name: str) -> None:
    assert ec2_cert_for(region) == HERE / name
    assert ec2_cert_for(region).is_file()


def test_ec2_cert_for_unknown_or_opt_in_region() -> None:
    with pytest.raises(NoEc2Certificate, match="not an AWS region name"):
        ec2_cert_for("mars")
    with pytest.raises(NoEc2Certificate, match="--ec2cert") as err:
        ec2_cert_for("af-south-1")
    assert err.value.exit_code == EXIT_USAGE


# ---------------------------------------------------------------- CLI

def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PVBUILD_"))}
    env.update(ENV)
    env.update({"AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}, **extra)
    return env


def test_cli_upload(endpoint: str, made: BundleResult, copy: Path) -> None:
    bucket = _bucket()
    args = [*RUN, "upload", str(made.manifest), "--bucket", bucket, "--prefix", "pv", "--region", "eu-west-1"]
    out = subprocess.run(args, capture_output=True, text=True, check=False, env=_env(PVBUILD_S3_ENDPOINT=endpoint))
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{bucket}/pv/pvimage.manifest.xml\n"
    out = subprocess.run([*args, "--json", "--no-create-bucket"], capture_output=True, text=True, check=False,
                         env=_env(PVBUILD_S3_ENDPOINT=endpoint))
    assert out.returncode == 0, out.stderr
    assert f'"image_location": "{bucket}/pv/pvimage.manifest.xml"' in out.stdout

    copy.write_text("<manifest>")
    bad = subprocess.run([*RUN, "upload", str(copy), "--bucket", bucket, "--region", "eu-west-1"],
                         capture_output=True, text=True, check=False, env=_env(PVBUILD_S3_ENDPOINT=endpoint))
    assert bad.returncode == EXIT_USAGE and "not XML" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_upload_without_endpoint_or_credentials(made: BundleResult) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    args = [*RUN, "upload", str(made.manifest), "--bucket", _bucket(), "--region", "us-east-1"]
    out = subprocess.run(args, capture_output=True, text=True, check=False, env=_env(PVBUILD_S3_ENDPOINT=closed),
                         timeout=120)
    assert out.returncode == EXIT_ENVIRONMENT, out.stderr
    assert "Traceback" not in out.stderr
    env = _env(PVBUILD_S3_ENDPOINT=closed)
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        env.pop(k)
    out = subprocess.run(args, capture_output=True, text=True, check=False, env=env, timeout=120)
    assert out.returncode == EXIT_ENVIRONMENT, out.stderr
    assert "credentials" in out.stderr and "Traceback" not in out.stderr


def test_cli_bundle_uses_the_shipped_cert_for_region(tmp_path: Path, user: Identity) -> None:
    image = _sparse_image(tmp_path / "disk.raw", regions=2)
    base = [*RUN, "bundle", str(image), "-c", str(user.cert), "-k", str(user.key), "-u", ACCOUNT]
    for region, bits in (("us-east-1", 1024), ("cn-north-1", 2048)):
        dest = tmp_path / region
        out = subprocess.run([*base, "-d", str(dest), "--region", region], capture_output=True, text=True,
                             check=False)
        assert out.returncode == 0, out.stderr
        text = Path(out.stdout.strip()).read_text()
        ec2_key = text.split("<ec2_encrypted_key", 1)[1].split(">", 1)[1].split("<", 1)[0]
        assert len(ec2_key) == bits // 4  # RSA ciphertext as hex: the shipped cert's key size
    out = subprocess.run([*base, "-d", str(tmp_path / "x"), "--region", "af-south-1"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == EXIT_USAGE and "--ec2cert" in out.stderr and "Traceback" not in out.stderr
