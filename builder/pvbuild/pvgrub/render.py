"""The short human report of `pvbuild check`: verdict first, then the boot path and the findings."""

from __future__ import annotations

from pvbuild.pvgrub.check import BootReport
from pvbuild.pvgrub.findings import Severity
from pvbuild.pvgrub.machine import Outcome

_VERDICT = {
    Outcome.BOOTS: "BOOTS",
    Outcome.HANG_PROMPT: "HANGS at the grub> prompt",
    Outcome.HANG_MENU: "HANGS at the menu",
}


def render_text(report: BootReport) -> str:
    j = report.to_json()
    r = report.run
    prof = r.profile
    lines = []
    verdict = _VERDICT[r.outcome]
    errors = [f for f in report.findings if f.severity == Severity.ERROR]
    if r.outcome == Outcome.BOOTS and errors:
        verdict = "LOADS A KERNEL that will not come up"
    head = f"{verdict} — PV-GRUB {prof.version} {prof.variant} {prof.arch}: {report.image}"
    if r.entry:
        head += f"\n  entry {r.entry[0]}: {r.entry[1]!r}"
    lines.append(head)
    if j["grub_error"]:
        lines.append(f"  last GRUB error: Error {j['grub_error']['number']}: {j['grub_error']['message']}")
    menu = j["menu"]
    lines.append(f"menu:    {menu['device']}{menu['path']}" if menu else "menu:    none found")
    for t in r.tried:
        status = "ok" if t.error is None else f"Error {t.error}"
        lines.append(f"tried:   entry {t.index} {t.title!r}: {status}")
    k = j["kernel"]
    if k:
        bits = [b for b in (k["format"], k["compression"], k["machine"],
                            "Xen PV" if k["xen_pv"] else "not Xen PV", k["version"]) if b]
        lines.append(f"kernel:  {k['device']}{k['path']} ({', '.join(str(b) for b in bits)})")
    i = j["initrd"]
    if i:
        blk = {True: "xen-blkfront present", False: "no xen-blkfront", None: "contents not checked"}
        lines.append(f"initrd:  {i['device']}{i['path']} ({i['compression']}, {blk[i['has_blkfront']]})")
    if j["cmdline"] is not None:
        lines.append(f"cmdline: {j['cmdline']}")
    if report.findings:
        lines.append("findings:")
        for f in report.findings:
            lines.append(f"  {f.severity:<7} {f.code}: {f.message}")
    return "\n".join(lines) + "\n"
