"""Upload an ec2-bundle-image bundle to S3 the way ec2-upload-bundle does, ready for RegisterImage.

Every part, then the manifest last (a manifest in S3 means a complete bundle), to ``bucket/prefix/`` with the
canned ACL ``aws-exec-read`` so that EC2 can read what it registers. Before the first byte is sent the manifest is
parsed and every part it lists is read once: present, a plain file name, the size S3 takes in one PUT, its SHA-1 the
manifest's. That pass also computes the MD5 each PUT carries as Content-MD5, so S3 itself refuses a part that changed
afterwards. The bucket is made if missing, in the region (LocationConstraint except in us-east-1), with
ObjectOwnership=ObjectWriter: buckets made the new default way (BucketOwnerEnforced) refuse every ACL, and EC2
cannot read a bundle without one. Parts go up in parallel (a bounded thread pool, each part streamed from its file),
each retried with exponential backoff and jitter on throttling, 5xx and connection errors.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import re
import threading
import xml.etree.ElementTree as ET
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvbuild.aws.bundle import BundleCheckFailed
from pvbuild.aws.certs import ec2_cert_for
from pvbuild.errors import EnvironmentProblem, UsageError

__all__ = ["ACL", "BucketAclsDisabled", "UploadEnvironmentError", "UploadError", "UploadResult", "ec2_cert_for",
           "upload_bundle"]

log = logging.getLogger(__name__)

ACL = "aws-exec-read"
MANIFEST_VERSION = "2007-10-10"
MAX_MANIFEST = 16 * 1024 * 1024  # a manifest with 100,000 parts is about 12 MiB
MAX_PUT = 5 * 1024**3  # S3's limit for one PUT
CHUNK = 1024 * 1024
RETRYABLE = {"SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "RequestThrottledException",
             "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException", "InternalError",
             "ServiceUnavailable", "ServiceUnavailableException", "BadDigest", "OperationAborted"}
# Answers that say the credentials, not the request, are wrong: an environment problem (exit 3).
CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
               "InvalidClientTokenId", "UnrecognizedClientException", "AllAccessDisabled"}
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class UploadError(UsageError):
    """The bundle or the bucket cannot be used as asked (exit 2); the message says what to change."""


class BucketAclsDisabled(UploadError):
    """The bucket enforces owner-only ACLs, so it cannot take the aws-exec-read ACL EC2 reads bundles through."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"bucket {bucket} has ACLs disabled (S3 Object Ownership 'BucketOwnerEnforced', the default for buckets "
            f"created since April 2023), so it cannot take the '{ACL}' ACL that lets EC2 read the bundle. Allow "
            f"object ACLs on it:\n  aws s3api put-bucket-ownership-controls --bucket {bucket} "
            f"--ownership-controls 'Rules=[{{ObjectOwnership=ObjectWriter}}]'\nor upload to a bucket that does not "
            f"exist yet (pvbuild creates it with ObjectOwnership=ObjectWriter).")
        self.bucket = bucket


class UploadEnvironmentError(EnvironmentProblem):
    """Credentials refused, permission missing, or S3 unreachable after every retry (exit 3)."""


@dataclass(frozen=True)
class UploadResult:
    bucket: str
    manifest_key: str
    image_location: str  # "bucket/prefix/NAME.manifest.xml", as RegisterImage's ImageLocation wants it
    parts: int
    bytes: int  # parts and manifest together


@dataclass(frozen=True)
class _Item:
    path: Path
    key: str
    size: int
    md5: bytes


# ---------------------------------------------------------------- the local bundle, checked before any upload

