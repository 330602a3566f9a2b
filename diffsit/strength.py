"""The refinement strength map: how much of ODFTE's change each block of each window keeps.

    x^ = clamp(x~ + a * (ODFTE(x~) - x~)),  a = k / 4 for k in 0..7, one k per block x window

The encoder has the source, so it runs ODFTE itself and picks, per ``block`` x ``block``
region of each ODFTE window, the ``a`` that maximises the harness's headline PSNR-YUV against
the source. The ``k`` map travels in the stream (one byte per block, raw-deflated) and
its bytes count in the rate. This is the switch a conventional codec puts on its own loop filters (HEVC's SAO
and VVC's ALF are enabled per CTU by the encoder): a decoder-side enhancer trained on other
content can hurt a given region, and only the encoder can tell. ``a = 1`` everywhere is the
paper's decoder-only ODFTE; ``block = 0`` in the model config turns the map off and gives
exactly that (our addition, not the paper's; see the ablation's ``x_hat_full`` row).

The choice is closed form. PSNR-YUV is (6 PSNR_Y + PSNR_U + PSNR_V) / 8 on the 4:2:0 planes
of ``bench.video.rgb_to_yuv420``, which are linear in RGB; linearised around x~, maximising it
means minimising sum_{t,p} w_tp ||e_tp - a d_tp||^2 with w_tp = c_p / ||e_tp||^2, c = (6, 1, 1)
(the harness averages PSNR over frames t, so each frame's plane is weighted by its own error),
e = x - x~ and d = ODFTE(x~) - x~ on frame t, plane p. To that the encoder adds the temporal
term ODFTE was trained with (stage 2's w_c): w_c sum_{t,p} w'_tp ||De_tp - a Dd_tp||^2, D the
difference from frame t-1 to t and w'_tp the mean of the two frames' weights, so that a change
which gains PSNR by flickering is not kept. a is constant over a window, so per block the sum
is still a quadratic in a, evaluated at the 8 levels.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from bench.video import KB, KG, KR

from .bitstream import BitstreamError

LEVELS = 8
STEP = 0.25  # a = k * STEP: 0 (x~) .. 1 (ODFTE as trained) .. 1.75


class StrengthMapError(BitstreamError):
    """A strength map that does not fit the stream it came in; the message says why."""


def grid(height: int, width: int, block: int) -> tuple[int, int]:
    """Blocks per column and per row over the (padded) frame."""
    return -(-height // block), -(-width // block)


def _block_sums(t: torch.Tensor, block: int) -> torch.Tensor:
    """(N, C, H, W) -> (gh, gw): the sum over frames, channels and each block's pixels."""
    s = t.sum(dim=(0, 1))[None, None]
    gh, gw = grid(t.shape[-2], t.shape[-1], block)
    s = F.pad(s, (0, gw * block - t.shape[-1], 0, gh * block - t.shape[-2]))
    return F.avg_pool2d(s, block, divisor_override=1)[0, 0]


PLANE_WEIGHTS = (6.0, 1.0, 1.0)  # PSNR-YUV's weights of Y, U, V
TEMPORAL_WEIGHT = 1.0  # w_c: the tiny recipe's stage-2 temporal_weight, so encoder and training agree


def planes(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, 3, H, W) RGB (or an RGB difference) -> Y (N, 1, H, W) and the 2x2-mean chroma (N, 1,
    H/2, W/2), without the +0.5 offset: the harness's 4:2:0 conversion, minus rounding."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = KR * r + KG * g + KB * b
    return y, F.avg_pool2d((b - y) / (2 - 2 * KB), 2), F.avg_pool2d((r - y) / (2 - 2 * KR), 2)


def plane_weights(source: torch.Tensor, x_tilde: torch.Tensor) -> list[torch.Tensor]:
    """w_tp, (N, 1, 1, 1) per plane: PSNR-YUV's weights over each frame's plane's squared
    error, linearised around x~."""
    return _weights(planes((source - x_tilde).double()))


