"""What `pvbuild check` says about /boot on something other than ext2/3/4 or XFS v4 (PVGRUB.md §5).

The images are the probe tests' (each made with its real tool: mkfs.btrfs, mkreiserfs, mkfs.jfs, mkswap,
cryptsetup, pvcreate, ...). PV-GRUB's probe order is fat, ext2fs, minix, reiserfs, vstafs, jfs, xfs, ufs2,
iso9660, ffs; btrfs is not compiled in; LVM, LUKS, md and swap are never readable.
"""

from __future__ import annotations

import pytest

from pvbuild.pvgrub.check import check_image
from pvbuild.pvgrub.profiles import Profile
from tests.test_fs_probe import image


@pytest.mark.parametrize("name", ["reiserfs-3.6", "reiserfs-3.5", "reiserfs-jr", "jfs", "fat12", "fat16", "fat32",
                                  "minix1", "iso9660"])
def test_empty_filesystems_pvgrub_reads_are_read(name: str) -> None:
    """ReiserFS, JFS, FAT, minix v1 and ISO 9660 are read by the emulator (fs/reiserfs.py, jfs.py, fat.py,
    minix.py, iso9660.py): a freshly made, empty one has no menu.lst, which is the finding (not fs-unsupported)."""
    r = check_image(image(name), Profile()).to_json()
    assert r["outcome"] == "hang-prompt"
    found = [f["code"] for f in r["findings"]]
    assert "menu-not-found" in found and "fs-unsupported" not in found, r["findings"]


@pytest.mark.parametrize(("name", "code", "words"), [
    ("btrfs", "fs-unsupported", "btrfs"),
    ("lvm2", "fs-unsupported", "LVM"),
    ("luks2", "fs-unsupported", "LUKS"),
    ("swap", "fs-unsupported", "swap"),
    ("squashfs", "fs-unsupported", "squashfs"),
])
def test_unreadable_boot_filesystems_are_named(name: str, code: str, words: str) -> None:
    """PVGRUB.md §5: what no driver of PV-GRUB mounts is named in the finding (never a crash)."""
    r = check_image(image(name), Profile()).to_json()
    assert r["outcome"] == "hang-prompt"
    errs = [f for f in r["findings"] if f["code"] == code]
    assert errs, r["findings"]
    assert any(words.lower() in f["message"].lower() for f in errs), errs
    assert "menu-not-found" in [f["code"] for f in r["findings"]]
