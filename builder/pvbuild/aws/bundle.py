"""The ec2-bundle-image format, byte for byte: bundle an image and unbundle a bundle.

Pipeline (as ec2-ami-tools does it): a one-member GNU tar of the image (sparse, owner 0) whose SHA-1 is the
manifest's ``<digest>`` -> gzip -9 -> AES-128-CBC with a random key and IV -> parts of 10 MiB, each with its SHA-1.
The key and IV travel RSA-encrypted (PKCS#1 v1.5) as their 32-character lowercase hex text, for the EC2 certificate
and for the user's; the manifest (version 2007-10-10) is signed with RSA-SHA1 over the exact bytes of
``<machine_configuration>...</machine_configuration><image>...</image>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import tempfile
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pvbuild.aws.pgzip import ParallelGzipWriter
from pvbuild.errors import EXIT_CHECK_FAILED, PvbuildError, UsageError
from pvbuild.sparse import data_ranges

MANIFEST_VERSION = "2007-10-10"
BUNDLER_NAME = "ec2-ami-tools"
BUNDLER_VERSION = "1.5"
BUNDLER_RELEASE = "2"
DEFAULT_PART_SIZE = 10 * 1024 * 1024
# ec2-bundle-image's default block device mapping.
DEFAULT_BLOCK_DEVICE_MAPPING = {"ami": "sda1", "root": "/dev/sda1"}
ARCHES = ("x86_64", "i386")
CHUNK = 1024 * 1024
GZIP_LEVEL = 9  # ec2-bundle-image's gzip -9
BLOCK = 512


class BundleError(UsageError):
    """A bad input to bundle/unbundle (missing file, bad key, malformed manifest)."""


class BundleCheckFailed(PvbuildError):
    """A digest or signature in a bundle does not match."""

    exit_code = EXIT_CHECK_FAILED


@dataclass(frozen=True)
class BundleResult:
    manifest: Path
    parts: list[Path]
    digest_sha1: str
    size: int
    bundled_size: int


# ---------------------------------------------------------------- tar (GNU, old sparse format as `tar -S` writes it)

def _octal(value: int, width: int) -> bytes:
    """A tar numeric field: octal, NUL-terminated; base-256 when it does not fit (as GNU tar does)."""
    if value < 8 ** (width - 1):
        return b"%0*o\0" % (width - 1, value)
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


def _parse_number(field: bytes) -> int:
    if field and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    return int(text, 8) if text else 0


def _data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the data regions of a file; holes are never read."""
    return [(start, end - start) for start, end in data_ranges(fd, size)]


def _sparse_entries(entries: list[tuple[int, int]]) -> bytes:
    return b"".join(_octal(off, 12) + _octal(num, 12) for off, num in entries)


def _tar_headers(name: str, mode: int, mtime: int, size: int, regions: list[tuple[int, int]]) -> bytes:
    """The header block(s) of one GNU sparse ('S') member."""
    encoded = name.encode()
    if not encoded or len(encoded) > 99 or "/" in name:
        raise BundleError(f"bundle name {name!r}: must be 1-99 bytes with no '/'")
    stored = sum(n for _, n in regions)
    sparse = stored < size  # a file without holes is a regular member, as `tar -S` writes it
    entries = [*regions, (size, 0)]  # GNU tar always ends the map with an empty entry at the file's size
    header = bytearray(BLOCK)
    header[0:len(encoded)] = encoded
    header[100:108] = _octal(mode & 0o7777, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _octal(stored, 12)
    header[136:148] = _octal(mtime, 12)
    header[156:157] = b"S" if sparse else b"0"
    header[257:265] = b"ustar  \0"
    header[265:269] = b"root"
    header[297:301] = b"root"
    first, rest = (entries[:4], entries[4:]) if sparse else ([], [])
    header[386:386 + 24 * len(first)] = _sparse_entries(first)
    header[482] = 1 if rest else 0
    if sparse:
        header[483:495] = _octal(size, 12)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    out = bytes(header)
    while rest:
        chunk, rest = rest[:21], rest[21:]
        ext = bytearray(BLOCK)
        ext[0:24 * len(chunk)] = _sparse_entries(chunk)
        ext[504] = 1 if rest else 0
        out += bytes(ext)
    return out


def _tar_stream(image: Path, name: str) -> Iterator[bytes]:
    """The one-member tar of `image`, in chunks; reads only the data regions."""
    with image.open("rb") as f:
        st = os.fstat(f.fileno())
        size = st.st_size
        regions = _data_regions(f.fileno(), size)
        headers = _tar_headers(name, stat.S_IMODE(st.st_mode), int(st.st_mtime), size, regions)
        yield headers
        stored = 0
        for off, length in regions:
            f.seek(off)
            left = length
            while left:
                data = f.read(min(CHUNK, left))
                if not data:
                    raise BundleError(f"{image}: shrank while being bundled")
                left -= len(data)
                yield data
            stored += length
        # the member's last block, the end-of-archive marker (two zero blocks), and GNU tar's padding of the
        # archive to its 10240-byte record size
        total = len(headers) + stored + -stored % BLOCK + BLOCK * 2
        yield b"\0" * (-stored % BLOCK + BLOCK * 2 + -total % 10240)


# ---------------------------------------------------------------- keys and certificates

def _load_private_key(path: Path) -> RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"private key {path}: {exc}") from exc
    if not isinstance(key, RSAPrivateKey):
        raise BundleError(f"private key {path}: not an RSA key")
    return key


