"""``SetCriterion``: Hungarian matching + entityness and mask losses over a batch, per decoder layer
(``GivenMatchCriterion``: the same losses with the query ↔ target pairs given).

This is the L_seg of GELLA (entityness BCE + mask BCE + Dice) and the per-view / batch-level loss of
CropFormer (pass masks with a view axis for the joint cross-view variant). Matching is recomputed for
every decoder layer (deep supervision), as Mask2Former does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from .losses import entityness_loss, mask_losses
from esgkit.layers.matching import MatchCosts, hungarian_match


@dataclass
class SetCriterionConfig:
    """Loss weights (also used as matching cost weights) and point sampling.

    Defaults are CropFormer's (class 2, mask 5, dice 5, no-object 0.1, 12,544 points); GELLA uses
    uniform weights (1, 1, 1)."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544  # per view; 0 = full masks
    oversample: float = 3.0
    importance: float = 0.75
    sync_num_masks: bool = False  # average the mask count over data-parallel processes (all must call)


class SetCriterion:
    """Matches and scores one or more layers of predictions against each image's target masks."""

    def __init__(self, config: SetCriterionConfig | None = None) -> None:
        self.config = config or SetCriterionConfig()

    def _num_masks(self, targets: Sequence[Tensor], device: torch.device) -> float:
        total = torch.tensor(float(sum(t.shape[0] for t in targets)), device=device)
        if self.config.sync_num_masks and dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
            total = total / dist.get_world_size()
        return max(float(total), 1.0)

    def match(self, class_logits: Tensor, mask_logits: Tensor, targets: Sequence[Tensor],
              generator: torch.Generator | None = None) -> list[tuple[Tensor, Tensor]]:
        """Per image ``(query_idx, target_idx)`` (see ``hungarian_match``)."""
        c = self.config
        costs = MatchCosts(c.class_weight, c.mask_weight, c.dice_weight, c.num_points)
        return [hungarian_match(class_logits[b], mask_logits[b], targets[b].to(mask_logits.device), None, costs, generator)
                for b in range(len(targets))]

    def __call__(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        targets: Sequence[Tensor],
        aux: Sequence[tuple[Tensor, Tensor]] = (),
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Weighted losses ``{"class", "mask", "dice"}`` summed over the final layer and ``aux`` layers.

        ``class_logits`` (B, Q[, K+1]); ``mask_logits`` (B, Q, [V,] H, W); ``targets`` one bool/float
        tensor (N_b, [V,] H', W') per image; ``aux`` earlier layers' (class_logits, mask_logits).
        """
        c = self.config
        num_masks = self._num_masks(targets, mask_logits.device)
        totals: dict[str, Tensor] = {}
        for cls, masks in [(class_logits, mask_logits), *aux]:
            matches = self.match(cls, masks, targets, generator)
            class_terms = [self.class_loss(cls[b], q, b) for b, (q, _) in enumerate(matches)]
            pred = torch.cat([masks[b][q] for b, (q, _) in enumerate(matches)])
            target = torch.cat([targets[b][t].to(masks.device) for b, (_, t) in enumerate(matches)])
            m = mask_losses(pred, target, num_masks, c.num_points, c.oversample, c.importance, generator)
            layer = {
                "class": c.class_weight * torch.stack(class_terms).mean(),
                "mask": c.mask_weight * m["mask"],
                "dice": c.dice_weight * m["dice"],
            }
            for k, v in layer.items():
                totals[k] = totals[k] + v if k in totals else v
        return totals

    def class_loss(self, logits: Tensor, matched: Tensor, image: int) -> Tensor:
        """Entityness loss of image ``image``'s queries, ``matched`` those paired with a target."""
        return entityness_loss(logits, matched, None, self.config.no_object_weight)


class GivenMatchCriterion(SetCriterion):
    """``SetCriterion`` with the query ↔ target pairs given rather than Hungarian-matched, the same
    for every layer: for decoders whose queries are their input entities (query i ↔ entity i).
    ``counts[b]``: image b's real queries; those after it (padding up to the batch's largest
    count) take no loss at all."""

    def __init__(self, config: SetCriterionConfig, matches: Sequence[tuple[Tensor, Tensor]],
                 counts: Sequence[int]) -> None:
        super().__init__(config)
        self.matches, self.counts = list(matches), [int(n) for n in counts]

    def match(self, class_logits: Tensor, mask_logits: Tensor, targets: Sequence[Tensor],
              generator: torch.Generator | None = None) -> list[tuple[Tensor, Tensor]]:
        return list(self.matches)

    def class_loss(self, logits: Tensor, matched: Tensor, image: int) -> Tensor:
        n = self.counts[image]
        return super().class_loss(logits[:n], matched, image) if n else logits.sum() * 0.0
