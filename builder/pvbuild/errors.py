"""The one place that maps errors to exit codes (documented in the README, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the image (or the AMI) is not good
EXIT_USAGE = 2  # bad input or usage: missing file, not a disk image, bad recipe
EXIT_ENVIRONMENT = 3  # missing tool, no root, no AWS credentials
EXIT_INTERNAL = 4  # a bug in pvbuild


class PvbuildError(Exception):
    """An error the user can fix; `exit_code` says which kind."""

    exit_code = EXIT_USAGE


class UsageError(PvbuildError):
    exit_code = EXIT_USAGE


class EnvironmentProblem(PvbuildError):
    exit_code = EXIT_ENVIRONMENT
