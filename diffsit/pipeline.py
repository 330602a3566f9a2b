"""Diff-SIT's pipeline: video -> bitstream bytes -> video (encode, decode, refine).

Encoding: frames become RGB (BT.709, the harness's conversion), are padded to a multiple of
16 (``stem.intra.coded_size``: what STEM's and ODFTE's transforms need) by edge replication, and are coded in the GOP's coding order by STEM (intra, P or MV
coder), each from already-reconstructed references, into the container of
``diffsit.bitstream``. STEM is integer-exact (``diffsit.stem.exact``): its reconstructions
are 10-bit DPB samples, the same on every machine, and the stream carries a hash of each
(``picture_hash``) that the decoder checks. Decoding rebuilds the intermediate video x~ from the file alone,
refines it with ODFTE window by window (9+12m frames, the last window padded), keeps of
ODFTE's change what the stream's strength map says per block (``diffsit.strength``), crops
back, and converts to 4:2:0. The encoder runs the same decoder-side steps: it needs ODFTE's
output to choose the strength map, and keeps its reconstruction, which the harness compares
with the decoder's output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction

import torch

from bench import progress
from bench.video import Video, crop, pad_to_multiple, rgb_to_yuv420

from . import strength
from .bitstream import PICTURE_HASHES, FrameRecord, Stream, check_geometry, decode_stream, encode_stream, picture_hash
from .gop import Chunk, FrameType, blend_weights, chunks, display_types, overlapping_chunks, pad_indices, schedule
from .stem.exact import samples_to_float
from .stem.intra import PICTURE_MULTIPLE, coded_size


def frames_rgb(video: Video, device) -> torch.Tensor:
    """The frames STEM codes: RGB (BT.709) padded to a multiple of 16 by edge replication."""
    return pad_to_multiple(video.rgb(device=device), PICTURE_MULTIPLE)


@dataclass
class Encoded:
    """What the encoder produced: the stream's bytes, and the videos the decoder will rebuild
    (padded, (N, 3, H, W) RGB in [0, 1])."""

    data: bytes
    stream: Stream
    x_tilde: torch.Tensor  # STEM's intermediate video (its DPB samples / 1023)
    x_refined: torch.Tensor | None  # ODFTE's output as is (strength 1 everywhere: the paper's x^)
    x_hat: torch.Tensor | None  # the decoded video: x~ + strength map * (x_refined - x~)

    @property
    def stem_bytes(self) -> int:
        """The stream without its strength map: what x~ alone costs."""
        return len(self.data) - self.stream.strength_bytes()


def _code_frame(model, fc, cur, recon, p_skip: bool | None) -> tuple[list[bytes], torch.Tensor]:
    if fc.type is FrameType.INTRA:
        return model.intra.compress_image(cur)
    if fc.type is FrameType.PRED:
        return model.pframe.compress(cur, recon[fc.reference], model.rd_tradeoff(p_skip))
    return model.mv.compress(cur, recon[fc.reference])


def check_picture_hash(kind: str) -> str:
    if kind not in PICTURE_HASHES:
        raise ValueError(f"picture_hash must be one of {', '.join(PICTURE_HASHES)} (crc32: 4 bytes a frame, the default), got {kind!r}")
    return kind


class RefinementCache:
    """ODFTE's output for the x~ the encoder last refined, for the decoder of the same stream.

    The encoder runs ODFTE to choose the strength map and the decoder runs it again on the same
    x~: on 2 CPU cores that second pass was half of Diff-SIT's time in a sweep, which encodes
    and decodes each stream in one process. The decoder's x~ comes from the stream's bytes
    alone and is found here only if it is sample for sample the encoder's (SHA-256 of the DPB
    samples), refined by the same weights, dtype, device and windows, so what it returns is
    what running ODFTE again would give on this machine. A decoder anywhere else runs ODFTE.
    Holds one entry (a 720p clip of 33 frames is ~360 MB)."""

    def __init__(self):
        self._key: tuple | None = None
        self._value: torch.Tensor | None = None
        self.hits = 0

    @staticmethod
    def key(model, x_tilde: torch.Tensor, intra_period: int) -> tuple:
        digest = hashlib.sha256(x_tilde.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        cfg = model.config
        return (model.weights_sha256(), str(model.odfte.dtype), str(x_tilde.device), tuple(x_tilde.shape), intra_period, cfg.window, cfg.window_overlap, digest)

    def refine(self, model, x_tilde: torch.Tensor, intra_period: int) -> torch.Tensor:
        key = self.key(model, x_tilde, intra_period)
        if key == self._key and self._value is not None:
            self.hits += 1
            progress.advance(x_tilde.shape[0])  # the pass over the frames, done already
            return self._value.clone()
        value = refine(model, x_tilde, intra_period)
        self._key, self._value = key, value.clone()
        return value


def _refine(model, x_tilde, intra_period, cache: RefinementCache | None):
    return cache.refine(model, x_tilde, intra_period) if cache is not None else refine(model, x_tilde, intra_period)


@torch.no_grad()
def encode_video(
    model,
    video: Video,
    *,
    device: str = "cpu",
    output: bool = True,
    picture_hash_kind: str = "crc32",
    cache: RefinementCache | None = None,
    step_level: int = 0,
    strength_block: int | None = None,
    p_skip: bool | None = None,
) -> Encoded:
    """Code ``video``. ODFTE runs here when the model signals a strength map (it needs ODFTE's
    output to choose it) or when ``output`` asks for the decoded video; ``cache`` keeps its
    output for the decoder of this stream (:class:`RefinementCache`). ``step_level``: the
    texture coders' quantization step (``diffsit.zoo.rate_point``; 0: the model's trained
    steps). ``strength_block`` and ``p_skip``: how to code, over the model config's (None: the
    config's); the model is never changed."""
    check_picture_hash(picture_hash_kind)
    fps = Fraction(video.fps).limit_denominator(1001000)
    # before minutes of coding, not at the end when the stream is written
    check_geometry(video.width, video.height, fps.numerator, fps.denominator, video.frames, where="video to code")
    model.to(device)
    frames = frames_rgb(video, device)
    n = video.frames
    recon: dict[int, torch.Tensor] = {}
    records = []
    block = model.config.strength_block if strength_block is None else check_strength_block(strength_block)
    # a job's progress: STEM's pass over the frames, then ODFTE's when it runs
    progress.expect(2 * n if block or output else n)
    with model.at_step_level(step_level):
        for fc in schedule(n, model.config.intra_period):
            strings, rec = _code_frame(model, fc, frames[fc.index : fc.index + 1], recon, p_skip)
            recon[fc.index] = rec
            records.append(FrameRecord(fc.index, fc.type, tuple(strings), picture_hash(rec, picture_hash_kind)))
            progress.advance(1)
    x_tilde = samples_to_float(torch.cat([recon[i] for i in range(n)]))
    x_refined = _refine(model, x_tilde, model.config.intra_period, cache) if block or output else None
    x_hat, packed = x_refined, b""
    if block:
        windows = chunks(n, model.config.window)
        maps = [strength.choose(frames[c.start : c.stop], x_tilde[c.start : c.stop], x_refined[c.start : c.stop], block) for c in windows]
        x_hat = _apply_strength(x_tilde, x_refined, maps, windows, block)
        packed = strength.pack(maps)
    stream = Stream(
        model.model_id,
        model.weights_sha256(),
        video.width,
        video.height,
        fps,
        n,
        model.config.intra_period,
        records,
        strength_block=block,
        strength=packed,
        picture_hash=picture_hash_kind,
        step_level=step_level,
    )
    return Encoded(encode_stream(stream), stream, x_tilde, x_refined, x_hat)


