import json

import numpy as np
import pytest
from PIL import Image

from esgkit.core.errors import InputError
from esgkit.training.metrics import COLOURS, plot_metrics, read_metrics


def test_read_and_plot_loss_curves(tmp_path):
    rows = [{"step": s, "loss": 10 / s, "dice": 1 / s} for s in range(1, 21)] + [{"step": 20, "split": "val", "ar": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(read_metrics(tmp_path)) == 20 and read_metrics(tmp_path, "val")[0]["ar"] == 0.5
    out = plot_metrics(tmp_path, tmp_path / "docs" / "loss.png", keys=["loss", "dice"], log_y=True)
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (450, 800, 3)
    for colour in COLOURS[:2]:  # both curves are drawn
        assert (img == colour).all(-1).sum() > 100
    with pytest.raises(InputError, match="no train rows"):
        plot_metrics(tmp_path, tmp_path / "x.png", keys=["missing"])
    with pytest.raises(InputError, match="not found"):
        read_metrics(tmp_path / "nowhere")
