from __future__ import annotations

import numpy as np
import pytest

from diffsit.gop import Chunk, FrameType, chunks, display_types, pad_indices, schedule, type_map, window_length

I, P, MV = FrameType.INTRA, FrameType.PRED, FrameType.MV  # noqa: E741 - the frame types' own letters


def test_nine_frames_as_in_the_paper():
    # paper (1-based): backbones x2 (I), x5 (P), x8 (P); order B0, MV1, MV3, B1, MV4, MV6, ...
    order = schedule(9)
    assert [(f.index, f.type, f.reference) for f in order] == [
        (1, I, None),
        (0, MV, 1),
        (2, MV, 1),
        (4, P, 1),
        (3, MV, 4),
        (5, MV, 4),
        (7, P, 4),
        (6, MV, 7),
        (8, MV, 7),
    ]


@pytest.mark.parametrize("n", range(1, 41))
def test_schedule_invariants(n):
    order = schedule(n)
    assert sorted(f.index for f in order) == list(range(n))  # every frame exactly once
    decoded: set[int] = set()
    backbones = [f for f in order if f.type.is_backbone]
    assert backbones[0].type is I and all(b.type is P for b in backbones[1:])
    for f in order:
        if f.type is I:
            assert f.reference is None
        else:
            assert f.reference in decoded  # references are decoded first
            ref = next(g for g in order if g.index == f.reference)
            assert ref.type.is_backbone  # MV frames are never references: one hop at most
            if f.type is MV:
                assert f.index // 3 == f.reference // 3  # from its own group's backbone
            else:
                assert f.reference == backbones[backbones.index(f) - 1].index  # the previous backbone
        decoded.add(f.index)
    types = display_types(n)
    for i, t in enumerate(types):
        full_group = 3 * (i // 3) + 1 < n
        assert t.is_backbone == ((i % 3 == 1) if full_group else True)
    assert sum(t.is_backbone for t in types) == -(-n // 3)


def test_short_clips():
    assert [(f.index, f.type) for f in schedule(1)] == [(0, I)]
    assert [(f.index, f.type, f.reference) for f in schedule(2)] == [(1, I, None), (0, MV, 1)]
    assert display_types(4) == [MV, I, MV, P]  # a one-frame tail group is its own backbone
    assert display_types(5) == [MV, I, MV, MV, P]
    with pytest.raises(ValueError):
        schedule(0)


def test_intra_refresh():
    types = display_types(20, intra_period=6)
    assert [i for i, t in enumerate(types) if t is I] == [1, 7, 13, 19]
    assert [i for i, t in enumerate(types) if t is P] == [4, 10, 16]
    with pytest.raises(ValueError, match="multiple of 3"):
        schedule(10, intra_period=4)


def test_type_map_marks_backbones():
    np.testing.assert_array_equal(type_map(7), [0, 1, 0, 0, 1, 0, 1])


def test_chunking_windows_of_9_plus_12m():
    assert [window_length(m) for m in range(4)] == [9, 21, 33, 45]
    assert chunks(70, 33) == [Chunk(0, 33, 33), Chunk(33, 66, 33), Chunk(66, 70, 33)]
    last = chunks(70, 33)[-1]
    assert last.padding == 29 and pad_indices(last) == [66, 67, 68, 69] + [69] * 29
    assert chunks(5, 9) == [Chunk(0, 5, 9)]
    with pytest.raises(ValueError, match="9 \\+ 12m"):
        chunks(10, 32)


def test_overlapping_windows_cover_the_clip_and_their_weights_sum_to_one():
    from diffsit.gop import blend_weights, overlapping_chunks

    assert overlapping_chunks(20, 9, 0) == chunks(20, 9)
    ws = overlapping_chunks(20, 9, 3)
    assert [(c.start, c.stop) for c in ws] == [(0, 9), (6, 15), (12, 20)] and ws[-1].padding == 1
    total = np.zeros(20)
    for k, c in enumerate(ws):
        total[c.start : c.stop] += blend_weights(c, 3, k == 0, k == len(ws) - 1)
    np.testing.assert_allclose(total, 1.0)
    assert overlapping_chunks(9, 9, 3) == [Chunk(0, 9, 9)]
    with pytest.raises(ValueError, match="overlap must be in 0..8"):
        overlapping_chunks(20, 9, 9)


def test_refine_with_overlap_crossfades_the_windows():
    import torch

    from diffsit.pipeline import refine
    from diffsit.zoo import load_model

    model = load_model("random", allow_untrained=True)
    with torch.no_grad():  # an ODFTE that changes the picture (the tiny DiT's output starts at zero)
        model.odfte.transformer.proj_out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
    x = torch.rand(15, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    hard, soft = refine(model, x, overlap=0), refine(model, x, overlap=3)
    assert torch.equal(hard[:6], soft[:6])  # before the first overlap: the first window alone
    assert not torch.equal(hard[6:9], soft[6:9])  # the overlap: a mix of both windows
    assert soft.min() >= 0 and soft.max() <= 1
