"""Visual comparisons at matched bitrate (``bench visualize``), from kept decoded videos.

For one sequence, each codec's rate point nearest a target bpp (or nearest the bpp of an
anchor's chosen point) is picked from what was run, as CompressAI's ``find_close`` picks a
quality for a target rate. Nearness is in log bpp: a point at half the target is as far as
one at twice it. Then, for one frame and region:

- ``compare.png``: the crops side by side, the source first, each labelled with codec, rate
  point, bpp and PSNR/MS-SSIM (the sequence's means at that point) and that frame's PSNR;
- ``xt.png``: one pixel row of the crop over every frame (an x-t slice), per codec. A still
  region gives vertical stripes; flicker shows as horizontal banding;
- ``crops/`` and ``xt/``: the same images at exact pixels, one file each, for papers;
- ``visualize.json``: what was picked and why, the files, the values; ``bench report``
  embeds every such folder it finds.

Only decoded videos kept by ``bench run --save-decoded`` are shown, checked against the
samples MD5 in their job's record (``bench.decoded``).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import decoded as decoded_store
from .records import JobRecord, Status
from .store import ResultsStore, atomic_write_text, dumps, safe_name
from .video import Video, read_yuv

RESULT_FILE = "visualize.json"


class VisualizeError(ValueError):
    """Bad input to ``bench visualize``; the message says what and how to fix it."""


@dataclass
class FinishedJob:
    """A done job of a results folder, as visualize needs it: its store and typed record."""

    store: ResultsStore
    record: JobRecord

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def summary(self) -> dict:
        return self.record.summary or {}

    @property
    def codec(self) -> str:
        return self.record.codec

    @property
    def bpp(self) -> float:
        return float(self.summary["bpp"])

    @property
    def decoded(self) -> Path | None:
        return self.store.decoded_path(self.record)


@dataclass
class Pick:
    job: FinishedJob
    why: str
    notes: list[str] = field(default_factory=list)


def find_jobs(results: list[Path]) -> list[FinishedJob]:
    """Every finished job under the results folders (a folder of folders is searched)."""
    jobs = []
    for base in results:
        if not base.exists():
            raise VisualizeError(f"results folder {base} does not exist")
        for store in ResultsStore.under(base):
            jobs += [FinishedJob(store, rec) for rec in store.jobs(Status.DONE) if rec.summary is not None]
    if not jobs:
        where = ", ".join(map(str, results))
        raise VisualizeError(
            f"no finished jobs under {where}: it holds no results of `bench run` (job records). Run `python -m bench run ... --save-decoded --out DIR` first"
        )
    return jobs


def _rerun_hint(jobs: list[FinishedJob]) -> str:
    try:
        command = jobs[0].store.manifest()["provenance"]["command"]
        argv = [a for a in command if a != "--save-decoded"]
        return f"rerun it with --save-decoded: {shlex.join([*argv, '--save-decoded'])}"
    except (OSError, KeyError, TypeError):
        return "rerun the sweep with `bench run ... --save-decoded`"


def select(jobs: list[FinishedJob], sequence: str, dataset: str | None = None, codecs: list[str] | None = None) -> list[FinishedJob]:
    """The jobs of one sequence (with decoded videos), refusing what cannot be shown."""
    seqs = sorted({(j.record.dataset, j.record.sequence) for j in jobs})
    sel = [j for j in jobs if j.record.sequence == sequence and (dataset is None or j.record.dataset == dataset)]
    if not sel:
        have = ", ".join(f"{d}/{s}" for d, s in seqs)
        raise VisualizeError(f"no results for sequence {sequence!r}{f' of {dataset}' if dataset else ''}; the results hold: {have}")
    datasets = sorted({j.record.dataset for j in sel})
    if len(datasets) > 1:
        raise VisualizeError(f"sequence {sequence!r} is in several datasets ({', '.join(datasets)}): choose one with --dataset")
    if codecs:
        missing = sorted(set(codecs) - {j.codec for j in sel})
        if missing:
            raise VisualizeError(f"{', '.join(missing)}: no results on {sequence}; codecs there: {', '.join(sorted({j.codec for j in sel}))}")
        sel = [j for j in sel if j.codec in codecs]
    kept = [j for j in sel if j.decoded is not None]
    if not kept:
        raise VisualizeError(
            f"the results of {sequence} hold no decoded videos (their jobs ran without --save-decoded), so there is nothing to crop; {_rerun_hint(sel)}"
        )
    return sel


def _distance(bpp: float, target: float) -> float:
    return abs(math.log(bpp / target))


def pick(jobs: list[FinishedJob], target_bpp: float | None, anchor: str | None = None, anchor_rate: str | None = None) -> tuple[list[Pick], float]:
    """Per codec, the rate point nearest the target (log bpp), and the target used.

    With ``anchor``: the anchor's point (``anchor_rate``, else the one nearest
    ``target_bpp``) sets the target for the others."""
    by_codec: dict[str, list[FinishedJob]] = {}
    for j in jobs:
        by_codec.setdefault(j.codec, []).append(j)
    ranges = {c: (min(j.bpp for j in js), max(j.bpp for j in js)) for c, js in by_codec.items()}
    anchor_pick = None
    if anchor is not None:
        if anchor not in by_codec:
            raise VisualizeError(f"anchor {anchor!r} has no results here; codecs: {', '.join(sorted(by_codec))}")
        if anchor_rate is not None:
            at = [j for j in by_codec[anchor] if str(j.summary["rate"]) == str(anchor_rate)]
            if not at:
                rates = ", ".join(str(j.summary["rate"]) for j in sorted(by_codec[anchor], key=lambda j: j.bpp))
                raise VisualizeError(f"anchor {anchor} has no rate point {anchor_rate}; it has {rates}")
            anchor_pick = Pick(at[0], f"the anchor's rate point {anchor_rate}")
        elif target_bpp is not None:
            j = min(by_codec[anchor], key=lambda j: _distance(j.bpp, target_bpp))
            anchor_pick = Pick(j, f"the anchor's point nearest {target_bpp:g} bpp")
        else:
            raise VisualizeError("give --bpp, or --anchor with --anchor-rate")
        target_bpp = anchor_pick.job.bpp
    if target_bpp is None or not target_bpp > 0:
        raise VisualizeError(f"target bpp {target_bpp} must be a positive number")
    if anchor is None and not any(lo <= target_bpp <= hi for lo, hi in ranges.values()):
        spans = "; ".join(f"{c} {lo:.4g}..{hi:.4g}" for c, (lo, hi) in sorted(ranges.items()))
        raise VisualizeError(f"{target_bpp:g} bpp is outside every codec's range of rate points ({spans} bpp): choose a --bpp inside one of them")
    picks = []
    for codec in sorted(by_codec, key=lambda c: (c != anchor, c)):
        if anchor_pick is not None and codec == anchor:
            picks.append(anchor_pick)
            continue
        j = min(by_codec[codec], key=lambda j: _distance(j.bpp, target_bpp))
        why = f"nearest {target_bpp:.4g} bpp" + (f" (the anchor {anchor}'s)" if anchor else "")
        p = Pick(j, why)
        lo, hi = ranges[codec]
        if not lo <= target_bpp <= hi:
            p.notes.append(
                f"{target_bpp:.4g} bpp is outside {codec}'s range ({lo:.4g}..{hi:.4g}): this is its {'lowest' if target_bpp < lo else 'highest'} rate point"
            )
        picks.append(p)
    return picks, float(target_bpp)


# --- images --------------------------------------------------------------------------------


def parse_crop(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise VisualizeError(f"--crop {text!r} is not x,y,w,h (four integers, e.g. 64,32,256,128)") from None
    return x, y, w, h


def check_crop(crop: tuple[int, int, int, int], width: int, height: int, sequence: str) -> None:
    x, y, w, h = crop
    if w <= 0 or h <= 0:
        raise VisualizeError(f"--crop {x},{y},{w},{h}: width and height must be positive")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        over = []
        if x < 0 or x + w > width:
            over.append(f"columns {x}..{x + w - 1}")
        if y < 0 or y + h > height:
            over.append(f"rows {y}..{y + h - 1}")
        raise VisualizeError(
            f"--crop {x},{y},{w},{h} reaches outside the {width}x{height} frame of {sequence} ({' and '.join(over)}): "
            f"x+w must be at most {width} and y+h at most {height}"
        )


def default_crop(width: int, height: int, size: int = 256) -> tuple[int, int, int, int]:
    w, h = min(size, width), min(size, height)
    return (width - w) // 2, (height - h) // 2, w, h


def to_rgb8(video: Video, frame: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB of one frame, converted as the metrics convert (BT.709, full range)."""
    rgb = video.rgb(frame, frame + 1)[0].permute(1, 2, 0).numpy()
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def xt_slice(video: Video, row: int, x0: int, x1: int) -> np.ndarray:
    """(frames, x1 - x0, 3) uint8: pixel row ``row`` of every frame, top to bottom in time."""
    out = np.empty((video.frames, x1 - x0, 3), dtype=np.uint8)
    for t in range(video.frames):
        part = video[t : t + 1]
        rgb = part.rgb()[0, :, row, x0:x1].permute(1, 0).numpy()
        out[t] = np.clip(np.rint(rgb * 255.0), 0, 255)
    return out


