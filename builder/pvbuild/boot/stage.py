"""The build pipeline's real-boot stage (`pvbuild build --boot`, recipe `boot: true`), after the emulator check.

The emulator and the real boot answer different questions (README, "Which verdict to trust"), but on an image
pvbuild built they must agree: both say it boots, or both say it does not. When they disagree, one of them has a
bug; the build fails and boot-report.json shows both verdicts side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pvbuild.build.run import Log


def real_boot(image: Path, variant: str, arch: str, log: Log, work: Path) -> dict[str, Any]:
    """Boot the built image; its report with paths made relative to the output folder."""
    from pvbuild.boot.run import boot_image

    if arch != "x86_64":
        return {"skipped": f"the Xen test host boots x86_64 guests only, not {arch}"}
    result = boot_image(image, variant=variant, arch=arch, log=log, work_parent=work)
    report = result.to_json()
    report["image"] = image.name
    if report.get("console_log"):
        report["console_log"] = Path(report["console_log"]).name
    verdict = "reached userspace" if result.reached_userspace else f"did NOT reach userspace: {result.outcome.failure}"
    log.say(f"boot: {image.name} {verdict} (Xen PV guest, {variant} loader, {result.accel})")
    return report


def disagreement(emulator_boots: bool, real: dict[str, Any]) -> str | None:
    """None when the emulator and the real boot agree (or there was no real boot), else what each said."""
    if "reached_userspace" not in real:
        return None
    reached = bool(real["reached_userspace"])
    if reached == emulator_boots:
        return None
    if emulator_boots:
        return (f"the emulator says the image boots, the real boot says it does not ({real.get('failure')}): "
                "a bug in one of them")
    return ("the emulator says the image does not boot, the real boot reached userspace: a bug in one of them "
            "(or a GRUB 0.97 limit GRUB 2 does not have; the emulator's verdict stands for PV-GRUB)")
