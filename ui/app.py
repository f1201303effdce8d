"""`esgkit ui`: the paper's interactive grounding (Fig. 7) as a local web page.

A Flask app serving one hand-written page (``ui/static``) and a small JSON API. Not Gradio, the
field's usual choice, for three reasons: Gradio pulls in some sixty packages (FastAPI, pandas,
uvicorn, its client …) where Flask is one small, long-stable one; the page's central feature — each
noun phrase highlighted in the text in its mask's colour, clickable to isolate its mask — is a few
lines of our own HTML but a custom component in Gradio; and a page whose elements we name is what a
real-browser test can drive reliably (``tests/ui/test_browser.py``).

Every answer is JSON; a bad input (not an image, a huge image, an empty caption, an unknown
segmenter) is a 400 with a message the page shows, never a stack trace.
"""

from __future__ import annotations

import base64
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from esgkit.core.errors import EsgkitError, InputError
from esgkit.core.io import load_image
from esgkit.core.text import check_caption
from esgkit.core.types import Grounding

from .workspace import GROUND_TRUTH, Outcome, Picture, Workspace

MAX_UPLOAD_MB = 64
SCENE_SIZES = ("256x256", "512x512", "1024x1024", "2048x2048")
log = logging.getLogger("esgkit.ui")


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png(image)).decode()


def hex_color(rgb: Any) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def entities_picture(image: np.ndarray, masks: Any) -> np.ndarray:
    """The entities a segmenter found, each in a distinct palette colour with its outline."""
    from esgkit.layers.painting import draw_entities

    return draw_entities(image, list(masks.masks))


def phrases_of(outcome: Outcome) -> list[dict[str, Any]]:
    """The page's phrase list: where each phrase sits in the text, its colour, entities and score."""
    result = outcome.result
    if isinstance(result, Grounding):
        from esgkit.pipelines.gella.pipeline import phrase_colors

        return [{"index": k, "text": g.phrase.text, "start": g.phrase.start, "end": g.phrase.end, "color": hex_color(c),
                 "entities": list(g.entity_ids), "score": round(max(g.scores), 3) if g.scores else None}
                for k, (g, c) in enumerate(zip(result.groundings, phrase_colors(result)))]
    from esgkit.pipelines.referring.pipeline import MASK_COLOR

    r = result.referral
    entity = r.mask_entity if r.mask_entity is not None else r.box_entity
    return [{"index": 0, "text": result.expression, "start": 0, "end": len(result.expression),
             "color": hex_color(MASK_COLOR), "entities": [] if entity is None else [int(entity)],
             "score": round(float(r.score), 3), "box": [round(float(v), 1) for v in r.box]}]


def overlay_of(workspace: Workspace, outcome: Outcome, only: list[int] | None = None) -> np.ndarray:
    image = workspace.picture(outcome.picture).image
    result = outcome.result
    if isinstance(result, Grounding):  # an ``only`` index out of range is the overlay's InputError (a 400)
        return workspace.pipeline(outcome.system).overlay(result, image, only=only, legend=False)
    from esgkit.pipelines.referring.pipeline import draw_referral

    return draw_referral(image, result.referral, result.expression)


def panel(workspace: Workspace, key: str) -> dict[str, Any]:
    outcome = workspace.outcome(key)
    result = outcome.result
    text = result.caption.text if isinstance(result, Grounding) else result.expression
    entities = len(result.masks) if isinstance(result, Grounding) else \
        len(workspace.entities(outcome.picture, outcome.segmenter))
    return {"outcome": key, "segmenter": outcome.segmenter, "system": outcome.system, "text": text,
            "phrases": phrases_of(outcome), "entities": entities, "seconds": round(outcome.seconds, 3),
            "warnings": outcome.warnings, "overlay": data_url(overlay_of(workspace, outcome))}


def picture_info(workspace: Workspace, key: str) -> dict[str, Any]:
    p = workspace.picture(key)
    h, w = p.image.shape[:2]
    return {"picture": key, "name": p.name, "width": w, "height": h, "image": data_url(p.image),
            "has_masks": p.masks is not None, "caption": p.caption}


