"""The ``sam`` segmenter: segment-anything's automatic mask generator, turned into entity masks.

Presets (ESG paper, Table XXII): ``sam1`` = the library's defaults; ``sam2`` = points_per_side 32,
pred_iou_thresh 0.86, stability_score_thresh 0.92, crop_n_layers 1, crop_n_points_downscale_factor 2,
min_mask_region_area 100.

Architectures: the official ``vit_h`` / ``vit_l`` / ``vit_b`` (load their ``.pth`` files, plain state
dicts, from a local path with ``torch.load(weights_only=True)``) and ``tiny``, a small SAM for CPU
(trained on ShapesWorld by ``esgkit train``; random weights without a checkpoint). A ``.safetensors``
checkpoint is read with safetensors.

From SAM masks to entities (SAM's masks overlap: wholes and their parts): masks are ranked by
predicted IoU × stability score; going from the best, each mask takes the pixels no better mask has
taken; a mask left with less than ``keep_fraction`` of its own area (mostly covered by better masks)
is dropped, and its pixels stay free for the masks below it. Every entity's score is its predicted
IoU × stability score. The result does not overlap.

``min_mask_region_area`` (the ``sam2`` preset) makes segment-anything import OpenCV; when ``cv2`` is
not installed the same hole/island clean-up runs on scipy's connected components (8-connectivity,
as OpenCV's) instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from esgkit.core import EntityMasks, Segmenter
from esgkit.core.errors import CheckpointError, ConfigError, InputError
from esgkit.layers.weights import key_names, mismatch, raise_mismatch, read_state_dict
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

PRESETS: dict[str, dict[str, Any]] = {
    "sam1": {},
    "sam2": {
        "points_per_side": 32,
        "pred_iou_thresh": 0.86,
        "stability_score_thresh": 0.92,
        "crop_n_layers": 1,
        "crop_n_points_downscale_factor": 2,
        "min_mask_region_area": 100,
    },
}
MODEL_TYPES = ("tiny", "vit_b", "vit_l", "vit_h")
_ENCODER_WIDTH = {1280: "vit_h", 1024: "vit_l", 768: "vit_b", 64: "tiny"}


def build_tiny_sam(img_size: int = 256, embed_dim: int = 64, depth: int = 2, prompt_dim: int = 64) -> Sam:
    """A small SAM (≈0.5M parameters) with the official architecture's parts, for CPU."""
    grid = img_size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=16, embed_dim=embed_dim, depth=depth, num_heads=2, mlp_ratio=4,
            out_chans=prompt_dim, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=4, global_attn_indexes=(depth - 1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=2 * prompt_dim, num_heads=2),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=prompt_dim,
        ),
    )
    return sam.eval()


def build_sam(model_type: str) -> Sam:
    """An untrained SAM of the given architecture."""
    if model_type == "tiny":
        return build_tiny_sam()
    if model_type not in sam_model_registry or model_type == "default":
        raise ConfigError(f"unknown SAM model_type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}",
                          key="segmenter.model_type")
    return sam_model_registry[model_type](checkpoint=None)


