"""Predicted masks against annotated segments: exact overlaps, the mask-limited best grounding, and
the assignment that gives GELLA its targets on a segmenter's masks."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from esgkit.layers.overlap import assign_to_segments, best_union, segment_overlaps, segment_errors

# 4×6 annotation: segment 0 = left third, 1 = middle third, 2 = right third
SEGMENTS = np.zeros((3, 4, 6), bool)
for k in range(3):
    SEGMENTS[k, :, 2 * k : 2 * k + 2] = True


def _mask(cols, rows=slice(None)):
    m = np.zeros((4, 6), bool)
    m[rows, cols] = True
    return m


def test_split_merge_and_stray_masks_are_assigned_by_majority_area():
    pieces = np.stack([_mask(slice(0, 1)), _mask(slice(1, 2)),   # segment 0 split in two
                       _mask(slice(2, 5)),                       # merges 1 with half of 2: mostly 1
                       _mask(slice(3, 5)),                       # half in 1, half in 2: 1 (first) at 0.5
                       _mask(slice(5, 6), slice(0, 1))])         # a sliver inside 2
    assert assign_to_segments(pieces, SEGMENTS).tolist() == [0, 0, 1, 1, 2]
    assert assign_to_segments(pieces, SEGMENTS, min_share=0.6).tolist() == [0, 0, 1, -1, 2]
    assert assign_to_segments(pieces[:0], SEGMENTS).tolist() == []


def test_best_union_singular_takes_the_best_entity_plural_grows_while_iou_grows():
    pieces = np.stack([_mask(slice(0, 1)), _mask(slice(1, 2)), _mask(slice(1, 4))])
    target = SEGMENTS[0]
    assert best_union(pieces, target, plural=False) in ([0], [1])        # IoU 0.5 each; 2 has 0.25
    assert sorted(best_union(pieces, target, plural=True)) == [0, 1]     # the two halves: IoU 1
    assert best_union(pieces, SEGMENTS[2], plural=True) == []            # nothing touches segment 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=8), st.integers(0, 3))
def test_overlaps_are_exact_and_the_oracle_never_loses_to_a_single_entity(columns, target_segment):
    masks = np.stack([_mask(slice(c, c + 1)) for c in columns])
    counts = segment_overlaps(masks, SEGMENTS)
    assert (counts == (masks[:, None] & SEGMENTS[None]).sum((2, 3))).all()
    target = SEGMENTS[min(target_segment, 2)]

    def iou(ids):
        u = masks[ids].any(0) if ids else np.zeros_like(target)
        return (u & target).sum() / max((u | target).sum(), 1)

    single = max(iou([n]) for n in range(len(masks)))
    assert iou(best_union(masks, target, plural=True)) >= single - 1e-12
    assert iou(best_union(masks, target, plural=False)) == single


def test_segment_errors_names_each_kind():
    segments = np.zeros((5, 40, 40), bool)
    segments[0, :10, :10] = True        # found exactly: good
    segments[1, :10, 10:20] = True      # two halves: split
    segments[2, 20:24, 20:24] = True    # inside a big mask with 3: merged
    segments[3, 20:24, 24:40] = True
    segments[4, 30:34, :4] = True       # no mask: missed
    masks = np.zeros((4, 40, 40), bool)
    masks[0] = segments[0]
    masks[1, :10, 10:15] = True
    masks[2, :10, 15:20] = True
    masks[3] = segments[2] | segments[3]
    assert segment_errors(masks, segments) == ["good", "split", "merged", "good", "missed"]
    coarse = np.zeros((1, 40, 40), bool)
    coarse[0, :10, :6] = True           # 60 % of segment 0, all inside it
    assert segment_errors(coarse, segments[:1]) == ["coarse"]
    assert segment_errors(np.zeros((0, 40, 40), bool), segments[:2]) == ["missed", "missed"]
