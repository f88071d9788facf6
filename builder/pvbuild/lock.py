"""Golden images: `pvbuild lock RECIPE` pins every package of the image; `pvbuild RECIPE --locked` holds to it.

A lock (RECIPE.lock, YAML) records the bootstrap's inputs (release, architecture, mirror, components, variant,
the packages asked for, SOURCE_DATE_EPOCH, pvbuild's version) and every package the bootstrap installed — name,
version, architecture, the suite that serves it, its file and the sha256 of the .deb as the mirror's signed
index gives it. The package set is read from the bootstrap itself (dpkg's status in the cached rootfs tarball),
so the lock is exactly what the build installs.

The chain of trust is the archive's: InRelease is verified with `gpgv` against debian-archive-keyring, the
Packages index against the sha256 InRelease lists, the .deb against the sha256 the index lists. `--locked`
fetches the indices again and fails, listing every difference, when the mirror no longer serves a locked version
with the same sha256 (or the recipe asks for packages the lock does not cover); otherwise the bootstrap is pinned
to the locked versions (apt preferences at priority 1001, removed from the image afterwards) and the installed
set is compared with the lock once more after the bootstrap.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pvbuild import __version__
from pvbuild.errors import EnvironmentProblem, UsageError
from pvbuild.planmodel import Plan

LOCK_FORMAT = 1
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
MAX_INDEX_BYTES = 256 * 1024 * 1024  # a decompressed Packages index (bookworm main amd64 is about 50 MB)
MAX_RELEASE_BYTES = 4 * 1024 * 1024
MAX_STATUS_BYTES = 64 * 1024 * 1024


class LockError(UsageError):
    """A lock file that cannot be used as it is (exit 2)."""


class LockMismatch(EnvironmentProblem):
    """The mirror no longer serves what the lock pins, or the recipe moved on (exit 3); lists every difference."""

    def __init__(self, lock: Path, differences: list[str]) -> None:
        self.differences = differences
        shown = differences[:40]
        more = f"\n  ... and {len(differences) - 40} more" if len(differences) > 40 else ""
        super().__init__(f"{lock}: the locked build cannot be reproduced ({len(differences)} difference"
                         f"{'s' if len(differences) != 1 else ''}):\n  " + "\n  ".join(shown) + more +
                         "\n— point distro.mirror at an archive snapshot that still has them, or run `pvbuild lock` "
                         "again to accept the new versions")


@dataclass(frozen=True)
class IndexEntry:
    name: str
    version: str
    arch: str
    sha256: str
    filename: str
    size: int
    suite: str


@dataclass(frozen=True)
class Suite:
    mirror: str
    suite: str
    components: tuple[str, ...]


def suites(plan: Plan) -> list[Suite]:
    """The apt sources the bootstrap uses (see build.rootfs.sources), as suites."""
    d = plan.distro
    out = [Suite(d.mirror, d.release, d.components), Suite(d.mirror, f"{d.release}-updates", d.components)]
    if d.security_mirror:
        out.append(Suite(d.security_mirror, f"{d.release}-security", d.components))
    return out


# ---------------------------------------------------------------- fetching and verifying the archive's indices

def _fetch(url: str, limit: int) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:  # noqa: S310 - the mirror from the recipe/host
            data: bytes = r.read(limit + 1)
    except (urllib.error.URLError, OSError) as e:
        raise EnvironmentProblem(f"cannot fetch {url}: {e}") from e
    if len(data) > limit:
        raise EnvironmentProblem(f"{url}: larger than {limit} bytes; refusing it")
    return data


def verified_release(suite: Suite, keyring: Path = KEYRING) -> dict[str, tuple[str, int]]:
    """InRelease of the suite, its signature checked with gpgv: {path: (sha256, size)} from its SHA256 field."""
    url = f"{suite.mirror.rstrip('/')}/dists/{suite.suite}/InRelease"
    signed = _fetch(url, MAX_RELEASE_BYTES)
    if not keyring.is_file():
        raise EnvironmentProblem(f"{keyring} is missing: install debian-archive-keyring")
    with tempfile.NamedTemporaryFile(suffix=".InRelease") as f:
        f.write(signed)
        f.flush()
        r = subprocess.run(["gpgv", "--keyring", str(keyring), "--output", "-", f.name], capture_output=True,
                           check=False)
    if r.returncode != 0:
        raise EnvironmentProblem(f"{url}: the signature does not verify with {keyring}: "
                                 f"{r.stderr.decode(errors='replace').strip()}")
    text = r.stdout.decode("utf-8", errors="replace")
    out: dict[str, tuple[str, int]] = {}
    in_sha = False
    for line in text.splitlines():
        if not line.startswith(" "):
            in_sha = line.startswith("SHA256:")
            continue
        if in_sha:
            parts = line.split()
            if len(parts) == 3 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                out[parts[2]] = (parts[0], int(parts[1]))
    if not out:
        raise EnvironmentProblem(f"{url}: no SHA256 list in the signed release file")
    return out


def parse_stanzas(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs (Packages indices, dpkg's status): the first line of each field (what is needed here)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
                fields = {}
            continue
        if line[0] in " \t":
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    if fields:
        yield fields


def suite_index(suite: Suite, deb_arch: str, keyring: Path = KEYRING) -> list[IndexEntry]:
    """Every package the suite serves for `deb_arch` (Architecture: all included), from verified indices."""
    release = verified_release(suite, keyring)
    out: list[IndexEntry] = []
    for comp in suite.components:
        path = f"{comp}/binary-{deb_arch}/Packages.xz"
        if path not in release:
            raise EnvironmentProblem(f"{suite.mirror} {suite.suite}: no {path} in its release file")
        want_sha, want_size = release[path]
        blob = _fetch(f"{suite.mirror.rstrip('/')}/dists/{suite.suite}/{path}", MAX_INDEX_BYTES)
        if len(blob) != want_size or hashlib.sha256(blob).hexdigest() != want_sha:
            raise EnvironmentProblem(f"{suite.mirror} {suite.suite} {path}: sha256 or size differs from the signed "
                                     "release file (a mirror in the middle of an update? try again)")
        dec = lzma.LZMADecompressor()
        text = dec.decompress(blob, MAX_INDEX_BYTES)
        if not dec.eof:
            raise EnvironmentProblem(f"{suite.mirror} {suite.suite} {path}: larger than {MAX_INDEX_BYTES} bytes")
        for st in parse_stanzas(text.decode("utf-8", errors="replace")):
            try:
                out.append(IndexEntry(st["Package"], st["Version"], st["Architecture"], st["SHA256"],
                                      st["Filename"], int(st.get("Size", "0")), suite.suite))
            except KeyError:
                continue
    return out


def mirror_index(plan: Plan, keyring: Path = KEYRING) -> dict[tuple[str, str, str], IndexEntry]:
    """(name, version, arch) -> entry over every suite of the plan; the first suite listing it wins."""
    out: dict[tuple[str, str, str], IndexEntry] = {}
    for s in suites(plan):
        for e in suite_index(s, plan.distro.deb_arch, keyring):
            out.setdefault((e.name, e.version, e.arch), e)
    return out


# ---------------------------------------------------------------- what the bootstrap installed

def installed(tarball: Path) -> list[tuple[str, str, str]]:
    """(name, version, arch) of every package dpkg calls installed in the rootfs tarball."""
    r = subprocess.run(["tar", "-xOf", str(tarball), "./var/lib/dpkg/status"], capture_output=True, check=False)
    if r.returncode != 0 or not r.stdout:
        raise EnvironmentProblem(f"{tarball}: no ./var/lib/dpkg/status in it ({r.stderr.decode().strip()})")
    if len(r.stdout) > MAX_STATUS_BYTES:
        raise EnvironmentProblem(f"{tarball}: dpkg status larger than {MAX_STATUS_BYTES} bytes")
    out = []
    for st in parse_stanzas(r.stdout.decode("utf-8", errors="replace")):
        if st.get("Status", "").endswith(" installed") and "Package" in st:
            out.append((st["Package"], st.get("Version", ""), st.get("Architecture", "")))
    return sorted(out)


def inputs(plan: Plan) -> dict[str, Any]:
    """What the lock is a lock of: the bootstrap inputs that decide the package set."""
    from pvbuild.build.rootfs import bootstrap_packages

    d = plan.distro
    return {"family": d.family, "release": d.release, "architecture": d.deb_arch, "mirror": d.mirror,
            "security_mirror": d.security_mirror, "components": list(d.components), "variant": d.variant,
            "include": list(bootstrap_packages(plan)), "source_date_epoch": plan.source_date_epoch}


def make_lock(plan: Plan, tarball: Path, index: dict[tuple[str, str, str], IndexEntry]) -> dict[str, Any]:
    packages = []
    missing = []
    for name, version, arch in installed(tarball):
        e = index.get((name, version, arch))
        if e is None:
            missing.append(f"{name} {version} {arch}")
            continue
        packages.append({"name": name, "version": version, "arch": arch, "suite": e.suite, "sha256": e.sha256,
                         "filename": e.filename, "size": e.size})
    if missing:
        raise EnvironmentProblem("the bootstrap installed packages the mirror's indices do not list (the cached "
                                 "rootfs is older than the mirror: run `pvbuild lock --refresh`): "
                                 + ", ".join(missing[:20]))
    return {"lock_format": LOCK_FORMAT, "pvbuild": __version__, "source_date_epoch": plan.source_date_epoch,
            "inputs": inputs(plan), "packages": packages}


def write_lock(path: Path, doc: dict[str, Any]) -> None:
    """Written whole: a temporary file beside it, renamed."""
    head = ("# pvbuild lock: every package of the image, pinned (pvbuild lock RECIPE; build with --locked).\n"
            "# Generated; commit it next to the recipe.\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(head)
            yaml.safe_dump(doc, f, sort_keys=False, width=120)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_lock(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise LockError(f"{path}: no lock file — run `pvbuild lock {path.with_suffix('.yaml').name}` first") from e
    except (OSError, yaml.YAMLError) as e:
        raise LockError(f"{path}: not a readable lock file ({e})") from e
    if not isinstance(doc, dict) or doc.get("lock_format") != LOCK_FORMAT or not isinstance(doc.get("packages"), list):
        raise LockError(f"{path}: not a pvbuild lock (format {LOCK_FORMAT}) — run `pvbuild lock` again")
    for i, p in enumerate(doc["packages"]):
        if not isinstance(p, dict) or not all(isinstance(p.get(k), str) for k in ("name", "version", "arch",
                                                                                  "sha256")):
            raise LockError(f"{path}: packages[{i}] lacks name, version, arch or sha256")
    return doc


def differences(plan: Plan, lock: dict[str, Any], index: dict[tuple[str, str, str], IndexEntry]) -> list[str]:
    """Everything that keeps the lock from being reproduced: recipe inputs that moved, versions the mirror lost."""
    out: list[str] = []
    want = inputs(plan)
    have = lock.get("inputs", {})
    for key in ("release", "architecture", "variant", "source_date_epoch", "components"):
        if have.get(key) != want[key]:
            out.append(f"recipe: {key} is {want[key]!r}, the lock was made for {have.get(key)!r}")
    added = sorted(set(want["include"]) - set(have.get("include", [])))
    removed = sorted(set(have.get("include", [])) - set(want["include"]))
    if added:
        out.append(f"recipe: packages added since the lock: {', '.join(added)}")
    if removed:
        out.append(f"recipe: packages removed since the lock: {', '.join(removed)}")
    by_name: dict[tuple[str, str], list[IndexEntry]] = {}
    for (name, _version, arch), entry in index.items():
        by_name.setdefault((name, arch), []).append(entry)
    for p in lock["packages"]:
        e = index.get((p["name"], p["version"], p["arch"]))
        if e is None:
            now = sorted({x.version for x in by_name.get((p["name"], p["arch"]), [])})
            out.append(f"{p['name']} {p['version']} ({p['arch']}): no longer served"
                       + (f"; the mirror has {', '.join(now)}" if now else "; the mirror has no such package"))
        elif e.sha256 != p["sha256"]:
            out.append(f"{p['name']} {p['version']} ({p['arch']}): sha256 {e.sha256} on the mirror, "
                       f"{p['sha256']} in the lock")
    return out


def pins(locked: Iterable[tuple[str, str, str]]) -> str:
    """apt preferences pinning every locked (name, version, arch) to its version (1001: even a downgrade)."""
    return "\n".join(f"Package: {name if arch == 'all' else f'{name}:{arch}'}\nPin: version {version}\n"
                     "Pin-Priority: 1001\n" for name, version, arch in locked)


def locked_pairs(lock: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    return tuple(sorted((p["name"], p["version"], p["arch"]) for p in lock["packages"]))


def installed_vs_lock(got: Iterable[tuple[str, str, str]], locked: Iterable[tuple[str, str, str]]) -> list[str]:
    """What the bootstrap installed against the lock, package by package."""
    want = {(n, a): v for n, v, a in locked}
    have = {(n, a): v for n, v, a in got}
    out = []
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            out.append(f"{key[0]} ({key[1]}): installed {have.get(key, 'nothing')}, locked {want.get(key, 'nothing')}")
    return out


def lock_path(plan: Plan) -> Path:
    return Path(plan.recipe).with_suffix(".lock")


def lock_recipe(plan: Plan, *, refresh: bool = False, rootfs_cache: Path | None = None,
                keyring: Path = KEYRING, log: Any = None) -> tuple[Path, dict[str, Any]]:
    """Bootstrap (or reuse the cached bootstrap of) the plan, read what it installed, pin it: RECIPE.lock."""
    from pvbuild.build import rootfs as rootfs_mod
    from pvbuild.build.pipeline import preflight
    from pvbuild.build.run import Log
    from pvbuild.build.workspace import sigterm_as_interrupt, work_dir

    if not plan.distro.mirror or plan.distro.backend != "mmdebstrap":
        raise LockError(f"{plan.recipe}: `pvbuild lock` pins apt archives bootstrapped with mmdebstrap; this recipe "
                        f"uses {plan.distro.family} with {plan.distro.backend}, which it cannot lock")
    preflight(plan)
    log = log or Log()
    with sigterm_as_interrupt(), work_dir() as work:
        tarball, _cached = rootfs_mod.ensure_rootfs(plan, log, tmp_parent=work, refresh=refresh, cache=rootfs_cache)
    index = mirror_index(plan, keyring)
    doc = make_lock(plan, tarball, index)
    path = lock_path(plan)
    write_lock(path, doc)
    return path, doc


def locked_plan(plan: Plan, *, keyring: Path = KEYRING) -> Plan:
    """The plan pinned to RECIPE.lock, after checking the mirror still serves every locked package (LockMismatch
    lists what it does not, and what of the recipe moved since the lock)."""
    from dataclasses import replace

    path = lock_path(plan)
    lock = load_lock(path)
    diffs = differences(plan, lock, mirror_index(plan, keyring))
    if diffs:
        raise LockMismatch(path, diffs)
    return replace(plan, locked=locked_pairs(lock))
