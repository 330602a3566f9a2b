"""DCVC's results schema both ways, and BD-rates that agree with DCVC's own compare_bd_rate.py.

The comparison runs DCVC's script itself (a subprocess in its checkout under ../shared, with
the ``bd-metric`` package it imports) on files ``bench export`` wrote and on DCVC's published
VTM-17.0 anchor file, and ``bench bdrate`` on the same data. DCVC's script prints one decimal;
the driver below records the numbers its own functions computed, before they are printed.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.importer import ImportFormatError, import_results
from bench.published import dataset_name, sequence_name
from bench.report import AVERAGE, OVERALL, UNWEIGHTED

ROOT = Path(__file__).resolve().parents[2]
THIRDPARTY = ROOT.parent / "shared" / "thirdparty"
DCVC = THIRDPARTY / "DCVC"
VTM_FILE = DCVC / "anchors" / "vtm_17.0_yuv420_LB_allf_ip0.json"
SHIPPED = ROOT / "results" / "published" / "vtm_17.0_yuv420_LB_allf_ip0"
METRICS = {"psnr": "psnr_yuv", "msssim": "ms_ssim_yuv"}
LONG = ("BQTerrace", "BasketballDrive", "Cactus")  # 600, 500, 500 frames; Kimono1 and ParkScene have 240

needs_dcvc = pytest.mark.skipif(not VTM_FILE.is_file(), reason=f"DCVC's checkout is not at {DCVC} (../shared/thirdparty beside the repository)")


def _has_bd_metric() -> bool:
    import importlib.util

    return importlib.util.find_spec("bd_metric") is not None


needs_compare = pytest.mark.skipif(
    not (VTM_FILE.is_file() and (DCVC / "compare_bd_rate.py").is_file() and _has_bd_metric()),
    reason=f"needs DCVC's compare_bd_rate.py at {DCVC} and the bd-metric package (pip install bd-metric; the test extra has it)",
)

# Runs compare_bd_rate.main and prints, after its own output, the numbers its functions
# computed: per sequence, 'Overall' (its frame-weighted class curve) and 'Average'.
DRIVER = r"""
import json, sys
sys.dont_write_bytecode = True  # the checkout is ../shared's, read-only to us: no __pycache__ in it
sys.path.insert(0, ".")
import compare_bd_rate as c
calls = []
printer = c.print_results_different_metric
def record(datasets, sequences, seq_results, results):
    calls.append({"sequence": seq_results, "overall": results, "average": {d: c.avg_results(sequences[d], seq_results) for d in datasets}})
    return printer(datasets, sequences, seq_results, results)