def _field(body: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = body.get(name, default)
    if value is None:
        raise InputError(f"the request has no {name!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} {value!r} is not a {kind.__name__}") from None


def create_app(workspace: Workspace) -> Any:
    """The Flask app over ``workspace`` (its models load on first use and stay loaded)."""
    from flask import Flask, jsonify, request, send_file
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    app = Flask(__name__, static_folder=str(Path(__file__).parent / "static"), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_MB * 2**20

    def body() -> dict[str, Any]:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise InputError("the request must be a JSON object")
        return data

    @app.errorhandler(EsgkitError)
    def bad_input(exc: EsgkitError) -> Any:
        return jsonify(error=str(exc)), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: Exception) -> Any:
        return jsonify(error=f"the upload is over {MAX_UPLOAD_MB} MB: give a smaller image file"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error=f"{exc.code} {exc.name}: {exc.description}"), exc.code

    @app.errorhandler(Exception)
    def failure(exc: Exception) -> Any:  # a bug, not the user's input: the trace goes to the server's log
        log.exception("esgkit ui: request failed")
        return jsonify(error=f"esgkit failed ({type(exc).__name__}: {exc}); the server's log has the details"), 500

    @app.get("/")
    def index() -> Any:
        return app.send_static_file("index.html")

    @app.get("/api/options")
    def options() -> Any:
        return jsonify(config=workspace.config, segmenters=workspace.segmenter_choices,
                       default_segmenter=workspace.default_segmenter, referring=workspace.referring_choices,
                       ground_truth=GROUND_TRUTH, scene_sizes=list(SCENE_SIZES), max_side=workspace.max_side,
                       max_upload_mb=MAX_UPLOAD_MB)

    @app.post("/api/scene")
    def scene() -> Any:
        from esgkit.pipelines.cli import demo_scene

        data = body()
        seed, size = _field(data, "seed", int, 0), _field(data, "size", str, "512x512")
        if size not in SCENE_SIZES or seed < 0:
            raise InputError(f"scene seed {seed} must be ≥ 0 and size {size!r} one of {', '.join(SCENE_SIZES)}")
        sample = demo_scene(seed, size)
        key = workspace.add(Picture(sample["image"], f"ShapesWorld scene {seed} ({size})", sample["masks"],
                                    sample["caption"].text))
        return jsonify(picture_info(workspace, key))

    @app.post("/api/upload")
    def upload() -> Any:
        file = request.files.get("image")
        if file is None or not file.filename:
            raise InputError("no file in the upload: choose an image file")
        name = Path(file.filename).name
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            file.save(path)
            try:
                image = load_image(path)
            except InputError as exc:  # name the user's file, not our temporary copy
                raise InputError(str(exc).replace(f"image {path}", name).replace(str(path), name)) from None
        return jsonify(picture_info(workspace, workspace.add(Picture(image, name))))

    @app.post("/api/segment")
    def segment() -> Any:
        data = body()
        key, segmenter = _field(data, "picture", str), _field(data, "segmenter", str)
        masks = workspace.entities(key, segmenter)
        return jsonify(segmenter=segmenter, entities=len(masks),
                       image=data_url(entities_picture(workspace.picture(key).image, masks)),
                       warning=None if len(masks) else f"{segmenter} found no entity in this image: nothing can be "
                                                        "grounded; try another segmenter")

    @app.post("/api/ground")
    def ground() -> Any:
        data = body()
        key = _field(data, "picture", str)
        segmenters = data.get("segmenters") or [workspace.default_segmenter]
        if not isinstance(segmenters, list) or not 1 <= len(segmenters) <= 2:
            raise InputError("segmenters must be a list of one or two segmenter names")
        mode = _field(data, "mode", str, "caption")
        text = str(data.get("text") or "").strip()
        if mode == "caption":
            text = check_caption(text)  # an empty caption: a clear message
        elif mode == "describe":
            text = None
        elif mode != "refer":
            raise InputError(f"mode {mode!r}: expected caption, describe or refer")
        system = _field(data, "system", str) if mode == "refer" else None
        threshold = _field(data, "threshold", float, workspace.pipeline(workspace.config).config.threshold)
        keys = [workspace.ground(key, str(s), text, threshold, system) for s in segmenters]
        return jsonify(panels=[panel(workspace, k) for k in keys])

    @app.get("/api/outcome/<key>/overlay.png")
    def overlay(key: str) -> Any:
        outcome = workspace.outcome(key)
        only = request.args.get("only")
        picked = None if only in (None, "") else [_field({"only": only}, "only", int)]
        image = overlay_of(workspace, outcome, picked)
        return send_file(io.BytesIO(png(image)), mimetype="image/png", as_attachment=bool(request.args.get("download")),
                         download_name="overlay.png")

    @app.get("/api/outcome/<key>/grounding.json")
    def grounding(key: str) -> Any:
        outcome = workspace.outcome(key)
        result = outcome.result
        doc = result.to_dict() if isinstance(result, Grounding) else \
            result.to_dict(workspace.picture(outcome.picture).image.shape[:2])
        response = jsonify(doc)
        name = "grounding.json" if isinstance(result, Grounding) else "referral.json"
        response.headers["Content-Disposition"] = f"attachment; filename={name}"
        return response

    return app


__all__ = ["MAX_UPLOAD_MB", "create_app", "data_url", "entities_picture", "phrases_of"]