def _load_cert_key(path: Path) -> RSAPublicKey:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"certificate {path}: {exc}") from exc
    key = cert.public_key()
    if not isinstance(key, RSAPublicKey):
        raise BundleError(f"certificate {path}: not an RSA key")
    return key


def _rsa_encrypt_hex(key: RSAPublicKey, secret: bytes) -> str:
    """RSA PKCS#1 v1.5 encryption of the secret's lowercase hex text, hex-encoded (as ec2-ami-tools does)."""
    return key.encrypt(secret.hex().encode(), asym_padding.PKCS1v15()).hex()


# ---------------------------------------------------------------- bundle

def _manifest_sections(*, arch: str, bdm: dict[str, str], kernel_id: str | None, name: str, user: str,
                       digest: str, size: int, bundled_size: int, keys: dict[str, str],
                       parts: list[tuple[str, str]]) -> str:
    e = escape
    mc = [f"<machine_configuration><architecture>{e(arch)}</architecture><block_device_mapping>"]
    mc += [f"<mapping><virtual>{e(v)}</virtual><device>{e(d)}</device></mapping>" for v, d in bdm.items()]
    mc.append("</block_device_mapping>")
    if kernel_id:
        mc.append(f"<kernel_id>{e(kernel_id)}</kernel_id>")
    mc.append("</machine_configuration>")
    im = [f"<image><name>{e(name)}</name><user>{e(user)}</user><type>machine</type>",
          f'<digest algorithm="SHA1">{digest}</digest><size>{size}</size><bundled_size>{bundled_size}</bundled_size>',
          f'<ec2_encrypted_key algorithm="AES-128-CBC">{keys["ec2_key"]}</ec2_encrypted_key>',
          f'<user_encrypted_key algorithm="AES-128-CBC">{keys["user_key"]}</user_encrypted_key>',
          f'<ec2_encrypted_iv>{keys["ec2_iv"]}</ec2_encrypted_iv><user_encrypted_iv>{keys["user_iv"]}</user_encrypted_iv>',
          f'<parts count="{len(parts)}">']
    im += [f'<part index="{i}"><filename>{e(fn)}</filename><digest algorithm="SHA1">{d}</digest></part>'
           for i, (fn, d) in enumerate(parts)]
    im.append("</parts></image>")
    return "".join(mc) + "".join(im)


