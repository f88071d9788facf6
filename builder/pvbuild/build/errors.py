"""Errors of the build stage. Their exit codes are the ones `pvbuild.errors` defines (the one mapping)."""

from __future__ import annotations

from collections.abc import Sequence

from pvbuild.errors import EXIT_CHECK_FAILED, EXIT_ENVIRONMENT, EnvironmentProblem, PvbuildError


class CommandFailed(PvbuildError):
    """A tool the build ran failed. Most often the environment (network, mirror, disk space): exit 3.

    `stderr` holds the end of what the tool printed (the whole output is in the build log).
    """

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        tail = stderr.strip()
        detail = f":\n{tail}" if tail else " (it printed nothing on stderr)"
        super().__init__(f"{argv[0]} failed with exit code {returncode}{detail}")


class ToolMissing(EnvironmentProblem):
    """A command-line tool the build needs is not installed: say which Debian package has it."""


class BuildInterrupted(PvbuildError):
    """SIGTERM during a build (Ctrl-C stays a KeyboardInterrupt); everything acquired has been released."""

    exit_code = 130


class CheckFailed(PvbuildError):
    """The emulator says the built image would not boot under the plan's PV-GRUB profile: exit 1."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, report_dir: str | None) -> None:
        self.report_dir = report_dir
        super().__init__(message)
