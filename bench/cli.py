"""``python -m bench``: run sweeps and inspect datasets and codecs."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import datasets as ds
from . import dcvc, drift, weights
from .bdrate import DEFAULT_MIN_OVERLAP, OVERLAP_MARK
from .codec import BitDepthError, RateError, UnknownCodec, accepted_options, codec_class, codec_names, contributed_options, create_codec
from .complexity import METHOD, counted
from .conditions import CONDITIONS, check_comparable
from .config import SweepConfig, SweepConfigError
from .decoded import DecodedError
from .executors import registry
from .htmlreport import ReportError, write_report
from .importer import import_results, write_imported
from .metrics import UnknownMetric, create_metric, default_metrics, metric_names
from .plan import PlanError
from .published import dataset_name
from .remeasure import measure_results
from .report import FRAME_TYPES, BDOptions, bd_table, format_bd, write_plots
from .store import ResultsStore, StoreBusy, read_summaries, with_frame_types
from .sweep import run_sweep
from .video import Video
from .visualize import Request, VisualizeError, parse_crop, visualize


class UsageError(Exception):
    """Bad command-line input: printed without a traceback, exit status 2."""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WxH, e.g. 1920x1080") from None


def _frames(text: str) -> int:
    if text.lower() == "all":
        return 0
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError("--frames must be a positive number or 'all'")
    return n


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help=f"folder holding the standard test sets (default: ${ds.DATA_ENV})")


def _add_input_args(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    why = " (default with --conditions: its datasets)" if not dataset_required else ""
    p.add_argument("--dataset", required=dataset_required, help=f"{', '.join(ds.DATASETS)}, or a .yuv file / folder of them{why}")
    _add_data_args(p)
    p.add_argument("--sequences", type=_csv, help="comma-separated subset of the dataset's sequences")
    p.add_argument("--frames", type=_frames, help="first N frames (default: 96 for standard sets, 33 for sample; 'all')")
    p.add_argument("-s", "--size", type=_size, help="WxH of raw .yuv input whose name does not say")
    p.add_argument("--fps", type=float, help="frame rate of raw .yuv input whose name does not say")
    p.add_argument("--bit-depth", type=int, choices=(8, 10), help="bit depth of raw .yuv input whose name does not say")


def _add_codec_location_args(p: argparse.ArgumentParser) -> None:
    """The options codec plugins contribute (where codecs that are not Python packages live),
    passed to the codecs that take them."""
    for opt in contributed_options():
        p.add_argument(opt.flag, dest=opt.dest, help=opt.help)


def _location_options() -> list[str]:
    return [o.dest for o in contributed_options()]


def _add_bootstrap_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="resamples of the bootstrap interval of the mean BD-rate over sequences (0: none; default 1000)",
    )
    p.add_argument("--ci", type=float, default=0.95, help="its confidence level (default 0.95)")
    p.add_argument("--seed", type=int, default=0, help="its random seed (default 0): the same seed gives the same interval")


def _add_bd_args(p: argparse.ArgumentParser) -> None:
    """The options of a BD table, shared by bdrate and report."""
    p.add_argument("--method", default="pchip", choices=("pchip", "akima", "cubic"), help="interpolation (default pchip, as JVET CTC)")
    p.add_argument("--convex-hull", action="store_true", help="fit only the points on each codec's RD convex hull")
    p.add_argument(
        "--min-overlap",
        type=float,
        default=DEFAULT_MIN_OVERLAP,
        help="strict mode: refuse a BD number where the curves overlap by less than this fraction of their union "
        "(default 0: only where they do not overlap at all, as DCVC's compare_bd_rate.py)",
    )
    p.add_argument(
        "--overlap-mark",
        type=float,
        default=OVERLAP_MARK,
        help=f"mark (†) a BD number whose curves overlap by less than this fraction of their union (default {OVERLAP_MARK})",
    )
    p.add_argument(
        "--frame-type",
        type=_csv,
        default=["all"],
        help="all, i and/or p (comma-separated): BD over all frames, I frames, or the others (DCVC's split; default all)",
    )
    p.add_argument("--rate-exclude", type=_csv, default=[], help="rate points left out of every curve, comma-separated (DCVC's --rate_exclude; 22 matches 022)")
    _add_bootstrap_args(p)


def _bd_options(args):
    if args.bootstrap < 0:
        raise UsageError("--bootstrap must be 0 (no interval) or a number of resamples")
    if not 0 < args.ci < 1:
        raise UsageError(f"--ci {args.ci}: a confidence level is between 0 and 1, e.g. 0.95")
    for name in ("min_overlap", "overlap_mark"):
        if not 0 <= getattr(args, name) <= 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: a fraction of the union of the ranges, between 0 and 1 (e.g. 0.5)")
    bad = [t for t in args.frame_type if t not in FRAME_TYPES]
    if bad or not args.frame_type:
        raise UsageError(f"--frame-type {','.join(args.frame_type)}: choose from {', '.join(FRAME_TYPES)} (comma-separated)")
    return BDOptions(
        args.method,
        args.convex_hull,
        args.min_overlap,
        args.bootstrap,
        args.ci,
        args.seed,
        overlap_mark=args.overlap_mark,
        frame_types=tuple(dict.fromkeys(args.frame_type)),
        rate_exclude=tuple(args.rate_exclude),
    )


def _with_frame_types(summary, opt):
    """The I/P split from frames.csv, read only when a table asks for I or P frames."""
    return with_frame_types(summary) if set(opt.frame_types) - {"all"} else summary


#: the --results help of the commands that read results
RESULTS_HELP = "results folder or summary.csv, repeatable (default: everything under results/ but results/golden)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_setup_commands(sub)
    _add_table_commands(sub)
    _add_import_export(sub)
    _add_views(sub)
    _add_check(sub)
    return parser


def _add_run(sub) -> None:
    """``run``: the sweep's flags (the executors' come from :mod:`bench.executors`)."""
    run = sub.add_parser("run", help="sweep codecs x sequences x rate points and write results")
    run.add_argument("--codec", required=True, type=_csv, help="codec[:opt=val...][,codec...] (`python -m bench codecs` lists them)")
    _add_input_args(run, dataset_required=False)
    run.add_argument(
        "--conditions", help="named test conditions (`bench conditions` lists them): frames, intra period, datasets, anchor ladders; flags override"
    )
    run.add_argument("--rates", type=_csv, help="rate points in the codec's own knob (QP for anchors), comma-separated")
    run.add_argument("--metrics", type=_csv, help=f"metrics or columns (default: {','.join(default_metrics())})")
    run.add_argument("--jobs", type=int, default=1, help="parallel jobs (processes) of the local executor")
    registry.add_arguments(run)
    run.add_argument("--out", type=Path, help="results folder (default: results/<dataset>/<codec>/)")
    run.add_argument("--force", action="store_true", help="redo jobs already recorded as done")
    run.add_argument(
        "--save-decoded",
        action="store_true",
        help="keep each job's decoded video (OUT/decoded/, lossless FFV1) for `bench visualize`; jobs done without one are redone",
    )
    run.add_argument("--save-decoded-limit-gb", type=float, default=20.0, help="the most raw video --save-decoded may keep in one sweep (default 20 GB)")
    run.add_argument("--intra-period", type=int, help="frames between intra frames for codecs that take it (-1: one intra frame, the default)")
    run.add_argument("--ffmpeg", help="ffmpeg binary for the ffmpeg anchors (default: $BENCH_FFMPEG, else imageio-ffmpeg's)")
    _add_codec_location_args(run)
    run.add_argument("--device", default="cpu", help="device for metrics and learned codecs: cpu, cuda, cuda:1")
    run.add_argument("--weights", help="folder of pretrained weights files (also $BENCH_WEIGHTS); see `bench doctor`")
    run.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_setup_commands(sub) -> None:
    """``measure``, ``conditions``, ``doctor``, ``datasets``, ``codecs``."""
    ms = sub.add_parser("measure", help="add or change metrics of finished results: decodes the stored bitstreams, never encodes")
    ms.add_argument("--results", required=True, type=Path, help="the --out folder of `bench run`")
    ms.add_argument("--metrics", required=True, type=_csv, help="metrics to measure (added to what each job measured)")
    ms.add_argument("--jobs", type=int, default=1, help="parallel jobs (processes)")
    ms.add_argument("--device", default="cpu", help="device for the metrics: cpu, cuda")
    ms.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("conditions", help="the named test conditions: what each fixes, and the document it comes from")
    dr = sub.add_parser("doctor", help="list every weights file, whether it is present, and where to put it")
    dr.add_argument("--weights", help="folder of pretrained weights files (also $BENCH_WEIGHTS)")
    _add_codec_location_args(dr)

    dsp = sub.add_parser("datasets", help="list each sequence of each dataset as found or missing")
    _add_data_args(dsp)

    cdp = sub.add_parser("codecs", help="list codecs, their default rate ladders, and whether they can run here")
    cdp.add_argument("--ffmpeg", help="ffmpeg binary to check the anchors against")
    cdp.add_argument(
        "--complexity", type=_size, metavar="WxH", help="also code 3 random frames of WxH with each runnable learned codec: kMAC/pixel and s/frame"
    )
    _add_codec_location_args(cdp)


def _add_table_commands(sub) -> None:
    """``plot`` and ``bdrate``."""
    pl = sub.add_parser("plot", help="RD curves per dataset and metric, and a paper-style grid")
    pl.add_argument("--results", action="append", type=Path, help=RESULTS_HELP)
    pl.add_argument("--out", type=Path, default=Path("results/plots"), help="where the figures go (default: results/plots)")
    pl.add_argument("--metrics", type=_csv, help="metric columns to plot (default: every known one present)")
    pl.add_argument("--per-sequence", action="store_true", help="also one figure per sequence")
    pl.add_argument("--ms-ssim-db", action="store_true", help="plot MS-SSIM as -10*log10(1-MS-SSIM)")
    pl.add_argument("--format", type=_csv, default=["png", "pdf"], help="file formats (png,pdf,svg)")

    bdp = sub.add_parser("bdrate", help="BD-rate tables against an anchor codec")
    bdp.add_argument("--anchor", required=True, help="codec the others are compared with")
    bdp.add_argument("--results", action="append", type=Path, help=RESULTS_HELP)
    bdp.add_argument("--metric", action="append", help="metric column (repeatable; default: every known one present)")
    bdp.add_argument("--format", default="md", choices=("md", "csv", "latex"))
    bdp.add_argument("--out", type=Path, help="write the table to this file instead of stdout")
    bdp.add_argument("--mixed-conditions", action="store_true", help="compare curves made under different named test conditions anyway")
    _add_bd_args(bdp)


def _add_import_export(sub) -> None:
    """``import`` and ``export``."""
    im = sub.add_parser("import", help="turn a published results file into summary.csv rows (marked imported, with their source)")
    im.add_argument("file", type=Path, help="the results file")
    im.add_argument(
        "--format",
        required=True,
        choices=("dcvc", "compressai", "long"),
        help="dcvc: DCVC's test_video.py JSON; compressai: CompressAI's results JSON; long: CSV of dataset,metric,codec,bpp,value",
    )
    im.add_argument("--codec", help="codec name for a dcvc file (it does not name one)")
    im.add_argument("--dataset", help="dataset of a compressai file; for the others, keep only this dataset")
    im.add_argument("--psnr-space", default="rgb", choices=("rgb", "yuv"), help="what a dcvc file's ave_all_frame_psnr is (its --yuv420 0 or 1)")
    im.add_argument("--source", help="provenance text for the source column (default: file name and SHA-256)")
    im.add_argument("--out", type=Path, help="folder for summary.csv (default: results/imported/<file stem>)")
    im.add_argument("--force", action="store_true", help="replace earlier imported rows in --out")

    ex = sub.add_parser("export", help="write one codec's results in another tool's schema (DCVC's JSON, for its compare_bd_rate.py)")
    ex.add_argument("--format", required=True, choices=("dcvc",), help="dcvc: the JSON DCVC's test_video.py writes and compare_bd_rate.py reads")
    ex.add_argument("--out", required=True, type=Path, help="the file to write (e.g. mine.json)")
    ex.add_argument("--results", action="append", type=Path, help=RESULTS_HELP)
    ex.add_argument("--codec", help="the codec to export (a DCVC file holds one; needed when the results have several)")
    ex.add_argument("--dataset", help="only this dataset")
    ex.add_argument(
        "--psnr-space",
        required=True,
        choices=("rgb", "yuv"),
        help="which PSNR and MS-SSIM the file's ave_*_frame_psnr/msssim hold: psnr_rgb/ms_ssim_rgb (DCVC's RGB tests) or psnr_yuv/ms_ssim_yuv (its --yuv420 1 tests)",
    )
    ex.add_argument("--force", action="store_true", help="replace --out if it exists")


def _add_views(sub) -> None:
    """``visualize`` and ``report``."""
    vz = sub.add_parser("visualize", help="crops and x-t slices of each codec at matched bitrate, from videos kept by run --save-decoded")
    vz.add_argument("--results", action="append", type=Path, required=True, help="results folder (searched below), repeatable")
    vz.add_argument("--sequence", required=True, help="the sequence to show")
    vz.add_argument("--dataset", help="its dataset, where a sequence name is in several")
    vz.add_argument("--bpp", type=float, help="target bpp: each codec's rate point nearest it (in log bpp)")
    vz.add_argument("--anchor", help="match the others to this codec's bpp (its point nearest --bpp, or --anchor-rate)")
    vz.add_argument("--anchor-rate", help="the anchor's rate point, e.g. 37")
    vz.add_argument("--codecs", type=_csv, help="only these codecs (default: every one with decoded videos)")
    vz.add_argument("--frame", type=int, help="frame index (default: the middle coded frame)")
    vz.add_argument("--crop", help="region x,y,w,h in luma pixels (default: 256x256 at the centre)")
    vz.add_argument("--row", type=int, help="pixel row of the x-t slice (default: the crop's middle row)")
    vz.add_argument("--scale", type=float, default=2.0, help="zoom of the labelled figures (default 2; crops/ stay exact)")
    vz.add_argument("--out", type=Path, help="folder (default: RESULTS/visuals/<sequence>-f<frame>-<bpp>bpp)")

    rp = sub.add_parser("report", help="one HTML page (a folder with index.html) of RD curves, BD tables, per-sequence and per-frame views, visuals")
    rp.add_argument("--results", action="append", type=Path, help=RESULTS_HELP)
    rp.add_argument("--out", type=Path, default=Path("results/report"), help="folder for index.html (default: results/report)")
    rp.add_argument("--anchor", action="append", help="BD tables against this codec (repeatable; default: the anchors present)")
    rp.add_argument("--visuals", action="append", type=Path, default=[], help="a `bench visualize` folder to embed (those under --results are found)")
    rp.add_argument("--metrics", type=_csv, help="metric columns (default: every known one present)")
    rp.add_argument("--title", default="Rate-distortion report")
    _add_bd_args(rp)


def _add_check(sub) -> None:
    """``check``: the golden sets."""
    ck = sub.add_parser("check", help="CI: rerun the golden configuration and fail on metric drift")
    ck.add_argument("--golden", required=True, type=Path, help="golden set folder (config.json, summary.csv, tolerances.json)")
    ck.add_argument("--results", type=Path, help="compare these results instead of running the configuration")
    ck.add_argument("--update", action="store_true", help="rewrite the golden tables from a fresh run, on purpose")
    ck.add_argument("--keep", type=Path, help="run the configuration into this folder and keep it")
    # a golden set is data and names no location (bench.drift.GOLDEN_KEYS): they come from here
    ck.add_argument("--ffmpeg", help="ffmpeg binary for the ffmpeg anchors (default: $BENCH_FFMPEG, else imageio-ffmpeg's)")
    _add_codec_location_args(ck)
    _add_data_args(ck)
    ck.add_argument("--weights", help="folder of pretrained weights files (also $BENCH_WEIGHTS)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the command as a user would type it again (manifests record it; visualize suggests it)
    args.command_line = ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]
    if getattr(args, "weights", None):
        os.environ[weights.ENV] = str(Path(args.weights).expanduser())  # workers inherit it
    try:
        commands = {
            "run": cmd_run,
            "datasets": cmd_datasets,
            "conditions": cmd_conditions,
            "measure": cmd_measure,
            "codecs": cmd_codecs,
            "plot": cmd_plot,
            "bdrate": cmd_bdrate,
            "check": cmd_check,
            "doctor": cmd_doctor,
            "import": cmd_import,
            "export": cmd_export,
            "visualize": cmd_visualize,
            "report": cmd_report,
        }
        return commands[args.command](args)
    except (UsageError, ds.DatasetError, UnknownCodec, UnknownMetric, RateError, BitDepthError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # planning errors (missing encoder, busy store) read best bare
        if isinstance(e, (PlanError, StoreBusy, SweepConfigError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


def sweep_config(args) -> SweepConfig:
    """The ``run`` command line as a SweepConfig (the CLI only parses)."""
    harness = {k: getattr(args, k) for k in ("ffmpeg", *_location_options()) if getattr(args, k, None) is not None}
    return SweepConfig(
        codecs=args.codec,
        dataset=args.dataset,
        rates=args.rates,
        sequences=args.sequences,
        frames=args.frames,
        metrics=args.metrics,
        out=str(args.out) if args.out else None,
        data_root=args.data_root,
        size=args.size,
        fps=args.fps,
        bit_depth=args.bit_depth,
        intra_period=args.intra_period,
        conditions=args.conditions,
        device=args.device,
        jobs=args.jobs,
        executor=args.executor,
        **registry.options_from_args(args),
        force=args.force,
        save_decoded=args.save_decoded,
        save_decoded_limit_gb=args.save_decoded_limit_gb,
        weights=args.weights,
        codec_options=harness,
        progress=not args.quiet,
    )


def cmd_run(args) -> int:
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    result = run_sweep(sweep_config(args), argv=args.command_line)
    for part in result.parts:
        for r in part.failed:
            print(f"FAILED {r['job_id']}: {r.get('error', '')}", file=sys.stderr)
        done = len(part.records) - len(part.failed)
        print(f"{part.out}: {done} done, {len(part.failed)} failed, {part.skipped} skipped -> {ResultsStore(part.out).summary_path}")
    return 0 if result.ok else 1


def cmd_measure(args) -> int:
    part = measure_results(args.results, args.metrics, jobs=args.jobs, device=args.device, progress=not args.quiet)
    for r in part.failed:
        print(f"FAILED {r['job_id']}: {r.get('error', '')}", file=sys.stderr)
    print(f"{part.out}: {len(part.records) - len(part.failed)} measured again, {len(part.failed)} failed, {part.skipped} unchanged")
    return 0 if not part.failed else 1


def cmd_conditions(args) -> int:
    for c in CONDITIONS.values():
        print(f"{c.name}: {c.title}")
        print(f"  source:       {c.source}")
        print(f"  frames:       {c.frames or 'all'}; intra period {c.intra_period}; datasets {', '.join(c.datasets)}")
        ladders = "; ".join(f"{k} {','.join(map(str, v))}" for k, v in c.rates.items())
        print(f"  anchor rates: {ladders} (other codecs: their default ladder)")
        print(f"  colour:       {c.colour}; PSNR-YUV ({c.psnr_yuv_weights[0]}Y+{c.psnr_yuv_weights[1]}U+{c.psnr_yuv_weights[2]}V)/{sum(c.psnr_yuv_weights)}")
    return 0


def cmd_doctor(args) -> int:
    print("weights files (looked for in: " + ", ".join(map(str, weights.search_dirs())) + ")")
    for r in weights.doctor_rows():
        mark = "present" if r["present"] else "MISSING"
        print(f"  {mark} {r['file']:<40} {r['what']}" + (f"\n          at {r['path']}" if r["present"] else f"\n          from {r['url']}"))
    print("\nmetrics:")
    for name in metric_names():
        try:
            create_metric(name).check()
            status = "can run"
        except Exception as e:
            status = f"cannot run: {e}"
        print(f"  {name:<12} {status}")
    print("\ncodecs (what each needs beyond the Python packages):")
    for name in codec_names():
        try:
            reqs = create_codec(name, **_location_opts(args, codec_class(name))).requirements()
        except Exception as e:  # a broken plugin must not hide the others
            print(f"  {name}: cannot tell ({e})")
            continue
        if not reqs:
            print(f"  {name}: nothing else")
        for r in reqs:
            print(f"  {name}: {'present' if r.present else 'MISSING'} {r.what}" + (f"\n          at {r.where}" if r.present else f"\n          {r.fix}"))
    print(
        f"\nFor offline use put the files in torch's hub cache ({weights.hub_dir()}/checkpoints, or hub/clip for RN50.pt; "
        f"TORCH_HOME moves it) or in a folder passed as --weights DIR / ${weights.ENV}."
    )
    return 0


def _location_opts(args, cls) -> dict:
    accepted = accepted_options(cls)
    return {k: getattr(args, k) for k in ("ffmpeg", *_location_options()) if getattr(args, k, None) and k in accepted}


def cmd_datasets(args) -> int:
    root = ds.data_root(args.data_root)
    print(f"data root: {root or f'(none: set --data-root or ${ds.DATA_ENV})'}   cache: {ds.cache_dir()}")
    for name, dataset in ds.DATASETS.items():
        statuses = dataset.status(root)
        found = sum(s.found for s in statuses)
        print(f"\n{name}: {dataset.description} — {found}/{len(statuses)} found")
        for s in statuses:
            mark = "found  " if s.found else "MISSING"
            where = s.sequence.path if s.found else ", ".join(map(str, s.looked_at))
            note = f"  [{s.note}]" if s.note else ""
            print(f"  {mark} {s.sequence.name:<16} {where}{note}")
    return 0


def cmd_codecs(args) -> int:
    print(f"{'codec':<21} {'rate':<8} {'default ladder':<18} {'bit depths':<10} status")
    for name in codec_names():
        try:
            cls = codec_class(name)
            codec = create_codec(name, **_location_opts(args, cls))
            ladder = ",".join(map(str, codec.default_rates))
            try:
                codec.check()
                status = "ok"
            except Exception as e:
                status = f"cannot run: {e}"
            reqs = codec.requirements()
            have = f" [needs {sum(r.present for r in reqs)}/{len(reqs)} present]" if reqs else ""
            depths = "/".join(map(str, codec.bit_depths)) + ("+conv" if codec.convert_bit_depth else "")
            print(f"{name:<21} {codec.rate_name:<8} {ladder:<18} {depths:<10} {status}{have} [rates: {codec.rate_spec.describe()}]")
            if args.complexity and codec.learned and status == "ok":
                decoder = create_codec(name, **_location_opts(args, cls))
                decoder.check()
                print(f"{'':<21} {_complexity_line(codec, decoder, *args.complexity)}")
        except Exception as e:  # a broken plugin must not hide the others
            print(f"{name:<21} {'?':<8} {'?':<18} broken plugin: {e}")
    if args.complexity:
        print(f"\ncomplexity: {METHOD}")
    return 0


def _complexity_line(codec, decoder, width: int, height: int) -> str:
    """kMAC/pixel and seconds per frame of one learned codec on 3 random frames; ``decoder``
    is a second instance, which decodes as a receiver would, with nothing kept from encoding
    (Diff-SIT's encoder keeps ODFTE's output for its own decoder in a sweep)."""

    rng = np.random.default_rng(0)
    video = Video(*(rng.integers(0, 256, (3, h, w), dtype=np.uint8) for h, w in ((height, width), (height // 2, width // 2), (height // 2, width // 2))))
    rate = codec.default_rates[len(codec.default_rates) // 2]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with counted(True) as enc:
            bitstream = codec.encode(video, rate, Path(tmp)).bitstream
        enc.flops += codec.take_counted_flops()
        t1 = time.perf_counter()
        with counted(True) as dec:
            decoder.decode(bitstream, Path(tmp))
        dec.flops += decoder.take_counted_flops()
        t2 = time.perf_counter()
    px = 3 * width * height
    return (
        f"at {width}x{height}, rate {rate}: encode {enc.kmac_per_pixel(px):.1f} kMAC/px, {(t1 - t0) / 3:.2f} s/frame; "
        f"decode {dec.kmac_per_pixel(px):.1f} kMAC/px, {(t2 - t1) / 3:.2f} s/frame"
    )


def _summaries(paths: list[Path] | None, what: str = "plot"):
    if paths:
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise UsageError(f"results not found: {', '.join(map(str, missing))}")
        df = read_summaries(paths)
        empty = [p for p in paths if p.is_dir() and not ResultsStore.summary_files(p)]
        if empty:
            raise UsageError(
                f"{', '.join(map(str, empty))}: no summary.csv in it or below; nothing to {what}. "
                "Point --results at the --out folder of `python -m bench run` (or of `bench import`)"
            )
    else:
        root = Path("results")
        dirs = [p.parent for p in ResultsStore.summary_files(root) if "golden" not in p.relative_to(root).parts]
        df = read_summaries(dirs)
    if df.empty:
        raise UsageError("no summary.csv rows found; run `python -m bench run` first or pass --results DIR")
    return df


def cmd_plot(args) -> int:
    files = write_plots(
        _summaries(args.results), args.out, metrics=args.metrics, per_sequence=args.per_sequence, ms_ssim_db=args.ms_ssim_db, formats=tuple(args.format)
    )
    print(f"wrote {len(files)} files under {args.out} (points drawn: {args.out / 'curves.csv'})")
    return 0


def cmd_bdrate(args) -> int:
    summary = _summaries(args.results)
    conditions = [] if args.mixed_conditions else check_comparable(summary, args.anchor)
    opt = _bd_options(args)
    table = bd_table(_with_frame_types(summary, opt), args.anchor, args.metric, opt)
    if table.attrs.get("datasets_without_anchor"):
        print(f"note: {args.anchor} has no results on {', '.join(table.attrs['datasets_without_anchor'])}: left out", file=sys.stderr)
    text = format_bd(table, args.format)
    if conditions and args.format != "csv":  # the caption says which experiment this is
        text = f"Test conditions: {'; '.join(conditions)}\n\n{text}"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def cmd_visualize(args) -> int:
    try:
        req = Request(
            results=args.results,
            sequence=args.sequence,
            out=args.out,
            bpp=args.bpp,
            anchor=args.anchor,
            anchor_rate=args.anchor_rate,
            frame=args.frame,
            crop=parse_crop(args.crop) if args.crop else None,
            row=args.row,
            dataset=args.dataset,
            codecs=args.codecs,
            scale=args.scale,
        )
        if args.bpp is None and args.anchor is None:
            raise UsageError("give a target --bpp, or --anchor CODEC (with --bpp or --anchor-rate) to match the others to")
        out = visualize(req)
    except (VisualizeError, DecodedError) as e:
        raise UsageError(str(e)) from None
    print(f"wrote {out / 'compare.png'}, {out / 'xt.png'} and {out / 'visualize.json'}")
    return 0


def cmd_report(args) -> int:
    opt = _bd_options(args)
    try:
        index = write_report(
            _with_frame_types(_summaries(args.results, what="report"), opt),
            args.out,
            # without --results: all of results/, so that results/<dataset>/visuals/ is found too
            results=args.results or [Path("results")],
            anchors=args.anchor,
            visuals=args.visuals,
            metrics=args.metrics,
            opt=opt,
            title=args.title,
        )
    except ReportError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {index} (open it in a browser; it needs no network)")
    return 0


def cmd_import(args) -> int:
    df = import_results(args.file, args.format, codec=args.codec, dataset=args.dataset, psnr_space=args.psnr_space, source=args.source)
    out = args.out or Path("results") / "imported" / args.file.stem
    store = ResultsStore(out)
    existing = store.summary_path
    if existing.exists():
        old = store.summary()
        if "imported" not in old or not old["imported"].fillna(False).astype(bool).all():
            raise UsageError(f"{out} holds results of runs, not imported ones; choose another --out")
        if not args.force:
            raise UsageError(f"{existing} exists (imported earlier); pass --force to replace it")
    path = write_imported(df, out, path=args.file, fmt=args.format)
    for note in df.attrs.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(f"imported {len(df)} row(s): {df['codec'].nunique()} codec(s) x {df['dataset'].nunique()} dataset(s) -> {path}")
    return 0


def cmd_export(args) -> int:
    if args.out.exists() and not args.force:
        raise UsageError(f"{args.out} exists; pass --force to replace it")
    summary = with_frame_types(_summaries(args.results, what="export"))
    if args.dataset:
        summary = summary[summary["dataset"] == dataset_name(args.dataset)]
        if summary.empty:
            raise UsageError(f"no results on dataset {args.dataset!r}")
    try:
        obj, notes = dcvc.export(summary, args.psnr_space, args.codec)
    except dcvc.DCVCFormatError as e:
        raise UsageError(str(e)) from None
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    n = sum(len(rates) for seqs in obj.values() for rates in seqs.values())
    print(f"wrote {n} entries ({len(obj)} dataset(s)) -> {dcvc.write(obj, args.out)}")
    return 0


def cmd_check(args) -> int:
    harness = {k: getattr(args, k) for k in ("ffmpeg", *_location_options()) if getattr(args, k, None) is not None}
    where = drift.Locations(harness, data_root=args.data_root, weights=args.weights)
    try:
        table, ok = drift.check(args.golden, args.results, do_update=args.update, keep=args.keep, where=where)
    except drift.GoldenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.update:
        print(f"golden tables in {args.golden} rewritten from this run ({len(table)} values)")
        return 0
    print(drift.format_report(table, ok))
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
