"""``python -m diffsit encode|decode|train|ablate|freeze``: Diff-SIT on raw 4:2:0 files, its training, its ablations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m diffsit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
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
    dec = sub.add_parser("decode", help="Diff-SIT bitstream -> raw 8-bit 4:2:0 .yuv")
    dec.add_argument("input", type=Path)
    dec.add_argument("-o", "--output", type=Path, required=True)
    dec.add_argument("--model", help="shipped model name or a model folder named by a path (with a /: ./DIR) (default: the shipped model the stream names)")
    dec.add_argument("--bit-depth", type=int, choices=[8, 10], default=8, help="output bit depth (default 8)")
    dec.add_argument("-v", "--verbose", action="store_true", help="print each decoded frame's type, picture hash check and the MD5 of its x~ samples")
    for a in (enc, dec):
        a.add_argument("--allow-untrained", action="store_true", help="run an untrained (random) model: tests only")
        a.add_argument("--device", default="cpu")
        a.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="ODFTE's dtype (STEM is integer-exact whatever it is)")
        a.add_argument("--pretrained", help="Wan2.1-T2V-1.3B-Diffusers folder of a Wan-based model (default: the model's, or $DIFFSIT_WAN_DIR)")
    tr = sub.add_parser("train", help="train one stage from a config, or the shipped tiny models' recipe")
    how = tr.add_mutually_exclusive_group(required=True)
    how.add_argument("--config", type=Path, help="a training config (JSON; keys of diffsit.train.config.TrainConfig)")
    how.add_argument("--recipe", choices=["tiny"], help="every run of a named recipe, in order")
    tr.add_argument("--out", type=Path, required=True, help="run folder (the recipe: a folder of run folders); resumed if it holds a checkpoint")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (JSON value), e.g. --set steps=10")
    tr.add_argument("--no-resume", action="store_true", help="start over even if --out holds a checkpoint")
    tr.add_argument("--scale", type=float, default=1.0, help="recipe: multiply every step count (0.01 for a smoke test)")
    tr.add_argument("--lambdas", default="0.5,1,2,4", help="recipe: the rate points of its per-lambda runs (default: the shipped ladder, 0.5,1,2,4)")
    tr.add_argument("--install", action="store_true", help="recipe: copy the results into diffsit/weights (what --codec diffsit loads)")
    ab = sub.add_parser("ablate", help="x~ vs x^, FTE on/off, whole clip vs per frame, MV vs all-P, at each lambda")
    ab.add_argument("--dataset", default="sample")
    ab.add_argument("--data-root")
    ab.add_argument("--sequences", help="comma-separated sequence names (default: all)")
    ab.add_argument("--frames", type=int, default=9, help="first N frames of each sequence (default 9: one ODFTE window)")
    ab.add_argument("--lambdas", default="0.5,1,2,4")
    ab.add_argument("--model", default="tiny", help="model family (tiny -> tiny-lambdaL), a folder or family named by a path (./DIR), or random[:SEED]")
    ab.add_argument("--metrics", help="comma-separated metrics (default: every one that can run here)")
    ab.add_argument("--out", type=Path, default=Path("results/ablation"))
    ab.add_argument("--allow-untrained", action="store_true")
    ab.add_argument("--device", default="cpu")
    pv = sub.add_parser("p-vs-intra", help="each P frame's bytes and PSNR against the same frame coded intra, at each lambda")
    pv.add_argument("--dataset", default="sample")
    pv.add_argument("--data-root")
    pv.add_argument("--sequences", default="bikes,carphone", help="comma-separated (default: bikes,carphone)")
    pv.add_argument("--frames", type=int, default=9)
    pv.add_argument("--lambdas", default="0.5,1,2,4")
    pv.add_argument("--model", default="tiny", help="model family (tiny -> tiny-lambdaL), a folder or family named by a path (./DIR), or random[:SEED]")
    pv.add_argument("--out", type=Path, default=Path("results/p_vs_intra"))
    pv.add_argument("--allow-untrained", action="store_true")
    se = sub.add_parser("seams", help="Ewarp where ODFTE's windows meet against inside them, at each window overlap")
    se.add_argument("--dataset", default="sample")
    se.add_argument("--sequences", default="bikes,carphone", help="comma-separated (default: bikes,carphone)")
    se.add_argument("--frames", type=int, default=33, help="first N frames (default 33: four 9-frame windows)")
    se.add_argument("--model", default="tiny-lambda1")
    se.add_argument("--overlaps", default="0,3", help="window overlaps to compare, in frames (default 0,3)")
    se.add_argument("--out", type=Path, default=Path("results/seams"))
    se.add_argument("--allow-untrained", action="store_true")
    se.add_argument("--device", default="cpu")
    fs = sub.add_parser("fullscale", help="peak memory and time of 1080p x 96 frames with Wan2.1-1.3B shapes (measured on CUDA, estimated on CPU)")
    fs.add_argument("--device", help="cuda or cpu (default: cuda if present)")
    fs.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    fs.add_argument("--frames", type=int, default=96)
    fs.add_argument("--out", type=Path, help="also write the report (JSON) here")
    fr = sub.add_parser("freeze", help="store a model's coding constants with its weights, so its streams decode on any machine")
    fr.add_argument("model", type=Path, help="a model folder (rewritten in place)")
    fr.add_argument("--force", action="store_true", help="recompute constants the folder already holds (after editing its weights)")
    em = sub.add_parser("embed-prompt", help="store a Wan-based model's umT5 empty-prompt embedding (computed once from the Wan folder)")
    em.add_argument("model", type=Path, help="a model folder (rewritten in place)")
    em.add_argument("--pretrained", help="the Wan2.1-T2V-1.3B-Diffusers folder (default: the model's, or $DIFFSIT_WAN_DIR)")
    args = p.parse_args(argv)
    if args.command == "freeze":
        return _rewrite(args, "coding constants", lambda DiffSIT: DiffSIT.freeze(args.model, force=args.force))
    if args.command == "fullscale":
        from .fullscale import main as fullscale_main

        return fullscale_main(args)
    if args.command == "seams":
        from .seams import main as seams_main

        return seams_main(args)
    if args.command == "embed-prompt":
        return _rewrite(args, "umT5 empty-prompt embedding", lambda DiffSIT: DiffSIT.embed_prompt(args.model, pretrained_dir=args.pretrained))
    if args.command == "train":
        return _train(args)
    if args.command == "ablate":
        return _ablate(args)
    if args.command == "p-vs-intra":
        return _p_vs_intra(args)

    from bench.codec import CodecUnavailable
    from bench.datasets import DatasetError, PathDataset
    from bench.video import VideoError, write_yuv

    from .bitstream import BitstreamError, picture_hash, stream_model_id
    from .codec import check_strength_block, decode_samples, encode_video, load_model, parse_dtype, reconstruct, spec_for_model_id, to_video
    from .stem.exact import samples_to_float

    if args.command == "encode":
        from .stem.intra import step_gain

        try:
            check_strength_block(args.strength_block)
            step_gain(args.step_level)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        if args.command == "encode":
            size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
            (seq,) = PathDataset(args.input, size=size, fps=args.fps).resolve(None)
            video = seq.open(frames=args.frames)
            model = load_model(args.model, allow_untrained=args.allow_untrained, pretrained_dir=args.pretrained, dtype=parse_dtype(args.dtype))
            if args.strength_block is not None:
                model.config.strength_block = args.strength_block
            data = encode_video(model, video, device=args.device, output=False, picture_hash_kind=args.picture_hash, step_level=args.step_level).data
            tmp = args.output.with_name(f".{args.output.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(args.output)
            bpp = 8 * len(data) / (video.frames * video.width * video.height)
            level = f" at step level {args.step_level}" if args.step_level else ""
            print(f"{args.output}: {len(data)} bytes, {video.frames} frames {video.width}x{video.height}, {bpp:.5f} bpp, model {model.model_id}{level}")
        else:
            data = args.input.read_bytes()
            spec = args.model or spec_for_model_id(stream_model_id(data))
            model = load_model(spec, allow_untrained=args.allow_untrained, pretrained_dir=args.pretrained, dtype=parse_dtype(args.dtype))
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
    except (BitstreamError, CodecUnavailable, DatasetError, VideoError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _rewrite(args, what: str, rewrite) -> int:
    """A command that rewrites a model folder in place and reports its new weights hash."""
    from .model import DiffSIT

    try:
        sha = rewrite(DiffSIT)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.model}: {what} stored; weights {sha.hex()[:16]}…")
    return 0


def _train(args) -> int:
    import json

    from .train.config import TrainConfig
    from .train.data import TrainDataError

    try:
        if args.recipe:
            from .train.recipe import run_recipe

            run_recipe(args.out, scale=args.scale, install=args.install, lambdas=[float(v) for v in args.lambdas.split(",")])
            return 0
        from .train.trainer import train

        d = json.loads(args.config.read_text())
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set {item!r}: expected KEY=VALUE")
            try:
                d[key] = json.loads(value)
            except json.JSONDecodeError:
                d[key] = value
        result = train(TrainConfig.from_dict(d), args.out, resume=not args.no_resume)
        print(f"model written to {result}")
    except (OSError, ValueError, TrainDataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _p_vs_intra(args) -> int:
    from bench.codec import CodecUnavailable
    from bench.datasets import DatasetError

    from .pframes import p_vs_intra

    try:
        p_vs_intra(
            args.dataset,
            sequences=args.sequences.split(","),
            frames=args.frames,
            lambdas=[float(v) for v in args.lambdas.split(",")],
            model=args.model,
            data_root=args.data_root,
            allow_untrained=args.allow_untrained,
            out=args.out,
        )
    except (CodecUnavailable, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((args.out / "p_vs_intra.md").read_text())
    return 0


def _ablate(args) -> int:
    from bench.codec import CodecUnavailable
    from bench.datasets import DatasetError
    from bench.metrics import MetricUnavailable

    from .ablate import ablate

    try:
        ablate(
            args.dataset,
            frames=args.frames,
            lambdas=[float(v) for v in args.lambdas.split(",")],
            model=args.model,
            sequences=args.sequences.split(",") if args.sequences else None,
            metrics=args.metrics.split(",") if args.metrics else None,
            data_root=args.data_root,
            device=args.device,
            allow_untrained=args.allow_untrained,
            out=args.out,
        )
    except (CodecUnavailable, DatasetError, MetricUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((args.out / "ablation.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
