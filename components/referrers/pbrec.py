"""PBREC-MT (seed 003): point-based two-stage referring comprehension and segmentation.

Stage 1 (trained): a visual backbone's stride-``stride`` grid and the text encoder's tokens are
projected to one width and fused by a transformer encoder over [visual ; text] (2-D sine positions
for the image, 1-D for the text, added to queries and keys). Two MLP heads on the visual tokens score
every cell: center-ness (how central the cell is in the referred box; grounding) and mass-ness (how
much of the cell the referred mask covers near its centroid; segmentation).

Stage 2 (frozen, any segmenter): every entity is a proposal, and at each cell it proposes itself as
much as its own target map says — the center-ness its box would have there (eq. 2), the mass-ness its
mask would have (eq. 4) — so a cell proposes the entity centred on it, as a cell of the paper's
point-based detector proposes the box it predicts. A (cell, entity) pair scores σ(head at the cell) ×
the entity's map at the cell (× the segmenter's score with ``use_confidence``, the paper's
"center+conf"); the top-k pairs vote and the entity with the largest Σ_j IoU(p_i, p_j) over them wins
(the paper's IoU-based NMS, eq. 7) — its box for REC (ranked by ``box_head``), its mask for RES (ranked
by ``mask_head``). An entity proposed by several of the top cells gathers their votes.

Unlike the reference code, nothing is tied to 640² or a 20×20 grid: the grid is image_size / stride.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from esgkit.core import EntityMasks, Referral, Referrer, TextFeatures
from esgkit.core.errors import ConfigError, InputError
from esgkit.layers.backbones import GridBackbone
from esgkit.layers.geometry import cell_coverage, imagenet_input, mask_boxes, sample_masks, valid_cells
from esgkit.layers.overlap import box_iou_matrix, mask_iou_matrix
from esgkit.layers.positions import sine_1d, sine_2d
from esgkit.layers.transformer import PositionalEncoder

HEADS = ("center", "mass")


def mlp(dim: int, layers: int) -> nn.Sequential:
    """MLP(dim, dim, 1) with ``layers`` linear layers and ReLU between them (the paper's heads: 3)."""
    parts: list[nn.Module] = []
    for k in range(layers - 1):
        parts += [nn.Linear(dim, dim), nn.ReLU()]
    parts.append(nn.Linear(dim, 1))
    return nn.Sequential(*parts)


def cell_centres(grid: tuple[int, int], stride: int) -> tuple[Tensor, Tensor]:
    """(ys (gh, 1), xs (1, gw)): the centres of the grid's cells in input pixels."""
    ys = (torch.arange(grid[0], dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(grid[1], dtype=torch.float32) + 0.5) * stride
    return ys[:, None], xs[None]


def _mark_centre_cells(out: Tensor, rows: Tensor, x: Tensor, y: Tensor, stride: int) -> None:
    """Set 1 at the cell holding (x, y) of each of ``rows`` (targets that found no positive cell)."""
    gh, gw = out.shape[1:]
    for n in rows.tolist():
        out[n, min(max(int(y[n] // stride), 0), gh - 1), min(max(int(x[n] // stride), 0), gw - 1)] = 1.0


def center_maps(boxes: Tensor, grid: tuple[int, int], stride: int, window: float = 3.0, soft: bool = True) -> Tensor:
    """(N, gh, gw) center-ness (eq. 2) of N [x0, y0, x1, y1] boxes in input pixels, at the cells whose
    centre lies in the box and in the ``window``·g square around its centre, each map divided by its
    maximum (``soft=False``: 1 on those cells). A box holding no cell centre marks its centre's cell."""
    ys, xs = cell_centres(grid, stride)
    x0, y0, x1, y1 = (boxes[:, k, None, None].float() for k in range(4))
    l, r, t, b = xs - x0, x1 - xs, ys - y0, y1 - ys
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, window * stride / 2
    positive = (l > 0) & (r > 0) & (t > 0) & (b > 0) & ((xs - cx).abs() <= half) & ((ys - cy).abs() <= half)
    if soft:
        horizontal = torch.minimum(l, r).clamp(min=0) / torch.maximum(l, r).clamp(min=1e-6)
        vertical = torch.minimum(t, b).clamp(min=0) / torch.maximum(t, b).clamp(min=1e-6)
        out = torch.where(positive, (horizontal * vertical).sqrt(), torch.zeros(()))
        top = out.flatten(1).max(1).values.view(-1, 1, 1)
        out = torch.where(top > 0, out / top.clamp(min=1e-12), positive.float())
    else:
        out = positive.float()
    empty = torch.nonzero(~positive.flatten(1).any(1)).flatten()
    _mark_centre_cells(out, empty, cx.flatten(), cy.flatten(), stride)
    return out


def mass_maps(coverage: Tensor, centroids: Tensor, grid: tuple[int, int], stride: int, radius: float = 2.0,
              soft: bool = True) -> Tensor:
    """(N, gh, gw) mass-ness (eq. 4): ``coverage`` (N, gh, gw), the share of each cell a mask covers,
    kept at the cells within ``radius``·g of the mask's centroid ((N, 2) x, y in input pixels;
    ``soft=False``: 1 there). A non-empty mask with no such cell marks its centroid's cell."""
    ys, xs = cell_centres(grid, stride)
    cx, cy = centroids[:, 0, None, None].float(), centroids[:, 1, None, None].float()
    positive = (((xs - cx) ** 2 + (ys - cy) ** 2).sqrt() <= radius * stride) & (coverage > 0)
    out = torch.where(positive, coverage if soft else torch.ones(()), torch.zeros(()))
    empty = torch.nonzero(~positive.flatten(1).any(1) & (coverage.flatten(1).sum(1) > 0)).flatten()
    _mark_centre_cells(out, empty, cx.flatten(), cy.flatten(), stride)
    return out


def mask_centroids(masks: np.ndarray) -> np.ndarray:
    """(N, 2) centroids (x, y) of bool (N, H, W) masks in pixel coordinates (a pixel's centre is k + 0.5;
    an empty mask gets (0, 0))."""
    area = masks.sum((1, 2)).astype(np.float64)
    x = (masks.sum(1) * (np.arange(masks.shape[2]) + 0.5)).sum(1)
    y = (masks.sum(2) * (np.arange(masks.shape[1]) + 0.5)).sum(1)
    return np.stack([x, y], 1) / np.maximum(area, 1)[:, None]


def consensus_vote(pair_scores: Tensor, iou: Any, k: int) -> tuple[int, float] | None:
    """The paper's IoU-based NMS over (entity, cell) pairs: ``pair_scores`` (N, h, w), ``iou(ids)`` →
    the (n, n) IoU matrix of those entities. The top-k pairs' entities p_1..p_k vote with
    r_i = Σ_j IoU(p_i, p_j); the first of the best (the higher-ranked on a tie) wins. Returns
    (entity index, its pair score), or None when no pair scores above 0."""
    flat = pair_scores.flatten()
    positive = int((flat > 0).sum())
    if positive == 0:
        return None
    top = flat.topk(min(k, positive))
    cells = pair_scores[0].numel()
    entities = (top.indices // cells).tolist()
    unique = sorted(set(entities))
    where = {e: i for i, e in enumerate(unique)}
    matrix = np.asarray(iou(unique))
    idx = [where[e] for e in entities]
    votes = matrix[np.ix_(idx, idx)].sum(1)
    best = int(np.flatnonzero(votes >= votes.max() - 1e-6)[0])
    return entities[best], float(top.values[best])


class PBRECReferrer(nn.Module, Referrer):
    """PBREC-MT: center-ness / mass-ness heads over a fused visual-language grid, proposals voted."""

    needs_proposals = True

    @dataclass
    class Config:
        backbone: str = "resnet101"     # any timm backbone with a feature level at ``stride``
        backbone_options: dict[str, Any] = field(default_factory=dict)
        backbone_checkpoint: str = ""  # the backbone's published ImageNet weights (timm's file) or esgkit's
        stride: int = 32                # the grid's cell size g (ResNet C5)
        image_size: int = 640           # input side: aspect kept, padded to a square
        dim: int = 256
        layers: int = 6
        heads: int = 8
        ffn_dim: int = 1024
        dropout: float = 0.1
        head_layers: int = 3
        center_window: float = 3.0      # center-ness positives: a square this many cells wide (paper: 3g)
        mass_radius: float = 2.0        # mass-ness positives: within this many cells of the centroid (seed: 2g)
        top_k: int = 12                 # pairs that vote (paper Table 5: 12)
        box_head: str = "center"        # the head that ranks proposals for the box (REC): center | mass
        mask_head: str = "mass"         # ... and for the mask (RES)
        use_confidence: bool = False    # × the segmenter's score of the proposal (paper: "center+conf")
        vote_size: int = 256            # masks are compared for the vote at this longest side
        text_film: bool = False         # also scale and shift the visual tokens by the sentence vector before
                                        # the encoder (FiLM): not the paper; short CPU schedules learn it sooner

    def __init__(self, config: PBRECReferrer.Config) -> None:
        super().__init__()
        c = config
        if c.stride < 1 or c.image_size % c.stride:
            raise ConfigError(f"image_size {c.image_size} must be a multiple of stride {c.stride}", key="referrer.image_size")
        if c.dim % 4 or c.dim % c.heads:
            raise ConfigError(f"dim {c.dim} must be divisible by 4 (2-D sine positions) and by heads {c.heads}",
                              key="referrer.dim")
        for key in ("box_head", "mask_head"):
            if getattr(c, key) not in HEADS:
                raise ConfigError(f"{key} {getattr(c, key)!r}: expected one of {', '.join(HEADS)}", key=f"referrer.{key}")
        if c.center_window <= 0 or c.mass_radius <= 0:
            raise ConfigError(f"center_window {c.center_window} and mass_radius {c.mass_radius} must be > 0",
                              key="referrer.center_window")
        if c.top_k < 1 or c.head_layers < 1 or c.vote_size < 8:
            raise ConfigError(f"top_k {c.top_k} and head_layers {c.head_layers} must be ≥ 1, vote_size {c.vote_size} ≥ 8",
                              key="referrer")
        self.config = c
        self.backbone = GridBackbone(c.backbone, c.stride, c.backbone_options)
        if c.backbone_checkpoint:  # a start for training; a trained referrer's own weights replace it
            self.backbone.load(c.backbone_checkpoint, f"referrer.backbone_checkpoint ({c.backbone})")
        self.visual_proj = nn.Conv2d(self.backbone.channels, c.dim, 1)
        self.text_proj: nn.Module = nn.Identity()
        self.encoder = PositionalEncoder(c.dim, c.heads, c.ffn_dim, c.layers, c.dropout)
        self.heads = nn.ModuleDict({name: mlp(c.dim, c.head_layers) for name in HEADS})

    def configure(self, text_dim: int) -> None:
        self.text_proj = nn.Linear(text_dim, self.config.dim)
        if self.config.text_film:
            self.film = nn.Linear(text_dim, 2 * self.config.dim)
            nn.init.zeros_(self.film.weight), nn.init.zeros_(self.film.bias)  # starts as the identity

    @property
    def grid(self) -> tuple[int, int]:
        side = self.config.image_size // self.config.stride
        return side, side

    # ------------------------------------------------------------------ network
    def preprocess(self, image: np.ndarray) -> tuple[Tensor, tuple[int, int]]:
        """uint8 (H, W, 3) → normalised (3, S, S) (aspect kept, padded bottom/right) and the (h, w)
        of the image inside it."""
        return imagenet_input(image, self.config.image_size)

    def valid_cells(self, sizes: list[tuple[int, int]]) -> Tensor:
        """bool (B, h·w): the cells that hold some of the image (the rest is padding, never attended)."""
        return valid_cells(sizes, self.config.stride, self.grid)

    def visual(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) → visual tokens (B, h·w, dim)."""
        return self.visual_proj(self.backbone(images)).flatten(2).transpose(1, 2)

    def fuse(self, visual: Tensor, text: TextFeatures, valid: Tensor | None = None) -> dict[str, Tensor]:
        """Visual tokens (B, L, dim) and B encoded expressions → {"center", "mass"} logits (B, h, w)."""
        b, length, dim = visual.shape
        gh, gw = self.grid
        tokens = self.text_proj(text.tokens)
        if self.config.text_film:
            scale, shift = self.film(text.sentence).unsqueeze(1).chunk(2, dim=-1)
            visual = visual * (1 + scale) + shift
        pos = torch.cat([sine_2d(gh, gw, dim, device=visual.device).expand(b, -1, -1),
                         sine_1d(tokens.shape[1], dim, device=visual.device).expand(b, -1, -1)], 1)
        visual_pad = torch.zeros(b, length, dtype=torch.bool, device=visual.device) if valid is None else ~valid
        out = self.encoder(torch.cat([visual, tokens], 1), pos, torch.cat([visual_pad, ~text.mask], 1))[:, :length]
        return {name: head(out).squeeze(-1).view(b, gh, gw) for name, head in self.heads.items()}

    def forward(self, images: Tensor, text: TextFeatures, valid: Tensor | None = None) -> dict[str, Tensor]:
        return self.fuse(self.visual(images), text, valid)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def head_maps(self, image: np.ndarray, text: TextFeatures) -> tuple[dict[str, Tensor], tuple[int, int]]:
        """σ(head) maps (B, h, w) for the B expressions on one image (its features computed once), and
        the (h, w) of the image inside the padded input."""
        device = self.visual_proj.weight.device
        x, size = self.preprocess(image)
        visual = self.visual(x[None].to(device))
        n = text.tokens.shape[0]
        logits = self.fuse(visual.expand(n, -1, -1), text, self.valid_cells([size]).to(device).expand(n, -1))
        return {k: v.sigmoid().cpu() for k, v in logits.items()}, size

    def target_maps(self, masks: np.ndarray, center_soft: bool = True, mass_soft: bool = True) -> dict[str, Tensor]:
        """The center-ness and mass-ness maps (N, h, w) that bool (N, H, W) masks of one image would have
        as targets (their boxes and centroids placed as ``preprocess`` places the image): the training
        targets of the referred masks, and the proposal maps of a segmenter's entities."""
        c = self.config
        scale = c.image_size / max(masks.shape[1:])
        boxes = torch.from_numpy(mask_boxes(masks)).float()
        xyxy = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], 1) * scale
        coverage = cell_coverage(torch.from_numpy(masks), c.image_size, self.grid)
        centroids = torch.from_numpy(mask_centroids(masks)).float() * scale
        return {"center": center_maps(xyxy, self.grid, c.stride, c.center_window, center_soft),
                "mass": mass_maps(coverage, centroids, self.grid, c.stride, c.mass_radius, mass_soft)}

    def refer(self, image: np.ndarray, text: TextFeatures, proposals: EntityMasks | None = None) -> list[Referral]:
        if proposals is None:
            raise InputError("pbrec_mt ranks entity proposals: give a segmenter (segmenter.name=cropformer, sam, "
                             "ground_truth …), not none")
        proposals.check_image_size(image.shape[0], image.shape[1], "entity proposals")
        maps, _ = self.head_maps(image, text)
        n = text.tokens.shape[0]
        if len(proposals) == 0:
            return [Referral((0.0, 0.0, 0.0, 0.0), np.zeros(image.shape[:2], bool), 0.0) for _ in range(n)]
        c = self.config
        proposal_maps = self.target_maps(proposals.masks)
        if c.use_confidence:
            confidence = torch.as_tensor(proposals.scores, dtype=torch.float32).view(-1, 1, 1)
            proposal_maps = {k: v * confidence for k, v in proposal_maps.items()}
        boxes = mask_boxes(proposals.masks)
        small = sample_masks(proposals.masks, c.vote_size, (c.vote_size, c.vote_size))
        ious = {"box": lambda ids: box_iou_matrix(boxes[ids]), "mask": lambda ids: mask_iou_matrix(small[ids])}
        out = []
        for b in range(n):
            box_pick = consensus_vote(maps[c.box_head][b][None] * proposal_maps[c.box_head], ious["box"], c.top_k)
            mask_pick = consensus_vote(maps[c.mask_head][b][None] * proposal_maps[c.mask_head], ious["mask"], c.top_k)
            box = tuple(float(v) for v in boxes[box_pick[0]]) if box_pick else (0.0, 0.0, 0.0, 0.0)
            mask = proposals.masks[mask_pick[0]].copy() if mask_pick else np.zeros(image.shape[:2], bool)
            out.append(Referral(box, mask, box_pick[1] if box_pick else 0.0,  # type: ignore[arg-type]
                                int(proposals.ids[box_pick[0]]) if box_pick else None,
                                int(proposals.ids[mask_pick[0]]) if mask_pick else None))
        return out


__all__ = ["HEADS", "PBRECReferrer", "cell_centres", "center_maps", "consensus_vote", "mask_centroids", "mass_maps"]
