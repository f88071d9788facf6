"""Where pvbuild's non-Python parts live: templates/ and elements/ at the top of the checkout."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
ELEMENTS = ROOT / "elements"
RECIPES = ROOT / "recipes"
