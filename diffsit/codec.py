"""Diff-SIT as a codec: video -> bitstream file -> video, and its ``bench`` plugin.

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

import contextlib
import hashlib
import math
import os
import re
import weakref
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from bench.codec import Codec, CodecUnavailable, EncodeResult, Rate, RateSpec
from bench.video import Video, crop, pad_to_multiple, rgb_to_yuv420

from . import strength
from .bitstream import (
    FORMAT_VERSION,
    PICTURE_HASHES,
    BitstreamError,
    FrameRecord,
    Stream,
    check_geometry,
    decode_stream,
    encode_stream,
    picture_hash,
    stream_model_id,
)
from .gop import Chunk, FrameType, blend_weights, chunks, display_types, overlapping_chunks, pad_indices, schedule
from .stem.exact import samples_to_float
from .stem.intra import PICTURE_MULTIPLE, coded_size


class UntrainedModel(CodecUnavailable):
    pass


def _models_root() -> Path:
    return Path(__file__).resolve().parent / "weights"


def shipped_models() -> list[str]:
    root = _models_root()
    return sorted(p.name for p in root.iterdir() if (p / "model.safetensors").is_file()) if root.is_dir() else []


def is_model_path(spec: str) -> bool:
    """Whether a model spec names a folder: exactly when it holds a ``/`` (``./tiny-lambda4``,
    ``runs/tiny/pframe-1/model``, ``/abs/dir``). A bare name is a shipped model or family, never
    a folder of the current directory, so a stray folder there cannot stand in for one."""
    return "/" in spec or os.sep in spec


def parse_untrained_spec(spec: str) -> tuple[str, int]:
    """``random[:SEED]`` (the tiny preset) or ``preset:NAME[:SEED]`` -> (preset, seed)."""
    parts = spec.split(":")
    try:
        if parts[0] == "random" and len(parts) <= 2:
            return "tiny", int(parts[1]) if len(parts) == 2 else 0
        if parts[0] == "preset" and len(parts) in (2, 3):
            return parts[1], int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        pass
    raise ValueError(f"model {spec!r}: an untrained model is random[:SEED] or preset:NAME[:SEED], SEED an integer")


def load_model(spec: str, *, allow_untrained: bool = False, pretrained_dir: str | None = None, dtype: torch.dtype | None = None):
    """``spec``: a shipped model name, a model folder named by a path (:func:`is_model_path`),
    ``random[:SEED]`` (untrained, tiny) or ``preset:NAME[:SEED]`` (untrained, of a
    ``diffsit.presets`` shape). ``pretrained_dir``: the Wan folder of a Wan-based model or preset.
    ``dtype``: ODFTE's, loaded straight into it where it can be (``DiffSIT.materialize``)."""
    from .model import DiffSIT, random_model
    from .presets import preset_config

    if spec.startswith(("random", "preset:")):
        preset, seed = parse_untrained_spec(spec)
        if not allow_untrained:
            raise UntrainedModel(_untrained(spec))
        return random_model(seed, preset_config(preset, pretrained_dir), dtype)
    model = DiffSIT.load(_model_folder(spec), pretrained_dir=pretrained_dir, dtype=dtype)
    if not model.config.trained and not allow_untrained:
        raise UntrainedModel(_untrained(spec))
    return model


def _untrained(spec: str) -> str:
    if spec.startswith(("random", "preset:")):
        return (
            f"the {spec!r} Diff-SIT model is untrained (random weights): its numbers mean nothing. "
            "Pass allow_untrained=true (bench: --codec diffsit:allow_untrained=true; CLI: --allow-untrained) "
            "to run it anyway, for tests, plumbing and memory or time measurements only."
        )
    return f"model {_model_folder(spec)} is marked untrained; pass allow_untrained=true to use it anyway"


