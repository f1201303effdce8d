"""The ``esgkit`` command line and the core's own commands: ``list``, ``plugins``, ``config show``,
``run``. Every other package adds its commands from its own ``cli.py`` through the
``esgkit_register_commands`` hook (built-ins too), each plugin's hook in isolation. Errors print one
clear line; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from .errors import EsgkitError, InputError


def build_parser() -> argparse.ArgumentParser:
    from .registry import get_registry

    parser = argparse.ArgumentParser(
        prog="esgkit",
        description="Entity segmentation and grounding: CropFormer + GELLA as swappable components.",
        epilog="Config overrides are key=value words after the options, e.g. segmenter.name=sam.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    get_registry().register_commands(sub)
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


# --------------------------------------------------------------------------- the core's commands


def add_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("list", help="list registered components (esgkit list [KIND] [PATTERN])")
    p.add_argument("kind", nargs="?", help="a component kind, e.g. segmenter")
    p.add_argument("pattern", nargs="?", help="a wildcard on names, e.g. 'swin*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("plugins", help="plugins: name, version, components, load errors")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("config", help="config tools: esgkit config show CONFIG [key=value ...], esgkit config list")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    s = csub.add_parser("show", help="print the resolved config")
    s.add_argument("config", help="a YAML file or the name of a shipped config")
    s.add_argument("--no-validate", action="store_true",
                   help="skip checking each section against its component's typed config")
    s.set_defaults(func=cmd_config_show, accepts_overrides=True)
    s = csub.add_parser("list", help="the shipped configs and where they are")
    s.set_defaults(func=cmd_config_list)

    p = sub.add_parser("run", help="run a pipeline on one image")
    p.add_argument("config", help="a YAML file or the name of a shipped config (e.g. colormap)")
    p.add_argument("--image", required=True, help="the input image")
    p.add_argument("--masks", help="entity masks for the image: COCO-RLE JSON or id-map PNG")
    p.add_argument("--caption", help="the caption to ground (grounding pipelines)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_run, accepts_overrides=True)


def cmd_list(args: argparse.Namespace) -> int:
    from .registry import get_registry

    registry = get_registry()
    kinds = [args.kind] if args.kind else registry.kinds
    for kind in kinds:
        names = registry.names(kind, args.pattern)
        if args.kind:
            for name in names:
                e = registry.entry(kind, name)
                print(f"{name:24s} [{e.origin}]  {e.description}")
            if not names:
                print(f"(no {kind} matches {args.pattern!r})")
        else:
            print(f"{kind}: {', '.join(names) if names else '(none)'}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from . import torchvision_compat
    from .registry import get_registry

    registry = get_registry()  # main() built the parser first: broken command hooks are recorded
    failed = 0
    for info in registry.plugins.values():
        status = "FAILED" if info.error else ("commands FAILED" if info.command_error else "ok")
        print(f"{info.name}{info.where}: {status}")
        if info.error or info.command_error:
            failed += 1
            print(f"    error: {info.error or info.command_error}")
        if info.components:
            print(f"    {', '.join(info.components)}")
        for folder in info.config_dirs:
            print(f"    configs: {folder}")
    if torchvision_compat.shim_reason():
        print(f"torchvision: {'pure-Python NMS shim' if torchvision_compat.shim_active() else 'compiled ops'}"
              f" ({torchvision_compat.shim_reason()})")
    if failed:
        print(f"{failed} plugin(s) failed to load; set ESGKIT_STRICT_PLUGINS=1 to make that an error")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from .config import load_config
    from .pipeline import validate_pipeline_config

    cfg = load_config(args.config, args.overrides)
    if not args.no_validate:
        validate_pipeline_config(cfg)
    print(OmegaConf.to_yaml(cfg), end="")
    return 0


def cmd_config_list(args: argparse.Namespace) -> int:
    from .config import shipped_configs

    for name, path in sorted(shipped_configs().items()):
        print(f"{name:24s} {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .io import load_image, load_masks
    from .pipeline import build_pipeline

    image = load_image(args.image)  # fail on a bad image before building models
    masks = load_masks(args.masks) if args.masks else None
    if masks is not None:
        masks.check_image_size(image.shape[0], image.shape[1], what=f"masks in {args.masks}")
    pipeline = build_pipeline(args.config, args.overrides)
    inputs = {"masks": masks, "image_id": Path(args.image).stem}
    if args.caption is not None:
        inputs["caption"] = args.caption
    result = pipeline.run(image, **inputs)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    for path in pipeline.write(result, str(out), image):
        print(f"wrote {path}")
    return 0


__all__ = ["add_commands", "build_parser", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
