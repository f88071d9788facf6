"""PV-GRUB AKI profiles: version x variant x arch, and what each one does differently.

Sources: PVGRUB.md §1 (AWS UserProvidedKernels: 1.04+ search several locations, <= 1.03 check one; GPT only
1.04+), §5 (btrfs not built), §6 (kernel compressions AWS lists: gzip, bzip2, lzo, xz).
Settings with no primary source are marked UNVERIFIED and listed by `unverified()` so the report can say so.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSIONS = ("1.03", "1.04", "1.05")
VARIANTS = ("hd0", "hd00")
ARCHES = ("x86_64", "i386")

# AWS's list for its AKIs (seed: "gzip, bzip2, lzo, xz"); lzma is decoded by the same liblzma as xz in
# libxc's bzimage loader, so it is on by default but UNVERIFIED for Amazon's builds.
AWS_COMPRESSIONS = frozenset({"none", "gzip", "bzip2", "xz", "lzma", "lzo"})


@dataclass(frozen=True)
class Profile:
    version: str = "1.05"
    variant: str = "hd0"
    arch: str = "x86_64"

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"unknown PV-GRUB version {self.version!r}: choose one of {', '.join(VERSIONS)}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown PV-GRUB variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        if self.arch not in ARCHES:
            raise ValueError(f"unknown architecture {self.arch!r}: choose one of {', '.join(ARCHES)}")

    @property
    def gpt(self) -> bool:
        """GPT is read by 1.04 and later only (AWS: "PV-GRUB 1.03 and earlier don't support GPT")."""
        return self.version >= "1.04"

    @property
    def btrfs(self) -> bool:
        """btrfs' driver is patched in but not compiled into the PV build (stubdom/grub/Makefile)."""
        return False

    @property
    def compressions(self) -> frozenset[str]:
        return AWS_COMPRESSIONS

    def menu_search(self) -> list[str]:
        """The menu.lst locations tried, in order; the first one that opens wins (PVGRUB.md §1).

        <= 1.03: one location, (hd0) for the hd0 AKI and (hd0,0) for hd00. 1.04+: (hd0)/boot/grub, then
        /boot/grub and /grub on (hd0,0) .. (hd0,3). The 1.04+ hd00 list is UNVERIFIED: the same list is used.
        """
        if self.version < "1.04":
            dev = "(hd0)" if self.variant == "hd0" else "(hd0,0)"
            return [f"{dev}/boot/grub/menu.lst"]
        out = ["(hd0)/boot/grub/menu.lst"]
        for n in range(4):
            out += [f"(hd0,{n})/boot/grub/menu.lst", f"(hd0,{n})/grub/menu.lst"]
        return out

    def unverified(self) -> list[str]:
        notes = []
        if self.version >= "1.04":
            notes.append("GPT partition numbering in Amazon's 1.04+ builds")
            if self.variant == "hd00":
                notes.append("the 1.04+ hd00 menu.lst search list")
        notes.append("lzma-compressed kernels on Amazon's AKIs")
        return notes

    def to_json(self) -> dict[str, str]:
        return {"version": self.version, "variant": self.variant, "arch": self.arch}