def _save_png(arr: np.ndarray, path: Path, text: dict[str, str]) -> None:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(arr).save(tmp, format="PNG", pnginfo=info)
    tmp.replace(path)


def _fidelity(summary: dict) -> list[str]:
    parts = []
    for col, name in (("psnr_rgb", "PSNR-RGB"), ("psnr_yuv", "PSNR-YUV")):
        if summary.get(col) is not None and not _nan(summary.get(col)):
            parts.append(f"{name} {float(summary[col]):.2f} dB")
            break
    if summary.get("ms_ssim_rgb") is not None and not _nan(summary.get("ms_ssim_rgb")):
        parts.append(f"MS-SSIM {float(summary['ms_ssim_rgb']):.4f}")
    return parts


def _nan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def _frame_row(job: FinishedJob, frame: int) -> dict:
    df = job.store.job_frames(job.record.job_id)
    if df is None:
        return {}
    row = df[df["frame"] == frame]
    return {} if row.empty else row.iloc[0].to_dict()


def _figure(panels: list[tuple[np.ndarray, str]], path: Path, title: str, scale: float) -> None:
    """Panels side by side (wrapping after 4), each with its label, at their pixels x ``scale``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(panels), 4)
    rows = math.ceil(len(panels) / cols)
    h, w = panels[0][0].shape[:2]
    dpi = 100
    pw, ph = max(w * scale / dpi, 2.4), h * scale / dpi
    fig, axes = plt.subplots(rows, cols, figsize=(pw * cols, (ph + 0.75) * rows + 0.4), dpi=dpi, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, label) in zip(axes.flat, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(label, fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9, x=0.01, ha="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)


@dataclass
class Request:
    results: list[Path]
    sequence: str
    out: Path | None = None
    bpp: float | None = None
    anchor: str | None = None
    anchor_rate: str | None = None
    frame: int | None = None
    crop: tuple[int, int, int, int] | None = None
    row: int | None = None
    dataset: str | None = None
    codecs: list[str] | None = None
    scale: float = 2.0


def default_out(req: Request, frame: int, target: float) -> Path:
    return req.results[0] / "visuals" / safe_name(f"{req.sequence}-f{frame}-{target:.4g}bpp")


@dataclass
class _Scene:
    """What one comparison shows: the picks, and where in their frames."""

    picks: list[Pick]
    target: float
    skipped: list[str]
    width: int
    height: int
    depth: int
    frames: int
    start: int
    frame: int
    crop: tuple[int, int, int, int]
    row: int

    @property
    def first(self) -> JobRecord:
        return self.picks[0].job.record


def _scene(req: Request) -> _Scene:
    """The picks and the frame, crop and row, every one checked against the request."""
    jobs = select(find_jobs(req.results), req.sequence, req.dataset, req.codecs)
    with_video = [j for j in jobs if j.decoded is not None]
    skipped = sorted({j.codec for j in jobs} - {j.codec for j in with_video})
    picks, target = pick(with_video, req.bpp, req.anchor, req.anchor_rate)
    rec0 = picks[0].job.record
    width, height, depth = rec0.config["geometry"]
    frames = int(rec0.summary["frames"])
    frame = frames // 2 if req.frame is None else req.frame
    start = int(rec0.source.get("start", 0))
    if not start <= frame < start + frames:
        raise VisualizeError(f"--frame {frame} is outside the {frames} coded frames of {req.sequence} ({start}..{start + frames - 1})")
    crop = req.crop or default_crop(width, height)
    check_crop(crop, width, height, req.sequence)
    x, y, w, h = crop
    row = y + h // 2 if req.row is None else req.row
    if not y <= row < y + h:
        raise VisualizeError(f"--row {row} is outside the crop's rows {y}..{y + h - 1}")
    for p in picks:
        g = p.job.record.config["geometry"]
        if list(g) != [width, height, depth] or int(p.job.summary["frames"]) != frames:
            raise VisualizeError(
                f"{p.job.codec} coded {req.sequence} as {g[0]}x{g[1]}, {p.job.summary['frames']} frames; "
                f"{picks[0].job.codec} as {width}x{height}, {frames}: compare runs of the same frames"
            )
    return _Scene(picks, target, skipped, width, height, depth, frames, start, frame, crop, row)


def _frame_line(fr: dict, frame: int) -> str:
    """The label's third line: the frame, its type, PSNR and bits where known."""
    frame_bits = fr.get("bits")
    frame_psnr = fr.get("psnr_rgb", fr.get("psnr_yuv"))
    line3 = f"frame {frame}" + (f" ({fr['frame_type']})" if isinstance(fr.get("frame_type"), str) and fr.get("frame_type") else "")
    if frame_psnr is not None and not _nan(frame_psnr):
        line3 += f": {float(frame_psnr):.2f} dB"
    if frame_bits is not None and not _nan(frame_bits):
        line3 += f", {float(frame_bits) / 1000:.1f} kbit"
    return line3


