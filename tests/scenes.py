"""Small mask scenes shared by the matching and criterion tests."""

import torch


def block(y0, y1, x0, x1, size=16):
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def logits(mask):
    return torch.where(mask, 8.0, -8.0)


def two_view_scene():
    """Entities E0, E1 in both views; E2 only in view 0 (all zero in view 1). Query q3 fits E0 in view 1
    better than q1 does, but is wrong in view 0; q1 fits E0 in both views."""
    empty = torch.zeros(16, 16, dtype=torch.bool)
    e0 = [block(0, 6, 0, 6), block(2, 10, 2, 10)]
    e1 = [block(10, 16, 0, 16), block(12, 16, 0, 16)]
    e2 = [block(0, 6, 10, 16), empty]
    targets = torch.stack([torch.stack(e) for e in (e0, e1, e2)])  # (N=3, V=2, 16, 16)
    q0 = [e1[0], e1[1]]
    q1 = [e0[0], block(3, 11, 3, 11)]  # right in view 0, one pixel off in view 1
    q2 = [e2[0], empty]
    q3 = [e2[0], e0[1]]  # wrong in view 0, perfect in view 1
    q4 = [empty, empty]
    preds = torch.stack([torch.stack([logits(m) for m in q]) for q in (q0, q1, q2, q3, q4)])  # (Q=5, V=2, 16, 16)
    return preds, targets
