"""`esgkit ui`'s JSON API through Flask's test client: scenes and uploads, segmenters run once per image,
grounding that agrees with `esgkit run`, side by side, referring systems, and bad inputs answered with
messages, never a stack trace."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("flask")

from esgkit.core.cli import main  # noqa: E402
from esgkit.core.io import save_image  # noqa: E402
from esgkit.ui.app import create_app  # noqa: E402
from esgkit.ui.browser import decode_png  # noqa: E402
from esgkit.ui.workspace import Workspace  # noqa: E402

CAPTION = "a red circle and two squares above the grass"


@pytest.fixture(scope="module")
def workspace():
    return Workspace("esg_tiny")


@pytest.fixture(scope="module")
def client(workspace):
    return create_app(workspace).test_client()


@pytest.fixture(scope="module")
def scene(client):
    answer = client.post("/api/scene", json={"seed": 3, "size": "256x256"})
    assert answer.status_code == 200, answer.json
    return answer.json


def ground(client, scene, **body):
    answer = client.post("/api/ground", json={"picture": scene["picture"], **body})
    assert answer.status_code == 200, answer.json
    return answer.json["panels"]


def test_options_offer_every_shipped_segmenter_and_referring_system(client):
    options = client.get("/api/options").json
    assert {"ground_truth", "cropformer_tiny", "mask2former_tiny", "sam_tiny"} <= set(options["segmenters"])
    assert {"felzenszwalb", "slic"} <= set(options["segmenters"])  # the example plugin's, by their registered names
    assert "sam" not in options["segmenters"]  # a built-in is offered through its configs (with weights)
    assert {"pbrec_mt_tiny", "cmpc_tiny", "uniqrnet_tiny", "qrnet_tiny"} <= set(options["referring"])
    assert "uniqrnet_paper" not in options["referring"]  # no weights: not offered
    assert options["default_segmenter"] == "cropformer_tiny"  # esg_tiny's own segmenter
    page = client.get("/")
    assert page.status_code == 200 and b'id="ground-button"' in page.data


def test_grounding_matches_esgkit_run_and_the_segmenter_runs_once(client, workspace, scene, tmp_path, monkeypatch):
    image = workspace.picture(scene["picture"]).image
    calls = []
    segmenter = workspace.segmenter("cropformer_tiny")
    original = segmenter.segment
    monkeypatch.setattr(segmenter, "segment", lambda *a, **k: calls.append(1) or original(*a, **k))
    seg = client.post("/api/segment", json={"picture": scene["picture"], "segmenter": "cropformer_tiny"}).json
    (panel,) = ground(client, scene, segmenters=["cropformer_tiny"], mode="caption", text=CAPTION, threshold=0.5)
    assert len(calls) == 1  # the page's segment call and the grounding share one segmenter run
    assert panel["entities"] == seg["entities"] > 0 and panel["text"] == CAPTION
    for p in panel["phrases"]:
        assert CAPTION[p["start"]:p["end"]] == p["text"] and p["color"].startswith("#")
    page_doc = client.get(f"/api/outcome/{panel['outcome']}/grounding.json").json

    save_image(tmp_path / "scene.png", image)
    assert main(["run", "esg_tiny", "--image", str(tmp_path / "scene.png"), "--caption", CAPTION,
                 "--segmenter", "cropformer_tiny", "--out", str(tmp_path / "run")]) == 0
    run_doc = json.loads((tmp_path / "run" / "grounding.json").read_text())
    assert page_doc == run_doc  # the same masks (RLE) and ids, phrases, entities and scores
    overlay = decode_png(panel["overlay"])
    assert overlay.shape == image.shape  # no legend strip on the page: the colours are in the text


def test_a_phrase_click_draws_that_phrase_alone(client, workspace, scene):
    (panel,) = ground(client, scene, segmenters=["ground_truth"], mode="caption", text=CAPTION, threshold=0.5)
    grounded = [p for p in panel["phrases"] if p["entities"]]
    assert grounded
    k = grounded[0]["index"]
    answer = client.get(f"/api/outcome/{panel['outcome']}/overlay.png?only={k}")
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    alone = decode_png("data:image/png;base64," + __import__("base64").b64encode(answer.data).decode())
    outcome = workspace.outcome(panel["outcome"])
    expected = workspace.pipeline("esg_tiny").overlay(outcome.result, workspace.picture(scene["picture"]).image,
                                                      only=[k], legend=False)
    assert np.array_equal(alone, expected)
    assert not np.array_equal(alone, decode_png(panel["overlay"])) or len(grounded) == 1
    bad = client.get(f"/api/outcome/{panel['outcome']}/overlay.png?only=99")
    assert bad.status_code == 400 and "phrase 99" in bad.json["error"]


def test_side_by_side_grounds_one_caption_on_two_segmenters(client, scene):
    panels = ground(client, scene, segmenters=["ground_truth", "cropformer_tiny"], mode="caption", text=CAPTION,
                    threshold=0.5)
    assert [p["segmenter"] for p in panels] == ["ground_truth", "cropformer_tiny"]
    assert panels[0]["text"] == panels[1]["text"] == CAPTION
    assert panels[0]["entities"] != panels[1]["entities"] or panels[0]["phrases"] != panels[1]["phrases"]
    (plugin,) = ground(client, scene, segmenters=["felzenszwalb"], mode="caption", text=CAPTION, threshold=0.5)
    assert plugin["segmenter"] == "felzenszwalb" and plugin["entities"] > 0  # a third party's segmenter, by name


def test_describe_threshold_and_referring_modes(client, workspace, scene, tmp_path):
    (described,) = ground(client, scene, segmenters=["ground_truth"], mode="describe", threshold=0.5)
    assert described["text"] and all(described["text"][p["start"]:p["end"]] == p["text"]
                                     for p in described["phrases"])
    (strict,) = ground(client, scene, segmenters=["ground_truth"], mode="caption", text=CAPTION, threshold=1.0)
    (loose,) = ground(client, scene, segmenters=["ground_truth"], mode="caption", text=CAPTION, threshold=0.0)
    count = lambda panel: sum(len(p["entities"]) for p in panel["phrases"])  # noqa: E731
    assert count(strict) <= count(loose) and count(loose) > 0
    (referral,) = ground(client, scene, segmenters=["cropformer_tiny"], mode="refer", system="pbrec_mt_tiny",
                         text="the red circle", threshold=0.5)
    assert referral["system"] == "pbrec_mt_tiny" and referral["phrases"][0]["text"] == "the red circle"
    assert len(referral["phrases"][0]["box"]) == 4
    download = client.get(f"/api/outcome/{referral['outcome']}/grounding.json")
    assert "filename=referral.json" in download.headers["Content-Disposition"]
    save_image(tmp_path / "scene.png", workspace.picture(scene["picture"]).image)
    assert main(["run", "pbrec_mt_tiny", "--image", str(tmp_path / "scene.png"), "--expression", "the red circle",
                 "--segmenter", "cropformer_tiny", "--out", str(tmp_path / "run")]) == 0
    assert download.json == json.loads((tmp_path / "run" / "referral.json").read_text())  # esgkit run's file


@pytest.mark.parametrize("path, body, message", [  # the scene's picture is added to the /api/ground bodies
    ("/api/ground", {"mode": "caption", "text": "  ", "segmenters": ["ground_truth"]}, "caption"),
    ("/api/ground", {"mode": "caption", "text": CAPTION, "segmenters": ["felzenszwalb9"]}, "unknown segmenter"),
    ("/api/ground", {"mode": "refer", "text": "the circle", "system": "gella_paper"}, "unknown referring system"),
    ("/api/ground", {"mode": "sing", "text": CAPTION}, "mode 'sing'"),
    ("/api/ground", {"mode": "caption", "text": CAPTION, "threshold": "high"}, "threshold 'high'"),
    ("/api/ground", {"mode": "caption", "text": CAPTION, "threshold": 3}, "threshold 3"),
    ("/api/scene", {"seed": 0, "size": "9x9"}, "size '9x9'"),
    ("/api/segment", {"segmenter": "cropformer_tiny"}, "no 'picture'"),
])
def test_bad_requests_get_a_message(client, scene, path, body, message):
    if path == "/api/ground":
        body = {"picture": scene["picture"], **body}
    answer = client.post(path, json=body)
    assert answer.status_code == 400 and message in answer.json["error"], answer.json
    assert "Traceback" not in answer.json["error"]


def test_bad_uploads_get_a_message(workspace, tmp_path):
    client = create_app(Workspace("esg_tiny", max_side=64)).test_client()
    not_image = client.post("/api/upload", data={"image": (io.BytesIO(b"hello"), "notes.txt")})
    assert not_image.status_code == 400 and "notes.txt: not a readable image" in not_image.json["error"]
    assert "/tmp" not in not_image.json["error"]  # the user's file name, not the server's temporary copy
    save_image(tmp_path / "big.png", np.zeros((80, 100, 3), np.uint8))
    big = client.post("/api/upload", data={"image": ((tmp_path / "big.png").open("rb"), "big.png")})
    assert big.status_code == 400 and "up to 64 pixels a side" in big.json["error"]
    save_image(tmp_path / "ok.png", np.zeros((40, 50, 3), np.uint8))
    ok = client.post("/api/upload", data={"image": ((tmp_path / "ok.png").open("rb"), "ok.png")}).json
    assert ok["width"] == 50 and not ok["has_masks"]
    no_gt = client.post("/api/ground", json={"picture": ok["picture"], "segmenters": ["ground_truth"],
                                             "mode": "caption", "text": CAPTION})
    assert no_gt.status_code == 400 and "generated scenes" in no_gt.json["error"]
    assert client.post("/api/upload", data={}).json["error"].startswith("no file")
    gone = client.get("/api/outcome/0123/grounding.json")
    assert gone.status_code == 400 and "ground again" in gone.json["error"]


def test_the_command_serves_this_machine_only_by_default(capsys):
    from esgkit.core.cli import build_parser

    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1" and args.port == 7860 and args.config == "esg_tiny"
    assert main(["ui", "--max-side", "8"]) != 0
    assert "--max-side 8" in capsys.readouterr().err
