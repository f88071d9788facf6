"""The `pvbuild` command line: subcommands only, no logic."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from pvbuild import __version__
from pvbuild.errors import EXIT_INTERNAL, EXIT_USAGE, PvbuildError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"pvbuild: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pvbuild", description="Build, prove and ship Linux images that boot through PV-GRUB.")
    p.add_argument("--version", action="version", version=f"pvbuild {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    c = sub.add_parser("check", help="run the PV-GRUB emulator on a raw disk image",
                       description="Say exactly what PV-GRUB would boot from IMAGE, and why not.")
    c.add_argument("image", metavar="IMAGE", help="raw disk image (partitionless, MBR or GPT)")
    c.add_argument("--pvgrub", default="1.05", choices=["1.03", "1.04", "1.05"], help="PV-GRUB version (1.05)")
    c.add_argument("--variant", default="hd0", choices=["hd0", "hd00"], help="AKI variant (hd0)")
    c.add_argument("--arch", default="x86_64", choices=["x86_64", "i386"], help="PV-GRUB architecture (x86_64)")
    c.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    return p


def cmd_check(args: argparse.Namespace) -> int:
    from pvbuild.pvgrub.check import check_image
    from pvbuild.pvgrub.profiles import Profile
    from pvbuild.pvgrub.render import render_text

    report = check_image(args.image, Profile(args.pvgrub, args.variant, args.arch))
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(report))
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    from pvbuild.pvgrub.errors import ImageError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "check":
            return cmd_check(args)
    except ImageError as e:
        sys.stderr.write(f"pvbuild: {e}\n")
        return EXIT_USAGE
    except PvbuildError as e:
        sys.stderr.write(f"pvbuild: {e}\n")
        return e.exit_code
    except OSError as e:
        sys.stderr.write(f"pvbuild: cannot read {e.filename or 'the input'}: {e.strerror or e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("pvbuild: interrupted\n")
        return 130
    except Exception as e:
        if os.environ.get("PVBUILD_DEBUG"):
            raise
        sys.stderr.write(f"pvbuild: internal error ({type(e).__name__}: {e}); this is a bug in pvbuild — please "
                         "report it; PVBUILD_DEBUG=1 shows the traceback\n")
        return EXIT_INTERNAL
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE
