"""``esgkit ui [--config CONFIG] [--port N]``: serve the interactive grounding page on localhost.
Flask and the models are imported inside the command only."""

from __future__ import annotations

import argparse
import sys

DEFAULT_PORT = 7860


def add_commands(sub) -> None:  # type: ignore[no-untyped-def]
    p = sub.add_parser(
        "ui", help="serve a web page to ground captions and referring expressions on any segmenter's entities",
        description="Upload an image or generate a ShapesWorld scene, pick a segmenter (and a second one to compare), "
                    "type a caption or a referring expression, or ask for a description: each noun phrase is "
                    "highlighted in its mask's colour. Serves on 127.0.0.1 unless --host says otherwise. "
                    "See docs/ui.md.")
    p.add_argument("--config", default="esg_tiny", help="the GELLA config to ground with (default: esg_tiny)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--max-side", type=int, default=4096, help="largest image side the page accepts (default 4096)")
    p.set_defaults(func=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    from esgkit.core.errors import ConfigError

    try:
        from werkzeug.serving import make_server

        from .app import create_app
    except ImportError as exc:
        raise ConfigError(f"esgkit ui needs Flask ({exc}): pip install 'esgkit[ui]'") from None
    from .workspace import Workspace

    if args.max_side < 64:
        raise ConfigError(f"--max-side {args.max_side}: give at least 64 pixels", key="--max-side")
    print(f"esgkit ui: loading {args.config} and its segmenter…", flush=True)
    workspace = Workspace(args.config, max_side=args.max_side)
    workspace.pipeline(args.config)  # loaded once here, reused by every request
    if workspace.default_segmenter != "ground_truth":
        workspace.segmenter(workspace.default_segmenter)
    server = make_server(args.host, args.port, create_app(workspace), threaded=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who reaches this machine can use the page", file=sys.stderr)
    print(f"esgkit ui: serving on http://{args.host}:{server.server_port}/ (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


__all__ = ["add_commands"]
