"""Recipes are untrusted input: any bytes give a plan or a RecipeError (exit 2), quickly, never a crash."""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvbuild.errors import PvbuildError
from pvbuild.plan import load_plan
from pvbuild.resources import RECIPES

FUZZ = settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True)
BASE = (RECIPES / "debian-12-separate-boot.yaml").read_text()


def try_plan(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.yaml"
        path.write_text(text, errors="surrogateescape")
        with contextlib.suppress(PvbuildError):
            load_plan(path)


@FUZZ
@given(st.text(max_size=2000))
def test_random_text(text: str) -> None:
    try_plan(text)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BASE)), st.integers(0, 40), st.text(max_size=20)), max_size=6))
def test_mutated_recipe(edits: list[tuple[int, int, str]]) -> None:
    text = BASE
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    try_plan(text)


def test_billion_laughs_is_refused_quickly() -> None:
    lol = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(12):
        lol += f"b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = f"b{i}"
    start = time.monotonic()
    try_plan("name: t\n" + lol)
    assert time.monotonic() - start < 2
