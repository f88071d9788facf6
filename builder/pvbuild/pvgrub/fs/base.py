"""The interface every filesystem reader implements.

A reader mirrors one GRUB 0.97 `fsys_*.c` driver: `mount()` answers "is this mine?" the way the driver's
`*_mount` does (returning None lets the probe try the next driver, as GRUB's `fsys_table` loop does), and
`Filesystem.open()` resolves a path the way the driver's `*_dir` does, raising `GrubError` with GRUB's number
(and a finding code and a sentence saying why) wherever GRUB would fail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pvbuild.pvgrub.blockio import Volume
from pvbuild.pvgrub.findings import Finding


@dataclass(frozen=True)
class FsIdentity:
    """What Linux (blkid) would see: used to resolve root=LABEL=/UUID= and to name unreadable filesystems.

    `fstype` uses blkid's names: ext2, ext3, ext4, xfs, btrfs, reiserfs, jfs, swap, crypto_LUKS, LVM2_member,
    vfat, iso9660, minix, ...
    """

    fstype: str
    uuid: str | None = None
    label: str | None = None
    # Free-form facts worth reporting (feature names, versions), e.g. ("64bit", "metadata_csum").
    features: tuple[str, ...] = field(default_factory=tuple)


S_IFMT = 0o170000
S_IFDIR = 0o040000
S_IFREG = 0o100000
S_IFLNK = 0o120000

# Bounds of a directory walk (GRUB has none: it only ever looks up one path, or lists one directory for `dir` and
# tab completion). They stop a hostile or corrupt image from making a walk run without end.
WALK_MAX_ENTRIES = 2_000_000
WALK_MAX_DEPTH = 256
DIR_MAX_ENTRIES = 1 << 18


@dataclass(frozen=True)
class Inode:
    """stat(2)'s view of one inode, for listings and `pvbuild diff` (GRUB itself only needs mode and size).

    `size` is the file's full size (i_size with its high half), not GRUB's 31-bit filemax.
    """

    ino: int
    mode: int
    size: int
    uid: int
    gid: int
    mtime: int
    nlink: int

    @property
    def kind(self) -> int:
        return self.mode & S_IFMT


@dataclass(frozen=True)
class DirEntry:
    """One name of a directory as GRUB's listing reads it (the name bytes up to name_len or a NUL)."""

    name: bytes
    ino: int


class File(ABC):
    """An open file: its size and random-access reads of its content (bounded by the caller)."""

    size: int

    @abstractmethod
    def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) clipped to the file size; raises GrubError on a corrupt structure."""

    def read_all(self, limit: int) -> bytes:
        """The whole file, refusing files larger than `limit` (the caller's memory bound)."""
        from pvbuild.pvgrub.errors import Err, GrubError

        if self.size > limit:
            raise GrubError(Err.WONT_FIT, f"file of {self.size} bytes exceeds the {limit}-byte limit")
        return self.read(0, self.size)


class Filesystem(ABC):
    """A mounted filesystem. `grub_name` is the GRUB driver name (e.g. "ext2fs", "xfs")."""

    grub_name: str
    identity: FsIdentity

    @abstractmethod
    def open(self, path: str) -> File:
        """Open an absolute path ("/boot/grub/menu.lst") as GRUB's driver would; raise GrubError otherwise."""

    def findings(self) -> list[Finding]:
        """What the superblock alone says about PV-GRUB (features it misreads, deprecations)."""
        return []

    # --- inode-level access, for directory walks (`pvbuild diff`); readers without it keep these defaults ---
    @property
    def root_ino(self) -> int:
        raise NotImplementedError(f"the {self.grub_name} reader cannot list directories")

    def stat(self, ino: int) -> Inode:
        """The inode's metadata; GrubError on a corrupt or unreadable inode."""
        raise NotImplementedError(f"the {self.grub_name} reader cannot list directories")

    def listdir(self, ino: int) -> list[DirEntry]:
        """A directory's entries in on-disk order as GRUB's listing (`dir`, tab completion) scans them, without
        "." and ".."; at most DIR_MAX_ENTRIES (GrubError with code fs-emulator-limit beyond)."""
        raise NotImplementedError(f"the {self.grub_name} reader cannot list directories")

    def readlink(self, ino: int) -> bytes:
        """A symlink's target as stored."""
        raise NotImplementedError(f"the {self.grub_name} reader cannot list directories")

    def content(self, ino: int, chunk: int = 1 << 20) -> Iterator[bytes]:
        """A regular file's bytes as Linux reads them (holes and unwritten extents as zeros), in chunks of at
        most `chunk` bytes. Unlike `open().read()`, which returns what PV-GRUB would load."""
        raise NotImplementedError(f"the {self.grub_name} reader cannot list directories")

    def walk(self, *, max_entries: int = WALK_MAX_ENTRIES,
             max_depth: int = WALK_MAX_DEPTH) -> Iterator[tuple[str, Inode]]:
        """Every path below the root ("/" first), depth first with names sorted, and its inode.

        Bounded: at most `max_entries` names and `max_depth` levels; a directory met twice (a cycle, only on a
        corrupt image) is an error. Errors are GrubError with code fs-emulator-limit (a bound) or fs-corrupt.
        """
        from pvbuild.pvgrub.errors import Err, GrubError

        root = self.stat(self.root_ino)
        if root.kind != S_IFDIR:
            raise GrubError(Err.BAD_FILETYPE, f"the root inode {root.ino} is not a directory (mode {root.mode:o})",
                            code="fs-corrupt")
        yield "/", root
        seen = {root.ino}
        stack: list[tuple[str, int, int]] = [("", root.ino, 0)]
        count = 0
        while stack:
            prefix, ino, depth = stack.pop()
            subdirs: list[tuple[str, int]] = []
            for entry in sorted(self.listdir(ino), key=lambda e: e.name):
                count += 1
                if count > max_entries:
                    raise GrubError(Err.FSYS_CORRUPT, f"more than {max_entries} names in the filesystem; the walk "
                                                      "stops there", code="fs-emulator-limit")
                path = f"{prefix}/{entry.name.decode('utf-8', 'surrogateescape')}"
                st = self.stat(entry.ino)
                yield path, st
                if st.kind == S_IFDIR:
                    if st.ino in seen:
                        raise GrubError(Err.FSYS_CORRUPT, f"{path}: directory inode {st.ino} is reached twice (a "
                                                          "directory cycle)", code="fs-corrupt")
                    if depth + 1 >= max_depth:
                        raise GrubError(Err.FSYS_CORRUPT, f"{path}: directories nested deeper than {max_depth} "
                                                          "levels", code="fs-emulator-limit")
                    seen.add(st.ino)
                    subdirs.append((path, st.ino))
            stack.extend((p, i, depth + 1) for p, i in reversed(subdirs))


MountFn = Callable[[Volume], "Filesystem | None"]
