"""Make torchvision importable where its compiled operators cannot load.

The torchvision wheel that pip picks for CPU torch on these machines is a CUDA build: its ``_C.so``
needs ``libc10_cuda``/``libtorch_cuda``, fails to load quietly, and then
``torchvision/_meta_registrations.py`` registers a fake for ``torchvision::nms`` — an operator that
was never defined — so ``import torchvision`` (and with it timm, open_clip, segment-anything and
transformers) raises ``RuntimeError: operator torchvision::nms does not exist``.

The fix used here is a pure-Python shim, applied lazily by an import hook:

* nothing happens until something imports ``torchvision`` (so ``import esgkit`` stays cheap);
* then the hook tries to load torchvision's own ``_C`` library. If it loads, the compiled ops are
  there and **nothing is changed** (a GPU user's working torchvision is left alone);
* if it cannot load, the ``torchvision::nms`` and ``torchvision::qnms`` schemas are defined with
  ``torch.library`` and given a pure-PyTorch NMS kernel, and ``torchvision.ops.boxes._assert_has_ops``
  becomes a no-op once that module is imported. Other ops (``roi_align`` …) already fall back to
  torchvision's Python implementations when ``_has_ops()`` is false.

Set ``ESGKIT_TORCHVISION_SHIM=0`` to disable the hook, ``=1`` to force the shim (for tests).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any

_STATE: dict[str, Any] = {"checked": False, "shim_active": False, "reason": None}


def shim_active() -> bool:
    """True when the pure-Python NMS shim was installed because the compiled ops could not load."""
    return bool(_STATE["shim_active"])


def shim_reason() -> str | None:
    """Why the shim was (or was not) installed, for ``esgkit plugins`` and bug reports."""
    return _STATE["reason"]


def nms_reference(boxes: "Any", scores: "Any", iou_threshold: float) -> "Any":
    """Greedy NMS in plain PyTorch: indices of kept boxes, sorted by decreasing score.

    Same contract as ``torchvision.ops.nms``: boxes are (x1, y1, x2, y2); a box is dropped when its
    IoU with an already kept, higher-scoring box is greater than ``iou_threshold``.
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    boxes = boxes.float()
    order = torch.argsort(scores.float(), descending=True, stable=True)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    # Pairwise IoU once, then a cheap greedy pass over a boolean matrix.
    xx1 = torch.maximum(x1[:, None], x1[None, :])
    yy1 = torch.maximum(y1[:, None], y1[None, :])
    xx2 = torch.minimum(x2[:, None], x2[None, :])
    yy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
    union = areas[:, None] + areas[None, :] - inter
    iou = torch.where(union > 0, inter / union, torch.zeros_like(inter))
    suppress = (iou > iou_threshold).cpu()
    order_list = order.cpu().tolist()
    removed = torch.zeros(boxes.shape[0], dtype=torch.bool)
    keep: list[int] = []
    for i in order_list:
        if removed[i]:
            continue
        keep.append(i)
        removed |= suppress[i]
    return torch.tensor(keep, dtype=torch.long, device=boxes.device)


def _compiled_ops_load(spec: importlib.machinery.ModuleSpec) -> tuple[bool, str]:
    """Try to load torchvision's compiled ``_C`` library the way torchvision itself does."""
    import torch

    if spec.submodule_search_locations is None:
        return False, "torchvision has no package directory"
    package_dir = list(spec.submodule_search_locations)[0]
    lib_spec = importlib.machinery.PathFinder.find_spec("_C", [package_dir])
    if lib_spec is None or lib_spec.origin is None:
        return False, f"no compiled _C library in {package_dir}"
    try:
        torch.ops.load_library(lib_spec.origin)
    except (OSError, ImportError, RuntimeError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, f"compiled ops loaded from {lib_spec.origin}"


_LIBRARIES: list[Any] = []  # keep torch.library.Library objects alive


def _define_nms_ops() -> None:
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    impl = torch.library.Library("torchvision", "IMPL", "CompositeExplicitAutograd")
    impl.impl("nms", nms_reference)
    impl.impl("qnms", lambda dets, scores, thr: nms_reference(dets.float(), scores.float(), thr))
    _LIBRARIES.extend([lib, impl])


class _PatchAfterExec(importlib.abc.Loader):
    """Wraps a module's loader to neutralise ``_assert_has_ops`` right after the module runs."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self.inner.create_module(spec)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        self.inner.exec_module(module)
        module._assert_has_ops = lambda: None


class TorchvisionGuard(importlib.abc.MetaPathFinder):
    """Meta-path hook: runs the compiled-ops check the first time torchvision is imported."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname == "torchvision" and not _STATE["checked"]:
            _STATE["checked"] = True
            spec = importlib.machinery.PathFinder.find_spec(fullname)
            if spec is None:
                _STATE["reason"] = "torchvision is not installed"
                return None
            forced = os.environ.get("ESGKIT_TORCHVISION_SHIM") == "1"
            ok, why = (False, "forced by ESGKIT_TORCHVISION_SHIM=1") if forced else _compiled_ops_load(spec)
            _STATE["reason"] = why
            if not ok:
                _define_nms_ops()
                _STATE["shim_active"] = True
            return None  # let the normal finders import it
        if fullname == "torchvision.ops.boxes" and _STATE["shim_active"]:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchAfterExec(spec.loader)
            return spec
        return None


def install_torchvision_guard() -> None:
    """Install the guard once, first on ``sys.meta_path``. No-op if torchvision is already imported."""
    if os.environ.get("ESGKIT_TORCHVISION_SHIM") == "0":
        return
    if any(isinstance(f, TorchvisionGuard) for f in sys.meta_path):
        return
    if "torchvision" in sys.modules:
        _STATE["checked"] = True
        _STATE["reason"] = "torchvision was imported before esgkit; left as it is"
        return
    sys.meta_path.insert(0, TorchvisionGuard())
