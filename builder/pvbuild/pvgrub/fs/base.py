"""The interface every filesystem reader implements.

A reader mirrors one GRUB 0.97 `fsys_*.c` driver: `mount()` answers "is this mine?" the way the driver's
`*_mount` does (returning None lets the probe try the next driver, as GRUB's `fsys_table` loop does), and
`Filesystem.open()` resolves a path the way the driver's `*_dir` does, raising `GrubError` with GRUB's number
(and a finding code and a sentence saying why) wherever GRUB would fail.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
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


MountFn = Callable[[Volume], "Filesystem | None"]
