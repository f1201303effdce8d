"""CMPC (seed 002): Cross-Modal Progressive Comprehension for referring image segmentation (CMPC-I +
TGFE), the first PyTorch implementation (the authors' code is TensorFlow 1).

Per visual level (three levels of a timm backbone, each projected to ``dim`` and L2-normalised,
resized to the mask grid image_size / out_stride, with 8 spatial coordinate channels):

1. word classification — every word gets soft probabilities over {entity, attribute, relation,
   other} from a small MLP trained end to end (no word-type labels);
2. entity perception — [visual; spatial] fused bilinearly (MUTAN, ``mutan_heads`` ranks) with the
   entity+attribute words' vector: every entity the words could mean lights up;
3. relation-aware reasoning — a fully connected graph over the grid's cells whose edges pass through
   the relation words (affinity A between cells and relation-weighted words; adjacency
   softmax_T(A)·softmax_cells(A)ᵀ), one graph convolution with a LayerNorm and a residual: the
   target is told apart from the other candidates by its relations.

TGFE then lets the levels exchange features under the sentence (``tgfe_rounds`` rounds: each level
adds the other levels' features, gated by their sentence-pooled global vectors), a ConvLSTM runs over
the levels, and a 3×3 conv gives the mask logits; each level also has a 1×1 logit head for the
auxiliary loss (training task ``referring_masks``: 0.7·final + 0.1·each level).

Every part is a switch, so the paper's ablations are config swaps: ``word_classifier``,
``entity_perception`` (off: [visual; spatial; sentence] concatenated and a 1×1 conv),
``relation_reasoning``, ``tgfe`` and ``tgfe_rounds``. One-stage: no entity proposals are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esgkit.core import EntityMasks, Referral, Referrer, TextFeatures
from esgkit.core.errors import ConfigError
from esgkit.layers.backbones import LevelBackbone
from esgkit.layers.fusion import MutanFusion
from esgkit.layers.geometry import imagenet_input, logits_to_image, mask_boxes
from esgkit.layers.recurrent import ConvLSTM

WORD_TYPES = ("entity", "attribute", "relation", "other")


def spatial_map(height: int, width: int, device: torch.device | None = None) -> Tensor:
    """(8, height, width) coordinates of each cell in [-1, 1]: x_min, y_min, x_max, y_max, x_centre,
    y_centre, 1/width, 1/height (CMPC's and the earlier referring segmenters' spatial features)."""
    xs = torch.arange(width, dtype=torch.float32, device=device) / width * 2 - 1
    ys = torch.arange(height, dtype=torch.float32, device=device) / height * 2 - 1
    x0, x1 = xs.view(1, -1).expand(height, -1), (xs + 2 / width).view(1, -1).expand(height, -1)
    y0, y1 = ys.view(-1, 1).expand(-1, width), (ys + 2 / height).view(-1, 1).expand(-1, width)
    ones = torch.ones(height, width, device=device)
    return torch.stack([x0, y0, x1, y1, (x0 + x1) / 2, (y0 + y1) / 2, ones / width, ones / height])


def masked_mean(words: Tensor, weights: Tensor) -> Tensor:
    """Σ_t w_t·h_t / Σ_t w_t over (B, T, D) words with (B, T) weights (0 on padding)."""
    return (words * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True).clamp(min=1e-6)


class WordClassifier(nn.Module):
    """(B, T, D) words → (B, T, 4) soft probabilities over WORD_TYPES (rows of padding are 0)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, len(WORD_TYPES)))

    def forward(self, words: Tensor, mask: Tensor) -> Tensor:
        return self.mlp(words).softmax(-1) * mask.unsqueeze(-1)