def _model_folder(spec: str) -> Path:
    if is_model_path(spec):
        if not Path(spec).is_dir():
            raise CodecUnavailable(
                f"no Diff-SIT model folder {spec}: not a folder (a folder from python -m diffsit train, holding config.json and model.safetensors)"
            )
        return Path(spec)
    if spec in shipped_models():
        return _models_root() / spec
    raise CodecUnavailable(
        f"no shipped Diff-SIT model {spec!r} (shipped: {', '.join(shipped_models()) or 'none'}, in {_models_root()}); "
        f"a bare name is looked up among the shipped models only; to use a folder, name it with a path: ./{spec}. "
        "Untrained models for plumbing tests: random[:SEED] or preset:NAME[:SEED] with allow_untrained=true."
    )


# the models of this process, for as long as a codec holds one (DiffSIT.with_config keeps it)
_SHARED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def shared_model(spec: str, *, allow_untrained: bool = False, pretrained_dir: str | None = None, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """:func:`load_model`'s model on ``device``, one per process for each set of weights, dtype
    and device: every codec instance (the sweep's plan and each job build their own, the
    decoder of a stream looks its model up) gets the same one while any holds it, where each
    used to load its own copy. It must not be changed: code under other settings with
    ``with_config``."""
    key = (*_model_key(spec, pretrained_dir, dtype), str(device))
    model = _SHARED.get(key)
    if model is None:
        # cast on the CPU, then moved: a GPU never holds the float32 weights of a bf16 model
        model = _SHARED[key] = load_model(spec, allow_untrained=allow_untrained, pretrained_dir=pretrained_dir, dtype=dtype).to(device)
    elif not (allow_untrained or model.config.trained):
        raise UntrainedModel(_untrained(spec))
    return model


def _model_key(spec: str, pretrained_dir: str | None, dtype: torch.dtype) -> tuple:
    """What names one set of loaded weights: the spec, the Wan folder it may read, and a folder's
    files as they are now (a model trained or rewritten in place is another model)."""
    from .presets import WAN_DIR_ENV

    where = (pretrained_dir, os.environ.get(WAN_DIR_ENV), str(dtype))
    if spec.startswith(("random", "preset:")):
        return (parse_untrained_spec(spec), *where)  # random:3 is preset:tiny:3, which streams name
    folder = _model_folder(spec).resolve()
    config, weights = folder / "config.json", folder / "model.safetensors"
    # config.json is small enough to read; the weights, gigabytes at full scale, by their stat
    stamp = (weights.stat().st_ino, weights.stat().st_size, weights.stat().st_mtime_ns) if weights.is_file() else None
    return (str(folder), *where, config.read_bytes() if config.is_file() else None, stamp)


@dataclass(frozen=True)
class RatePoint:
    """What a rate point (a λ) codes with: a model, and the step level of its texture coders."""

    spec: str
    level: int = 0


def family_lambdas(family: str) -> list[float]:
    """The λ of a family's trained models, lowest first: a shipped family's (``tiny`` -> 0.5,
    1, 2, 4), or those of folders ``{family}-lambda{λ}`` beside a path (``runs/ladder/tiny``,
    ``./tiny``: :func:`is_model_path`)."""
    path = Path(family)
    if is_model_path(family):
        names = [p.name for p in path.parent.glob(f"{path.name}-lambda*") if (p / "model.safetensors").is_file()]
        family = path.name
    else:
        names = shipped_models()
    prefix = f"{family}-lambda"
    out = []
    for name in names:
        if name.startswith(prefix):
            with contextlib.suppress(ValueError):
                out.append(float(name[len(prefix) :]))
    return sorted(out)


def rate_point(family: str, lam: float) -> RatePoint:
    """The model and step level a rate point codes with. A shipped family's trained λ is its
    own model at level 0. Any other λ is the trained model nearest in log λ at the step level
    that stands for λ (``diffsit.model.lambda_level``): finer steps below the ladder's lowest
    λ reach higher rates, coarser ones above its highest lower rates, as gained variable-rate
    codecs interpolate between their trained points. A folder or an untrained model is one
    model for every λ, at level 0."""
    from .model import lambda_level
    from .stem.intra import MAX_STEP_LEVEL

    if family.startswith(("random", "preset:")) or (is_model_path(family) and Path(family).is_dir()):
        return RatePoint(family)
    trained = family_lambdas(family)
    if not trained or any(f"{t:g}" == f"{lam:g}" for t in trained):
        return RatePoint(f"{family}-lambda{lam:g}")  # a missing model fails to load, with its message
    nearest = min(trained, key=lambda t: abs(math.log(lam / t)))
    level = lambda_level(lam, nearest)
    if abs(level) > MAX_STEP_LEVEL:
        lo, hi = lambda_bounds(family)
        raise ValueError(
            f"λ {lam:g} is beyond what the {family} models reach: their trained λ are {', '.join(f'{t:g}' for t in trained)}, "
            f"and finer or coarser steps (up to {MAX_STEP_LEVEL} step levels) reach λ {lo:.3g} to {hi:.3g}"
        )
    return RatePoint(f"{family}-lambda{nearest:g}", level)


def lambda_bounds(family: str) -> tuple[float, float]:
    """The lowest and highest λ a shipped family reaches through step levels."""
    from .model import level_lambda
    from .stem.intra import MAX_STEP_LEVEL

    trained = family_lambdas(family)
    return level_lambda(trained[0], MAX_STEP_LEVEL), level_lambda(trained[-1], -MAX_STEP_LEVEL)


def spec_for_model_id(model_id: str) -> str:
    """Which model to load for a stream: a shipped one by name, an untrained one by preset and
    seed (``tiny-random-seed0``). A stream's bytes are anyone's, so its model id is only ever
    looked up among these names, never opened as a path: anything else is refused."""
    from .presets import preset_names

    preset, sep, seed = model_id.rpartition("-random-seed")
    if sep and preset in preset_names() and re.fullmatch(r"\d{1,9}", seed):
        return f"preset:{preset}:{seed}"
    if model_id in shipped_models():
        return model_id
    shown = repr(model_id) if len(model_id) <= 80 else repr(model_id[:80]) + "…"
    raise BitstreamError(
        f"the stream names model {shown}, which is neither a shipped model ({', '.join(shipped_models()) or 'none'}) nor an "
        "untrained preset's; a stream's model id is never used as a path. If you have the model it was made with, "
        "decode with --model ./DIR (bench: --codec diffsit:model=./DIR)."
    )


def _frames_rgb(video: Video, device) -> torch.Tensor:
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


def _code_frame(model, fc, cur, recon) -> tuple[list[bytes], torch.Tensor]:
    if fc.type is FrameType.INTRA:
        return model.intra.compress_image(cur)
    if fc.type is FrameType.PRED:
        return model.pframe.compress(cur, recon[fc.reference], model.rd_tradeoff())
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
        import hashlib

        digest = hashlib.sha256(x_tilde.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        cfg = model.config
        return (model.weights_sha256(), str(model.odfte.dtype), str(x_tilde.device), tuple(x_tilde.shape), intra_period, cfg.window, cfg.window_overlap, digest)

    def refine(self, model, x_tilde: torch.Tensor, intra_period: int) -> torch.Tensor:
        key = self.key(model, x_tilde, intra_period)
        if key == self._key and self._value is not None:
            self.hits += 1
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
) -> Encoded:
    """Code ``video``. ODFTE runs here when the model signals a strength map (it needs ODFTE's
    output to choose it) or when ``output`` asks for the decoded video; ``cache`` keeps its
    output for the decoder of this stream (:class:`RefinementCache`). ``step_level``: the
    texture coders' quantization step (:func:`rate_point`; 0: the model's trained steps)."""
    check_picture_hash(picture_hash_kind)
    fps = Fraction(video.fps).limit_denominator(1001000)
    # before minutes of coding, not at the end when the stream is written
    check_geometry(video.width, video.height, fps.numerator, fps.denominator, video.frames, where="video to code")
    model.to(device)
    frames = _frames_rgb(video, device)
    n = video.frames
    recon: dict[int, torch.Tensor] = {}
    records = []
    with model.at_step_level(step_level):
        for fc in schedule(n, model.config.intra_period):
            strings, rec = _code_frame(model, fc, frames[fc.index : fc.index + 1], recon)
            recon[fc.index] = rec
            records.append(FrameRecord(fc.index, fc.type, tuple(strings), picture_hash(rec, picture_hash_kind)))
    x_tilde = samples_to_float(torch.cat([recon[i] for i in range(n)]))
    block = model.config.strength_block
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
    frames = _frames_rgb(video, device)
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


class DiffSITCodec(Codec):
    """``bench`` plugin. Rate points are λ values: a trained λ maps to the model
    ``{model}-lambda{λ}``, any other to the nearest one at a step level (:func:`rate_point`)."""

    name = "diffsit"
    rate_name = "lambda"
    learned = True
    rate_spec = RateSpec("float", 0, exclusive_low=True)
    default_rates = (4, 2, 1, 0.5)
    extension = ".dsit"
    plot_style = ("#d62728", "^")
    # STEM codes RGB in [0, 1], whatever the source's depth; the stream does not record the
    # depth, so decode() without bit_depth gives 8 bits
    bit_depths = (8, 10)
    location_options = ("pretrained",)

    def __init__(
        self,
        *,
        model: str = "tiny",
        allow_untrained: bool = False,
        device: str = "cpu",
        dtype: str | None = None,
        verify: bool = False,
        strength_block: int | None = None,
        picture_hash: str = "crc32",
        pretrained: str | None = None,
        reuse_refinement: bool = True,
        p_skip: bool | None = None,
    ):
        """``strength_block``: override the model's strength-map block (0: ODFTE's output as is,
        the paper's form). The stream records it, so decoding needs no option.
        ``dtype``: ODFTE's weights and activations (bf16, fp16 or fp32, the default); STEM is
        integer-exact whatever it is. ``picture_hash``: crc32 (default), md5 or none.
        ``pretrained``: the Wan2.1-T2V-1.3B-Diffusers folder of a Wan-based model (default: the
        model's own, or $DIFFSIT_WAN_DIR). ``reuse_refinement``: decode() takes ODFTE's output
        from this instance's encode() of the same stream when x~ matches it sample for sample
        (:class:`RefinementCache`), instead of running ODFTE a second time; false runs it
        again, for timing a decoder on its own. ``p_skip``: override the model's P-frame skip
        decision (false: every P frame codes its residual, as bitstream version 5 did)."""
        self.model_spec, self.allow_untrained, self.device, self.verify = model, allow_untrained, device, verify
        self.strength_block = check_strength_block(strength_block)
        self.dtype = parse_dtype(dtype)
        self.picture_hash = check_picture_hash(picture_hash)
        self.pretrained = pretrained
        self.reuse_refinement = reuse_refinement
        self.p_skip = p_skip
        # verify checks that the decoder reproduces the encoder: it runs ODFTE again
        self._cache = RefinementCache() if reuse_refinement and not verify else None
        self._models: dict[Any, Any] = {}

    def parse_rate(self, text: str | Rate) -> float:
        lam = float(super().parse_rate(text))
        rate_point(self.model_spec, lam)  # a λ beyond the family's reach fails at plan time
        return lam

    def model_for(self, lam: float):
        spec = rate_point(self.model_spec, lam).spec
        if spec not in self._models:
            changes = {"strength_block": self.strength_block, "p_skip": self.p_skip}
            self._models[spec] = self._shared(spec).with_config(**{k: v for k, v in changes.items() if v is not None})
        return self._models[spec]

    def _shared(self, spec: str):
        return shared_model(spec, allow_untrained=self.allow_untrained, pretrained_dir=self.pretrained, dtype=self.dtype, device=self.device)

    def check(self) -> None:
        import importlib.util

        missing = [m for m in ("compressai", "diffusers", "peft", "safetensors") if importlib.util.find_spec(m) is None]
        if missing:
            raise CodecUnavailable(f"diffsit needs the [diffsit] extra ({', '.join(missing)} missing): pip install 'diffsit-bench[diffsit]'")
        for lam in self.default_rates[:1]:
            self.model_for(lam)

    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        lam = self.parse_rate(rate)
        model = self.model_for(lam)
        # With verify=true the encoder keeps its reconstruction, so the harness can check that
        # the decoder reproduces it exactly (a model without a strength map then runs ODFTE
        # only for this, doubling the time).
        enc = encode_video(
            model,
            video,
            device=self.device,
            output=self.verify,
            picture_hash_kind=self.picture_hash,
            cache=self._cache,
            step_level=rate_point(self.model_spec, lam).level,
        )
        rec = to_video(enc.x_hat.cpu(), video.width, video.height, video.fps, video.bit_depth) if self.verify else None
        path = Path(workdir) / f"diffsit_lambda{lam:g}{self.extension}"
        path.write_bytes(enc.data)
        records = enc.stream.records
        return EncodeResult(
            path,
            frame_bytes=enc.stream.record_bytes(),
            frame_types=[r.type.value for r in records],
            display_index=[r.index for r in records],
            reconstruction=rec,
            tools={
                "model_id": model.model_id,
                "step_level": enc.stream.step_level,
                "weights_sha256": model.weights_sha256().hex(),
                # decode_s then leaves out ODFTE, which encode_s holds (RefinementCache)
                "decoder_reuses_refinement": self._cache is not None,
            },
        )

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        data = Path(path).read_bytes()
        mid = stream_model_id(data)
        model = next((m for m in self._models.values() if m.model_id == mid), None)
        if model is None:
            model = self._models[mid] = self._shared(spec_for_model_id(mid)).with_config()
        stream, x_tilde = decode_intermediate(model, data, device=self.device)
        x_hat = reconstruct(model, stream, x_tilde, self._cache)
        return to_video(x_hat.cpu(), stream.width, stream.height, float(stream.fps), bit_depth or 8)

    def identity(self) -> dict[str, Any]:
        # reuse_refinement moves decode time, not a number: the same job either way
        info = {k: v for k, v in self.describe().items() if k not in ("models", "reuse_refinement")}
        hashes, configs = {}, {}
        for lam in self.default_rates:
            with contextlib.suppress(Exception):  # an unloadable model fails at plan time, with its own message
                m = self.model_for(lam)
                hashes[m.model_id] = m.weights_sha256().hex()
                # the weights hash leaves out config.json, whose lambda, skip decision and
                # strength block change the stream all the same: the config as resolved
                configs[m.model_id] = hashlib.sha256(m.config.to_json().encode()).hexdigest()[:16]
        info["weights_sha256"] = hashes
        info["model_config_sha256"] = configs
        info["format_version"] = FORMAT_VERSION
        # the libraries whose kernels make the numbers: ODFTE's UNet (diffusers), STEM's
        # entropy coder (compressai), torch under both (stdlib import: only this needs it)
        from importlib.metadata import PackageNotFoundError, version

        info["libraries"] = {}
        for lib in ("torch", "diffusers", "compressai"):
            with contextlib.suppress(PackageNotFoundError):
                info["libraries"][lib] = version(lib)
        return info

    def describe(self) -> dict[str, Any]:
        info = {
            **super().describe(),
            "model": self.model_spec,
            "allow_untrained": self.allow_untrained,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "verify": self.verify,
            "picture_hash": self.picture_hash,
            "reuse_refinement": self.reuse_refinement,
        }
        info["strength_block"] = self.strength_block if self.strength_block is not None else "the model's"
        info["p_skip"] = self.p_skip if self.p_skip is not None else "the model's"
        for spec, m in self._models.items():
            info.setdefault("models", {})[spec] = {"model_id": m.model_id, "weights_sha256": m.weights_sha256().hex(), "trained": m.config.trained}
        return info
