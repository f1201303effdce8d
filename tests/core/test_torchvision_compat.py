"""The torchvision guard: applies the NMS shim only where the compiled ops cannot load."""

import subprocess
import sys
import textwrap


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_shim_makes_torchvision_usable_and_nms_correct():
    code = """
    import esgkit, torch
    import torchvision
    from esgkit.core import torchvision_compat as tc
    import timm, open_clip, segment_anything  # all import torchvision
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(300, 4, generator=g) * 100
    boxes[:, 2:] += boxes[:, :2] + 1
    scores = torch.rand(300, generator=g)
    keep = torchvision.ops.nms(boxes, scores, 0.4)
    # brute-force reference, written independently of the shim
    order = sorted(range(300), key=lambda i: -float(scores[i]))
    iou = torchvision.ops.box_iou(boxes, boxes)
    kept = []
    for i in order:
        if all(float(iou[i, j]) <= 0.4 for j in kept):
            kept.append(i)
    assert keep.tolist() == kept, (keep.tolist()[:10], kept[:10])
    b = torchvision.ops.batched_nms(boxes, scores, torch.arange(300) % 3, 0.4)
    assert len(b) >= len(keep)
    print("shim", tc.shim_active())
    """
    res = run_py(code, ESGKIT_TORCHVISION_SHIM="1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "shim True" in res.stdout


def test_guard_does_nothing_when_compiled_ops_load():
    # Pretend the compiled library loads (as on a GPU machine): the guard must register nothing.
    code = """
    import esgkit
    from esgkit.core import torchvision_compat as tc
    tc._compiled_ops_load = lambda spec: (True, "pretend compiled ops loaded")
    try:
        import torchvision  # on this CPU-only machine the untouched wheel may fail: that is the point
    except RuntimeError as exc:
        print("untouched import failed:", exc)
    assert tc.shim_active() is False and tc._LIBRARIES == [], tc._LIBRARIES
    print("reason", tc.shim_reason())
    """
    res = run_py(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "reason pretend compiled ops loaded" in res.stdout


def test_guard_detects_this_machine():
    # Without forcing, the guard decides by trying to load torchvision's _C library.
    code = """
    import esgkit, torchvision
    from esgkit.core import torchvision_compat as tc
    print("active", tc.shim_active(), "reason", tc.shim_reason())
    import torch
    print("nms_ok", len(torchvision.ops.nms(torch.tensor([[0., 0, 1, 1]]), torch.tensor([1.]), 0.5)))
    """
    res = run_py(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "nms_ok 1" in res.stdout