def _weights(error_planes) -> list[torch.Tensor]:
    return [c / (p**2).sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) for c, p in zip(PLANE_WEIGHTS, error_planes, strict=True)]


def choose(source: torch.Tensor, x_tilde: torch.Tensor, x_refined: torch.Tensor, block: int, temporal_weight: float = TEMPORAL_WEIGHT) -> torch.Tensor:
    """The level index k per block (uint8, (gh, gw)) for one window of frames (N, 3, H, W)
    (H and W even, ``block`` even: the chroma blocks are half the size). ``temporal_weight``
    0 is PSNR-YUV alone."""
    if block <= 0 or block % 2:
        raise ValueError(f"strength block must be even and positive (4:2:0 chroma blocks are half the size), got {block}")
    if temporal_weight < 0:
        raise ValueError(f"temporal_weight must be >= 0, got {temporal_weight}")
    e, d = planes((source - x_tilde).double()), planes((x_refined - x_tilde).double())
    s_ed = s_dd = 0.0
    for i, (w, ep, dp) in enumerate(zip(_weights(e), e, d, strict=True)):
        b = block // (1 if i == 0 else 2)
        s_ed, s_dd = s_ed + _block_sums(w * ep * dp, b), s_dd + _block_sums(w * dp * dp, b)
        if temporal_weight and ep.shape[0] > 1:
            wt, de, dd = temporal_weight * (w[1:] + w[:-1]) / 2, ep.diff(dim=0), dp.diff(dim=0)
            s_ed, s_dd = s_ed + _block_sums(wt * de * dd, b), s_dd + _block_sums(wt * dd * dd, b)
    a = torch.arange(LEVELS, dtype=torch.float64) * STEP
    # the change in squared error each level makes, against keeping x~ (k = 0: no change)
    delta = a.view(-1, 1, 1) ** 2 * s_dd - 2 * a.view(-1, 1, 1) * s_ed
    return delta.argmin(dim=0).to(torch.uint8)


def apply(x_tilde: torch.Tensor, x_refined: torch.Tensor, levels: torch.Tensor, block: int) -> torch.Tensor:
    """x~ + a (x_refined - x~), clamped to [0, 1], for one window with its level map."""
    a = levels.to(x_tilde.dtype) * STEP
    a = a.repeat_interleave(block, 0).repeat_interleave(block, 1)[: x_tilde.shape[-2], : x_tilde.shape[-1]]
    return (x_tilde + a.to(x_tilde.device) * (x_refined - x_tilde)).clamp(0, 1)


def pack(maps: list[torch.Tensor]) -> bytes:
    """All windows' maps, in window order, one byte per block, raw-deflated."""
    raw = b"".join(bytes(m.flatten().tolist()) for m in maps)
    # raw deflate: zlib's 6 bytes of header and checksum are a tenth of a small clip's map,
    # and the stream has its own CRC
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush()


def unpack(data: bytes, windows: int, shape: tuple[int, int]) -> list[torch.Tensor]:
    per = shape[0] * shape[1]
    try:
        d = zlib.decompressobj(-15)
        raw = d.decompress(data, windows * per + 1)  # one more than needed, to catch a longer map
        if d.unconsumed_tail or not d.eof:
            raise zlib.error("incomplete or oversized deflate stream")
    except zlib.error as e:
        raise StrengthMapError(f"corrupted stream: the strength map does not inflate ({e})") from None
    if len(raw) != windows * per:
        raise StrengthMapError(
            f"corrupted stream: the strength map holds {len(raw)} entries, {windows} windows of {shape[0]}x{shape[1]} blocks need {windows * per}"
        )
    if raw and max(raw) >= LEVELS:
        raise StrengthMapError(f"corrupted stream: strength level {max(raw)} in the map; levels are 0..{LEVELS - 1}")
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return [flat[i * per : (i + 1) * per].view(shape).clone() for i in range(windows)]
