"""``python -m diffsit COMMAND``: Diff-SIT on raw 4:2:0 files, its model folders, its training
and its experiments.

Commands: ``encode`` and ``decode`` (raw .yuv <-> bitstream, ``diffsit.pipeline``), ``train``
(one stage from a config, or the tiny recipe: ``diffsit.train``), ``freeze`` and
``embed-prompt`` (rewrite a model folder), and the experiments of ``diffsit.experiments``:
``ablate``, ``p-vs-intra``, ``seams`` and ``fullscale``. Each command is a parser function
that names its runner (``run``); :func:`main` parses and calls it, and turns a user error into
a message and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.codec import CodecUnavailable
from bench.datasets import DatasetError, PathDataset
from bench.metrics import MetricUnavailable
from bench.spec import parse_pairs
from bench.video import VideoError, write_yuv

from . import zoo
from .bitstream import BitstreamError, picture_hash, stream_model_id
from .experiments import fullscale, seams
from .experiments.ablate import ablate
from .experiments.p_vs_intra import p_vs_intra
from .model import DiffSIT
from .pipeline import check_strength_block, decode_samples, encode_video, parse_dtype, reconstruct, to_video
from .stem.exact import samples_to_float
from .stem.intra import step_gain
from .train.config import TrainConfig
from .train.data import TrainDataError
from .train.recipe import run_recipe
from .train.trainer import train

LADDER_TEXT = ",".join(f"{lam:g}" for lam in zoo.LADDER)
#: what a command reports as "error: ..." with exit status 2, instead of a traceback
USER_ERRORS = (BitstreamError, CodecUnavailable, DatasetError, MetricUnavailable, VideoError, TrainDataError, OSError, ValueError)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diffsit", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def _lambdas(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def _encode_parser(sub) -> None:
    """encode: raw .yuv -> bitstream."""
    enc = sub.add_parser("encode", help="raw .yuv -> Diff-SIT bitstream")
    enc.add_argument("input", type=Path, help="raw 4:2:0 .yuv, geometry from its name (Name_WxH_FPS.yuv) or -s")
    enc.add_argument("-o", "--output", type=Path, required=True)
    enc.add_argument(
        "--model",
        default="tiny-lambda1",
        help="shipped model name, a model folder named by a path (with a /: ./DIR), random[:SEED] or preset:NAME[:SEED] (untrained)",
    )
    enc.add_argument("-s", "--size", help="WxH")
    enc.add_argument("--fps", type=float)
    enc.add_argument("--frames", type=int, help="first N frames (default: all)")
    enc.add_argument("--strength-block", type=int, help="strength-map block in pixels (default: the model's; 0: ODFTE's output as is, the paper's form)")
    enc.add_argument(
        "--step-level",
        type=int,
        default=0,
        help="texture quantization steps finer (>0) or coarser (<0) than the model's, -32..32 (default 0; the stream records it)",
    )
    enc.add_argument(
        "--picture-hash",
        default="crc32",
        choices=["crc32", "md5", "none"],
        help="decoded-picture hash of each frame, checked by the decoder (default crc32: 4 bytes a frame)",
    )
    _model_options(enc)
    enc.set_defaults(run=_encode)


def _decode_parser(sub) -> None:
    """decode: bitstream -> raw .yuv."""
    dec = sub.add_parser("decode", help="Diff-SIT bitstream -> raw 8-bit 4:2:0 .yuv")
    dec.add_argument("input", type=Path)
    dec.add_argument("-o", "--output", type=Path, required=True)
    dec.add_argument("--model", help="shipped model name or a model folder named by a path (with a /: ./DIR) (default: the shipped model the stream names)")
    dec.add_argument("--bit-depth", type=int, choices=[8, 10], default=8, help="output bit depth (default 8)")
    dec.add_argument("-v", "--verbose", action="store_true", help="print each decoded frame's type, picture hash check and the MD5 of its x~ samples")
    _model_options(dec)
    dec.set_defaults(run=_decode)


def _model_options(a) -> None:
    a.add_argument("--allow-untrained", action="store_true", help="run an untrained (random) model: tests only")
    a.add_argument("--device", default="cpu")
    a.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="ODFTE's dtype (STEM is integer-exact whatever it is)")
    a.add_argument("--pretrained", help="Wan2.1-T2V-1.3B-Diffusers folder of a Wan-based model (default: the model's, or $DIFFSIT_WAN_DIR)")


def _train_parser(sub) -> None:
    """train: one stage, or a recipe's runs."""
    tr = sub.add_parser("train", help="train one stage from a config, or the shipped tiny models' recipe")
    how = tr.add_mutually_exclusive_group(required=True)
    how.add_argument("--config", type=Path, help="a training config (JSON; keys of diffsit.train.config.TrainConfig)")
    how.add_argument("--recipe", choices=["tiny"], help="every run of a named recipe, in order")
    tr.add_argument("--out", type=Path, required=True, help="run folder (the recipe: a folder of run folders); resumed if it holds a checkpoint")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (JSON value), e.g. --set steps=10")
    tr.add_argument("--no-resume", action="store_true", help="start over even if --out holds a checkpoint")
    tr.add_argument("--scale", type=float, default=1.0, help="recipe: multiply every step count (0.01 for a smoke test)")
    tr.add_argument("--lambdas", default=LADDER_TEXT, help=f"recipe: the rate points of its per-lambda runs (default: the shipped ladder, {LADDER_TEXT})")
    tr.add_argument("--install", action="store_true", help="recipe: copy the results into diffsit/weights (what --codec diffsit loads)")
    tr.set_defaults(run=_train)