def _apply_strength(x_tilde, x_refined, maps, windows, block) -> torch.Tensor:
    out = torch.empty_like(x_tilde)
    for c, levels in zip(windows, maps, strict=True):
        out[c.start : c.stop] = strength.apply(x_tilde[c.start : c.stop], x_refined[c.start : c.stop], levels, block)
    return out


@torch.no_grad()
def decode_samples(model, data: bytes, *, device: str = "cpu") -> tuple[Stream, torch.Tensor]:
    """The stream and x~ as DPB samples, rebuilt from the bytes alone, each frame checked
    against its picture hash (PictureHashMismatch at the first that differs)."""
    model.to(device)
    stream = decode_stream(data, model_id=model.model_id, weights_sha256=model.weights_sha256())
    ph, pw = coded_size(stream.height, stream.width)
    recon: dict[int, torch.Tensor] = {}
    expected = {fc.index: fc for fc in schedule(stream.frames, stream.intra_period)}
    progress.expect(2 * stream.frames)  # STEM's pass over the frames, then ODFTE's (reconstruct)
    with model.at_step_level(stream.step_level):
        for position, rec in enumerate(stream.records):
            fc = expected[rec.index]
            if fc.type is not rec.type:
                raise ValueError(f"frame {rec.index} is coded as {rec.type.value} but the GOP says {fc.type.value}")
            if rec.type is FrameType.INTRA:
                recon[rec.index] = model.intra.decompress_image(list(rec.strings), (ph, pw), device)
            elif rec.type is FrameType.PRED:
                recon[rec.index] = model.pframe.decompress(list(rec.strings), recon[fc.reference])
            else:
                recon[rec.index] = model.mv.decompress(list(rec.strings), recon[fc.reference])
            rec.check(recon[rec.index], stream.picture_hash, position)
            progress.advance(1)
    return stream, torch.cat([recon[i] for i in range(stream.frames)])