def _entry(p: Pick, fr: dict, label: str, name: str) -> dict:
    """One pick as visualize.json lists it."""
    s = p.job.summary
    return {
        "codec": p.job.codec,
        "rate": s["rate"],
        "bpp": float(s["bpp"]),
        "why": p.why,
        "notes": p.notes,
        "label": label,
        "metrics": {k: s[k] for k in ("psnr_rgb", "psnr_yuv", "ms_ssim_rgb", "lpips", "dists", "ewarp", "vmaf") if k in s and not _nan(s[k])},
        "frame": {k: (None if _nan(v) else float(v)) for k, v in fr.items() if k in ("bits", "psnr_rgb", "psnr_yuv", "ms_ssim_rgb")},
        "frame_type": fr.get("frame_type") if isinstance(fr.get("frame_type"), str) else None,
        "crop": f"crops/{name}.png",
        "xt": f"xt/{name}.png",
        "results": str(p.job.root),
        "decoded": str(p.job.record.decoded["path"]),
    }


def _titles(sc: _Scene, sequence: str) -> tuple[str, str]:
    x, y, w, h = sc.crop
    dataset = sc.first.dataset
    title = f"{dataset}/{sequence}, frame {sc.frame}, crop x={x} y={y} {w}x{h}, target {sc.target:.4g} bpp"
    xt_title = f"{dataset}/{sequence}: row {sc.row}, columns {x}..{x + w - 1}, frames {sc.start}..{sc.start + sc.frames - 1} top to bottom"
    return title, xt_title