class _PartWriter:
    """Splits a byte stream into fixed-size part files (temporary names) with a SHA-1 each."""

    def __init__(self, directory: Path, part_size: int) -> None:
        self.directory = directory
        self.part_size = part_size
        self.temps: list[Path] = []
        self.digests: list[str] = []
        self.total = 0
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha1()  # noqa: S324 - the format's digest
        self._filled = 0

    def _open(self) -> None:
        fd, name = tempfile.mkstemp(prefix=".bundle-part-", dir=self.directory)
        self._file = os.fdopen(fd, "wb")
        self.temps.append(Path(name))
        self._hash = hashlib.sha1()  # noqa: S324
        self._filled = 0

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self.digests.append(self._hash.hexdigest())
            self._file = None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._file is None:
                self._open()
            assert self._file is not None
            take = min(len(view), self.part_size - self._filled)
            piece = view[:take]
            self._file.write(piece)
            self._hash.update(piece)
            self._filled += take
            self.total += take
            view = view[take:]
            if self._filled == self.part_size:
                self._close()

    def finish(self) -> None:
        self._close()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for p in self.temps:
            p.unlink(missing_ok=True)


def part_name(prefix: str, index: int, count: int) -> str:
    """`PREFIX.part.NN`, the index zero-padded to the digits of the part count (at least two)."""
    return f"{prefix}.part.{index:0{max(2, len(str(count)))}d}"


def bundle(image: Path, *, user_cert: Path, user_key: Path, ec2_cert: Path, user: str, arch: str,
           destination: Path, prefix: str | None = None, kernel_id: str | None = None,
           block_device_mapping: dict[str, str] | None = None,
           part_size: int = DEFAULT_PART_SIZE) -> BundleResult:
    """Bundle `image` into `destination` as ec2-bundle-image would; returns the manifest and parts."""
    if not image.is_file():
        raise BundleError(f"image {image}: not a regular file")
    if not re.fullmatch(r"\d{12}", user.replace("-", "")):
        raise BundleError(f"user {user!r}: must be a 12-digit AWS account number")
    user = user.replace("-", "")
    if arch not in ARCHES:
        raise BundleError(f"arch {arch!r}: must be one of {', '.join(ARCHES)}")
    if part_size <= 0:
        raise BundleError(f"part size {part_size}: must be positive")
    if kernel_id is not None and not re.fullmatch(r"aki-[0-9a-f]+", kernel_id):
        raise BundleError(f"kernel id {kernel_id!r}: expected aki-XXXXXXXX")
    name = prefix or image.name
    if not destination.is_dir():
        raise BundleError(f"destination {destination}: not a directory")
    private = _load_private_key(user_key)
    user_pub = _load_cert_key(user_cert)
    ec2_pub = _load_cert_key(ec2_cert)

    key = secrets.token_bytes(16)
    iv = secrets.token_bytes(16)
    tar_hash = hashlib.sha1()  # noqa: S324 - the format's digest
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    pkcs7 = padding.PKCS7(128).padder()
    parts = _PartWriter(destination, part_size)

    def emit(data: bytes) -> None:
        if data:
            parts.write(encryptor.update(pkcs7.update(data)))

    try:
        # gzip -9 as one standard member, compressed on every core (pigz's way); the tar stream is hashed, and
        # the compressed stream encrypted and split, in this thread, in order.
        with ParallelGzipWriter(emit, level=GZIP_LEVEL) as gz:
            for chunk in _tar_stream(image, name):
                tar_hash.update(chunk)
                gz.write(chunk)
        parts.write(encryptor.update(pkcs7.finalize()) + encryptor.finalize())
        parts.finish()
        count = len(parts.temps)
        names = [part_name(name, i, count) for i in range(count)]
        keys = {"ec2_key": _rsa_encrypt_hex(ec2_pub, key), "user_key": _rsa_encrypt_hex(user_pub, key),
                "ec2_iv": _rsa_encrypt_hex(ec2_pub, iv), "user_iv": _rsa_encrypt_hex(user_pub, iv)}
        signed = _manifest_sections(arch=arch, bdm=block_device_mapping or DEFAULT_BLOCK_DEVICE_MAPPING,
                                    kernel_id=kernel_id, name=name, user=user, digest=tar_hash.hexdigest(),
                                    size=image.stat().st_size, bundled_size=parts.total, keys=keys,
                                    parts=list(zip(names, parts.digests, strict=True)))
        signature = private.sign(signed.encode(), asym_padding.PKCS1v15(), hashes.SHA1()).hex()  # noqa: S303
        manifest_text = (f'<?xml version="1.0" ?><manifest><version>{MANIFEST_VERSION}</version><bundler>'
                         f"<name>{BUNDLER_NAME}</name><version>{BUNDLER_VERSION}</version>"
                         f"<release>{BUNDLER_RELEASE}</release></bundler>{signed}"
                         f"<signature>{signature}</signature></manifest>")
        manifest = destination / f"{name}.manifest.xml"
        fd, tmp_manifest = tempfile.mkstemp(prefix=".bundle-manifest-", dir=destination)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(manifest_text)
        final_parts = [destination / n for n in names]
        for tmp, final in zip(parts.temps, final_parts, strict=True):
            os.chmod(tmp, 0o644)
            tmp.rename(final)
        os.chmod(tmp_manifest, 0o644)
        Path(tmp_manifest).rename(manifest)
    except BaseException:
        parts.discard()
        raise
    return BundleResult(manifest=manifest, parts=final_parts, digest_sha1=tar_hash.hexdigest(),
                        size=image.stat().st_size, bundled_size=parts.total)


