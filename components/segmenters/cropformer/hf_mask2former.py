"""The ``mask2former`` segmenter on a Hugging Face Mask2Former folder: published weights, one key.

A folder in the ``facebook/mask2former-*`` layout (``config.json`` + ``model.safetensors``, a sharded
index or ``pytorch_model.bin``; ``preprocessor_config.json`` when present) given as
``segmenter.checkpoint`` is run by transformers' own network and panoptic post-processing. Its
segments become class-agnostic entities: non-overlapping, each scored by its query's class
probability, the class itself dropped — the paper's "M2F-PAN Swin-L" input to GELLA (Table XXII).
Panoptic post-processing serves instance checkpoints too: it is what makes the segments disjoint.

The architecture is the folder's ``config.json``; of the segmenter's keys only the input size
(``short_side``, ``max_long_side``; 0: the original size), ``threshold`` (transformers'
``mask_threshold``, which it applies to score × mask probability), ``score_threshold`` (the segment
score) and ``device`` apply. transformers reads the weights (safetensors, or ``.bin`` with
``weights_only``) and every key must fit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from esgkit.core import EntityMasks, Segmenter
from esgkit.core.errors import CheckpointError, InputError
from esgkit.layers.weights import raise_loading_report

OVERLAP_AREA = 0.8
"""transformers' ``overlap_mask_area_threshold``: a segment keeping less than this share of its mask
after higher-scored segments took their pixels is dropped (its default)."""


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a Hugging Face model folder (a directory holding ``config.json``)."""
    return bool(str(path)) and Path(path).is_dir() and (Path(path) / "config.json").is_file()


def _hf_config(folder: Path) -> Any:
    from transformers import Mask2FormerConfig

    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type != "mask2former":
        raise CheckpointError(f"segmenter.checkpoint {folder}: config.json is a {model_type!r} model, not "
                              "mask2former; give a facebook/mask2former-* folder, or a .safetensors of esgkit's own "
                              "mask2former network")
    return Mask2FormerConfig.from_pretrained(str(folder))


class HuggingFaceMask2Former(nn.Module, Segmenter):
    """transformers' ``Mask2FormerForUniversalSegmentation`` from a local folder, as an entity segmenter."""

    def __init__(self, config: Any, folder: str | Path) -> None:
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

        super().__init__()
        self.config, self.folder = config, Path(folder)
        # transformers reads the folder (it renames the published keys to its modules' names); its
        # loading report must be empty. .bin files are read with weights_only, as everywhere here.
        self.network, info = Mask2FormerForUniversalSegmentation.from_pretrained(
            str(self.folder), config=_hf_config(self.folder), local_files_only=True, output_loading_info=True)
        raise_loading_report(f"Mask2Former folder {self.folder}", info,
                             "the weights must be those of the folder's config.json (a facebook/mask2former-* folder "
                             "as published, or one written by save_pretrained)")
        if (self.folder / "preprocessor_config.json").is_file():
            self.processor = Mask2FormerImageProcessor.from_pretrained(str(self.folder))
        else:  # transformers' defaults: ImageNet normalisation, sizes padded to 32
            self.processor = Mask2FormerImageProcessor()
        resize = config.short_side > 0
        self.processor.do_resize = resize
        if resize:
            self.processor.size = {"shortest_edge": config.short_side, "longest_edge": config.max_long_side}
        self.to(config.device).eval()

    @torch.no_grad()
    def panoptic(self, image: np.ndarray) -> dict[str, Any]:
        """transformers' post-processed output for one image: ``segmentation`` (H, W) ids (−1: none)
        and ``segments_info``, with every segment kept apart (no label fused)."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"the mask2former segmenter needs an RGB image (H, W, 3); got shape {image.shape}")
        inputs = self.processor(images=image, return_tensors="pt").to(self.config.device)
        outputs = self.network(**inputs)
        return self.processor.post_process_panoptic_segmentation(
            outputs, threshold=self.config.score_threshold, mask_threshold=self.config.threshold,
            overlap_mask_area_threshold=OVERLAP_AREA, label_ids_to_fuse=set(), target_sizes=[image.shape[:2]])[0]

    def segment(self, image: np.ndarray, annotation: EntityMasks | None = None,
                image_id: str | None = None) -> EntityMasks:
        result = self.panoptic(np.asarray(image))
        labels = result["segmentation"].cpu().numpy()
        info = result["segments_info"]
        masks = np.stack([labels == s["id"] for s in info]) if info else np.zeros((0, *image.shape[:2]), bool)
        return EntityMasks(masks, np.array([s["score"] for s in info], np.float32),
                           np.array([s["id"] for s in info], np.int64))


__all__ = ["HuggingFaceMask2Former", "is_hf_folder"]