def _manifest_parts(manifest: Path) -> tuple[list[tuple[Path, str]], int | None]:
    """(part path, SHA-1 hex) in index order and the manifest's bundled_size; raises on anything malformed."""
    try:
        with manifest.open("rb") as f:
            raw = f.read(MAX_MANIFEST + 1)
    except OSError as exc:
        raise UploadError(f"manifest {manifest}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_MANIFEST:
        raise UploadError(f"manifest {manifest}: larger than {MAX_MANIFEST} bytes; not a bundle manifest")
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise UploadError(f"manifest {manifest}: has a DOCTYPE or ENTITY declaration; bundle manifests have none")
    try:
        root = ET.fromstring(raw)  # noqa: S314 - no DTD (checked above), bounded size
    except ET.ParseError as exc:
        raise UploadError(f"manifest {manifest}: not XML ({exc})") from exc
    if root.tag != "manifest":
        raise UploadError(f"manifest {manifest}: the root element is <{root.tag}>, not <manifest>")
    version = (root.findtext("version") or "").strip()
    if version != MANIFEST_VERSION:
        raise UploadError(f"manifest {manifest}: version {version or '(none)'!r}; pvbuild uploads version "
                          f"{MANIFEST_VERSION} manifests (what ec2-bundle-image and `pvbuild bundle` write)")
    parts_el = root.find("image/parts")
    if parts_el is None:
        raise UploadError(f"manifest {manifest}: no <image><parts>")
    by_index: dict[int, tuple[Path, str]] = {}
    for el in parts_el.iterfind("part"):
        index_text = el.get("index", "")
        filename = (el.findtext("filename") or "").strip()
        digest = (el.findtext("digest") or "").strip().lower()
        if not index_text.isdigit():
            raise UploadError(f"manifest {manifest}: part {filename!r} has index {index_text!r}, not a number")
        index = int(index_text)
        if index in by_index:
            raise UploadError(f"manifest {manifest}: part index {index} appears twice")
        if (not filename or filename in {".", ".."} or "/" in filename or "\\" in filename
                or any(ord(c) < 32 for c in filename) or filename == manifest.name):
            raise UploadError(f"manifest {manifest}: part {index} has file name {filename!r}; part names are plain "
                              "file names beside the manifest")
        if not re.fullmatch(r"[0-9a-f]{40}", digest):
            raise UploadError(f"manifest {manifest}: part {filename} has no SHA-1 digest")
        by_index[index] = (manifest.parent / filename, digest)
    if not by_index:
        raise UploadError(f"manifest {manifest}: lists no parts")
    if sorted(by_index) != list(range(len(by_index))):
        raise UploadError(f"manifest {manifest}: part indexes {sorted(by_index)} are not 0..{len(by_index) - 1}")
    count = parts_el.get("count")
    if count is not None and count.strip() != str(len(by_index)):
        raise UploadError(f"manifest {manifest}: <parts count={count!r}> but {len(by_index)} parts are listed")
    names = [p.name for p, _ in by_index.values()]
    if len(set(names)) != len(names):
        raise UploadError(f"manifest {manifest}: a part file name appears twice")
    bundled = (root.findtext("image/bundled_size") or "").strip()
    return [by_index[i] for i in range(len(by_index))], int(bundled) if bundled.isdigit() else None


def _hash_part(path: Path, want_sha1: str) -> tuple[int, bytes]:
    """(size, MD5) of one part after checking it is there, fits one PUT and has the manifest's SHA-1."""
    try:
        if not path.is_file():
            raise UploadError(f"part {path.name} is listed in the manifest but {path} is missing or not a file; "
                              "nothing was uploaded")
        size = path.stat().st_size
        if size > MAX_PUT:
            raise UploadError(f"part {path}: {size} bytes, more than S3 takes in one PUT ({MAX_PUT})")
        md5 = hashlib.md5()  # noqa: S324 - Content-MD5 is what S3 checks
        sha1 = hashlib.sha1()  # noqa: S324 - the bundle format's digest
        with path.open("rb") as f:
            while data := f.read(CHUNK):
                md5.update(data)
                sha1.update(data)
    except OSError as exc:
        raise UploadError(f"part {path}: {exc.strerror or exc}; nothing was uploaded") from exc
    if sha1.hexdigest() != want_sha1:
        raise BundleCheckFailed(f"part {path.name}: SHA-1 {sha1.hexdigest()} does not match the manifest's "
                                f"{want_sha1}; the bundle is damaged, nothing was uploaded (bundle it again)")
    return size, md5.digest()


def _key_prefix(prefix: str) -> str:
    parts = [p for p in prefix.split("/") if p]
    if any(p in {".", ".."} for p in parts):
        raise UploadError(f"prefix {prefix!r}: '.' and '..' are not allowed in S3 key prefixes for bundles")
    return "".join(f"{p}/" for p in parts)


# ---------------------------------------------------------------- S3

def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _environment(exc: Exception, what: str) -> UploadEnvironmentError:
    return UploadEnvironmentError(
        f"S3 refused {what}: {exc} (credentials come from boto3's normal chain: environment, profile or instance "
        "role; check that they are valid and allowed s3:CreateBucket, s3:GetBucketLocation, "
        "s3:GetBucketOwnershipControls, s3:PutObject and s3:PutObjectAcl)")


def _refused(exc: Exception, what: str) -> UploadEnvironmentError:
    """An S3 answer pvbuild has no special advice for: say what was refused and S3's own words."""
    return UploadEnvironmentError(f"S3 refused {what}: {exc}")


def _region_of(location: str | None) -> str:
    """GetBucketLocation's answer as a region: none means us-east-1, 'EU' is eu-west-1's old name."""
    if not location:
        return "us-east-1"
    return "eu-west-1" if location == "EU" else location


def _ensure_bucket(s3: Any, bucket: str, region: str, create: bool) -> None:
    from botocore.exceptions import ClientError

    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ClientError as exc:
        code = _code(exc)
        if code not in {"NoSuchBucket", "404"}:
            if code in CREDENTIALS:
                raise _environment(exc, f"access to bucket {bucket}") from exc
            if code in {"AccessDenied", "403"}:
                raise UploadError(f"bucket {bucket}: access denied. It may belong to another account (bucket names "
                                  "are global: choose another), or your credentials lack s3:GetBucketLocation on "
                                  "it") from exc
            raise _refused(exc, f"GetBucketLocation on {bucket}") from exc
        if not create:
            raise UploadError(f"bucket {bucket} does not exist; create it in {region} with ObjectOwnership="
                              "ObjectWriter, or drop --no-create-bucket") from exc
        _create_bucket(s3, bucket, region)
        return
    actual = _region_of(location)
    if actual != region:
        raise UploadError(f"bucket {bucket} is in {actual}, not {region}: EC2 registers a bundle only from a bucket "
                          f"in the AMI's own region; use --region {actual} or another bucket")


def _create_bucket(s3: Any, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    kwargs: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": "ObjectWriter"}
    if region != "us-east-1":  # us-east-1 refuses its own name as a LocationConstraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    log.info("creating bucket %s in %s", bucket, region)
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        code = _code(exc)
        if code == "BucketAlreadyOwnedByYou":
            return
        if code == "BucketAlreadyExists":
            raise UploadError(f"bucket {bucket}: the name is taken by another account (bucket names are global); "
                              "choose another") from exc
        if code in {"InvalidBucketName", "InvalidLocationConstraint", "IllegalLocationConstraintException"}:
            raise UploadError(f"bucket {bucket} in {region}: S3 says {code}: {exc}") from exc
        if code in CREDENTIALS or code in {"AccessDenied", "403"}:
            raise _environment(exc, f"creating bucket {bucket}") from exc
        raise _refused(exc, f"creating bucket {bucket} in {region}") from exc


def _check_acls_allowed(s3: Any, bucket: str) -> None:
    """Fail before any upload when the bucket's Object Ownership rejects ACLs (BucketOwnerEnforced)."""
    from botocore.exceptions import ClientError

    try:
        controls = s3.get_bucket_ownership_controls(Bucket=bucket)
    except ClientError as exc:
        # No controls at all: an older bucket, ACLs work. No permission to look: the first PUT will tell.
        if _code(exc) in {"OwnershipControlsNotFoundError", "AccessDenied", "403", "NotImplemented"}:
            return
        if _code(exc) in CREDENTIALS:
            raise _environment(exc, f"access to bucket {bucket}") from exc
        raise _refused(exc, f"GetBucketOwnershipControls on {bucket}") from exc
    rules = controls.get("OwnershipControls", {}).get("Rules", [])
    if any(rule.get("ObjectOwnership") == "BucketOwnerEnforced" for rule in rules):
        raise BucketAclsDisabled(bucket)


def _etag_matches(response: dict[str, Any], md5: bytes) -> bool:
    """A single-part PUT's ETag is the object's MD5, except under SSE-KMS or SSE-C where it is not."""
    if response.get("ServerSideEncryption") in {"aws:kms", "aws:kms:dsse"} or response.get("SSECustomerAlgorithm"):
        return True
    return str(response.get("ETag", "")).strip('"').lower() == md5.hex()


def _put(s3: Any, bucket: str, item: _Item, retries: int, stop: threading.Event) -> int:
    """PUT one file with Content-MD5 and the ACL, retried; returns how many retries it took."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    content_md5 = base64.b64encode(item.md5).decode()
    for attempt in range(retries + 1):
        if stop.is_set():
            raise UploadError("upload stopped after another part failed")
        try:
            body = item.path.open("rb")
        except OSError as exc:
            raise UploadError(f"{item.path}: {exc.strerror or exc}") from exc
        try:
            with body:
                response = s3.put_object(Bucket=bucket, Key=item.key, Body=body, ACL=ACL, ContentMD5=content_md5,
                                         ContentLength=item.size)
            if _etag_matches(response, item.md5):
                return attempt
            reason = f"ETag {response.get('ETag')} is not the MD5 {item.md5.hex()} of what was sent"
            if attempt == retries:
                raise UploadEnvironmentError(f"s3://{bucket}/{item.key}: {reason}, after {retries + 1} attempts")
        except ClientError as exc:
            code = _code(exc)
            if code == "AccessControlListNotSupported":
                raise BucketAclsDisabled(bucket) from exc
            if code in CREDENTIALS or code in {"AccessDenied", "403"}:
                raise _environment(exc, f"s3://{bucket}/{item.key}") from exc
            if code == "NoSuchBucket" and attempt == retries:  # retried: a new bucket can take a moment to show
                raise UploadError(f"bucket {bucket} does not exist (deleted during the upload?)") from exc
            if not (code in RETRYABLE or code == "NoSuchBucket" or _status(exc) >= 500 or _status(exc) == 429):
                raise _refused(exc, f"s3://{bucket}/{item.key}") from exc
            if attempt == retries:
                if code == "BadDigest":
                    raise UploadError(f"{item.path}: S3 says its content does not match the MD5 computed before "
                                      "the upload; did the file change? (bundle again)") from exc
                raise UploadEnvironmentError(f"s3://{bucket}/{item.key}: {code} after {retries + 1} attempts; "
                                             "S3 is throttling or failing, try again later") from exc
            reason = f"{code} (HTTP {_status(exc)})"
        except (BotoConnectionError, HTTPClientError) as exc:
            if attempt == retries:
                raise UploadEnvironmentError(f"s3://{bucket}/{item.key}: cannot reach S3 after {retries + 1} "
                                             f"attempts: {exc}") from exc
            reason = f"connection error: {exc}"
        delay = min(0.25 * 2**attempt, 20.0) * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not secrets
        log.warning("s3://%s/%s: %s; retry %d of %d in %.1fs", bucket, item.key, reason, attempt + 1, retries, delay)
        if stop.wait(delay):
            raise UploadError("upload stopped after another part failed")
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- the one entry point

def upload_bundle(s3: Any, manifest: Path, bucket: str, prefix: str = "", *, region: str, workers: int = 4,
                  retries: int = 5, create_bucket: bool = True) -> UploadResult:
    """Upload the bundle `manifest` describes to s3://bucket/prefix/, parts first and the manifest last."""
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UploadError(f"bucket {bucket!r}: not a valid S3 bucket name (3-63 characters: lowercase letters, "
                          "digits, dots and hyphens)")
    if workers < 1 or retries < 0:
        raise UploadError(f"workers {workers} and retries {retries}: need workers >= 1 and retries >= 0")
    key_prefix = _key_prefix(prefix)
    listed, bundled_size = _manifest_parts(manifest)

    # Every part present and intact before the first request: a bad bundle uploads nothing.
    with ThreadPoolExecutor(max_workers=min(workers, 4), thread_name_prefix="bundle-hash") as pool:
        hashed = list(pool.map(lambda entry: _hash_part(*entry), listed))
    items = [_Item(path, key_prefix + path.name, size, md5) for (path, _), (size, md5) in zip(listed, hashed,
                                                                                                strict=True)]
    parts_bytes = sum(item.size for item in items)
    if bundled_size is not None and bundled_size != parts_bytes:
        raise UploadError(f"manifest {manifest}: <bundled_size> {bundled_size} but the parts hold {parts_bytes} "
                          "bytes; nothing was uploaded")
    manifest_size, manifest_md5 = manifest.stat().st_size, hashlib.md5(manifest.read_bytes()).digest()  # noqa: S324
    manifest_item = _Item(manifest, key_prefix + manifest.name, manifest_size, manifest_md5)

    _ensure_bucket(s3, bucket, region, create_bucket)
    _check_acls_allowed(s3, bucket)

    stop = threading.Event()

    def job(item: _Item) -> int:
        try:
            return _put(s3, bucket, item, retries, stop)
        except BaseException:
            stop.set()  # at once: the other parts stop at their next attempt, queued ones never send a byte
            raise

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-put") as pool:
        futures: list[Future[int]] = [pool.submit(job, item) for item in items]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # Ctrl-C: no new part starts; those in flight end their current request
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        if stop.is_set():
            for f in futures:
                f.cancel()
            wait(futures)
            errors = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
            # The first real cause, not a part that merely stopped because of it.
            raise next((e for e in errors if not str(e).startswith("upload stopped")), errors[0])
        retried = sum(f.result() for f in futures)
    retried += _put(s3, bucket, manifest_item, retries, stop)  # last: its presence means a complete bundle
    if retried:
        log.info("s3://%s/%s: uploaded with %d retried requests", bucket, manifest_item.key, retried)
    return UploadResult(bucket=bucket, manifest_key=manifest_item.key,
                        image_location=f"{bucket}/{manifest_item.key}", parts=len(items),
                        bytes=parts_bytes + manifest_size)
