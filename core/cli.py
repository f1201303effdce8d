"""The ``esgkit`` command line and the core's own commands: ``list``, ``plugins``, ``config show``,
``run``. Every other package adds its commands from its own ``cli.py`` through the
``esgkit_register_commands`` hook (built-ins too), each plugin's hook in isolation. Errors print one
clear line; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from .errors import EsgkitError, InputError
from .limits import Limits, env_name, flag_name, parse_limit
from .runtime import configure_threads, parse_threads


GLOBAL_OPTIONS = ("--threads", *(flag_name(f.name) for f in fields(Limits)))
"""Options of every command, accepted anywhere on the line (``esgkit run ... --threads 1``)."""


def build_parser() -> argparse.ArgumentParser:
    from .registry import get_registry

    parser = argparse.ArgumentParser(
        prog="esgkit",
        description="Entity segmentation and grounding: CropFormer + GELLA as swappable components.",
        epilog="Config overrides are key=value words after the options, e.g. segmenter.name=sam. "
               "The global options may stand anywhere on the line.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--threads", metavar="N", help="CPU threads of this process (default: $ESGKIT_THREADS, "
                        "else $OMP_NUM_THREADS, else the cores not busy now)")
    for f in fields(Limits):
        parser.add_argument(flag_name(f.name), metavar="N", help=f"resource bound (default {f.default:,}; "
                            f"also {env_name(f.name)})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    get_registry().register_commands(sub)
    return parser


def _split_overrides(extra: Sequence[str]) -> tuple[list[str], list[str]]:
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    return overrides, unknown


def _pop_global_options(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """``argv`` without the global options, and their values by flag."""
    rest, found = [], {}
    i = 0
    while i < len(argv):
        word = argv[i]
        flag, eq, value = word.partition("=")
        if flag in GLOBAL_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    raise InputError(f"{flag} needs a value, e.g. {flag} 1")
                value, i = argv[i + 1], i + 1
            found[flag] = value
        else:
            rest.append(word)
        i += 1
    return rest, found


def _apply_global_options(found: dict[str, str]) -> None:
    for f in fields(Limits):
        if flag_name(f.name) in found:
            raw = found[flag_name(f.name)]
            os.environ[env_name(f.name)] = str(parse_limit(raw, f"{flag_name(f.name)} {raw!r}"))
    threads = found.get("--threads")
    configure_threads(parse_threads(threads, "--threads") if threads is not None else None)


def _show_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    """Warnings as one line a user reads (``esgkit: warning: …``), not a source location."""
    print(f"esgkit: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``esgkit`` command. Exit status: 0 done, 2 an esgkit error (the message says what to fix),
    1 an unexpected error (a bug: one line, ``--debug`` for the traceback), 130 interrupted. Called
    with ``argv`` from Python, it leaves ``os.environ`` as it found it (the global options set it)."""
    called_in_process = argv is not None  # main([...]) from Python, not the `esgkit` command
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    saved_env = dict(os.environ)
    saved_showwarning = warnings.showwarning
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub is reachable: fail fast, not after DNS retries
    try:
        if not debug:
            warnings.showwarning = _show_warning
        argv, found = _pop_global_options([a for a in argv if a != "--debug"])
        _apply_global_options(found)
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
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("esgkit: error: out of memory; use a smaller input (or a lower limit such as --max-image-pixels), "
              "or a machine with more memory", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not a user error: one line, never a traceback unless asked for
        if debug:
            traceback.print_exc()
        print(f"esgkit: internal error: {type(exc).__name__}: {exc} (this is a bug in esgkit or a plugin; "
              "rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = saved_showwarning
        if called_in_process:  # the global options and HF_HUB_OFFLINE were for this call: the caller's env back
            os.environ.clear()
            os.environ.update(saved_env)


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
    p.add_argument("--expression", help="the referring expression (referring pipelines, e.g. pbrec_mt_tiny)")
    p.add_argument("--segmenter", metavar="CONFIG", help="take the segmenter section of this config (a shipped name "
                   "such as sam_tiny, or a file): swaps the segmenter with its settings and weights in one word")
    p.add_argument("--out", required=True, help="output folder (new, empty, or one `esgkit run` wrote before)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even when it holds other files (files of the same name are replaced)")
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
    """Run a pipeline on one image into ``--out`` (kind ``run`` of ``esgkit.core.outputs``: a new or
    empty folder, or one `esgkit run` wrote; other files only with ``--overwrite``), then print the
    pipeline's ``summary`` of the result (GELLA: noun → entities, score) and the files written."""
    from .config import load_config, section_of
    from .io import load_image, load_masks
    from .outputs import check_folder, claim_folder
    from .pipeline import build_pipeline
    from .schema import to_container

    image = load_image(args.image)  # fail on a bad image before building models
    masks = load_masks(args.masks) if args.masks else None
    if masks is not None:
        masks.check_image_size(image.shape[0], image.shape[1], what=f"masks in {args.masks}")
    overwrite = getattr(args, "overwrite", False)
    check_folder(args.out, "run", overwrite)  # refuse before the models run; nothing is written yet
    if getattr(args, "segmenter", None):
        sections = {"segmenter": section_of(args.segmenter, "segmenter", "--segmenter")}
        pipeline = build_pipeline(to_container(load_config(args.config, args.overrides, sections=sections)))
    else:
        pipeline = build_pipeline(args.config, args.overrides)
    inputs = {"masks": masks, "image_id": Path(args.image).stem}
    for key in ("caption", "expression"):
        if getattr(args, key, None) is not None:
            inputs[key] = getattr(args, key)
    result = pipeline.run(image, **inputs)
    out = claim_folder(args.out, "run", overwrite)
    paths = pipeline.write(result, str(out.path), image)  # each file written atomically
    out.record(*paths)
    summary = pipeline.summary(result)  # an empty result has been warned about by run (stderr)
    if summary:
        print(summary)
    for path in paths:
        print(f"wrote {path}")
    return 0


__all__ = ["add_commands", "build_parser", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
