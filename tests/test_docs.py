"""The README stays true: every finding code the emulator can emit is documented there."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CODE = r'"([a-z0-9]+(?:-[a-z0-9]+)+)"'
PATTERNS = [
    re.compile(r"\b(?:error|warning|info|note)\(\s*f?" + CODE),
    re.compile(r"code\s*=\s*" + CODE),
    re.compile(r"\.fail\(\s*[^,()]+,\s*" + CODE),
    re.compile(r"_Reject\(\s*" + CODE),
]


def emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in (REPO / "builder" / "pvbuild" / "pvgrub").rglob("*.py"):
        text = path.read_text()
        for pat in PATTERNS:
            codes.update(pat.findall(text))
    # Codes built from a variable: menu-{halt,reboot} (machine.py).
    codes |= {"menu-halt", "menu-reboot", "configfile", "chainloader-unsupported", "xfs-hang", "xfs-undefined"}
    return codes


def test_every_finding_code_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+)*)`", readme))
    missing = sorted(emitted_codes() - documented)
    assert not missing, f"finding codes missing from README.md: {missing}"


def test_scanner_finds_codes() -> None:
    """The scan itself must see the codes the issue names, or the test above proves nothing."""
    assert {"menu-not-found", "fs-64bit", "kernel-not-xen", "initrd-no-blkfront", "root-not-found"} <= emitted_codes()
