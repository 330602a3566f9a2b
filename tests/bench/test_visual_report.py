"""bench report, bench visualize and run --save-decoded, on real sweeps of a sample clip
(x265, vvenc and Diff-SIT with its shipped weights), and the page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.store import ResultsStore, read_summaries

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "results" / "published"
METRICS = ["psnr", "psnr_rgb", "ms_ssim_rgb"]


def _sweep(out: Path, codec: str, rates: list[str], sequence: str = "carphone", save: bool = True, frames: int = 9):
    from bench.config import SweepConfig
    from bench.sweep import run_sweep

    res = run_sweep(
        SweepConfig(
            codecs=[codec], dataset="sample", sequences=[sequence], rates=rates, frames=frames, metrics=METRICS, out=str(out), save_decoded=save, progress=False
        ),
        notify=lambda m: None,
    )
    assert res.ok, res.failed
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """results/sample/<codec>/ of a 9-frame sweep of carphone, decoded videos kept."""
    root = tmp_path_factory.mktemp("runs") / "sample"
    _sweep(root / "x265", "x265", ["27", "32", "37", "42"])
    _sweep(root / "vvenc", "vvenc", ["27", "32", "37", "42"])
    _sweep(root / "diffsit", "diffsit", ["1", "4"])
    return root


def _summary(*dirs):
    return read_summaries(list(dirs))


# --- --save-decoded ----------------------------------------------------------------------------


def test_saved_decoded_video_is_what_the_metrics_measured(runs):
    from bench import decoded
    from bench.codec import create_codec

    store = ResultsStore(runs / "x265")
    rec = store.find("x265", "carphone", 32)
    kept = rec["decoded"]
    assert kept["path"] == f"decoded/{rec['job_id']}.mkv" and (runs / "x265" / kept["path"]).is_file()
    video = decoded.load(runs / "x265" / kept["path"], 176, 144, 8, 9, kept["samples_md5"])
    # decoding the stored bitstream again gives the same samples
    fresh = create_codec("x265").decode(runs / "x265" / rec["bitstream"], Path(store.root), bit_depth=8)
    assert decoded.samples_md5(fresh) == kept["samples_md5"] == decoded.samples_md5(video)
    assert kept["bytes"] < decoded.raw_bytes(176, 144, 9, 8)  # lossless, and smaller than raw
    manifest = json.loads((runs / "x265" / "manifest.json").read_text())
    assert manifest["jobs"][rec["job_id"]]["decoded"]["samples_md5"] == kept["samples_md5"]


def test_a_decoded_file_that_is_not_its_records_is_refused(runs, tmp_path):
    from bench import decoded

    store = ResultsStore(runs / "x265")
    rec = store.find("x265", "carphone", 32)
    other = runs / "x265" / store.find("x265", "carphone", 42)["decoded"]["path"]
    with pytest.raises(decoded.DecodedError, match="not the one its job measured"):
        decoded.load(other, 176, 144, 8, 9, rec["decoded"]["samples_md5"])
    with pytest.raises(decoded.DecodedError, match="holds 9 frames .* says 10"):
        decoded.load(other, 176, 144, 8, 10)
    with pytest.raises(decoded.DecodedError, match="missing"):
        decoded.load(tmp_path / "gone.mkv", 176, 144, 8, 9)


def test_a_job_done_without_its_decoded_video_is_redone_when_asked(tmp_path, synthetic):
    from bench.config import SweepConfig
    from bench.sweep import run_sweep

    def sweep(save):
        return run_sweep(
            SweepConfig(
                codecs=["x265"],
                dataset="synthetic",
                sequences=["testsrc2"],
                rates=["32"],
                frames=3,
                metrics=["psnr"],
                out=str(tmp_path),
                save_decoded=save,
                progress=False,
            ),
            notify=lambda m: None,
        )

    first = sweep(False)
    assert first.parts[0].skipped == 0 and not (tmp_path / "decoded").exists()
    md5 = first.summary()["bitstream_md5"].iloc[0]
    assert sweep(False).parts[0].skipped == 1  # nothing asked for: the job stands
    again = sweep(True)
    assert again.parts[0].skipped == 0 and len(list((tmp_path / "decoded").glob("x265-synthetic-testsrc2-32-*.mkv"))) == 1
    assert again.summary()["bitstream_md5"].iloc[0] == md5
    assert sweep(True).parts[0].skipped == 1


def test_save_decoded_over_its_limit_is_refused_before_any_job(tmp_path, capsys):
    rc = main(
        ["run", "--codec", "x265", "--dataset", "synthetic", "--frames", "30", "--rates", "32", "--metrics", "psnr", "--out", str(tmp_path / "r")]
        + ["--save-decoded", "--save-decoded-limit-gb", "0.001", "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--save-decoded would keep 9.1 MB of raw video (2 jobs" in err and "--save-decoded-limit-gb" in err
    assert not (tmp_path / "r").exists()


# --- visualize ----------------------------------------------------------------------------------


def _nearest(rows: pd.DataFrame, target: float) -> pd.Series:
    return rows.loc[(np.log(rows["bpp"] / target)).abs().idxmin()]


def test_visualize_picks_each_codecs_nearest_point_and_labels_it(runs, tmp_path):
    from PIL import Image

    from bench.video import read_yuv
    from bench.visualize import to_rgb8

    out = tmp_path / "vis"
    assert (
        main(["visualize", "--results", str(runs), "--sequence", "carphone", "--bpp", "0.1", "--frame", "4", "--crop", "40,30,96,64", "--out", str(out)]) == 0
    )
    info = json.loads((out / "visualize.json").read_text())
    s = _summary(runs)
    assert [p["codec"] for p in info["picks"]] == ["diffsit", "vvenc", "x265"]
    for p in info["picks"]:
        want = _nearest(s[s.codec == p["codec"]], 0.1)
        assert p["rate"] == want["rate"] and p["bpp"] == pytest.approx(want["bpp"])
        label = p["label"]
        assert p["codec"] in label and f"{want['bpp']:.4f} bpp" in label
        assert f"PSNR-RGB {want['psnr_rgb']:.2f} dB" in label and f"MS-SSIM {want['ms_ssim_rgb']:.4f}" in label
        crop = np.asarray(Image.open(out / p["crop"]))
        assert crop.shape == (64, 96, 3)
        xt = np.asarray(Image.open(out / p["xt"]))
        assert xt.shape == (9, 96, 3)  # one row per frame
    source = ResultsStore(runs / "x265").find("x265", "carphone", 32)["source"]["path"]
    src = read_yuv(source, 176, 144, frames=9)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "crops" / "source.png")), to_rgb8(src, 4)[30:94, 40:136])
    compare = Image.open(out / "compare.png")
    assert compare.size[0] > 4 * 96 and np.asarray(compare.convert("L")).std() > 10
    assert info["frame"] == 4 and info["crop"] == {"x": 40, "y": 30, "w": 96, "h": 64} and info["target_bpp"] == 0.1


def test_visualize_matches_the_others_to_an_anchors_point(runs, tmp_path):
    from bench.visualize import Request, visualize

    out = visualize(Request([runs], "carphone", tmp_path / "a", anchor="x265", anchor_rate="37"))
    info = json.loads((out / "visualize.json").read_text())
    s = _summary(runs)
    anchor_bpp = float(s[(s.codec == "x265") & (s.rate == "37")].bpp.iloc[0])
    assert info["target_bpp"] == pytest.approx(anchor_bpp) and info["picks"][0]["codec"] == "x265"
    vv = next(p for p in info["picks"] if p["codec"] == "vvenc")
    assert vv["rate"] == _nearest(s[s.codec == "vvenc"], anchor_bpp)["rate"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bpp", "5"], "5 bpp is outside every codec's range of rate points (diffsit "),
        (
            ["--bpp", "0.1", "--crop", "100,100,100,100"],
            "--crop 100,100,100,100 reaches outside the 176x144 frame of carphone (columns 100..199 and rows 100..199)",
        ),
        (["--bpp", "0.1", "--crop", "1,2,3"], "is not x,y,w,h"),
        (["--bpp", "0.1", "--frame", "9"], "--frame 9 is outside the 9 coded frames of carphone (0..8)"),
        (["--bpp", "0.1", "--codecs", "svtav1"], "svtav1: no results on carphone"),
        (["--anchor", "x265", "--anchor-rate", "99"], "anchor x265 has no rate point 99"),
    ],
)
def test_visualize_bad_inputs_say_what_and_write_nothing(runs, tmp_path, capsys, args, message):
    out = tmp_path / "v"
    assert main(["visualize", "--results", str(runs), "--sequence", "carphone", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_visualize_without_decoded_videos_says_how_to_keep_them(tmp_path, capsys):
    res = tmp_path / "plain"
    assert (
        main(
            [
                "run",
                "--codec",
                "x265",
                "--dataset",
                "synthetic",
                "--sequences",
                "testsrc2",
                "--frames",
                "3",
                "--rates",
                "32",
                "--metrics",
                "psnr",
                "--out",
                str(res),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["visualize", "--results", str(res), "--sequence", "testsrc2", "--bpp", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "hold no decoded videos" in err and "--save-decoded" in err and "--codec x265" in err
    assert main(["visualize", "--results", str(res), "--sequence", "bikes", "--bpp", "0.1"]) == 2
    assert "no results for sequence 'bikes'; the results hold: synthetic/testsrc2" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["visualize", "--results", str(empty), "--sequence", "bikes", "--bpp", "0.1"]) == 2
    assert "no finished jobs under" in capsys.readouterr().err


# --- report --------------------------------------------------------------------------------------


def _page_data(index: Path) -> dict:
    text = index.read_text()
    start = text.index('<script type="application/json" id="bench-data">') + len('<script type="application/json" id="bench-data">')
    return json.loads(text[start : text.index("</script>", start)].replace("<\\/", "</"))


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    from bench.visualize import Request, visualize

    visualize(Request([runs], "carphone", None, bpp=0.1))  # under runs/visuals: the report finds it
    out = tmp_path_factory.mktemp("report")
    assert main(["report", "--results", str(runs), "--results", str(PUBLISHED), "--out", str(out)]) == 0
    return out / "index.html", _summary(runs, PUBLISHED)


def test_report_holds_every_curve_with_published_ones_dashed(report):
    from bench.htmlreport import curve_counts

    index, summary = report
    data = _page_data(index)
    names = {r["id"]: [t["name"] for t in data["figures"][r["id"]]["data"]] for r in data["rd"]}
    assert set(names["rd-sample-psnr_rgb"]) == {"x265", "vvenc", "diffsit"}
    published = {"HM16.25", "VTM17.0", "DCVC-DC", "DCVC-FM", "DVC-P", "HNeRV", "Diff-SIT"}
    for ds in ("hevc_b", "uvg", "mcl_jcv"):
        assert set(names[f"rd-{ds}-lpips"]) == {f"{c} (published)" for c in published}
        assert all(t["line"]["dash"] == "dash" for t in data["figures"][f"rd-{ds}-lpips"]["data"])
    assert all(t["line"]["dash"] == "solid" for t in data["figures"]["rd-sample-psnr_rgb"]["data"])
    assert {r["id"]: r["curves"] for r in data["rd"]} == curve_counts(summary)
    # hover: codec, rate point, bpp, value, sequence count
    x265 = next(t for t in data["figures"]["rd-sample-psnr_rgb"]["data"] if t["name"] == "x265")
    assert x265["customdata"][0][:3] == ["x265", x265["customdata"][0][1], "qp"] and x265["customdata"][0][3] == 1
    assert "bpp" in x265["hovertemplate"] and "sequence(s)" in x265["hovertemplate"]
    assert data["rd"][0]["dataset"] == "sample"  # one's own runs first


def test_report_tables_drilldown_frames_visuals_and_provenance(report):
    index, summary = report
    text = index.read_text()
    data = _page_data(index)
    assert "against x265" in text and "against HM16.25" in text and "n/a" in text and "the quality ranges" in text
    assert [s["label"] for s in data["sequences"]] == ["sample / carphone"]
    assert len(data["sequences"][0]["figures"]) == 3 and "BD against x265" in data["sequences"][0]["bd"]
    jobs = data["frames"]["jobs"]
    assert len(jobs) == 10 and {j["codec"] for j in jobs} == {"x265", "vvenc", "diffsit"}
    d = next(j for j in jobs if j["codec"] == "diffsit")
    assert set(d["type"]) <= {"I", "P", "MV"} and "MV" in d["type"] and len(d["bits"]) == 9
    assert "psnr_rgb" in data["frames"]["metrics"]
    for md5 in summary[summary.codec == "x265"]["bitstream_md5"]:
        assert md5 in text
    assert "git commit" in text and "imported from" in text
    # complexity and timing: one row per codec of our runs, none for the published curves
    table = text[text.index('<section id="complexity">') : text.index('<section id="provenance">')]
    rows = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>(\d+)</td><td>([^<]*)</td>((?:<td>[^<]*</td>){4})</tr>", table)
    assert sorted(r[0] for r in rows) == ["diffsit", "vvenc", "x265"]
    cells = {r[0]: re.findall(r"<td>([^<]*)</td>", r[3]) for r in rows}
    assert all(float(c) > 0 for c in cells["x265"][:2]) and cells["x265"][2:] == ["–", "–"]  # an anchor: no kMAC/px
    # Diff-SIT's decoder reuses its encoder's ODFTE in a sweep: its decode cells say so
    assert all(float(c) > 0 for c in cells["diffsit"][::2]) and all(c.endswith(" *") for c in cells["diffsit"][1::2])
    assert "* diffsit: the decode figures leave out ODFTE&#x27;s refinement" in table
    assert "FlopCounterMode" in table
    vis = list((index.parent / "visuals").rglob("compare.png"))
    assert len(vis) == 1 and 'src="visuals/00/compare.png"' in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    assert (index.parent / "plotly.min.js").stat().st_size > 1_000_000


def test_report_without_results_reads_all_of_results_and_finds_the_visuals(report, runs, tmp_path, monkeypatch):
    shutil.copytree(runs.parent, tmp_path / "results")  # results/sample/<codec>/ and results/sample/visuals/
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 0
    index = tmp_path / "results" / "report" / "index.html"
    data = _page_data(index)
    assert {t["name"] for t in data["figures"]["rd-sample-psnr_rgb"]["data"]} == {"x265", "vvenc", "diffsit"}
    assert 'src="visuals/00/compare.png"' in index.read_text()


def test_report_bad_inputs(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "--results", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert f"{empty}: no summary.csv in it or below; nothing to report" in capsys.readouterr().err
    assert main(["report", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "results not found" in capsys.readouterr().err
    assert main(["report", "--results", str(PUBLISHED), "--anchor", "x265", "--out", str(tmp_path / "r")]) == 2
    assert "anchor x265 is not in the results; codecs there: DCVC-DC" in capsys.readouterr().err
    assert main(["report", "--results", str(PUBLISHED), "--visuals", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "no visualize.json there" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_report_into_a_folder_keeps_what_else_is_there(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["report", "--results", str(PUBLISHED), "--out", str(out)]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "index.html").is_file()


# --- in a real browser ----------------------------------------------------------------------------


def _chromium() -> str:
    exe = os.environ.get("BENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail(
            "the browser tests need Chromium: `apt-get install chromium` (Debian; .ci/run does it), or BENCH_CHROMIUM=/path/to/chrome. "
            "To run the suite without them: python3 -m tox -- -m 'not browser'"
        )
    return exe


@pytest.mark.browser
def test_report_in_headless_chromium_offline(report, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from bench.htmlreport import curve_counts

    index, summary = report
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    console, requests, blocked = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=flags)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))

            def guard(route):  # nothing may leave the file; if it tried, it is recorded and refused
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    blocked.append(route.request.url)
                    route.abort()

            page.route("**/*", guard)
            page.goto(index.as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=60_000)
            drawn = page.evaluate(
                "() => Object.fromEntries(Array.from(document.querySelectorAll('.plot.rd')).map(d => [d.id, d.querySelectorAll('.scatterlayer .trace').length]))"
            )
            assert drawn == curve_counts(summary)
            assert drawn["rd-sample-psnr_rgb"] == 3 and drawn["rd-hevc_b-lpips"] == 7
            dashed = page.evaluate(
                "() => Array.from(document.querySelectorAll('#rd-uvg-dists .scatterlayer .trace path.js-line')).map(p => p.style.strokeDasharray)"
            )
            assert len(dashed) == 7 and all(d not in ("", "none") for d in dashed)
            assert page.evaluate("() => document.querySelectorAll('#seq-plots .plot .scatterlayer .trace').length") == 9  # 3 metrics x 3 codecs
            bars = page.evaluate("() => document.querySelectorAll('#fr-plot .barlayer .trace').length")
            assert bars >= 2  # I and P frames (or B) of the first codec and rate
            page.select_option("#fr-codec", "diffsit")
            assert page.evaluate("() => document.querySelectorAll('#fr-plot .barlayer .trace').length") == 3  # I, P, MV
            loaded = page.evaluate("() => Array.from(document.querySelectorAll('#visuals img')).map(i => i.complete && i.naturalWidth > 0)")
            assert loaded and all(loaded)
            shot = tmp_path / "shot.png"
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()
    assert console == [] and blocked == []
    assert all(u.startswith("file://") for u in requests) and any(u.endswith("plotly.min.js") for u in requests)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3), axis=0)) > 200  # not blank: axes, curves, text


def test_default_anchors_are_the_plugins_that_say_so_and_published_curves_named_after_them():
    from bench.htmlreport import default_anchors

    assert default_anchors({"x265", "diffsit", "vvenc", "HM16.25", "VTM17.0", "DCVC-DC", "hmm"}) == ["vvenc", "x265", "HM16.25", "VTM17.0"]
    assert default_anchors({"diffsit"}) == []


def test_decoded_videos_keep_10_bit_samples_exactly(tmp_path):
    from bench import decoded
    from bench.video import Video

    rng = np.random.default_rng(1)
    v = Video(*(rng.integers(0, 1024, size=s, dtype=np.uint16) for s in ((3, 16, 24), (3, 8, 12), (3, 8, 12))), bit_depth=10)
    path = decoded.save(v, tmp_path / "v.mkv")
    back = decoded.load(path, 24, 16, 10, 3, decoded.samples_md5(v))
    for p in "yuv":
        np.testing.assert_array_equal(getattr(back, p), getattr(v, p))
    assert not list(tmp_path.glob("*.log"))
