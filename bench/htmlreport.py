"""``bench report``: one HTML page of everything the results folders hold, offline.

The page (``OUT/index.html``, with ``plotly.min.js`` and the images beside it) reads only
files written next to it: no CDN, no font or tile server, no request leaving the folder
(its Content-Security-Policy allows only file: URLs, inline data, and the page's one
script by its hash). It shows

- interactive RD curves per dataset and metric, on the same dataset-level curves as
  ``bench plot`` (published ones dashed); hovering a point gives codec, rate point, bpp,
  value and how many sequences the mean is over;
- BD-rate and BD-metric tables against each anchor, the reason in every cell without a
  number, and the bootstrap interval of the mean over sequences;
- a per-sequence drill-down (RD curves and BD cells of one sequence);
- per-frame bits and quality over frame index, coloured by frame type;
- the comparisons ``bench visualize`` wrote (found under the results folders or named);
- the provenance of each run: command, commit, versions, and each bitstream's MD5.

Figures are built with plotly's Python classes (so they are validated) and drawn by
plotly.js from JSON embedded in the page.

A results folder may be someone else's (a shared drive, a tarball): everything read from it
is text. Each value is escaped where the page shows it, the page is filled in one pass (a
Jinja2 template shipped with the package, ``bench/templates/report.html.j2``, autoescaping
on), and files are copied only through ``bench.safepath`` (below their folder, no links, regular
files) to names of ours under OUT.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import math
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from . import complexity
from . import report as rp
from .codec import UnknownCodec, codec_class, codec_names
from .safepath import UnsafePath, make_dirs, read_inside, relative_parts, write_into
from .store import ResultsStore
from .visualize import RESULT_FILE

PLOTLY_JS = "plotly.min.js"
# matplotlib marker -> plotly symbol, so a codec looks the same in `plot` and here
_SYMBOLS = {
    "o": "circle",
    "s": "square",
    "^": "triangle-up",
    "v": "triangle-down",
    "D": "diamond",
    "P": "cross",
    "X": "x",
    "*": "star",
    "h": "hexagon",
    "<": "triangle-left",
    ">": "triangle-right",
}
_TYPE_COLOURS = {"I": "#d62728", "P": "#1f77b4", "B": "#2ca02c", "MV": "#ff7f0e"}
_OTHER_TYPES = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


class ReportError(ValueError):
    """Results a report cannot be built from; the message says why."""


def default_anchors(codecs: set[str]) -> list[str]:
    """The codecs present that plugins declare anchors (``Codec.anchor``), then published
    curves named after one (``HM16.25`` after ``hm``): the BD tables a reader expects."""
    names = []
    for n in codec_names():
        try:
            if getattr(codec_class(n), "anchor", False):
                names.append(n)
        except Exception:  # a broken plugin must not break the report
            continue
    run = [c for c in names if c in codecs]
    published = sorted(c for c in codecs - set(run) if any(re.fullmatch(rf"{re.escape(n)}[\d.]*", c, flags=re.IGNORECASE) for n in names))
    return run + published


def _rate_name(codec: str) -> str:
    try:
        return str(codec_class(codec).rate_name)
    except (UnknownCodec, ImportError, AttributeError):
        return "point"


def _num(v, digits: int = 6):
    """JSON-safe, shortened number (NaN -> None)."""
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return float(f"{f:.{digits}g}")


def _fig_json(fig) -> dict:
    import plotly.io as pio

    return json.loads(pio.to_json(fig, validate=True))


def _layout(title: str, xlabel: str, ylabel: str, log_x: bool = False) -> dict:
    return dict(
        title=dict(text=title, font=dict(size=13)),
        xaxis=dict(title=dict(text=xlabel), type="log" if log_x else "linear", gridcolor="#e5e5e5"),
        yaxis=dict(title=dict(text=ylabel), gridcolor="#e5e5e5"),
        template="plotly_white",
        margin=dict(l=60, r=10, t=40, b=45),
        legend=dict(font=dict(size=10)),
        height=360,
        hovermode="closest",
    )


def rd_figure(curves: pd.DataFrame, metric: str, title: str):
    """One RD plot: a trace per codec, dashed where published; returns (figure, curves drawn)."""
    import plotly.graph_objects as go

    fig = go.Figure(layout=_layout(_plotly_text(title), "bpp", rp.metric_label(metric)))
    n = 0
    for codec, rows in curves.groupby("codec", sort=True):
        rows = rows[rows[metric].notna()].sort_values("bpp")
        if rows.empty:
            continue
        colour, marker = rp.codec_style(codec)
        published = "imported" in rows and bool(rows["imported"].fillna(False).astype(bool).any())
        seqs = rows["sequences"] if "sequences" in rows else pd.Series(1, index=rows.index)
        name = _plotly_text(codec)
        custom = [[name, _plotly_text(r), _plotly_text(_rate_name(codec)), int(s) if pd.notna(s) else 1] for r, s in zip(rows["rate"], seqs)]
        fig.add_trace(
            go.Scatter(
                x=[_num(v) for v in rows["bpp"]],
                y=[_num(v) for v in rows[metric]],
                mode="lines+markers",
                name=f"{name} (published)" if published else name,
                line=dict(color=colour, dash="dash" if published else "solid", width=2),
                marker=dict(symbol=_SYMBOLS.get(marker, "circle"), size=7, color=colour),
                customdata=custom,
                hovertemplate=(
                    "<b>%{customdata[0]}</b><br>%{customdata[2]} %{customdata[1]}<br>%{x:.4f} bpp<br>"
                    + html.escape(metric)
                    + " %{y:.4f}<br>mean over %{customdata[3]} sequence(s)<extra></extra>"
                ),
            )
        )
        n += 1
    return fig, n


def _plotly_text(v) -> str:
    """Text for a plotly name, title or hover label: plotly reads them as HTML-like markup and
    decodes &amp; &lt; &gt; (not &quot;, and quotes are harmless once no tag can open)."""
    return html.escape(str(v), quote=False)


def frame_colour(kind: str, order: list[str]) -> str:
    if kind in _TYPE_COLOURS:
        return _TYPE_COLOURS[kind]
    others = [t for t in order if t not in _TYPE_COLOURS]
    return _OTHER_TYPES[others.index(kind) % len(_OTHER_TYPES)] if kind in others else "#7f7f7f"


# --- gathering ---------------------------------------------------------------------------------


def _read_frames(dirs: list[str]) -> pd.DataFrame:
    parts = []
    for d in dirs:
        df = ResultsStore(d).frames(dtype={"rate": str, "frame_type": str, "sequence": str})
        if not df.empty:
            parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _manifest(d: str) -> tuple[dict, str | None]:
    """(manifest, why it was refused): a linked manifest is not read, a missing one is
    just absent; its fields are shown escaped, so only their types need checking."""
    name = ResultsStore.MANIFEST
    try:
        m = ResultsStore(d).read_manifest()
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError) as e:  # UnsafePath, bad JSON, bad UTF-8
        return {}, f"{name} not read: {e}"
    return (m, None) if isinstance(m, dict) else ({}, f"{name} is not a JSON object")


def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def find_visuals(results: list[Path], extra: list[Path]) -> list[tuple[Path, str]]:
    """Each visual as (folder it was found under, its visualize.json's name below it): every
    read of the visual goes through that folder (``bench.safepath``), so none leaves it."""
    found = []
    for base in results:
        if base.is_dir():
            # rglob does not descend into linked folders; a linked visualize.json is refused on reading
            found += [(base, p.relative_to(base).as_posix()) for p in sorted(base.rglob(RESULT_FILE))]
    for v in extra:
        if not (v / RESULT_FILE).is_file():
            raise ReportError(f"--visuals {v}: no {RESULT_FILE} there; it must be a folder that `bench visualize` wrote")
        found.append((v, RESULT_FILE))
    seen, out = set(), []
    for root, name in found:
        key = (root / name).parent.resolve()
        if key not in seen:
            seen.add(key)
            out.append((root, name))
    return out


# --- the page ------------------------------------------------------------------------------------


def _esc(v) -> str:
    return html.escape(str(v))


def _bd_cell_html(row) -> str:
    if pd.isna(row["bd_rate"]):
        # the reason folds away (tables of published curves are full of them) but is always there
        notes = [n for n in str(row.get("note") or "").split(" | ") if n]
        metric = "" if pd.isna(row.get("bd_metric", np.nan)) else f"; BD-{row['metric']} {row['bd_metric']:+.4g}"
        if metric and rp._flag(row.get("low_overlap")):
            metric += rp._mark(row, "overlap_rate")
        bound = row.get("dominance", np.nan)
        if not pd.isna(bound):
            metric += f"; bound {bound:+.4g} ({rp.dominating_side(bound, row['metric'])} dominates)"
        why = "".join(f"<li>{_esc(n)}</li>" for n in notes) or "<li>no reason recorded</li>"
        return f'<td class="na"><details><summary>n/a{_esc(metric)}</summary><ul class="why">{why}</ul></details></td>'
    text = rp._cell_text(row)
    title = f' title="{_esc(row["note"])}"' if row.get("note") else ""
    return f"<td{title}>{_esc(text)}</td>"


def bd_html(table: pd.DataFrame, metrics: list[str], sequences: list[str] | None = None) -> str:
    """An HTML table of bd_table rows: one row per (dataset, sequence, codec), metrics across."""
    if table.empty:
        return '<p class="note">no codec to compare with this anchor</p>'
    sel = table if sequences is None else table[table["sequence"].isin(sequences)]
    if sel.empty:
        return ""
    cols = [m for m in metrics if m in set(sel["metric"])]
    head = "".join(f"<th>{_esc(rp.metric_label(m))}</th>" for m in cols)
    rows = []
    split = "frame_type" in sel and set(sel["frame_type"]) != {"all"}  # a frames column only where I/P were asked for
    for (dataset, seq, codec, ft), g in sel.assign(_ft=sel.get("frame_type", "all")).groupby(["dataset", "sequence", "codec", "_ft"], sort=False):
        cells = {r["metric"]: r for _, r in g.iterrows()}
        tds = "".join(_bd_cell_html(cells[m]) if m in cells else "<td></td>" for m in cols)
        frames = f"<td>{_esc(ft)}</td>" if split else ""
        rows.append(f'<tr data-sequence="{_esc(seq)}"><td>{_esc(dataset)}</td><td>{_esc(seq)}</td><td>{_esc(codec)}</td>{frames}{tds}</tr>')
    frames_head = "<th>frames</th>" if split else ""
    return f'<table class="bd"><thead><tr><th>dataset</th><th>sequence</th><th>codec</th>{frames_head}{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _provenance_html(summary: pd.DataFrame) -> str:
    """The provenance sections (templates/provenance.html.j2), one per results folder."""
    runs = [_run_provenance(d, rows) for d, rows in summary.groupby("results_dir", sort=True)]
    return _environment().get_template(_PROVENANCE).render(runs=runs)


def _complexity_html(summary: pd.DataFrame) -> str:
    """The complexity and timing table (templates/complexity.html.j2), each row with what its
    decode figures leave out, where the job records say (``decode_leaves_out``)."""
    rows = complexity.cost_table(summary)
    notes = {folder: _leaves_out(folder) for folder in {r["folder"] for r in rows}}
    for r in rows:
        r["cells"] = {c: _cost_cell(c, r["values"].get(c)) for c, _ in complexity.COST_COLUMNS}
        r["leaves_out"] = "; ".join(sorted(notes[r["folder"]].get(r["codec"], ())))
    return _environment().get_template(_COMPLEXITY).render(rows=rows, columns=complexity.COST_COLUMNS, method=complexity.METHOD + ".")


def _leaves_out(folder: str) -> dict[str, set[str]]:
    """Per codec label of a results folder, what its done jobs' decoders left to the encoder."""
    out: dict[str, set[str]] = {}
    if not Path(folder).is_dir():
        return out
    for rec in ResultsStore(folder).jobs():
        if rec.done and rec.decode_leaves_out:
            out.setdefault(str(rec.codec), set()).add(str(rec.decode_leaves_out))
    return out


def _cost_cell(column: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if column.endswith("per_frame") else f"{value:.1f}"


def _run_provenance(d: str, rows: pd.DataFrame) -> dict:
    """One folder's facts (label, text), its codecs' configurations as JSON text, and its
    bitstreams (None for imported rows, which have none of ours)."""
    m, refused = _manifest(d)
    prov = _dict(m.get("provenance"))
    imported = "imported" in rows and bool(rows["imported"].fillna(False).astype(bool).all())
    items = [("warning", refused)] if refused else []
    if imported:
        src = sorted({str(s) for s in rows.get("source", pd.Series(dtype=str)).dropna()})
        items.append(("imported from", "; ".join(src) or "(no source recorded)"))
        if "imported" in m:
            imp = _dict(m["imported"])
            items.append(("file", f"{imp.get('file')} (SHA-256 {imp.get('sha256')})"))
    else:
        cmd = prov.get("command")
        cond = _dict(prov.get("conditions"))
        items += [
            ("test conditions", f"{cond.get('label')}: {cond.get('title')} ({cond.get('source')})" if cond else "none named"),
            ("command", " ".join(map(str, cmd)) if isinstance(cmd, list) else cmd),
            ("git commit", prov.get("git_commit") or "not recorded (bench ran from an installed package, not a git checkout)"),
            ("time", prov.get("time")),
            ("host", f"{prov.get('host')} ({prov.get('platform')}, {prov.get('cpu_count')} CPUs), Python {prov.get('python')}"),
            ("ffmpeg", _dict(prov.get("ffmpeg")).get("version")),
            ("packages", ", ".join(f"{k} {v}" for k, v in _dict(prov.get("packages")).items() if v)),
        ]
        counts = _dict(m.get("counts"))
        if counts:
            items.append(("jobs", ", ".join(f"{v} {k}" for k, v in counts.items())))
    codecs = prov.get("codecs") or {}
    keep = ["codec", "sequence", "rate", "bitstream", "bitstream_md5"]
    shown = not imported and "bitstream_md5" in rows
    return {
        "dir": d,
        "facts": [(k, v) for k, v in items if v not in (None, "")],
        "codecs": json.dumps(codecs, indent=1, default=str) if codecs else "",
        "bitstreams": rows.sort_values(["codec", "sequence", "bpp"]).reindex(columns=keep).to_dict("records") if shown else None,
    }


def _load_visual(root: Path, name: str) -> tuple[dict, dict[str, bytes]]:
    """A visualize.json and the images it names, each read through ``root`` and stored under
    a name of ours (never its text); UnsafePath or ValueError says why it cannot be shown."""
    info = json.loads(read_inside(root, name))
    picks = info.get("picks") if isinstance(info, dict) else None
    if not isinstance(picks, list) or not all(isinstance(p, dict) for p in picks):
        raise ValueError("not what `bench visualize` writes (an object with a list of picks)")
    wanted = {"compare.png": info.get("compare"), "xt.png": info.get("xt"), "source.png": info.get("source")}
    for j, p in enumerate(picks):
        wanted.update({f"crop-{j:02d}.png": p.get("crop"), f"xt-{j:02d}.png": p.get("xt")})
    folder, files = PurePosixPath(name).parent, {}
    for dest, given in wanted.items():
        if given is None:
            continue
        try:
            files[dest] = read_inside(root, folder.joinpath(*relative_parts(given)).as_posix())
        except FileNotFoundError:
            continue  # e.g. a crop deleted by hand: the rest still shows
    return info, files


def _fmt(v, spec: str) -> str:
    """A number as ``spec`` says, anything else as escaped text (a visualize.json is untrusted)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return format(v, spec)
    return _esc(v)


def _visual_html(info: dict, rel: str, files: dict[str, bytes]) -> str:
    crop = info.get("crop") if isinstance(info.get("crop"), dict) else {}
    rows = []
    for p in info["picks"]:
        metrics = p.get("metrics") if isinstance(p.get("metrics"), dict) else {}
        means = ", ".join(f"{_esc(k)} {_fmt(v, '.4g')}" for k, v in metrics.items())
        why = "; ".join(map(str, [p.get("why"), *_list(p.get("notes"))]))
        rows.append(
            f"<tr><td>{_esc(p.get('codec'))}</td><td>{_esc(p.get('rate'))}</td><td>{_fmt(p.get('bpp'), '.4f')}</td><td>{means}</td><td>{_esc(why)}</td></tr>"
        )
    notes = "".join(f"<li>{_esc(n)}</li>" for n in _list(info.get("notes")))
    figures = [
        ("compare.png", "crops of each codec side by side", "crops at matched bitrate"),
        ("xt.png", "x-t slices", f"x-t slice: row {_fmt(info.get('row'), '')} over time (flicker shows as horizontal banding)"),
    ]
    where = f"{_fmt(crop.get('w'), '')}x{_fmt(crop.get('h'), '')} at ({_fmt(crop.get('x'), '')}, {_fmt(crop.get('y'), '')})"
    return (
        f'<section class="visual"><h3>{_esc(info.get("dataset"))}/{_esc(info.get("sequence"))}: frame {_fmt(info.get("frame"), "")}, '
        f"crop {where}, target {_fmt(info.get('target_bpp'), '.4g')} bpp</h3>"
        f'<table class="picks"><thead><tr><th>codec</th><th>rate</th><th>bpp</th><th>sequence means</th><th>picked</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f"{f'<ul class=note>{notes}</ul>' if notes else ''}"
        + "".join(f'<figure><img src="{rel}/{f}" alt="{alt}"><figcaption>{cap}</figcaption></figure>' for f, alt, cap in figures if f in files)
        + "</section>"
    )


def _list(v) -> list:
    return v if isinstance(v, list) else []


def _write_visuals(out: Path, found: list[tuple[Path, str]], warn) -> str:
    """Each visual's section, its images copied under OUT/visuals/NN/. A visual that names a
    file outside its folder, a link or something not a plain file is left out with a warning:
    one hostile folder must not cost the honest ones, nor the rest of the report."""
    parts, refused = [], []
    for root, name in found:
        where = root / name
        try:
            info, files = _load_visual(root, name)
            rel = f"visuals/{len(parts):02d}"
            section = _visual_html(info, rel, files)
        except (UnsafePath, ValueError, TypeError, AttributeError, OSError) as e:
            refused.append(f"{where}: {e}; left out")
            warn(refused[-1])
            continue
        target = make_dirs(out, "visuals", rel.split("/")[1])
        for dest, data in files.items():
            write_into(target, dest, data)
        parts.append(section)
    warned = "".join(f"<li>{_esc(w)}</li>" for w in refused)
    shown = "".join(parts) or (
        '<p class="note">none: run <code>bench run --save-decoded</code>, then <code>bench visualize</code>, and build the report again</p>'
    )
    return (f'<ul class="note warn">{warned}</ul>' if warned else "") + shown


def build_data(summary: pd.DataFrame, metrics: list[str], opt: rp.BDOptions, anchors: list[str]) -> tuple[dict, dict]:
    """(page data, BD tables): every figure's JSON, the drill-down and per-frame data."""
    curves = rp.dataset_curves(summary, metrics)
    figures, rd = {}, []
    for dataset in _dataset_order(curves):
        ds = curves[curves["dataset"] == dataset]
        for metric in metrics:
            sel = ds[ds[metric].notna()]
            if sel.empty:
                continue
            fig, n = rd_figure(sel, metric, f"{dataset}: {rp.metric_label(metric)}")
            fid = f"rd-{dataset}-{metric}"
            figures[fid] = _fig_json(fig)
            rd.append({"id": fid, "dataset": dataset, "metric": metric, "curves": n})
    tables = {a: rp.bd_table(summary, a, metrics, opt) for a in anchors}
    sequences = []
    own = summary[~summary.get("imported", pd.Series(False, index=summary.index)).fillna(False).astype(bool)]
    for (dataset, seq), rows in own.groupby(["dataset", "sequence"], sort=True):
        ids = []
        per = rows.groupby(["codec", "rate"], as_index=False)[["bpp", *[m for m in metrics if m in rows]]].mean()
        per["sequences"] = 1
        for metric in metrics:
            if metric not in per or per[metric].isna().all():
                continue
            fig, _ = rd_figure(per, metric, f"{dataset} / {seq}: {rp.metric_label(metric)}")
            fid = f"seq-{len(sequences)}-{metric}"
            figures[fid] = _fig_json(fig)
            ids.append(fid)
        bd = "".join(
            f"<h4>BD against {_esc(a)}</h4>" + bd_html(t[(t["dataset"] == dataset) & (t["sequence"] == seq)], metrics)
            for a, t in tables.items()
            if not t.empty and ((t["dataset"] == dataset) & (t["sequence"] == seq)).any()
        )
        sequences.append({"label": f"{dataset} / {seq}", "figures": ids, "bd": bd})
    frames = _frames_data(own, metrics)
    return {"figures": figures, "rd": rd, "sequences": sequences, "frames": frames}, tables


def _dataset_order(curves: pd.DataFrame) -> list[str]:
    """Datasets with runs of one's own first, then those with published curves only."""
    own = set(curves.loc[~curves["imported"].fillna(False).astype(bool), "dataset"])
    return sorted(curves["dataset"].unique(), key=lambda d: (d not in own, d))


def _frames_data(own: pd.DataFrame, metrics: list[str]) -> dict:
    dirs = sorted(own["results_dir"].unique()) if "results_dir" in own else []
    fr = _read_frames(dirs)
    if fr.empty:
        return {"jobs": [], "metrics": [], "types": []}
    keep = set(map(tuple, own[["dataset", "sequence", "codec", "rate"]].astype(str).to_numpy()))
    frame_metrics = [m for m in metrics if m in fr and fr[m].notna().any()]
    types = sorted({t for t in fr.get("frame_type", pd.Series(dtype=str)).dropna().astype(str) if t})
    jobs = []
    groups = sorted(fr.groupby(["dataset", "sequence", "codec", "rate"], sort=False), key=lambda kv: (*kv[0][:3], -kv[1]["bits"].sum()))
    for key, g in groups:  # rate points from the highest rate down, as codecs' ladders read
        if tuple(map(str, key)) not in keep:
            continue
        g = g.sort_values("frame")
        ft = g["frame_type"].fillna("").astype(str).tolist() if "frame_type" in g else [""] * len(g)
        jobs.append(
            {
                "dataset": key[0],
                "sequence": key[1],
                "codec": key[2],
                "rate": str(key[3]),
                "frame": [int(v) for v in g["frame"]],
                "type": ft,
                "bits": [_num(v) for v in g["bits"]],
                "values": {m: [_num(v) for v in g[m]] for m in frame_metrics},
            }
        )
    return {
        "jobs": jobs,
        "metrics": frame_metrics,
        "labels": {m: rp.metric_label(m) for m in frame_metrics},
        "types": types,
        "colours": {t: frame_colour(t, types) for t in [*types, ""]},
    }


def write_report(
    summary: pd.DataFrame,
    out: Path,
    *,
    results: list[Path] | None = None,
    anchors: list[str] | None = None,
    visuals: list[Path] | None = None,
    metrics: list[str] | None = None,
    opt: rp.BDOptions | None = None,
    title: str = "Rate-distortion report",
    warn=None,
) -> Path:
    """Write OUT/index.html (and plotly.min.js, visuals/ beside it); returns the page.

    Nothing is written outside OUT, and nothing but the images of ``bench visualize``
    folders is copied in; what is refused goes to ``warn`` (default: stderr) and the page."""
    opt = opt or rp.BDOptions()
    warn = warn or (lambda m: print(f"warning: {m}", file=sys.stderr))
    if summary.empty:
        raise ReportError("the results hold no summary.csv rows: every job failed, or none ran")
    metrics = rp.present_metrics(summary, metrics or None)
    if not metrics:
        raise ReportError("no metric column with a value in the results; nothing to draw")
    codecs = set(summary["codec"])
    if anchors:
        missing = [a for a in anchors if a not in codecs]
        if missing:
            raise ReportError(f"anchor {', '.join(missing)} is not in the results; codecs there: {', '.join(sorted(codecs))}")
    else:
        anchors = default_anchors(codecs)
    results = results or sorted({Path(d) for d in summary["results_dir"]})
    visual_dirs = find_visuals(results, visuals or [])
    data, tables = build_data(summary, metrics, opt, anchors)
    try:
        _open_out(out)
        _write_plotly(out)
        visual_html = _write_visuals(out, visual_dirs, warn)
    except UnsafePath as e:
        raise ReportError(f"{e}: the report writes only under --out {out}") from None
    generated = f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} by bench report, from {len(set(summary['results_dir']))} results folder(s)"
    page = render_page(
        csp=Markup(CSP),  # ours, and its quotes must stay quotes
        script=Markup(_SCRIPT),
        title=title,
        generated=generated,
        rd=Markup(_rd_html(data["rd"])),
        bd=Markup(_bd_sections(tables, metrics, opt)),
        visuals=Markup(visual_html),
        complexity=Markup(_complexity_html(summary)),
        provenance=Markup(_provenance_html(summary)),
        data=Markup(script_json(data)),
    )
    return write_into(out, "index.html", page.encode())


def _open_out(out: Path) -> None:
    # --out is the user's, but the default (results/report) lies in the default --results:
    # a link planted there would send the whole report elsewhere
    if out.is_symlink():
        raise UnsafePath(f"--out {out} is a symbolic link (to {os.readlink(out)}); pass the folder it points to")
    out.mkdir(parents=True, exist_ok=True)


def _bd_sections(tables: dict[str, pd.DataFrame], metrics: list[str], opt: rp.BDOptions) -> str:
    sections = []
    for a, t in tables.items():
        per_seq = t[~t["sequence"].isin(rp.AGGREGATES)]
        without = t.attrs.get("datasets_without_anchor") or []
        # the caption is bd_caption's, word for word: the page, the Markdown and the LaTeX
        # tables explain Overall, Average and all (unweighted) the same way
        caption = rp.bd_caption(t) if not t.empty else f"BD-rate against {a} ({opt.method} interpolation)"
        sections.append(
            f"<h3>against {_esc(a)}</h3>"
            + f'<p class="note">{_esc(caption)}'
            + (f". {_esc(a)} has no results on {_esc(', '.join(without))}: left out" if without else "")
            + "</p>"
            + bd_html(t, metrics, list(rp.AGGREGATES))
            + (f"<details><summary>per sequence ({per_seq['sequence'].nunique()})</summary>{bd_html(per_seq, metrics)}</details>" if not per_seq.empty else "")
        )
    return "".join(sections) or (
        '<p class="note">no codec in the results is an anchor (a plugin with <code>anchor = True</code>): pass <code>--anchor CODEC</code></p>'
    )


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # every value is text unless marked Markup
        # escaped as the fragments are (html.escape: &#x27; and &quot;, where markupsafe writes
        # &#39; and &#34;), so the page keeps its bytes; autoescape passes the Markup through
        finalize=lambda v: v if isinstance(v, Markup) else Markup(_esc(v)),
        undefined=jinja2.StrictUndefined,  # a slot left unfilled is an error, not an empty string
        keep_trailing_newline=True,
    )