# ---------------------------------------------------------------- unbundle

def _text(root: ET.Element, path: str, manifest: Path) -> str:
    el = root.find(path)
    if el is None or el.text is None:
        raise BundleError(f"manifest {manifest}: missing {path}")
    return el.text.strip()


def _signed_bytes(raw: bytes, manifest: Path) -> bytes:
    m = re.search(rb"<machine_configuration>.*</machine_configuration>", raw, re.S)
    i = re.search(rb"<image>.*</image>", raw, re.S)
    if m is None or i is None:
        raise BundleError(f"manifest {manifest}: no machine_configuration or image section")
    return m.group(0) + i.group(0)


class _Reader:
    """A read(n) view of a chunk iterator."""

    def __init__(self, chunks: Iterator[bytes], on_data: Callable[[bytes], None]) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self._on_data = on_data

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self._on_data(out)
        return out

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _gunzip(gz: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """Decompress in pieces of at most CHUNK bytes: a run of zeros must not become one huge buffer."""
    if gz.eof:
        if data:
            raise BundleCheckFailed("bundle has data after its gzip stream")
        return
    yield gz.decompress(data, CHUNK)
    while gz.unconsumed_tail and not gz.eof:
        yield gz.decompress(gz.unconsumed_tail, CHUNK)
    if gz.unused_data:
        raise BundleCheckFailed("bundle has data after its gzip stream")


def _decrypted_stream(parts: list[Path], key: bytes, iv: bytes) -> Iterator[bytes]:
    """The tar stream: the parts decrypted and gunzipped, in bounded pieces."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpad = padding.PKCS7(128).unpadder()
    gz = zlib.decompressobj(31)
    try:
        for part in parts:
            with part.open("rb") as f:
                while data := f.read(CHUNK):
                    yield from _gunzip(gz, unpad.update(decryptor.update(data)))
        yield from _gunzip(gz, unpad.update(decryptor.finalize()) + unpad.finalize())
        yield from _gunzip(gz, b"")
    except (ValueError, zlib.error) as exc:
        raise BundleCheckFailed(f"bundle does not decrypt/decompress: {exc}") from exc
    if not gz.eof:
        raise BundleCheckFailed("bundle's gzip stream is truncated")


def _extract(reader: _Reader, destination: Path) -> tuple[Path, str]:
    """Write the tar's one member to a temporary file in `destination`; returns it and the member's name."""
    header = reader.read(BLOCK)
    if len(header) < BLOCK or not any(header):
        raise BundleCheckFailed("bundle holds no tar member")
    check = sum(header[:148]) + 8 * 32 + sum(header[156:])
    if _parse_number(header[148:156]) != check:
        raise BundleCheckFailed("bundle's tar header checksum is wrong")
    name = header[:100].split(b"\0", 1)[0].decode()
    if not name or "/" in name or name in (".", ".."):
        raise BundleError(f"bundle member name {name!r} is not a plain file name")
    kind = header[156:157]
    stored = _parse_number(header[124:136])
    mode = _parse_number(header[100:108])
    if kind == b"S":
        entries = [(_parse_number(header[386 + 24 * k:398 + 24 * k]), _parse_number(header[398 + 24 * k:410 + 24 * k]))
                   for k in range(4)]
        extended = header[482]
        size = _parse_number(header[483:495])
        while extended:
            ext = reader.read(BLOCK)
            entries += [(_parse_number(ext[24 * k:24 * k + 12]), _parse_number(ext[24 * k + 12:24 * k + 24]))
                        for k in range(21)]
            extended = ext[504]
        regions = [(o, n) for o, n in entries if n]
    elif kind in (b"0", b"\0"):
        size = stored
        regions = [(0, stored)] if stored else []
    else:
        raise BundleError(f"bundle member {name!r}: unsupported tar type {kind!r}")
    fd, tmp = tempfile.mkstemp(prefix=".unbundle-", dir=destination)
    try:
        with os.fdopen(fd, "wb") as f:
            for off, length in regions:
                f.seek(off)
                left = length
                while left:
                    data = reader.read(min(CHUNK, left))
                    if not data:
                        raise BundleCheckFailed(f"bundle member {name!r} is truncated")
                    f.write(data)
                    left -= len(data)
            f.truncate(size)
        reader.read(-stored % BLOCK)
        reader.drain()
        os.chmod(tmp, mode & 0o777 or 0o644)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), name  # renamed by the caller once the digest matches


def unbundle(manifest: Path, *, user_key: Path, destination: Path, user_cert: Path | None = None) -> Path:
    """Verify and unpack a bundle; returns the image's path in `destination`."""
    try:
        raw = manifest.read_bytes()
        root = ET.fromstring(raw)  # noqa: S314 - the user's own manifest
    except (OSError, ET.ParseError) as exc:
        raise BundleError(f"manifest {manifest}: {exc}") from exc
    if not destination.is_dir():
        raise BundleError(f"destination {destination}: not a directory")
    if user_cert is not None:
        signature = bytes.fromhex(_text(root, "signature", manifest))
        try:
            _load_cert_key(user_cert).verify(signature, _signed_bytes(raw, manifest), asym_padding.PKCS1v15(),
                                             hashes.SHA1())  # noqa: S303
        except InvalidSignature as exc:
            raise BundleCheckFailed(f"manifest {manifest}: signature does not match {user_cert}") from exc
    parts: list[Path] = []
    for el in root.iterfind("image/parts/part"):
        filename = (el.findtext("filename") or "").strip()
        want = (el.findtext("digest") or "").strip().lower()
        if not filename or "/" in filename:
            raise BundleError(f"manifest {manifest}: bad part filename {filename!r}")
        path = manifest.parent / filename
        h = hashlib.sha1()  # noqa: S324
        try:
            with path.open("rb") as f:
                while data := f.read(CHUNK):
                    h.update(data)
        except OSError as exc:
            raise BundleError(f"part {filename}: {exc}") from exc
        if h.hexdigest() != want:
            raise BundleCheckFailed(f"part {filename}: SHA-1 {h.hexdigest()} does not match the manifest's {want}")
        parts.append(path)
    if not parts:
        raise BundleError(f"manifest {manifest}: no parts")
    private = _load_private_key(user_key)
    secrets_ = {}
    for field in ("user_encrypted_key", "user_encrypted_iv"):
        try:
            text = private.decrypt(bytes.fromhex(_text(root, f"image/{field}", manifest)), asym_padding.PKCS1v15())
            secrets_[field] = bytes.fromhex(text.decode())
        except ValueError as exc:
            raise BundleError(f"manifest {manifest}: {field} does not decrypt with {user_key}: {exc}") from exc
        if len(secrets_[field]) != 16:
            raise BundleError(f"manifest {manifest}: {field} is not 16 bytes")
    want_digest = _text(root, "image/digest", manifest).lower()
    tar_hash = hashlib.sha1()  # noqa: S324
    reader = _Reader(_decrypted_stream(parts, secrets_["user_encrypted_key"], secrets_["user_encrypted_iv"]),
                     tar_hash.update)
    tmp, name = _extract(reader, destination)
    if tar_hash.hexdigest() != want_digest:
        tmp.unlink(missing_ok=True)
        raise BundleCheckFailed(f"manifest {manifest}: digest of the tar stream {tar_hash.hexdigest()} "
                                f"does not match <digest> {want_digest}")
    return tmp.rename(destination / name)
