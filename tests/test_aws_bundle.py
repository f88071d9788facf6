"""pvbuild.aws.bundle: the ec2-bundle-image format, checked against the reference shell pipeline (openssl, gunzip,
GNU tar) and against pvbuild's own unbundle."""

from __future__ import annotations

import datetime
import hashlib
import os
import random
import re
import shutil
import subprocess
import tracemalloc
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pvbuild.aws.bundle import (
    BundleCheckFailed,
    BundleError,
    BundleResult,
    bundle,
    part_name,
    unbundle,
)
from pvbuild.errors import EXIT_CHECK_FAILED, EXIT_USAGE

needs_tools = pytest.mark.skipif(not all(shutil.which(t) for t in ("openssl", "tar", "gunzip")),
                                 reason="openssl, GNU tar and gunzip are needed for the reference pipeline")

MIB = 1024 * 1024
IMAGE_SIZE = 32 * MIB
ACCOUNT = "123456789012"

REFERENCE_ORDER = [
    "manifest", "version", "bundler", "name", "version", "release",
    "machine_configuration", "architecture", "block_device_mapping",
    "mapping", "virtual", "device", "mapping", "virtual", "device", "kernel_id",
    "image", "name", "user", "type", "digest", "size", "bundled_size", "ec2_encrypted_key", "user_encrypted_key",
    "ec2_encrypted_iv", "user_encrypted_iv", "parts",
]


@dataclass(frozen=True)
class Identity:
    key: Path
    cert: Path
    pub: Path


def _identity(directory: Path, name: str) -> Identity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    ident = Identity(directory / f"{name}.key", directory / f"{name}.pem", directory / f"{name}-pub.pem")
    ident.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    ident.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ident.pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    return ident


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Identity, Identity]:
    d = tmp_path_factory.mktemp("keys")
    return _identity(d, "user"), _identity(d, "ec2")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(MIB):
            h.update(data)
    return h.hexdigest()