class RelationReasoning(nn.Module):
    """One graph convolution over the cells of a (B, D, H, W) map whose edges go through the
    relation words: A = (W_x x)(W_w r)ᵀ/√D between cells and words (r_t = p_relation(t)·h_t),
    adjacency softmax over words(A) · softmax over cells(A)ᵀ, out = x + ReLU(LN(adj·x·W))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.node_proj, self.word_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.graph = nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def factors(self, nodes: Tensor, words: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """softmax over words (B, N, T) and softmax over cells (B, N, T) of the cell-word affinity."""
        affinity = self.node_proj(nodes) @ self.word_proj(words).transpose(1, 2) / math.sqrt(nodes.shape[-1])
        return affinity.masked_fill(~mask.unsqueeze(1), float("-inf")).softmax(-1), affinity.softmax(1)

    def adjacency(self, nodes: Tensor, words: Tensor, mask: Tensor) -> Tensor:
        """(B, N, N) row-stochastic adjacency of N cells given (B, T, D) relation-weighted words."""
        to_words, to_cells = self.factors(nodes, words, mask)
        return to_words @ to_cells.transpose(1, 2)

    def forward(self, x: Tensor, words: Tensor, mask: Tensor) -> Tensor:
        b, d, h, w = x.shape
        nodes = x.flatten(2).transpose(1, 2)
        to_words, to_cells = self.factors(nodes, words, mask)
        # adj·X·W without the (N, N) adjacency: softmax_T(A) · (softmax_N(A)ᵀ · X·W), O(N·T·D) not O(N²·D)
        message = to_words @ (to_cells.transpose(1, 2) @ self.graph(nodes))
        out = nodes + self.norm(message).relu()
        return out.transpose(1, 2).reshape(b, d, h, w)


class FeatureExchange(nn.Module):
    """TGFE: ``rounds`` rounds in which each of ``levels`` (B, D, H, W) maps adds the other levels'
    maps gated channel-wise by σ(W[g_j; s]), g_j level j's global vector pooled by attention under the
    sentence s."""

    def __init__(self, dim: int, levels: int, rounds: int) -> None:
        super().__init__()
        self.pool_query = nn.ModuleList(nn.Linear(dim, dim) for _ in range(rounds))
        self.gates = nn.ModuleList(nn.ModuleList(nn.Linear(2 * dim, dim) for _ in range(levels)) for _ in range(rounds))

    @staticmethod
    def pool(x: Tensor, query: Tensor) -> Tensor:
        """(B, D, H, W), (B, D) → (B, D): the cells averaged by softmax(cell · query / √D)."""
        cells = x.flatten(2)
        weights = (query.unsqueeze(1) @ cells / math.sqrt(x.shape[1])).softmax(-1)
        return (cells * weights).sum(-1)

    def forward(self, feats: list[Tensor], sentence: Tensor) -> list[Tensor]:
        for query, gates in zip(self.pool_query, self.gates):
            q = query(sentence)
            gated = [gate(torch.cat([self.pool(f, q), sentence], 1)).sigmoid()[..., None, None] * f
                     for gate, f in zip(gates, feats)]
            feats = [f + sum(g for j, g in enumerate(gated) if j != i) for i, f in enumerate(feats)]
        return feats


class CMPCReferrer(nn.Module, Referrer):
    """CMPC-I + TGFE: a mask per expression from the image's multi-level features and the words."""

    @dataclass
    class Config:
        backbone: str = "resnet101"     # the paper: DeepLab-ResNet-101 (cmpc_paper: backbone_options {output_stride: 8})
        backbone_options: dict[str, Any] = field(default_factory=dict)
        backbone_checkpoint: str = ""  # the backbone's published ImageNet weights (timm's file) or esgkit's
        levels: list[int] = field(default_factory=lambda: [2, 3, 4])  # timm feature levels (ResNet res3, res4, res5)
        out_stride: int = 8             # the mask grid: every level resized to image_size / out_stride
        image_size: int = 320           # input side: aspect kept, padded to a square
        dim: int = 1000                 # visual, word and multimodal width (the paper: 1000)
        classifier_dim: int = 500       # the word classifier's hidden width
        mutan_heads: int = 5
        lstm_dim: int = 500             # the ConvLSTM over the levels
        word_classifier: bool = True    # off: every word counts as entity, attribute and relation word
        entity_perception: bool = True  # off: [visual; spatial; sentence] → 1×1 conv (concatenation baseline)
        relation_reasoning: bool = True
        tgfe: bool = True
        tgfe_rounds: int = 2
        threshold: float = 0.5          # mask = σ(logits) > threshold

    def __init__(self, config: CMPCReferrer.Config) -> None:
        super().__init__()
        c = config
        if c.out_stride < 1 or c.image_size % c.out_stride:
            raise ConfigError(f"image_size {c.image_size} must be a multiple of out_stride {c.out_stride}",
                              key="referrer.image_size")
        for key in ("dim", "classifier_dim", "mutan_heads", "lstm_dim"):
            if getattr(c, key) < 1:
                raise ConfigError(f"{key} {getattr(c, key)} must be ≥ 1", key=f"referrer.{key}")
        if c.tgfe and c.tgfe_rounds < 1:
            raise ConfigError(f"tgfe_rounds {c.tgfe_rounds} must be ≥ 1 (or tgfe: false)", key="referrer.tgfe_rounds")
        if not 0 < c.threshold < 1:
            raise ConfigError(f"threshold {c.threshold} must be in (0, 1)", key="referrer.threshold")
        self.config = c
        self.backbone = LevelBackbone(c.backbone, tuple(c.levels), c.backbone_options)
        if c.backbone_checkpoint:  # a start for training; a trained referrer's own weights replace it
            self.backbone.load(c.backbone_checkpoint, f"referrer.backbone_checkpoint ({c.backbone})")
        self.visual_proj = nn.ModuleList(nn.Conv2d(ch, c.dim, 1) for ch in self.backbone.channels)
        n = len(c.levels)
        self.perceive = nn.ModuleList(
            MutanFusion(c.dim + 8, c.dim, c.dim, c.mutan_heads) if c.entity_perception
            else nn.Conv2d(2 * c.dim + 8, c.dim, 1) for _ in range(n))
        self.reason = nn.ModuleList(RelationReasoning(c.dim) for _ in range(n)) if c.relation_reasoning else None
        self.exchange = FeatureExchange(c.dim, n, c.tgfe_rounds) if c.tgfe else None
        self.lstm = ConvLSTM(c.dim, c.lstm_dim)
        self.mask_head = nn.Conv2d(c.lstm_dim, 1, 3, padding=1)
        self.level_heads = nn.ModuleList(nn.Conv2d(c.dim, 1, 1) for _ in range(n))
        self.word_proj: nn.Module = nn.Identity()
        self.sentence_proj: nn.Module = nn.Identity()
        self.classifier = WordClassifier(c.dim, c.classifier_dim) if c.word_classifier else None

    def configure(self, text_dim: int) -> None:
        self.word_proj = nn.Linear(text_dim, self.config.dim)
        self.sentence_proj = nn.Linear(text_dim, self.config.dim)

    @property
    def grid(self) -> tuple[int, int]:
        """The mask grid (h, w): image_size / out_stride on each side."""
        side = self.config.image_size // self.config.out_stride
        return side, side

    # ------------------------------------------------------------------ network
    def preprocess(self, image: np.ndarray) -> tuple[Tensor, tuple[int, int]]:
        """uint8 (H, W, 3) → normalised (3, S, S) (aspect kept, padded bottom/right) and the (h, w)
        of the image inside it."""
        return imagenet_input(image, self.config.image_size)

    def visual(self, images: Tensor) -> list[Tensor]:
        """(B, 3, S, S) → per level (B, dim + 8, g, g): L2-normalised features and spatial coordinates."""
        grid = self.grid
        coords = spatial_map(*grid, images.device).expand(images.shape[0], -1, -1, -1)
        out = []
        for proj, feat in zip(self.visual_proj, self.backbone(images)):
            feat = F.normalize(proj(feat), dim=1)
            if feat.shape[-2:] != grid:
                feat = F.interpolate(feat, size=grid, mode="bilinear", align_corners=False)
            out.append(torch.cat([feat, coords], 1))
        return out

    def word_types(self, words: Tensor, mask: Tensor) -> Tensor:
        """(B, T, 4) word-type probabilities (all 1 but "other" when the classifier is off)."""
        if self.classifier is not None:
            return self.classifier(words, mask)
        ones = mask.unsqueeze(-1).float()
        return torch.cat([ones, ones, ones, torch.zeros_like(ones)], -1)

    def fuse(self, visual: list[Tensor], text: TextFeatures) -> dict[str, Any]:
        """Per-level visual maps and B encoded expressions → {"final": (B, g, g) mask logits, "levels":
        [(B, g, g)] the levels' auxiliary logits, "word_types": (B, T, 4)}."""
        words, mask = self.word_proj(text.tokens), text.mask
        sentence = self.sentence_proj(text.sentence)
        types = self.word_types(words, mask)
        entity = masked_mean(words, types[..., 0] + types[..., 1])
        relation_words = words * types[..., 2:3]
        feats = []
        for k, x in enumerate(visual):
            if self.config.entity_perception:
                f = self.perceive[k](x, entity)
            else:
                tiled = sentence[..., None, None].expand(-1, -1, *x.shape[-2:])
                f = self.perceive[k](torch.cat([x, tiled], 1)).relu()
            if self.reason is not None:
                f = self.reason[k](f, relation_words, mask)
            feats.append(f)
        if self.exchange is not None:
            feats = self.exchange(feats, sentence)
        final = self.mask_head(self.lstm(feats)).squeeze(1)
        return {"final": final, "levels": [head(f).squeeze(1) for head, f in zip(self.level_heads, feats)],
                "word_types": types}

    def forward(self, images: Tensor, text: TextFeatures) -> dict[str, Any]:
        visual = self.visual(images)
        if images.shape[0] == 1 and text.tokens.shape[0] > 1:  # one image, several expressions
            visual = [v.expand(text.tokens.shape[0], -1, -1, -1) for v in visual]
        return self.fuse(visual, text)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def probabilities(self, image: np.ndarray, text: TextFeatures) -> Tensor:
        """σ(final logits) for the B expressions at the image's own size (B, H, W), the backbone run once."""
        device = self.mask_head.weight.device
        x, (h, w) = self.preprocess(image)
        logits = self(x[None].to(device), text)["final"]
        return logits_to_image(logits, self.config.image_size, (h, w), image.shape[:2]).sigmoid().cpu()

    def refer(self, image: np.ndarray, text: TextFeatures, proposals: EntityMasks | None = None) -> list[Referral]:
        """The mask is σ(logits) > threshold; the box its bounding box; the score its mean probability.
        Entity proposals are not used (CMPC is one-stage)."""
        probs = self.probabilities(image, text)
        masks = (probs > self.config.threshold).numpy()
        boxes = mask_boxes(masks)
        out = []
        for p, m, box in zip(probs, masks, boxes):
            score = float(p[torch.from_numpy(m)].mean()) if m.any() else float(p.max())
            out.append(Referral(tuple(float(v) for v in box), m, score))  # type: ignore[arg-type]
        return out


__all__ = ["WORD_TYPES", "CMPCReferrer", "FeatureExchange", "RelationReasoning", "WordClassifier", "masked_mean",
           "spatial_map"]