def _source(sc: _Scene, notes: list[str]) -> Video | None:
    src_path = Path(sc.first.source["path"])
    if src_path.is_file():
        return read_yuv(src_path, sc.width, sc.height, bit_depth=sc.depth, start=sc.start, frames=sc.frames)
    notes.append(f"the source {src_path} is not on this machine: no source panel")
    return None


def visualize(req: Request) -> Path:
    """Write the comparison; returns the folder. Everything is checked before a file is written."""
    sc = _scene(req)
    # every video is read (and its MD5 checked) before anything is written
    videos = [decoded_store.load(p.job.decoded, sc.width, sc.height, sc.depth, sc.frames, p.job.record.decoded.get("samples_md5")) for p in sc.picks]
    notes: list[str] = []
    source = _source(sc, notes)
    out = req.out or default_out(req, sc.frame, sc.target)
    local = sc.frame - sc.start
    x, y, w, h = sc.crop
    panels, xt_panels, entries = [], [], []
    title, xt_title = _titles(sc, req.sequence)
    if source is not None:
        img = to_rgb8(source, local)[y : y + h, x : x + w]
        xt = xt_slice(source, sc.row, x, x + w)
        _save_png(img, out / "crops" / "source.png", {"Title": f"source, {title}"})
        _save_png(xt, out / "xt" / "source.png", {"Title": f"source, {xt_title}"})
        panels.append((img, "source"))
        xt_panels.append((xt, "source"))
    for p, video in zip(sc.picks, videos):
        s = p.job.summary
        fr = _frame_row(p.job, sc.frame)
        label = f"{p.job.codec} · {s['rate']}\n{float(s['bpp']):.4f} bpp · " + " · ".join(_fidelity(s)) + f"\n{_frame_line(fr, sc.frame)}"
        img = to_rgb8(video, local)[y : y + h, x : x + w]
        xt = xt_slice(video, sc.row, x, x + w)
        name = safe_name(f"{p.job.codec}-{s['rate']}")
        _save_png(img, out / "crops" / f"{name}.png", {"Title": f"{label.replace(chr(10), ' | ')}; {title}"})
        _save_png(xt, out / "xt" / f"{name}.png", {"Title": f"{p.job.codec} {s['rate']}; {xt_title}"})
        panels.append((img, label))
        xt_panels.append((xt, f"{p.job.codec} · {s['rate']} · {float(s['bpp']):.4f} bpp"))
        entries.append(_entry(p, fr, label, name))
    _figure(panels, out / "compare.png", title, req.scale)
    # a clip of 33 frames would be a thin strip: each frame is drawn k rows tall
    k = max(1, math.ceil(128 / sc.frames))
    _figure([(np.repeat(img, k, axis=0), label) for img, label in xt_panels], out / "xt.png", xt_title + (f" ({k} px per frame)" if k > 1 else ""), req.scale)
    if sc.skipped:
        notes.append(f"no decoded video kept for {', '.join(sc.skipped)}: left out")
    _write_result(out, sc, req, entries, source is not None, notes)
    return out


def _write_result(out: Path, sc: _Scene, req: Request, entries: list[dict], has_source: bool, notes: list[str]) -> None:
    x, y, w, h = sc.crop
    result = {
        "dataset": sc.first.dataset,
        "sequence": req.sequence,
        "frame": sc.frame,
        "crop": {"x": x, "y": y, "w": w, "h": h},
        "row": sc.row,
        "target_bpp": sc.target,
        "anchor": req.anchor,
        "picks": entries,
        "source": "crops/source.png" if has_source else None,
        "compare": "compare.png",
        "xt": "xt.png",
        "notes": notes,
    }
    atomic_write_text(out / RESULT_FILE, dumps(result))
