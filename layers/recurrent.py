"""A convolutional LSTM (Shi et al. 2015): an LSTM whose gates are 3×3 convolutions, so a sequence of
feature maps is integrated per position — CMPC runs one over its feature levels (res3 → res5) to fuse
them into the mask features."""

from __future__ import annotations

import torch
from torch import nn


class ConvLSTM(nn.Module):
    """forward([x_1 … x_n] each (B, C_in, H, W)) → the last hidden state (B, hidden, H, W)."""

    def __init__(self, in_dim: int, hidden: int, kernel: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_dim + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, sequence: list[torch.Tensor]) -> torch.Tensor:
        if not sequence:
            raise ValueError("ConvLSTM needs at least one input map")
        b, _, h, w = sequence[0].shape
        state = sequence[0].new_zeros(b, self.hidden, h, w)
        cell = torch.zeros_like(state)
        for x in sequence:
            i, f, o, g = self.gates(torch.cat([x, state], 1)).chunk(4, 1)
            cell = f.sigmoid() * cell + i.sigmoid() * g.tanh()
            state = o.sigmoid() * cell.tanh()
        return state


__all__ = ["ConvLSTM"]
