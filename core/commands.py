"""Built-in sub-commands: list, plugins, config show, run."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import EsgkitError, InputError


def add_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser("list", help="list registered components (esgkit list [KIND] [PATTERN])")
    p.add_argument("kind", nargs="?", help="a component kind, e.g. segmenter")
    p.add_argument("pattern", nargs="?", help="a wildcard on names, e.g. 'swin*'")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("plugins", help="plugins: name, version, components, load errors")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("config", help="config tools: esgkit config show CONFIG [key=value ...]")
    csub = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    s = csub.add_parser("show", help="print the resolved config")
    s.add_argument("config", help="a YAML file or the name of a shipped config")
    s.add_argument("--no-validate", action="store_true",
                   help="skip checking each section against its component's typed config")
    s.set_defaults(func=cmd_config_show, accepts_overrides=True)

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
                desc = f"  {e.description}" if e.description else ""
                print(f"{name:24s} [{e.origin}]{desc}")
            if not names:
                print(f"(no {kind} matches {args.pattern!r})")
        else:
            print(f"{kind}: {', '.join(names) if names else '(none)'}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from . import torchvision_compat
    from .registry import get_registry

    registry = get_registry()
    failed = 0
    for info in registry.plugins.values():
        dist = f" ({info.distribution} {info.version})" if info.distribution else ""
        status = "FAILED" if info.error else "ok"
        print(f"{info.name}{dist}: {status}")
        if info.error:
            failed += 1
            print(f"    error: {info.error}")
        elif info.components:
            print(f"    {', '.join(info.components)}")
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


__all__ = ["add_commands", "EsgkitError"]