@torch.no_grad()
def decode_intermediate(model, data: bytes, *, device: str = "cpu") -> tuple[Stream, torch.Tensor]:
    """The stream and x~ (RGB in [0, 1]) rebuilt from the bytes alone."""
    stream, samples = decode_samples(model, data, device=device)
    return stream, samples_to_float(samples)


@torch.no_grad()
def refine(model, x_tilde: torch.Tensor, intra_period: int = -1, *, use_fte: bool = True, per_frame: bool = False, overlap: int | None = None) -> torch.Tensor:
    """ODFTE over 9+12m windows; (N,3,H,W) in [0,1] -> same shape, in ODFTE's dtype
    (``DiffSIT.set_dtype``) inside and x_tilde's outside.

    ``overlap`` (default: the model's ``window_overlap``): consecutive windows share that many
    frames and are crossfaded there (``gop.overlapping_chunks``). ``per_frame=True`` refines
    each frame on its own (a window of one frame): the ablation against refining the whole
    clip at once."""
    n = x_tilde.shape[0]
    types = display_types(n, intra_period)
    dtype = model.odfte.dtype
    overlap = model.config.window_overlap if overlap is None else overlap
    if per_frame:
        windows = [Chunk(i, i + 1, 1) for i in range(n)]
        overlap = 0
    else:
        windows = overlapping_chunks(n, model.config.window, overlap)
    out = torch.zeros_like(x_tilde)
    covered = 0
    for k, ch in enumerate(windows):
        idx = pad_indices(ch)
        clip = x_tilde[idx].permute(1, 0, 2, 3).unsqueeze(0).to(dtype)  # (1, 3, T, H, W)
        tmap = torch.tensor([[1.0 if types[i].is_backbone else 0.0 for i in idx]], device=x_tilde.device)
        y = model.odfte(clip, tmap, use_fte=use_fte)[0].permute(1, 0, 2, 3)[: ch.stop - ch.start].to(out.dtype)
        if overlap:
            w = torch.from_numpy(blend_weights(ch, overlap, k == 0, k == len(windows) - 1)).to(y).view(-1, 1, 1, 1)
            out[ch.start : ch.stop] += w * y
        else:
            out[ch.start : ch.stop] = y
        progress.advance(ch.stop - max(ch.start, covered))  # frames no earlier window had
        covered = ch.stop
    return out


@torch.no_grad()
def reconstruct(model, stream: Stream, x_tilde: torch.Tensor, cache: RefinementCache | None = None) -> torch.Tensor:
    """x^ from x~ and the stream's strength map (ODFTE's output as is when it has none)."""
    if not stream.strength_block:
        return _refine(model, x_tilde, stream.intra_period, cache)
    # the map first: a corrupt one is refused before minutes of ODFTE, not after
    windows = chunks(stream.frames, model.config.window)
    maps = strength.unpack(stream.strength, len(windows), strength.grid(x_tilde.shape[-2], x_tilde.shape[-1], stream.strength_block))
    x_refined = _refine(model, x_tilde, stream.intra_period, cache)
    return _apply_strength(x_tilde, x_refined, maps, windows, stream.strength_block)


@torch.no_grad()
def encode_all_p(model, video: Video, *, device: str = "cpu") -> tuple[bytes, torch.Tensor]:
    """The ablation's alternative to MV frames: frame 0 intra, every later frame a P frame
    from the previous reconstruction (one long chain), in the same container. Not a valid
    Diff-SIT stream (the decoder follows the sparse GOP); for counting bits and x~ quality."""
    model.to(device)
    frames = frames_rgb(video, device)
    recon, records = [], []
    for i in range(video.frames):
        cur = frames[i : i + 1]
        strings, rec = model.intra.compress_image(cur) if i == 0 else model.pframe.compress(cur, recon[-1], model.rd_tradeoff())
        recon.append(rec)
        records.append(FrameRecord(i, FrameType.INTRA if i == 0 else FrameType.PRED, tuple(strings), picture_hash(rec, "crc32")))
    stream = Stream(
        model.model_id,
        model.weights_sha256(),
        video.width,
        video.height,
        Fraction(video.fps).limit_denominator(1001000),
        video.frames,
        model.config.intra_period,
        records,
    )
    return encode_stream(stream), samples_to_float(torch.cat(recon))


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_dtype(name: str | None) -> torch.dtype:
    """ODFTE's dtype from its name (None: fp32)."""
    if name is None:
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def check_strength_block(block: int | None) -> int | None:
    """None (the model's own), 0 (no map), or an even block size up to the u16 the stream holds."""
    if block is None:
        return None
    if isinstance(block, bool) or not isinstance(block, int) or block < 0 or block % 2 or block >= 2**16:
        raise ValueError(f"strength_block must be 0 (no strength map: ODFTE's output as is) or an even block size in pixels below 65536, got {block!r}")
    return block


def to_video(rgb: torch.Tensor, width: int, height: int, fps: float, bit_depth: int = 8) -> Video:
    return rgb_to_yuv420(crop(rgb, height, width), bit_depth, fps)