def _ablate_parser(sub) -> None:
    """ablate: the paper's ablations (diffsit.experiments.ablate)."""
    ab = sub.add_parser("ablate", help="x~ vs x^, FTE on/off, whole clip vs per frame, MV vs all-P, at each lambda")
    ab.add_argument("--dataset", default="sample")
    ab.add_argument("--data-root")
    ab.add_argument("--sequences", help="comma-separated sequence names (default: all)")
    ab.add_argument("--frames", type=int, default=9, help="first N frames of each sequence (default 9: one ODFTE window)")
    ab.add_argument("--lambdas", default=LADDER_TEXT)
    ab.add_argument("--model", default="tiny", help="model family (tiny -> tiny-lambdaL), a folder or family named by a path (./DIR), or random[:SEED]")
    ab.add_argument("--metrics", help="comma-separated metrics (default: every one that can run here)")
    ab.add_argument("--out", type=Path, default=Path("results/ablation"))
    ab.add_argument("--allow-untrained", action="store_true")
    ab.add_argument("--device", default="cpu")
    ab.set_defaults(run=_ablate)


def _p_vs_intra_parser(sub) -> None:
    """p-vs-intra: P frames against intra (diffsit.experiments.p_vs_intra)."""
    pv = sub.add_parser("p-vs-intra", help="each P frame's bytes and PSNR against the same frame coded intra, at each lambda")
    pv.add_argument("--dataset", default="sample")
    pv.add_argument("--data-root")
    pv.add_argument("--sequences", default="bikes,carphone", help="comma-separated (default: bikes,carphone)")
    pv.add_argument("--frames", type=int, default=9)
    pv.add_argument("--lambdas", default=LADDER_TEXT)
    pv.add_argument("--model", default="tiny", help="model family (tiny -> tiny-lambdaL), a folder or family named by a path (./DIR), or random[:SEED]")
    pv.add_argument("--out", type=Path, default=Path("results/p_vs_intra"))
    pv.add_argument("--allow-untrained", action="store_true")
    pv.set_defaults(run=_p_vs_intra)


def _seams_parser(sub) -> None:
    """seams: Ewarp across ODFTE's window seams (diffsit.experiments.seams)."""
    se = sub.add_parser("seams", help="Ewarp where ODFTE's windows meet against inside them, at each window overlap")
    se.add_argument("--dataset", default="sample")
    se.add_argument("--sequences", default="bikes,carphone", help="comma-separated (default: bikes,carphone)")
    se.add_argument("--frames", type=int, default=33, help="first N frames (default 33: four 9-frame windows)")
    se.add_argument("--model", default="tiny-lambda1")
    se.add_argument("--overlaps", default="0,3", help="window overlaps to compare, in frames (default 0,3)")
    se.add_argument("--out", type=Path, default=Path("results/seams"))
    se.add_argument("--allow-untrained", action="store_true")
    se.add_argument("--device", default="cpu")
    se.set_defaults(run=seams.main)


def _fullscale_parser(sub) -> None:
    """fullscale: memory and time at full scale (diffsit.experiments.fullscale)."""
    fs = sub.add_parser("fullscale", help="peak memory and time of 1080p x 96 frames with Wan2.1-1.3B shapes (measured on CUDA, estimated on CPU)")
    fs.add_argument("--device", help="cuda or cpu (default: cuda if present)")
    fs.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    fs.add_argument("--frames", type=int, default=96)
    fs.add_argument("--out", type=Path, help="also write the report (JSON) here")
    fs.set_defaults(run=fullscale.main)


def _freeze_parser(sub) -> None:
    """freeze: store a model folder's coding constants."""
    fr = sub.add_parser("freeze", help="store a model's coding constants with its weights, so its streams decode on any machine")
    fr.add_argument("model", type=Path, help="a model folder (rewritten in place)")
    fr.add_argument("--force", action="store_true", help="recompute constants the folder already holds (after editing its weights)")
    fr.set_defaults(run=_freeze)