def load_sam_checkpoint(sam: Sam, path: str, model_type: str) -> None:
    """Load an official-format SAM state dict into ``sam``; CheckpointError names what does not fit."""
    state = read_state_dict(path, "SAM checkpoint")
    expected = sam.state_dict()
    if not any(k.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder.")) for k in state):
        raise CheckpointError(
            f"{path} is not a SAM checkpoint: expected keys like {key_names(expected, 5)}; "
            f"found keys {key_names(state, 5)}"
        )
    hint = "give the checkpoint of this model_type (e.g. sam_vit_b_01ec64.pth for vit_b)"
    patch = state.get("image_encoder.patch_embed.proj.weight")
    if patch is not None and _ENCODER_WIDTH.get(int(patch.shape[0]), model_type) != model_type:
        hint = f"it looks like a {_ENCODER_WIDTH[int(patch.shape[0])]} checkpoint: set segmenter.model_type accordingly"
    raise_mismatch(f"SAM checkpoint {path} for model_type {model_type!r}", mismatch(state, expected, limit=5), hint)
    sam.load_state_dict(state)


def _cv2_available() -> bool:
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or remove islands (``"islands"``) smaller than ``area_thresh``
    pixels, with 8-connected components; returns the mask and whether it changed. For islands, if
    every island is small the largest is kept (segment-anything's rule)."""
    from scipy import ndimage

    holes = mode == "holes"
    working = mask ^ holes  # the regions to examine: background for holes, foreground for islands
    labels, n = ndimage.label(working, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if len(keep) == 0:
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True


class _MaskGenerator(SamAutomaticMaskGenerator):
    """The library's generator, with the small-region clean-up on scipy when OpenCV is missing."""

    def __init__(self, model: Sam, **options: Any) -> None:
        area = int(options.pop("min_mask_region_area", 0))
        self.use_scipy = area > 0 and not _cv2_available()
        super().__init__(model, min_mask_region_area=0 if self.use_scipy else area, **options)
        self.min_mask_region_area = area

    def _process_batch(self, points: np.ndarray, im_size: tuple[int, ...], crop_box: list[int],
                       orig_size: tuple[int, ...]) -> Any:
        """The library's batch step with its predicted-IoU filter moved before the upsampling of each
        prompt's 3 masks to the image size. The filter reads no mask, so the result is the same; at
        2048² upsampling every mask (16 MB of logits each) was most of SAM's time."""
        from segment_anything.utils.amg import (
            MaskData, batched_mask_to_box, calculate_stability_score, is_box_near_crop_edge, mask_to_rle_pytorch,
            uncrop_masks,
        )

        predictor, model = self.predictor, self.predictor.model
        coords = torch.as_tensor(predictor.transform.apply_coords(points, im_size), device=predictor.device)
        labels = torch.ones(len(coords), dtype=torch.int, device=coords.device)
        sparse, dense = model.prompt_encoder(points=(coords[:, None], labels[:, None]), boxes=None, masks=None)
        low_res, iou = model.mask_decoder(image_embeddings=predictor.features, image_pe=model.prompt_encoder.get_dense_pe(),
                                          sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                          multimask_output=True)
        low_res, iou = low_res.flatten(0, 1), iou.flatten(0, 1)
        prompt_points = torch.as_tensor(points.repeat(low_res.shape[0] // len(points), axis=0))
        keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0.0 else torch.ones_like(iou, dtype=torch.bool)
        masks = model.postprocess_masks(low_res[keep][:, None], predictor.input_size, predictor.original_size)[:, 0]
        data = MaskData(masks=masks, iou_preds=iou[keep], points=prompt_points[keep.cpu()])
        data["stability_score"] = calculate_stability_score(data["masks"], model.mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["masks"] = data["masks"] > model.mask_threshold
        data["boxes"] = batched_mask_to_box(data["masks"])
        inside = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_size[1], orig_size[0]])
        if not torch.all(inside):
            data.filter(inside)
        data["rles"] = mask_to_rle_pytorch(uncrop_masks(data["masks"], crop_box, orig_size[0], orig_size[1]))
        del data["masks"]
        return data

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer_idx: int, orig_size: tuple[int, ...]) -> Any:
        data = super()._process_crop(image, crop_box, layer_idx, orig_size)
        if len(data["rles"]) == 0:  # the library gives an empty crop's boxes a shape cat/box_area reject
            data["crop_boxes"] = torch.zeros((0, 4))
            data["boxes"] = torch.zeros((0, 4))
        return data

    def postprocess_small_regions(self, mask_data: Any, min_area: int, nms_thresh: float) -> Any:  # type: ignore[override]
        if not self.use_scipy:
            return SamAutomaticMaskGenerator.postprocess_small_regions(mask_data, min_area, nms_thresh)
        from segment_anything.utils.amg import batched_mask_to_box, mask_to_rle_pytorch, rle_to_mask
        from torchvision.ops.boxes import batched_nms

        if len(mask_data["rles"]) == 0:
            return mask_data
        masks, unchanged = [], []
        for rle in mask_data["rles"]:
            mask, filled = remove_small_regions(rle_to_mask(rle), min_area, "holes")
            mask, removed = remove_small_regions(mask, min_area, "islands")
            masks.append(torch.as_tensor(mask))
            unchanged.append(float(not (filled or removed)))
        stacked = torch.stack(masks)
        boxes = batched_mask_to_box(stacked)
        # Masks that needed no clean-up win the duplicate removal, as in segment-anything.
        keep = batched_nms(boxes.float(), torch.tensor(unchanged), torch.zeros(len(boxes)), iou_threshold=nms_thresh)
        for i in keep.tolist():
            if unchanged[i] == 0.0:
                mask_data["rles"][i] = mask_to_rle_pytorch(stacked[i][None])[0]
                mask_data["boxes"][i] = boxes[i]
        mask_data.filter(keep)
        return mask_data


def masks_to_entities(records: list[dict[str, Any]], height: int, width: int, keep_fraction: float = 0.5,
                      min_area: int = 1) -> EntityMasks:
    """SAM's overlapping masks → non-overlapping entity masks (the rule in the module docstring).

    ``records`` are the generator's outputs (binary ``segmentation``, ``predicted_iou``,
    ``stability_score``)."""
    quality = [float(r["predicted_iou"]) * float(r["stability_score"]) for r in records]
    taken = np.zeros((height, width), bool)
    kept_masks, kept_scores = [], []
    for i in np.argsort(quality, kind="stable")[::-1]:
        mask = np.asarray(records[i]["segmentation"], bool)
        own = mask & ~taken
        area = int(own.sum())
        if area < max(min_area, 1) or area < keep_fraction * mask.sum():
            continue
        taken |= own
        kept_masks.append(own)
        kept_scores.append(quality[i])
    if not kept_masks:
        return EntityMasks.empty(height, width)
    return EntityMasks(np.stack(kept_masks), np.array(kept_scores, np.float32))


class SamSegmenter(nn.Module, Segmenter):
    """Segment Anything's automatic mask generator (presets sam1 / sam2) → non-overlapping entities."""

    @dataclass
    class Config:
        model_type: str = "tiny"  # tiny | vit_b | vit_l | vit_h
        checkpoint: str = ""  # local .pth (official format) or .safetensors; empty = random weights
        preset: str = "sam1"  # sam1 (library defaults) | sam2
        points_per_side: int = 0  # 0 = the preset's value
        points_per_batch: int = 64  # memory: points_per_batch·3 float masks of the image's size
        pred_iou_thresh: float = -1.0  # < 0 = the preset's value (a barely trained tiny SAM needs lower)
        stability_score_thresh: float = -1.0  # < 0 = the preset's value
        keep_fraction: float = 0.5  # drop a mask left with less of its area than this
        min_area: int = 1  # drop entities smaller than this many pixels
        device: str = "cpu"

    def __init__(self, config: SamSegmenter.Config) -> None:
        super().__init__()
        if config.preset not in PRESETS:
            raise ConfigError(f"unknown SAM preset {config.preset!r}; choose one of {', '.join(PRESETS)}",
                              key="segmenter.preset")
        if config.model_type not in MODEL_TYPES:
            raise ConfigError(f"unknown SAM model_type {config.model_type!r}; choose one of {', '.join(MODEL_TYPES)}",
                              key="segmenter.model_type")
        self.config = config
        self.sam = build_sam(config.model_type)

    @classmethod
    def from_config(cls, config: SamSegmenter.Config) -> SamSegmenter:
        segmenter = cls(config)
        if config.checkpoint:
            load_sam_checkpoint(segmenter.sam, config.checkpoint, config.model_type)
        segmenter.to(config.device).eval()
        return segmenter

    def generator_options(self) -> dict[str, Any]:
        """The SamAutomaticMaskGenerator keyword arguments of this config."""
        options = dict(PRESETS[self.config.preset], points_per_batch=self.config.points_per_batch)
        if self.config.points_per_side > 0:
            options["points_per_side"] = self.config.points_per_side
        for key in ("pred_iou_thresh", "stability_score_thresh"):
            if getattr(self.config, key) >= 0:
                options[key] = getattr(self.config, key)
        return options

    @torch.no_grad()
    def segment(self, image: np.ndarray, annotation: EntityMasks | None = None,
                image_id: str | None = None) -> EntityMasks:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"sam needs a uint8 RGB image (H, W, 3); got {image.dtype} {image.shape}")
        self.eval()
        generator = _MaskGenerator(self.sam, output_mode="binary_mask", **self.generator_options())
        records = generator.generate(image)
        return masks_to_entities(records, image.shape[0], image.shape[1], self.config.keep_fraction, self.config.min_area)
