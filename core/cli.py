"""The ``esgkit`` command line. Sub-commands come from plugins through the
``esgkit_register_commands`` hook (built-in ones too). Errors print one clear line; ``--debug``
shows the traceback."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from .errors import EsgkitError


def build_parser() -> argparse.ArgumentParser:
    from .registry import get_registry

    parser = argparse.ArgumentParser(
        prog="esgkit",
        description="Entity segmentation and grounding: CropFormer + GELLA as swappable components.",
        epilog="Config overrides are key=value words after the options, e.g. segmenter.name=sam.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registry = get_registry()
    registry.plugin_manager.hook.esgkit_register_commands(subparsers=sub)
    return parser


def _split_overrides(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    return overrides, unknown


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub is reachable: fail fast, not after DNS retries
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        overrides, unknown = _split_overrides(extra)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if not getattr(args, "command", None):
            parser.print_help()
            return 0
        if overrides and not getattr(args, "accepts_overrides", False):
            parser.error(f"`esgkit {args.command}` takes no key=value overrides: {' '.join(overrides)}")
        args.overrides = overrides
        return int(args.func(args) or 0)
    except EsgkitError as exc:
        if debug:
            traceback.print_exc()
        print(f"esgkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("esgkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