def render_page(**values) -> str:
    """The page (templates/report.html.j2) with ``values``, in one pass: a value is never
    read as template text (a codec named ``{{ data }}`` stays text), and a plain string is
    escaped; only a :class:`markupsafe.Markup` this module built (every value in it escaped)
    goes in as it is."""
    return _environment().get_template(_PAGE).render(**values)


def script_json(data) -> str:
    """JSON for a <script> element: no <, > or & in it, so neither </script> nor <!--
    in a name can end or bend the element (JSON.parse reads the \\u escapes back)."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _rd_html(rd: list[dict]) -> str:
    parts, current = [], None
    for r in rd:
        if r["dataset"] != current:
            if current is not None:
                parts.append("</div>")
            current = r["dataset"]
            parts.append(f'<h3 id="ds-{_esc(current)}">{_esc(current)}</h3><div class="grid">')
        parts.append(f'<div class="plot rd" id="{_esc(r["id"])}" data-curves="{r["curves"]}" data-metric="{_esc(r["metric"])}"></div>')
    if current is not None:
        parts.append("</div>")
    return "".join(parts) or '<p class="note">no curve to draw</p>'


def _write_plotly(out: Path) -> None:
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs().encode()
    path = out / PLOTLY_JS
    if path.is_symlink() or not path.is_file() or path.read_bytes() != js:
        write_into(out, PLOTLY_JS, js)


def curve_counts(summary: pd.DataFrame, metrics: list[str] | None = None) -> dict[str, int]:
    """Curves each RD plot of the page draws, by plot id (what the browser test checks)."""
    metrics = rp.present_metrics(summary, metrics or None)
    curves = rp.dataset_curves(summary, metrics)
    out = {}
    for dataset in sorted(curves["dataset"].unique()):
        ds = curves[curves["dataset"] == dataset]
        for metric in metrics:
            n = ds[ds[metric].notna()]["codec"].nunique()
            if n:
                out[f"rd-{dataset}-{metric}"] = int(n)
    return out


_TEMPLATES = Path(__file__).with_name("templates")
_PAGE = "report.html.j2"
_PROVENANCE = "provenance.html.j2"
_COMPLEXITY = "complexity.html.j2"
# the page's one script, allowed by its hash (no 'unsafe-inline'): whatever markup a results
# folder smuggled into the page could not run
_SCRIPT = (_TEMPLATES / "report.js").read_text(encoding="utf-8")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
# file: for plotly.min.js beside the page; style-src keeps 'unsafe-inline' because plotly.js
# styles its plots with <style> elements and style attributes it makes as it draws
CSP = (
    f"default-src 'none'; script-src 'self' file: 'sha256-{_SCRIPT_HASH}'; style-src 'unsafe-inline'; "
    "img-src 'self' data: blob: file:; font-src data:; base-uri 'none'; form-action 'none'"
)
