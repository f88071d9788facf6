"""Findings: what the emulator noticed, with a stable code, a severity and a sentence for humans."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": str(self.severity), "message": self.message}


def error(code: str, message: str) -> Finding:
    return Finding(code, Severity.ERROR, message)


def warning(code: str, message: str) -> Finding:
    return Finding(code, Severity.WARNING, message)


def info(code: str, message: str) -> Finding:
    return Finding(code, Severity.INFO, message)
