"""``bench import``: published results files in each format -> summary rows; BD and plots on them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.importer import ImportFormatError, import_results
from bench.report import OVERALL, UNWEIGHTED, bd_table, format_bd, write_plots
from bench.store import read_summaries

ROOT = Path(__file__).resolve().parents[2]
FIG5 = ROOT / "results" / "published" / "diffsit_fig5.csv"
FIG5_SUMMARY = ROOT / "results" / "published" / "diffsit_fig5" / "summary.csv"


def test_long_table_the_papers_figure5():
    df = import_results(FIG5, "long")
    raw = pd.read_csv(FIG5)
    assert len(raw) == 303 and df["imported"].all() and df["source"].str.contains("sha256").all()
    assert set(df.codec) == {"HM16.25", "VTM17.0", "DVC-P", "DCVC-DC", "DCVC-FM", "HNeRV", "Diff-SIT"}
    assert set(df.dataset) == {"hevc_b", "mcl_jcv", "uvg"} and (df.sequence == "*").all()
    # every published point is in exactly one row, under its metric
    assert int(df[["lpips", "dists", "clipiqa", "ewarp"]].notna().sum().sum()) == 303
    hm = df[(df.dataset == "hevc_b") & (df.codec == "HM16.25")].sort_values("bpp")
    assert list(hm.bpp) == [0.0212, 0.0361, 0.0447] and list(hm.lpips) == [0.2766, 0.2461, 0.2361] and list(hm.rate) == ["0", "1", "2"]


def test_shipped_published_rows_are_the_import_of_the_shipped_csv():
    shipped = pd.read_csv(FIG5_SUMMARY)
    fresh = import_results(FIG5, "long", source=shipped["source"].iloc[0])
    pd.testing.assert_frame_equal(shipped.reset_index(drop=True), pd.read_csv(__import__("io").StringIO(fresh.to_csv(index=False, float_format="%.10g"))))


def test_dcvc_json(tmp_path):
    res = {
        "ave_all_frame_bpp": 0.05,
        "ave_all_frame_psnr": 33.0,
        "ave_all_frame_msssim": 0.95,
        "i_frame_num": 1,
        "p_frame_num": 95,
        "frame_pixel_num": 2073600,
        "ave_all_frame_psnr_y": 34.0,
        "ave_all_frame_psnr_u": 40.0,
        "ave_all_frame_psnr_v": 42.0,
    }
    data = {
        "HEVC_B": {"BasketballDrive_1920x1080_50.yuv": {"000": res, "001": {**res, "ave_all_frame_bpp": 0.03}}},
        "MCL-JCV": {"videoSRC01_1920x1080_30": {"000": res}},
    }
    f = tmp_path / "dcvc.json"
    f.write_text(json.dumps(data))
    df = import_results(f, "dcvc", codec="DCVC-DC")
    assert set(df.dataset) == {"hevc_b", "mcl_jcv"} and set(df.sequence) == {"BasketballDrive", "videoSRC01"}
    row = df[(df.sequence == "BasketballDrive") & (df.rate == "001")].iloc[0]
    assert row.bpp == 0.03 and row.psnr_rgb == 33.0 and row.ms_ssim_rgb == 0.95 and row.frames == 96
    assert row.psnr_yuv == pytest.approx((6 * 34 + 40 + 42) / 8)
    # as YUV, this file's PSNR is not (6Y + U + V)/8 of its planes: it is an RGB test's
    with pytest.raises(ImportFormatError, match="not a YUV value; if the file is from an RGB test, import it with --psnr-space rgb"):
        import_results(f, "dcvc", codec="DCVC-DC", psnr_space="yuv")
    f.write_text(json.dumps({"HEVC_B": {"Cactus_1920x1080_50.yuv": {"000": {**res, "ave_all_frame_psnr": 35.75}}}}))
    yuv = import_results(f, "dcvc", codec="DCVC-DC", psnr_space="yuv")
    assert "psnr_rgb" not in yuv and "ms_ssim_rgb" not in yuv
    # the YUV file's MS-SSIM is its 6:1:1 YUV value: a column of its own
    assert yuv.psnr_yuv.iloc[0] == 35.75 and yuv.ms_ssim_yuv.iloc[0] == 0.95
    f.write_text(json.dumps(data))
    with pytest.raises(ImportFormatError, match="pass --codec"):
        import_results(f, "dcvc")
    only = import_results(f, "dcvc", codec="DCVC-DC", dataset="MCL-JCV")
    assert set(only.dataset) == {"mcl_jcv"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"HEVC_B": {"Cactus": {"000": {"psnr": 30}}}}))
    with pytest.raises(ImportFormatError, match="no ave_all_frame_bpp"):
        import_results(bad, "dcvc", codec="x")
    bad.write_text(json.dumps({"HEVC_B": [1, 2]}))
    with pytest.raises(ImportFormatError, match="expected an object at dataset 'HEVC_B'"):
        import_results(bad, "dcvc", codec="x")
    bad.write_text("{not json")
    with pytest.raises(ImportFormatError, match="not valid JSON"):
        import_results(bad, "dcvc", codec="x")


def test_compressai_json(tmp_path):
    f = tmp_path / "compressai-ssf2020.json"
    f.write_text(
        json.dumps(
            {"name": "ssf2020", "description": "...", "results": {"bpp": [0.2, 0.1, 0.05], "psnr-rgb": [36.0, 34.0, 32.0], "ms-ssim-rgb": [0.98, 0.97, 0.95]}}
        )
    )
    df = import_results(f, "compressai", dataset="UVG")
    assert list(df.bpp) == [0.05, 0.1, 0.2] and list(df.psnr_rgb) == [32.0, 34.0, 36.0] and set(df.dataset) == {"uvg"}
    assert (df.codec == "ssf2020").all() and (df.sequence == "*").all()
    with pytest.raises(ImportFormatError, match="pass --dataset"):
        import_results(f, "compressai")
    f.write_text(json.dumps({"name": "x", "results": {"bpp": [0.1, 0.2], "psnr": [30.0]}}))
    with pytest.raises(ImportFormatError, match="psnr_rgb have a different number of points"):
        import_results(f, "compressai", dataset="uvg")
    f.write_text(json.dumps({"results": {}}))
    with pytest.raises(ImportFormatError, match="has 'name' and 'results'"):
        import_results(f, "compressai", dataset="uvg")


def test_long_table_errors(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("dataset,metric,codec,bpp\nuvg,lpips,a,0.1\n")
    with pytest.raises(ImportFormatError, match="needs the columns bpp, codec, dataset, metric, value"):
        import_results(f, "long")
    f.write_text("dataset,metric,codec,bpp,value\nuvg,sharpness,a,0.1,3\n")
    with pytest.raises(ImportFormatError, match="unknown metric 'sharpness'"):
        import_results(f, "long")
    f.write_text("dataset,metric,codec,bpp,value\nuvg,lpips,a,0.1,x\n")
    with pytest.raises(ImportFormatError, match="value has non-numbers, first at data row 1"):
        import_results(f, "long")
    f.write_text("dataset,metric,codec,bpp,value\nuvg,lpips,a,0.1,0.3\nuvg,LPIPS,a,0.1,0.2\n")
    with pytest.raises(ImportFormatError, match="two lpips values for a on uvg at bpp 0.1"):
        import_results(f, "long")
    with pytest.raises(ImportFormatError, match="unknown import format"):
        import_results(f, "xml")
    with pytest.raises(FileNotFoundError):
        import_results(tmp_path / "none.csv", "long")


def test_cli_import_writes_and_protects(tmp_path, capsys):
    out = tmp_path / "pub"
    assert main(["import", str(FIG5), "--format", "long", "--out", str(out)]) == 0
    assert (out / "summary.csv").is_file() and json.loads((out / "manifest.json").read_text())["imported"]["format"] == "long"
    assert main(["import", str(FIG5), "--format", "long", "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["import", str(FIG5), "--format", "long", "--out", str(out), "--force"]) == 0
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "summary.csv").write_text("dataset,sequence,codec,rate,bpp\nuvg,Beauty,x265,27,0.1\n")
    assert main(["import", str(FIG5), "--format", "long", "--out", str(runs), "--force"]) == 2
    assert "holds results of runs" in capsys.readouterr().err
    assert (runs / "summary.csv").read_text().startswith("dataset,sequence,codec,rate,bpp\nuvg,Beauty")  # untouched
    assert main(["import", str(tmp_path / "missing.json"), "--format", "dcvc", "--codec", "a"]) == 2
    assert "no such file" in capsys.readouterr().err


def _cell(table, dataset, codec, metric, label=OVERALL):
    return table[(table.dataset == dataset) & (table.codec == codec) & (table.metric == metric) & (table.sequence == label)].iloc[0]


def test_bd_on_real_published_data_gives_a_number_or_a_reason():
    t = bd_table(read_summaries([FIG5_SUMMARY]), "HM16.25")
    # 5 points (Diff-SIT) against 3 (HM16.25): a number
    c = _cell(t, "mcl_jcv", "Diff-SIT", "dists")
    assert (c.points_anchor, c.points_test) == (3, 5) and c.bd_rate == pytest.approx(-34.14, abs=0.01)
    # LPIPS ranges of Diff-SIT and HM16.25 do not overlap: BD-rate has a reason, BD-LPIPS (equal rate) a number
    c = _cell(t, "hevc_b", "Diff-SIT", "lpips")
    assert pd.isna(c.bd_rate) and "do not overlap (anchor 0.2361..0.2766, test 0.1561..0.2259)" in c.note and c.bd_metric < 0
    # Ewarp does not fall monotonically with rate: BD-rate has a reason, BD-Ewarp a number
    c = _cell(t, "uvg", "Diff-SIT", "ewarp")
    assert pd.isna(c.bd_rate) and "not monotonic" in c.note and c.bd_metric == pytest.approx(-1.024, abs=0.001)
    # never a bare NaN: every missing BD-rate carries its reason, and so does the printed table
    assert (t[t.bd_rate.isna()].note.str.len() > 0).all()
    text = format_bd(t, "md")
    assert "| n/a |" not in text and "nan" not in text.lower()


def test_bd_of_a_users_run_against_the_published_curve():
    pub = read_summaries([FIG5_SUMMARY])
    hm = pub[(pub.codec == "HM16.25") & (pub.dataset == "uvg")]
    mine = []
    for seq, off in (("Beauty", -0.01), ("Jockey", 0.01)):
        for k, r in enumerate(hm.itertuples()):
            mine.append({"dataset": "uvg", "sequence": seq, "codec": "mine", "rate": str(k), "frames": 96, "bpp": r.bpp * 0.8, "lpips": r.lpips + off})
    t = bd_table(pd.concat([pub, pd.DataFrame(mine)], ignore_index=True), "HM16.25", ["lpips"])
    c = _cell(t, "uvg", "mine", "lpips")
    assert c.bd_rate == pytest.approx(-20.0, abs=0.5) and "frame-weighted mean over 2 sequence(s)" in c.curves and "published" in c.curves
    # equal frame counts: the unweighted class curve is the same curve
    u = _cell(t, "uvg", "mine", "lpips", UNWEIGHTED)
    assert u.bd_rate == pytest.approx(c.bd_rate) and "mine: mean over 2 sequence(s)" in u.curves


def test_plot_overlays_published_curves(tmp_path):
    pub = read_summaries([FIG5_SUMMARY])
    mine = pd.DataFrame(
        [
            {"dataset": "uvg", "sequence": "Beauty", "codec": "diffsit", "rate": str(k), "bpp": b, "lpips": v}
            for k, (b, v) in enumerate([(0.01, 0.3), (0.02, 0.25), (0.04, 0.2)])
        ]
    )
    write_plots(pd.concat([pub, mine], ignore_index=True), tmp_path, metrics=["lpips"], formats=("png",))
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert curves[curves.codec == "Diff-SIT"].imported.all() and not curves[curves.codec == "diffsit"].imported.any()
    assert (tmp_path / "uvg" / "lpips.png").is_file() and (tmp_path / "grid.png").is_file()


def test_bdrate_leaves_out_datasets_the_anchor_has_not_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    pd.DataFrame(
        [
            {"dataset": "sample", "sequence": "bikes", "codec": c, "rate": str(k), "bpp": b * (1 if c == "x265" else 0.8), "psnr_yuv": 30 + 3 * k}
            for c in ("x265", "vvenc")
            for k, b in enumerate([0.01, 0.02, 0.04, 0.08])
        ]
    ).to_csv(mine / "summary.csv", index=False)
    assert main(["bdrate", "--anchor", "x265", "--results", str(mine), "--results", str(FIG5_SUMMARY.parent)]) == 0
    out, err = capsys.readouterr()
    assert "x265 has no results on hevc_b, mcl_jcv, uvg: left out" in err
    assert "| sample | Overall | vvenc |" in out and "hevc_b" not in out


def _compressai_frame_metrics(seed: int) -> dict[str, float]:
    """CompressAI's own per-frame metrics (its video eval_model) of a random 4:2:0 frame
    against a random RGB reconstruction."""
    import numpy as np
    import torch
    from compressai.utils.video.eval_model.__main__ import compute_metrics_for_frame

    rng = np.random.default_rng(seed)
    # 192 pixels: CompressAI computes MS-SSIM too, which needs more than 160
    org = (rng.integers(0, 256, (192, 192)), rng.integers(0, 256, (96, 96)), rng.integers(0, 256, (96, 96)))
    rec = torch.from_numpy(rng.random((1, 3, 192, 192), dtype=np.float32))
    return {k: float(v) for k, v in compute_metrics_for_frame(org, rec, "cpu", 255).items()}


def test_compressai_yuv_psnr_keeps_its_own_column_and_6_1_1_is_computed_from_the_planes(tmp_path):
    points = [_compressai_frame_metrics(s) for s in range(3)]
    keys = ("psnr-y", "psnr-u", "psnr-v", "psnr-yuv", "psnr-rgb")
    results = {"bpp": [0.3, 0.2, 0.1], **{k: [p[k] for p in points] for k in keys}}
    f = tmp_path / "compressai-video.json"
    f.write_text(json.dumps({"name": "ssf2020-mse", "results": results}))
    df = import_results(f, "compressai", dataset="uvg").sort_values("bpp", ascending=False)
    # CompressAI's psnr-yuv, (4Y + U + V)/6, is kept as published in a column of its own
    assert list(df.psnr_yuv_411) == results["psnr-yuv"]
    # psnr_yuv is the harness's (6Y + U + V)/8 of the same per-plane values
    y, u, v = (pd.Series(results[k]) for k in ("psnr-y", "psnr-u", "psnr-v"))
    assert list(df.psnr_yuv) == pytest.approx(list((6 * y + u + v) / 8), abs=1e-12)
    assert (df.psnr_yuv.to_numpy() != df.psnr_yuv_411.to_numpy()).all()
    # without per-plane values there is nothing to convert exactly: no psnr_yuv at all
    f.write_text(json.dumps({"name": "ssf2020-mse", "results": {"bpp": results["bpp"], "psnr-yuv": results["psnr-yuv"]}}))
    only = import_results(f, "compressai", dataset="uvg")
    assert "psnr_yuv" not in only and only.psnr_yuv_411.notna().all()


def test_dcvc_msssim_of_zero_is_not_measured(tmp_path):
    res = {"ave_all_frame_bpp": 0.05, "ave_all_frame_psnr": 33.0, "ave_all_frame_msssim": 0.0}  # test_video.py without --calc_ssim
    f = tmp_path / "dcvc.json"
    f.write_text(json.dumps({"UVG": {"Beauty_1920x1080_120fps_420_8bit_YUV": {"0": res}}}))
    df = import_results(f, "dcvc", codec="DCVC-FM")
    # empty, not 0 (the column stays, so that an export writes DCVC's 0 back)
    assert df.ms_ssim_rgb.isna().all() and df.psnr_rgb.iloc[0] == 33.0