def _embed_prompt_parser(sub) -> None:
    """embed-prompt: store a Wan-based model's empty-prompt embedding."""
    em = sub.add_parser("embed-prompt", help="store a Wan-based model's umT5 empty-prompt embedding (computed once from the Wan folder)")
    em.add_argument("model", type=Path, help="a model folder (rewritten in place)")
    em.add_argument("--pretrained", help="the Wan2.1-T2V-1.3B-Diffusers folder (default: the model's, or $DIFFSIT_WAN_DIR)")
    em.set_defaults(run=_embed_prompt)


def _encode(args) -> int:
    check_strength_block(args.strength_block)
    step_gain(args.step_level)  # validates it, before any model loads
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    (seq,) = PathDataset(args.input, size=size, fps=args.fps).resolve(None)
    video = seq.open(frames=args.frames)
    model = zoo.load_model(args.model, allow_untrained=args.allow_untrained, pretrained_dir=args.pretrained, dtype=parse_dtype(args.dtype))
    enc = encode_video(
        model, video, device=args.device, output=False, picture_hash_kind=args.picture_hash, step_level=args.step_level, strength_block=args.strength_block
    )
    data = enc.data
    tmp = args.output.with_name(f".{args.output.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(args.output)
    bpp = 8 * len(data) / (video.frames * video.width * video.height)
    level = f" at step level {args.step_level}" if args.step_level else ""
    print(f"{args.output}: {len(data)} bytes, {video.frames} frames {video.width}x{video.height}, {bpp:.5f} bpp, model {model.model_id}{level}")
    return 0


def _decode(args) -> int:
    data = args.input.read_bytes()
    spec = args.model or zoo.spec_for_model_id(stream_model_id(data))
    model = zoo.load_model(spec, allow_untrained=args.allow_untrained, pretrained_dir=args.pretrained, dtype=parse_dtype(args.dtype))
    stream, samples = decode_samples(model, data, device=args.device)  # every picture hash checked
    if args.verbose:
        check = stream.picture_hash.upper() + " OK" if stream.picture_hash != "none" else "no picture hash"
        for rec in stream.records:
            md5 = picture_hash(samples[rec.index], "md5").hex()
            print(f"frame {rec.index:4d} {rec.type.value:>2} {sum(map(len, rec.strings)):7d} bytes  [{check}]  x~ MD5 {md5}")
    x_hat = reconstruct(model, stream, samples_to_float(samples))
    video = to_video(x_hat.cpu(), stream.width, stream.height, float(stream.fps), args.bit_depth)
    write_yuv(video, args.output)  # atomic: no partial file on failure
    print(f"{args.output}: {video.frames} frames {video.width}x{video.height}")
    return 0


def _train(args) -> int:
    if args.recipe:
        run_recipe(args.out, scale=args.scale, install=args.install, lambdas=_lambdas(args.lambdas))
        return 0
    d = json.loads(args.config.read_text())
    for key, value in parse_pairs(args.set, what="--set", example="steps=10").items():
        try:
            d[key] = json.loads(value)
        except json.JSONDecodeError:
            d[key] = value
    result = train(TrainConfig.from_dict(d), args.out, resume=not args.no_resume)
    print(f"model written to {result}")
    return 0


def _ablate(args) -> int:
    ablate(
        args.dataset,
        frames=args.frames,
        lambdas=_lambdas(args.lambdas),
        model=args.model,
        sequences=args.sequences.split(",") if args.sequences else None,
        metrics=args.metrics.split(",") if args.metrics else None,
        data_root=args.data_root,
        device=args.device,
        allow_untrained=args.allow_untrained,
        out=args.out,
    )
    print((args.out / "ablation.md").read_text())
    return 0


def _p_vs_intra(args) -> int:
    p_vs_intra(
        args.dataset,
        sequences=args.sequences.split(","),
        frames=args.frames,
        lambdas=_lambdas(args.lambdas),
        model=args.model,
        data_root=args.data_root,
        allow_untrained=args.allow_untrained,
        out=args.out,
    )
    print((args.out / "p_vs_intra.md").read_text())
    return 0


def _freeze(args) -> int:
    return _rewritten(args, "coding constants", DiffSIT.freeze(args.model, force=args.force))


def _embed_prompt(args) -> int:
    return _rewritten(args, "umT5 empty-prompt embedding", DiffSIT.embed_prompt(args.model, pretrained_dir=args.pretrained))


def _rewritten(args, what: str, sha: bytes) -> int:
    """Report a model folder rewritten in place, with its new weights hash."""
    print(f"{args.model}: {what} stored; weights {sha.hex()[:16]}…")
    return 0


COMMANDS = (
    _encode_parser,
    _decode_parser,
    _train_parser,
    _ablate_parser,
    _p_vs_intra_parser,
    _seams_parser,
    _fullscale_parser,
    _freeze_parser,
    _embed_prompt_parser,
)


if __name__ == "__main__":
    sys.exit(main())
