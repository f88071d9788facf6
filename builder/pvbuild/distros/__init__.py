"""Distribution profiles: packages, kernel, initrd tool and mirror for each distro family.

Every family is a `profile.Family` (releases, each with its kernel per architecture and the source of what pvbuild
knows about that kernel); plan.py resolves the recipe's distro against FAMILIES and turns the profile's refusals
into recipe errors.
"""

from __future__ import annotations

from pvbuild.distros import amazon, centos, debian, fedora, gentoo, opensuse, ubuntu
from pvbuild.distros.profile import RD_ZSTD_SINCE, Family, Kernel, series_tuple, short_reason
from pvbuild.pvgrub.profiles import AWS_COMPRESSIONS

FAMILIES: dict[str, Family] = {f.name: f for f in (
    debian.FAMILY, ubuntu.FAMILY, fedora.FAMILY, centos.CENTOS, centos.RHEL, opensuse.OPENSUSE, opensuse.SLES,
    amazon.FAMILY, gentoo.FAMILY)}


def support_table() -> str:
    """The README's support table, made from the profiles so that it cannot drift from them (tests/test_distros.py
    compares the two)."""
    rows = ["| distribution | release | x86_64 | i386 | kernel (x86_64) | initrd | DIB element | build here | "
            "traps |", "|---|---|---|---|---|---|---|---|---|"]
    for family in FAMILIES.values():
        for r in family.releases:
            cells = []
            for arch in ("x86_64", "i386"):
                why = short_reason(r, arch, AWS_COMPRESSIONS)
                cells.append(f"refused: {why}" if why else "plans")
            k = r.x86_64
            kernel = "none"
            if isinstance(k, Kernel):
                mark = " †" if "UNVERIFIED" in k.source or "derived" in k.source else ""
                kernel = f"`{k.package}` {k.series} ({k.compression or '?'}){mark}"
            here = "yes" if family.name == "debian" and cells[0] == "plans" else "no"
            traps = []
            plans = "plans" in cells
            if plans and isinstance(k, Kernel) and k.console != "hvc0":
                traps.append(f"console={k.console}")
            if plans and isinstance(k, Kernel) and series_tuple(k.series) < RD_ZSTD_SINCE:
                traps.append("initrd gzip (no zstd before 5.9)")
            for other in r.other_kernels:
                why = short_reason(r, "x86_64", AWS_COMPRESSIONS, other.package)
                traps.append(f"`{other.package}` {other.series}: {f'refused, {why}' if why else 'plans'}")
            if r.note:
                traps.append(r.note)
            release = r.name if r.name == r.version else f"{r.name} ({r.version})"
            rows.append(f"| {family.title} | {release} | {cells[0]} | {cells[1]} | {kernel} | {r.initrd_tool} | "
                        f"{r.dib_element or '—'} | {here} | {'; '.join(traps) or '—'} |")
    return "\n".join(rows) + "\n"