c.print_results_different_metric = record
c.main(sys.argv[1:])
print("@@" + json.dumps(calls, default=float))
"""


def dcvc_bd(anchor: Path, test: Path, *extra: str) -> dict[str, pd.DataFrame]:
    """DCVC's BD-rates of ``test`` against ``anchor`` per metric: rows (dataset, sequence, bd_rate)."""
    argv = ["--base_method", "A", "--log_paths", "A", str(anchor), "T", str(test), "--compare_between", "sequence"]
    argv += ["--compare_frame_type", "all", "--distortion_metrics", *METRICS, "--plot_rd_curve", "0", *extra]
    run = subprocess.run([sys.executable, "-c", DRIVER, *argv], cwd=DCVC, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    calls = json.loads(run.stdout.rsplit("@@", 1)[1])
    seq_ds = {s: d for d, seqs in json.loads(test.read_text()).items() for s in seqs}
    out = {}
    for metric, call in zip(METRICS, calls):
        rows = [(dataset_name(seq_ds[s]), sequence_name(s), v) for s, v in call["sequence"]["T"].items()]
        rows += [(dataset_name(d), OVERALL, v) for d, v in call["overall"]["T"].items()]
        rows += [(dataset_name(d), AVERAGE, avg["T"]) for d, avg in call["average"].items() if "T" in avg]  # datasets T has
        out[METRICS[metric]] = pd.DataFrame(rows, columns=["dataset", "sequence", "bd_rate"])
    return out


def bench_bd(capsys, anchor: str, *results: Path, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    argv = ["bdrate", "--anchor", anchor, "--format", "csv", *[a for r in results for a in ("--results", str(r))]]
    assert main([*argv, "--metric", "psnr_yuv", "--metric", "ms_ssim_yuv", *extra]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"sequence": str})


def show(capsys, both: pd.DataFrame) -> None:
    """Ours beside DCVC's, printed past the capture (pytest -s shows them)."""
    with capsys.disabled():
        print("\n" + both.to_string())


def compare(ours: pd.DataFrame, theirs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Ours beside DCVC's for every number DCVC printed; asserts every one is there."""
    parts = []
    for metric, t in theirs.items():
        mine = ours[(ours.metric == metric) & (ours.frame_type == "all")][["dataset", "sequence", "bd_rate", "low_overlap"]]
        both = t.merge(mine, on=["dataset", "sequence"], how="left", suffixes=("_dcvc", "_bench"))
        assert both.bd_rate_bench.notna().all(), both[both.bd_rate_bench.isna()]
        parts.append(both.assign(metric=metric))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def vtm(tmp_path_factory) -> Path:
    """DCVC's VTM-17.0 anchor imported by the CLI, as a results folder."""
    out = tmp_path_factory.mktemp("vtm") / "vtm"
    assert main(["import", str(VTM_FILE), "--format", "dcvc", "--codec", "VTM-17.0", "--psnr-space", "yuv", "--out", str(out)]) == 0
    return out


def _results(rows: pd.DataFrame, folder: Path, codec: str) -> Path:
    """``rows`` as the results of a run of ``codec``: without the import's provenance, so the
    export must find DCVC's names (HEVC_B, BQTerrace_1920x1080_60.yuv) itself."""
    drop = [c for c in rows if c.startswith(("dcvc_", "source")) or c == "imported"]
    folder.mkdir(parents=True)
    rows.drop(columns=drop).assign(codec=codec).to_csv(folder / "summary.csv", index=False)
    return folder


def _export(results: Path, out: Path) -> Path:
    assert main(["export", "--format", "dcvc", "--psnr-space", "yuv", "--results", str(results), "--out", str(out)]) == 0
    return out


# --- the schema -----------------------------------------------------------------------------


@needs_dcvc
def test_import_of_the_vtm_anchor_keeps_every_field(vtm):
    df = pd.read_csv(vtm / "summary.csv", dtype={"rate": str})
    assert len(df) == 530 and set(df.dataset) == {"hevc_b", "hevc_c", "hevc_d", "hevc_e", "uvg", "mcl_jcv"}
    row = df[(df.dataset == "hevc_b") & (df.sequence == "BQTerrace") & (df.rate == "022")].iloc[0]
    assert (row.width, row.height, row.frames, row.i_frames, row.p_frames) == (1920, 1080, 600, 600, 0)
    # a YUV file's 6:1:1 MS-SSIM has a column of its own, never ms_ssim_rgb's
    assert "ms_ssim_rgb" not in df and "psnr_rgb" not in df and df.ms_ssim_yuv.notna().all() and df.ms_ssim_y.notna().all()
    assert row.i_frame_psnr_yuv == row.psnr_yuv and pd.isna(row.p_frame_bpp)  # VTM counts every frame as I
    assert row.dcvc_qp == 22 and row.test_time_s > 0 and row.source_sequence == "BQTerrace_1920x1080_60.yuv"
    # the harness's sequence names, and geometry consistent with frame_pixel_num everywhere
    from bench.datasets import DATASETS

    for ds, rows in df.groupby("dataset"):
        assert set(rows.sequence) == {s.name for s in DATASETS[ds].specs}
    raw = json.loads(VTM_FILE.read_text())
    pixels = {(dataset_name(d), sequence_name(s)): r["022"]["frame_pixel_num"] for d, seqs in raw.items() for s, r in seqs.items()}
    assert all(w * h == pixels[(d, s)] for d, s, w, h in df[["dataset", "sequence", "width", "height"]].itertuples(index=False))


@needs_dcvc
def test_vtm_anchor_round_trips_through_export_field_for_field(vtm, tmp_path):
    back = _export(vtm, tmp_path / "back.json")
    a, b = json.loads(VTM_FILE.read_text()), json.loads(back.read_text())
    assert list(a) == list(b) or set(a) == set(b)
    for ds in a:
        assert set(a[ds]) == set(b[ds])
        for seq in a[ds]:
            assert set(a[ds][seq]) == set(b[ds][seq])
            for rate, fields in a[ds][seq].items():
                assert b[ds][seq][rate] == fields, f"{ds}/{seq}/{rate}"


@needs_dcvc
def test_shipped_anchor_is_the_import_of_dcvcs_file(vtm):
    shipped = pd.read_csv(SHIPPED / "summary.csv", dtype={"rate": str})
    fresh = pd.read_csv(vtm / "summary.csv", dtype={"rate": str})
    pd.testing.assert_frame_equal(shipped.drop(columns="source"), fresh.drop(columns="source"))
    manifest = json.loads((SHIPPED / "manifest.json").read_text())["imported"]
    from bench.store import file_digest

    assert manifest["sha256"] == file_digest(VTM_FILE) and manifest["codecs"] == ["VTM-17.0"]


def test_shipped_anchor_reads_beside_everything_under_results(capsys):
    """bench bdrate reads all of results/ (but golden) by default: the anchor must not share a
    (dataset, sequence, codec, rate) with another folder, and --anchor VTM-17.0 must work."""
    from bench.store import read_summaries

    root = ROOT / "results"
    dirs = [p.parent for p in sorted(root.rglob("summary.csv")) if "golden" not in p.relative_to(root).parts]
    rows = read_summaries(dirs)  # refuses pooled rows
    assert (rows.codec == "VTM-17.0").sum() == 530 and "VTM17.0" in set(rows.codec)  # the paper's curve keeps its own name
    shipped = read_summaries([SHIPPED])
    assert shipped.imported.all() and shipped.source.str.contains("microsoft/DCVC@54e88645").all()


def test_import_errors_name_the_sequence_and_rate_key(tmp_path):
    entry = {
        "frame_pixel_num": 2073600,
        "i_frame_num": 1,
        "p_frame_num": 95,
        "ave_all_frame_bpp": 0.05,
        "ave_all_frame_psnr": 33.0,
        "ave_all_frame_msssim": 0.95,
    }
    data = {"HEVC_B": {"Cactus_1920x1080_50.yuv": {"000": entry, "001": {k: v for k, v in entry.items() if k != "ave_all_frame_msssim"}}}}
    f = tmp_path / "dcvc.json"
    f.write_text(json.dumps(data))
    with pytest.raises(ImportFormatError, match=r"HEVC_B/Cactus_1920x1080_50.yuv/001 has no ave_all_frame_msssim, which other entries have"):
        import_results(f, "dcvc", codec="x")
    data["HEVC_B"]["Cactus_1920x1080_50.yuv"]["001"] = {k: v for k, v in entry.items() if k != "p_frame_num"}
    f.write_text(json.dumps(data))
    with pytest.raises(ImportFormatError, match=r"HEVC_B/Cactus_1920x1080_50.yuv/001 has i_frame_num but not p_frame_num"):
        import_results(f, "dcvc", codec="x")
    data["HEVC_B"]["Cactus_1920x1080_50.yuv"]["001"] = {**entry, "frame_pixel_num": 1000}
    f.write_text(json.dumps(data))
    with pytest.raises(ImportFormatError, match=r"001: frame_pixel_num is 1000, but the sequence is 1920x1080 = 2073600 pixels"):
        import_results(f, "dcvc", codec="x")
    data["HEVC_B"]["Cactus_1920x1080_50.yuv"]["001"] = {**entry, "p_frame_num": 0, "ave_p_frame_bpp": 0.1, "ave_i_frame_bpp": 0.05}
    data["HEVC_B"]["Cactus_1920x1080_50.yuv"]["000"] = {**entry, "ave_p_frame_bpp": 0.1, "ave_i_frame_bpp": 0.05}
    f.write_text(json.dumps(data))
    with pytest.raises(ImportFormatError, match=r"001: ave_p_frame_bpp is 0.1 but p_frame_num is 0; DCVC writes 0 there"):
        import_results(f, "dcvc", codec="x")
    # a sequence name without WxH and unknown to the registry: the pixel count alone is kept;
    # DCVC's per-frame lists (--verbose_json) are left out, and the import says so
    f.write_text(json.dumps({"Mine": {"clip.yuv": {"000": {**entry, "frame_bpp": [0.1, 0.2], "qp": 22}}}}))
    df = import_results(f, "dcvc", codec="x")
    row = df.iloc[0]
    assert row.sequence == "clip" and pd.isna(row.width) and row.pixels == 2073600 and row.dcvc_qp == 22
    assert df.attrs["notes"] == ["left out frame_bpp: lists (DCVC's per-frame values) and nested fields; bench import keeps one row per rate point"]


@needs_dcvc
def test_a_yuv_file_imported_as_rgb_is_refused():
    with pytest.raises(ImportFormatError, match="from a YUV test .* import it with --psnr-space yuv"):
        import_results(VTM_FILE, "dcvc", codec="VTM-17.0", psnr_space="rgb")


def _run_rows() -> pd.DataFrame:
    """Rows as a harness run has them: both PSNR spaces, RGB MS-SSIM, a perceptual metric, timings."""
    return pd.DataFrame(
        [
            {
                "dataset": "uvg",
                "sequence": "Beauty",
                "codec": c,
                "rate": str(q),
                "frames": 96,
                "width": 1920,
                "height": 1080,
                "bpp": 0.1 / (q - 20),
                "psnr_y": 40.0 - q / 4,
                "psnr_u": 42.0,
                "psnr_v": 43.0,
                "psnr_yuv": (6 * (40.0 - q / 4) + 85.0) / 8,
                "psnr_rgb": 38.0 - q / 4,
                "ms_ssim_rgb": 0.99 - q / 1000,
                "lpips": 0.1 + q / 100,
                "encode_s": 9.6,
                "decode_s": 4.8,
                "metrics_s": 1.0,
            }
            for c in ("x265", "vvenc")
            for q in (22, 27, 32, 37)
        ]
    )


def test_export_says_which_metrics_the_schema_cannot_hold(tmp_path, capsys):
    _run_rows().to_csv(tmp_path / "summary.csv", index=False)
    out = tmp_path / "x265.json"
    assert main(["export", "--format", "dcvc", "--psnr-space", "yuv", "--results", str(tmp_path), "--out", str(out)]) == 2
    assert "a DCVC file holds one codec; the results have vvenc, x265: pass --codec NAME" in capsys.readouterr().err
    assert main(["export", "--format", "dcvc", "--psnr-space", "yuv", "--results", str(tmp_path), "--codec", "x265", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "left out lpips, ms_ssim_rgb, psnr_rgb: a DCVC YUV file has no field for them" in err
    assert "frame types unknown for some rows" in err
    e = json.loads(out.read_text())["UVG"]["Beauty_1920x1080_120fps_420_8bit_YUV.yuv"]["022"]
    assert e["ave_all_frame_psnr"] == pytest.approx((6 * 34.5 + 85) / 8) and e["ave_all_frame_psnr_y"] == 34.5
    assert e["ave_all_frame_msssim"] == 0  # not measured in YUV: DCVC's 0, never the RGB value
    assert (e["frame_pixel_num"], e["i_frame_num"], e["p_frame_num"]) == (2073600, 96, 0)
    assert e["test_time"] == pytest.approx(15.4) and e["avg_frame_encoding_time"] == pytest.approx(0.1)
    rgb = tmp_path / "rgb.json"
    assert main(["export", "--format", "dcvc", "--psnr-space", "rgb", "--results", str(tmp_path), "--codec", "x265", "--out", str(rgb)]) == 0
    assert "left out lpips: a DCVC RGB file" in capsys.readouterr().err
    e = json.loads(rgb.read_text())["UVG"]["Beauty_1920x1080_120fps_420_8bit_YUV.yuv"]["022"]
    assert e["ave_all_frame_psnr"] == 32.5 and e["ave_all_frame_msssim"] == pytest.approx(0.968)
    assert main(["export", "--format", "dcvc", "--psnr-space", "rgb", "--results", str(tmp_path), "--codec", "x265", "--out", str(rgb)]) == 2
    assert "pass --force" in capsys.readouterr().err
    _run_rows().drop(columns="psnr_rgb").to_csv(tmp_path / "summary.csv", index=False)
    assert main(["export", "--format", "dcvc", "--psnr-space", "rgb", "--results", str(tmp_path), "--codec", "x265", "--out", str(rgb), "--force"]) == 2
    assert "some rows have no psnr_rgb" in capsys.readouterr().err


def test_export_writes_the_split_of_a_run_with_frame_types(tmp_path):
    from bench.dcvc import export
    from bench.store import frame_type_split

    rows = _run_rows()[lambda d: d.codec == "x265"]
    frames = []
    for r in rows.itertuples():
        for f in range(4):
            frames.append(
                {
                    **{k: getattr(r, k) for k in ("dataset", "sequence", "codec", "rate")},
                    "frame": f,
                    "frame_type": "I" if f == 0 else "B",
                    "bpp": r.bpp * (2.5 if f == 0 else 0.5),
                    "psnr_yuv": r.psnr_yuv,
                }
            )
    split = frame_type_split(pd.DataFrame(frames))
    obj, _ = export(rows.merge(split, on=["dataset", "sequence", "codec", "rate"]), "yuv")
    e = obj["UVG"]["Beauty_1920x1080_120fps_420_8bit_YUV.yuv"]["027"]
    assert (e["i_frame_num"], e["p_frame_num"]) == (1, 3)  # B frames are DCVC's P: every frame that is not I
    assert e["ave_i_frame_bpp"] == pytest.approx(0.1 / 7 * 2.5) and e["ave_p_frame_bpp"] == pytest.approx(0.1 / 7 * 0.5)


# --- BD-rates against DCVC's compare_bd_rate.py -------------------------------------------------


@pytest.fixture(scope="module")
def long_cheaper(vtm, tmp_path_factory) -> tuple[Path, Path]:
    """(results folder, its export): DCVC's VTM HEVC_B curves with the long sequences 20 % cheaper."""
    rows = pd.read_csv(vtm / "summary.csv", dtype={"rate": str})
    rows = rows[rows.dataset == "hevc_b"].copy()
    long = rows.sequence.isin(LONG)
    rows.loc[long, ["bpp", "i_frame_bpp"]] *= 0.8
    folder = _results(rows, tmp_path_factory.mktemp("long") / "cheaper", "long-cheaper")
    return folder, _export(folder, folder.parent / "long_cheaper.json")


@needs_compare
def test_class_bd_matches_dcvc_where_sequences_of_different_lengths_move_differently(vtm, long_cheaper, capsys):
    folder, exported = long_cheaper
    ours = bench_bd(capsys, "VTM-17.0", vtm, folder)
    both = compare(ours, dcvc_bd(VTM_FILE, exported))
    show(capsys, both)
    assert len(both) == 2 * (5 + 2)  # per metric: 5 sequences, Overall, Average
    assert (both.bd_rate_bench - both.bd_rate_dcvc).abs().max() < 0.01
    psnr = both[both.metric == "psnr_yuv"].set_index("sequence").bd_rate_bench
    assert psnr["BQTerrace"] == pytest.approx(-20.0, abs=1e-6) and psnr["Kimono1"] == pytest.approx(0.0, abs=1e-6)
    assert psnr[AVERAGE] == pytest.approx(-12.0, abs=1e-6)
    # the frame-weighted class curve: what DCVC reports, and not the unweighted one
    unweighted = ours[(ours.metric == "psnr_yuv") & (ours.sequence == UNWEIGHTED)].bd_rate.iloc[0]
    assert psnr[OVERALL] == pytest.approx(-15.3, abs=0.05) and abs(unweighted - psnr[OVERALL]) > 0.5


@needs_compare
def test_rate_exclude_matches_dcvcs(vtm, long_cheaper, capsys):
    folder, exported = long_cheaper
    ours = bench_bd(capsys, "VTM-17.0", vtm, folder, extra=("--rate-exclude", "046,049"))
    both = compare(ours, dcvc_bd(VTM_FILE, exported, "--rate_exclude", "046", "049"))
    show(capsys, both)
    assert (both.bd_rate_bench - both.bd_rate_dcvc).abs().max() < 0.01
    assert (ours[ours.sequence == "Cactus"].points_anchor == 8).all()


@needs_compare
def test_real_qp_ladders_get_marked_numbers_as_dcvcs_not_refusals(vtm, tmp_path, capsys):
    rows = pd.read_csv(vtm / "summary.csv", dtype={"rate": str})
    low = _results(rows[rows.rate.astype(int).between(22, 37)], tmp_path / "low", "VTM-QP22-37")
    high = _results(rows[rows.rate.astype(int).between(28, 43)], tmp_path / "high", "VTM-QP28-43")
    ours = bench_bd(capsys, "VTM-QP22-37", low, high)
    both = compare(ours, dcvc_bd(_export(low, tmp_path / "low.json"), _export(high, tmp_path / "high.json")))
    show(capsys, both)
    assert len(both) == 2 * (53 + 6 + 6)
    assert (both.bd_rate_bench - both.bd_rate_dcvc).abs().max() < 0.01
    psnr = ours[ours.metric == "psnr_yuv"]
    assert psnr.bd_rate.notna().all() and psnr.low_overlap.any()
    text = format_md(capsys, low, high, ())
    assert "†" in text and "n/a" not in text
    strict = bench_bd(capsys, "VTM-QP22-37", low, high, extra=("--min-overlap", "0.5"))
    refused = strict[(strict.metric == "psnr_yuv") & strict.bd_rate.isna()]
    assert len(refused) == len(psnr) and refused.note.str.contains("--min-overlap asks for|not every sequence has one").all()


def format_md(capsys, low: Path, high: Path, extra: tuple[str, ...]) -> str:
    assert main(["bdrate", "--anchor", "VTM-QP22-37", "--results", str(low), "--results", str(high), "--metric", "psnr_yuv", *extra]) == 0
    return capsys.readouterr().out