def _sparse_image(path: Path, *, regions: int = 30, end_with_data: bool = False, chunk: int = 100 * 1024) -> Path:
    """A 32 MiB sparse image with `regions` scattered data regions of random bytes (about 3 MiB for 30)."""
    rng = random.Random(4)  # noqa: S311 - layout only
    with path.open("wb") as f:
        f.truncate(IMAGE_SIZE)
        for i in range(regions):
            f.seek(i * (IMAGE_SIZE // regions) + rng.randrange(0, 16) * 4096)
            f.write(os.urandom(chunk + rng.randrange(0, 4096)))
        if end_with_data:
            f.seek(IMAGE_SIZE - 5000)
            f.write(os.urandom(5000))
    return path


def _bundle(tmp_path: Path, keys: tuple[Identity, Identity], image: Path, **kw: object) -> BundleResult:
    user, ec2 = keys
    out = tmp_path / "bundle"
    out.mkdir(exist_ok=True)
    return bundle(image, user_cert=user.cert, user_key=user.key, ec2_cert=ec2.cert, user=ACCOUNT, arch="x86_64",
                  destination=out, part_size=512 * 1024, **kw)  # type: ignore[arg-type]


def _openssl_decrypt_hex(key: Path, hex_cipher: str, tmp: Path) -> str:
    blob = tmp / "cipher.bin"
    blob.write_bytes(bytes.fromhex(hex_cipher))
    out = subprocess.run(["openssl", "pkeyutl", "-decrypt", "-inkey", str(key), "-in", str(blob)],
                         capture_output=True, check=True).stdout.decode()
    assert re.fullmatch(r"[0-9a-f]{32}", out), out  # key and IV travel as 32-char lowercase hex text
    return out


def _reference_pipeline(manifest: Path, key: Path, tmp: Path, tail: str) -> bytes:
    root = ET.parse(manifest).getroot()  # noqa: S314
    aes_key = _openssl_decrypt_hex(key, root.findtext("image/user_encrypted_key") or "", tmp)
    aes_iv = _openssl_decrypt_hex(key, root.findtext("image/user_encrypted_iv") or "", tmp)
    parts = " ".join(f"'{manifest.parent / (p.findtext('filename') or '')}'"
                     for p in root.iterfind("image/parts/part"))
    cmd = f"set -o pipefail; cat {parts} | openssl enc -d -aes-128-cbc -K {aes_key} -iv {aes_iv} | gunzip | {tail}"
    return subprocess.run(["bash", "-c", cmd], capture_output=True, check=True, cwd=tmp).stdout


def test_part_names_pad_to_the_part_count() -> None:
    assert part_name("img", 0, 3) == "img.part.00"
    assert part_name("img", 7, 120) == "img.part.007"


@needs_tools
def test_reference_pipeline_round_trip(tmp_path: Path, keys: tuple[Identity, Identity]) -> None:
    user, ec2 = keys
    image = _sparse_image(tmp_path / "disk.img")
    res = _bundle(tmp_path, keys, image, prefix="pvimage", kernel_id="aki-5c21674b")
    assert res.manifest.name == "pvimage.manifest.xml"
    assert len(res.parts) >= 5
    assert [p.name for p in res.parts] == [f"pvimage.part.{i:02d}" for i in range(len(res.parts))]
    assert res.size == IMAGE_SIZE
    # sparse-aware: the holes are not in the tar (3 MiB of random data, 32 MiB image)
    assert res.bundled_size < 4 * MIB
    assert res.bundled_size == sum(p.stat().st_size for p in res.parts)
    assert not [p for p in res.manifest.parent.iterdir() if p.name.startswith(".")]  # no temp files left

    # GNU tar extracts the image identically (a sparse member, owner 0)
    out = tmp_path / "ref"
    out.mkdir()
    _reference_pipeline(res.manifest, user.key, out, "tar -x")
    assert sorted(p.name for p in out.iterdir()) == ["cipher.bin", "pvimage"]
    assert _sha256(out / "pvimage") == _sha256(image)
    listing = _reference_pipeline(res.manifest, user.key, out, "tar -tv --numeric-owner").decode()
    assert re.match(r"-rw\S* 0/0 +33554432 ", listing), listing
    # the manifest's digest is the SHA-1 of the uncompressed tar stream
    tar_sha1 = _reference_pipeline(res.manifest, user.key, out, "sha1sum").decode().split()[0]
    assert tar_sha1 == res.digest_sha1

    root = ET.parse(res.manifest).getroot()  # noqa: S314
    assert root.findtext("image/digest") == tar_sha1
    assert root.find("image/digest").attrib == {"algorithm": "SHA1"}  # type: ignore[union-attr]
    # the EC2 copy of key and IV decrypts with the EC2 key to the same values
    for field in ("key", "iv"):
        assert (_openssl_decrypt_hex(ec2.key, root.findtext(f"image/ec2_encrypted_{field}") or "", out)
                == _openssl_decrypt_hex(user.key, root.findtext(f"image/user_encrypted_{field}") or "", out))
    # per-part digests
    parts = root.find("image/parts")
    assert parts is not None and parts.get("count") == str(len(res.parts))
    for i, (p, path) in enumerate(zip(parts.iterfind("part"), res.parts, strict=True)):
        assert p.get("index") == str(i)
        assert p.findtext("filename") == path.name
        assert p.findtext("digest") == hashlib.sha1(path.read_bytes()).hexdigest()  # noqa: S324

    # pvbuild's own unbundle gives the identical image too
    back = tmp_path / "back"
    back.mkdir()
    got = unbundle(res.manifest, user_key=user.key, destination=back, user_cert=user.cert)
    assert got == back / "pvimage"
    assert _sha256(got) == _sha256(image)
    assert os.stat(got).st_blocks * 512 < 8 * MIB  # written sparsely


@needs_tools
def test_manifest_order_and_signature(tmp_path: Path, keys: tuple[Identity, Identity]) -> None:
    user, _ = keys
    image = _sparse_image(tmp_path / "disk.img", regions=3)
    res = _bundle(tmp_path, keys, image, kernel_id="aki-5c21674b")
    raw = res.manifest.read_bytes()
    root = ET.fromstring(raw)  # noqa: S314
    tags = [el.tag for el in root.iter()]
    n = len(res.parts)
    assert tags == [*REFERENCE_ORDER, *["part", "filename", "digest"] * n, "signature"]
    assert b"ramdisk_id" not in raw
    assert root.findtext("version") == "2007-10-10"
    assert [(m.findtext("virtual"), m.findtext("device")) for m in root.iterfind(".//mapping")] == [
        ("ami", "sda1"), ("root", "/dev/sda1")]
    assert root.findtext("machine_configuration/architecture") == "x86_64"
    assert root.findtext("machine_configuration/kernel_id") == "aki-5c21674b"
    assert root.findtext("image/name") == "disk.img"
    assert root.findtext("image/user") == ACCOUNT
    assert root.findtext("image/type") == "machine"
    assert root.findtext("image/size") == str(IMAGE_SIZE)
    assert root.findtext("image/bundled_size") == str(res.bundled_size)
    assert root.find("image/ec2_encrypted_key").attrib == {"algorithm": "AES-128-CBC"}  # type: ignore[union-attr]
    assert root.find("image/user_encrypted_key").attrib == {"algorithm": "AES-128-CBC"}  # type: ignore[union-attr]

    # openssl accepts the signature over the exact machine_configuration + image bytes
    start = raw.index(b"<machine_configuration>")
    end = raw.index(b"</image>") + len(b"</image>")
    assert raw[start:end].count(b"</machine_configuration><image>") == 1
    (tmp_path / "signed.bin").write_bytes(raw[start:end])
    (tmp_path / "sig.bin").write_bytes(bytes.fromhex(root.findtext("signature") or ""))
    ok = subprocess.run(["openssl", "dgst", "-sha1", "-verify", str(user.pub), "-signature",
                         str(tmp_path / "sig.bin"), str(tmp_path / "signed.bin")], capture_output=True, check=False)
    assert ok.returncode == 0 and b"Verified OK" in ok.stdout, ok
    # ... and rejects it over anything else
    (tmp_path / "signed.bin").write_bytes(raw[start:end].replace(b"x86_64", b"i386"))
    bad = subprocess.run(["openssl", "dgst", "-sha1", "-verify", str(user.pub), "-signature",
                          str(tmp_path / "sig.bin"), str(tmp_path / "signed.bin")], capture_output=True, check=False)
    assert bad.returncode != 0


def _gnu_tar() -> bool:
    if not shutil.which("tar"):
        return False
    return "GNU tar" in subprocess.run(["tar", "--version"], capture_output=True, text=True, check=False).stdout


@pytest.mark.skipif(not _gnu_tar(), reason="GNU tar is the reference for the tar stream")
@pytest.mark.parametrize(("regions", "end_with_data", "dense"), [
    (30, False, 0), (2, True, 0), (200, True, 0), (0, False, 0), (0, False, 3 * MIB + 17)])
def test_tar_stream_is_gnu_tar_byte_for_byte(tmp_path: Path, keys: tuple[Identity, Identity], regions: int,
                                             end_with_data: bool, dense: int) -> None:
    """The manifest's digest equals the SHA-1 of `tar -c -S --owner 0 --group 0 IMAGE` (GNU tar's old sparse
    format, with extension headers past four regions; a file without holes is a regular member)."""
    src = tmp_path / "src"
    src.mkdir()
    image = src / "disk.img"
    if dense:
        image.write_bytes(os.urandom(dense))
    else:
        _sparse_image(image, regions=regions, end_with_data=end_with_data, chunk=8192)
    res = _bundle(tmp_path, keys, image)
    gnu = subprocess.run(["tar", "-c", "-S", "--owner", "0", "--group", "0", "-C", str(src), "disk.img"],
                         capture_output=True, check=True).stdout
    assert res.digest_sha1 == hashlib.sha1(gnu).hexdigest()  # noqa: S324


def test_no_kernel_and_custom_mapping_and_data_at_the_end(tmp_path: Path, keys: tuple[Identity, Identity]) -> None:
    user, _ = keys
    image = _sparse_image(tmp_path / "disk.img", regions=2, end_with_data=True)
    res = _bundle(tmp_path, keys, image, block_device_mapping={"ami": "xvda1", "root": "/dev/xvda1"})
    raw = res.manifest.read_text()
    assert "<kernel_id>" not in raw and "ramdisk_id" not in raw
    assert "<mapping><virtual>ami</virtual><device>xvda1</device></mapping>" in raw
    back = tmp_path / "back"
    back.mkdir()
    assert _sha256(unbundle(res.manifest, user_key=user.key, destination=back)) == _sha256(image)


def test_tampered_part_is_detected(tmp_path: Path, keys: tuple[Identity, Identity]) -> None:
    user, _ = keys
    res = _bundle(tmp_path, keys, _sparse_image(tmp_path / "disk.img", regions=8))
    victim = res.parts[1]
    data = bytearray(victim.read_bytes())
    data[1000] ^= 0xFF
    victim.write_bytes(bytes(data))
    back = tmp_path / "back"
    back.mkdir()
    with pytest.raises(BundleCheckFailed, match=re.escape(victim.name)) as err:
        unbundle(res.manifest, user_key=user.key, destination=back)
    assert err.value.exit_code == EXIT_CHECK_FAILED
    assert list(back.iterdir()) == []


def test_tampered_manifest_is_detected(tmp_path: Path, keys: tuple[Identity, Identity]) -> None:
    user, ec2 = keys
    res = _bundle(tmp_path, keys, _sparse_image(tmp_path / "disk.img", regions=3))
    text = res.manifest.read_text()
    digest = ET.fromstring(text).findtext("image/digest") or ""  # noqa: S314
    res.manifest.write_text(text.replace(digest, "0" * 40))
    back = tmp_path / "back"
    back.mkdir()
    with pytest.raises(BundleCheckFailed, match="signature"):
        unbundle(res.manifest, user_key=user.key, destination=back, user_cert=user.cert)
    with pytest.raises(BundleCheckFailed, match="digest"):
        unbundle(res.manifest, user_key=user.key, destination=back)
    assert list(back.iterdir()) == []
    with pytest.raises(BundleError, match="user_encrypted_key") as err:
        unbundle(res.manifest, user_key=ec2.key, destination=back)
    assert err.value.exit_code == EXIT_USAGE


def test_bad_inputs(tmp_path: Path, keys: tuple[Identity, Identity]) -> None:
    user, ec2 = keys
    image = _sparse_image(tmp_path / "disk.img", regions=1)
    common = {"user_cert": user.cert, "user_key": user.key, "ec2_cert": ec2.cert, "destination": tmp_path}
    with pytest.raises(BundleError, match="12-digit"):
        bundle(image, user="1234", arch="x86_64", **common)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="arch"):
        bundle(image, user=ACCOUNT, arch="arm64", **common)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="private key"):
        bundle(image, user=ACCOUNT, arch="i386", **{**common, "user_key": user.cert})  # type: ignore[arg-type]
    with pytest.raises(BundleError, match="not a regular file"):
        bundle(tmp_path / "missing.img", user=ACCOUNT, arch="i386", **common)  # type: ignore[arg-type]


def test_memory_stays_bounded_on_a_dense_run_of_zeros(tmp_path: Path, keys: tuple[Identity, Identity]) -> None:
    """48 MiB of written zeros gzip to almost nothing; neither direction may hold them in memory at once."""
    user, _ = keys
    image = tmp_path / "zeros.img"
    with image.open("wb") as f:
        for _ in range(48):
            f.write(bytes(MIB))
    back = tmp_path / "back"
    back.mkdir()
    tracemalloc.start()
    try:
        res = _bundle(tmp_path, keys, image)
        got = unbundle(res.manifest, user_key=user.key, destination=back)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(res.parts) == 1
    assert _sha256(got) == _sha256(image)
    assert peak < 16 * MIB, peak
