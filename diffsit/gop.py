"""Diff-SIT's sparse temporal GOP: backbone frames and MV frames, in groups of three.

Frames are indexed from 0 here. In each group {3g, 3g+1, 3g+2} the middle frame 3g+1 (the
paper's 1-based 3t+2) is the *backbone*; the other two are *MV frames*. The first backbone
is intra (I); each later backbone is a P frame coded from the previous reconstructed
backbone. An MV frame is predicted only from its own group's reconstructed backbone (flow
plus warp, no residual) and is never a reference: a prediction chain longer than one hop
degrades fast (the paper's chain-length figure).

Coding order equals decoding order: each group's backbone, then its MV frames in display
order, i.e. B0(I), MV0, MV2, B1(P), MV3, MV5, ...

Short tails (our choice, the paper is silent): a last group with two frames keeps its
backbone in the middle position (3g+1) and one MV frame; a last group with one frame makes
that frame its backbone. So every clip of at least one frame is codable.

Intra refresh (our choice): ``intra_period=-1`` (default) codes one intra backbone, the first;
a positive period (a multiple of 3) makes the backbone of every group starting at a multiple
of it intra, which bounds error propagation along the P chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from bench.codec import check_intra_period

GROUP = 3


class FrameType(str, Enum):
    INTRA = "I"
    PRED = "P"
    MV = "MV"

    @property
    def is_backbone(self) -> bool:
        return self is not FrameType.MV


@dataclass(frozen=True)
class FrameCoding:
    """How one frame is coded: its display index, type, and the frame it is predicted from."""

    index: int
    type: FrameType
    reference: int | None  # display index of the reference; None for intra


def backbone_of_group(group: int, frames: int) -> int:
    first = GROUP * group
    return first + 1 if first + 1 < frames else first


def validate_intra_period(intra_period: int) -> None:
    """The harness's rule (``bench.codec.check_intra_period``: -1 or positive) and Diff-SIT's:
    a period is whole groups of three."""
    try:
        check_intra_period(intra_period)
    except ValueError:
        valid = False
    else:
        valid = intra_period == -1 or intra_period % GROUP == 0
    if not valid:
        raise ValueError(f"intra_period must be -1 (one intra backbone) or a positive multiple of {GROUP}, got {intra_period}")


def schedule(frames: int, intra_period: int = -1) -> list[FrameCoding]:
    """Every frame once, in coding (= decoding) order."""
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {frames}")
    validate_intra_period(intra_period)
    order: list[FrameCoding] = []
    previous_backbone: int | None = None
    for group in range(-(-frames // GROUP)):
        first = GROUP * group
        backbone = backbone_of_group(group, frames)
        intra = previous_backbone is None or (intra_period > 0 and first % intra_period == 0)
        order.append(FrameCoding(backbone, FrameType.INTRA if intra else FrameType.PRED, None if intra else previous_backbone))
        for index in range(first, min(first + GROUP, frames)):
            if index != backbone:
                order.append(FrameCoding(index, FrameType.MV, backbone))
        previous_backbone = backbone
    return order


def display_types(frames: int, intra_period: int = -1) -> list[FrameType]:
    types: list[FrameType | None] = [None] * frames
    for fc in schedule(frames, intra_period):
        types[fc.index] = fc.type
    return types  # type: ignore[return-value]


def type_map(frames: int, intra_period: int = -1) -> np.ndarray:
    """Per-frame frame-type map for the Frame Type Embedder: 1 for backbones, 0 for MV frames."""
    return np.array([1.0 if t.is_backbone else 0.0 for t in display_types(frames, intra_period)], dtype=np.float32)


@dataclass(frozen=True)
class Chunk:
    """Frames [start, stop) of the clip, refined together; ``length`` includes tail padding."""

    start: int
    stop: int
    length: int

    @property
    def padding(self) -> int:
        return self.length - (self.stop - self.start)


def window_length(m: int) -> int:
    """Wan's VAE takes 1 + 4k frames; windows of 9 + 12m are that and whole groups of three."""
    if m < 0:
        raise ValueError("m must be >= 0")
    return 9 + 12 * m


def chunks(frames: int, window: int = 33) -> list[Chunk]:
    """Split a clip into diffusion windows; the last one is padded (by repeating the last frame)."""
    if window < 9 or (window - 9) % 12:
        raise ValueError(f"window must be 9 + 12m frames (9, 21, 33, 45, ...), got {window}")
    if frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {frames}")
    return [Chunk(s, min(s + window, frames), window) for s in range(0, frames, window)]


def pad_indices(chunk: Chunk) -> list[int]:
    """Display indices that fill a chunk: its frames, then the last one repeated."""
    idx = list(range(chunk.start, chunk.stop))
    return idx + [chunk.stop - 1] * chunk.padding


def overlapping_chunks(frames: int, window: int = 33, overlap: int = 0) -> list[Chunk]:
    """ODFTE's windows when consecutive ones share ``overlap`` frames (0: ``chunks``).

    Windows start every ``window - overlap`` frames until one reaches the end; the last is
    padded as in ``chunks``. Where two overlap, :func:`blend_weights` crossfades them, so no
    frame pair straddles a hard cut between two independent refinements."""
    if not 0 <= overlap < window:
        raise ValueError(f"window overlap must be in 0..{window - 1} frames, got {overlap}")
    if overlap == 0:
        return chunks(frames, window)
    chunks(frames, window)  # the same checks
    out, start = [], 0
    while True:
        out.append(Chunk(start, min(start + window, frames), window))
        if start + window >= frames:
            return out
        start += window - overlap


def blend_weights(chunk: Chunk, overlap: int, first: bool, last: bool) -> np.ndarray:
    """Per-frame weights of one window's output: a linear ramp over the ``overlap`` frames it
    shares with each neighbour, 1 elsewhere; the two ramps of an overlap sum to 1."""
    w = np.ones(chunk.stop - chunk.start)
    ramp = np.arange(1, overlap + 1) / (overlap + 1)
    if overlap and not first:
        w[:overlap] = ramp[: len(w)]
    if overlap and not last:
        w[-overlap:] = ramp[::-1][: len(w)]
    return w
