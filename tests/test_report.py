from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report import BDOptions, bd_table, codec_style, dataset_curves, format_bd, plot_grid, plot_metric, write_plots


def _summary():
    rows = []
    for dataset, seqs in (("setA", ("s1", "s2")), ("setB", ("s3",))):
        for codec, scale, n in (("x265", 1.0, 5), ("vvenc", 0.6, 5), ("mine", 0.8, 2)):
            for seq_i, seq in enumerate(seqs):
                for k in range(n):
                    bpp = 0.01 * 2**k * scale * (1 + 0.1 * seq_i)
                    psnr = 30 + 3 * math.log2(0.01 * 2**k / 0.01) + seq_i
                    rows.append(
                        {
                            "dataset": dataset,
                            "sequence": seq,
                            "codec": codec,
                            "rate": str(22 + 5 * k),
                            "frames": 3,
                            "bpp": bpp,
                            "psnr_yuv": psnr,
                            "lpips": 1 / psnr,
                            "ms_ssim_rgb": 1 - 0.5 / psnr,
                        }
                    )
    return pd.DataFrame(rows)


def test_dataset_curve_is_mean_over_sequences():
    s = _summary()
    c = dataset_curves(s, ["psnr_yuv"])
    row = c[(c.dataset == "setA") & (c.codec == "x265") & (c.rate == "27")].iloc[0]
    sel = s[(s.dataset == "setA") & (s.codec == "x265") & (s.rate == "27")]
    assert row.bpp == pytest.approx(sel.bpp.mean()) and row.psnr_yuv == pytest.approx(sel.psnr_yuv.mean()) and row.sequences == 2


def test_incomplete_sequences_are_left_out_of_the_curve():
    s = _summary()
    s = s.drop(s[(s.codec == "x265") & (s.sequence == "s2") & (s.rate == "32")].index)
    c = dataset_curves(s, ["psnr_yuv"])
    assert set(c[(c.dataset == "setA") & (c.codec == "x265")].sequences) == {1}


def test_bd_table_dataset_level_per_sequence_and_reasons():
    t = bd_table(_summary(), "x265", ["psnr_yuv", "lpips"])
    allrow = t[(t.dataset == "setA") & (t.sequence == "all") & (t.codec == "vvenc") & (t.metric == "psnr_yuv")].iloc[0]
    assert allrow.bd_rate < -30 and allrow.method == "pchip" and allrow.anchor == "x265"
    per = t[(t.dataset == "setA") & (t.sequence == "s1") & (t.codec == "vvenc") & (t.metric == "psnr_yuv")].iloc[0]
    assert per.bd_rate == pytest.approx(-40.0, abs=1e-6)
    lp = t[(t.dataset == "setA") & (t.sequence == "s1") & (t.codec == "vvenc") & (t.metric == "lpips")].iloc[0]
    assert lp.bd_rate == pytest.approx(-40.0, abs=1e-6)  # lower-is-better handled
    few = t[(t.codec == "mine") & (t.sequence == "all")]
    assert few.bd_rate.isna().all() and few.note.str.contains("test has 2 point").all()
    # every NaN carries its reason
    assert (t[t.bd_rate.isna()].note.str.len() > 0).all()
    for fmt in ("md", "latex"):
        text = format_bd(t, fmt)
        assert "n/a (BD-rate: test has 2 point(s)" in text and "pchip" in text
        assert ("-40.00%" if fmt == "md" else r"-40.00\%") in text
    csv = format_bd(t, "csv")
    assert (
        csv.splitlines()[0]
        == "dataset,sequence,codec,anchor,metric,method,bd_rate,ci_low,ci_high,bd_metric,dominance,points_anchor,points_test,sequences,note,curves"
    )


def test_ladders_that_do_not_meet_get_a_dominance_bound_not_a_bd_number():
    # a codec whose whole ladder moved left and up (an improved model against its old one):
    # no rate is common, so no BD exists, but every old point is beaten at less rate
    s = _summary()
    new = s[s.codec == "x265"].assign(codec="new", bpp=lambda d: d.bpp / 100, psnr_yuv=lambda d: d.psnr_yuv + 20, lpips=lambda d: d.lpips / 2)
    s = pd.concat([s[s.codec == "x265"], new], ignore_index=True)
    t = bd_table(s, "x265", ["psnr_yuv", "lpips"])
    row = t[(t.dataset == "setA") & (t.sequence == "s1") & (t.metric == "psnr_yuv")].iloc[0]
    # the old top point (42 dB) against the best new point at or below its rate (the new top, 62 dB)
    # is the least gain; BD-PSNR itself is not given
    assert math.isnan(row.bd_metric) and math.isnan(row.bd_rate) and row.dominance == pytest.approx(20.0)
    assert "test dominates" in row.note and "do not overlap" in row.note
    lp = t[(t.dataset == "setA") & (t.sequence == "s1") & (t.metric == "lpips")].iloc[0]
    assert lp.dominance < 0  # signed as BD-metric: lower LPIPS is the improvement
    md = format_bd(t, "md")
    assert "test dominates: BD-psnr_yuv ≥ +" in md and "test dominates: BD-lpips ≤ -" in md
    from bench.htmlreport import _bd_cell_html

    assert "n/a; bound +20 (test dominates)</summary>" in _bd_cell_html(row)
    # the other way round the anchor holds the bound, with the sign of a loss
    back = bd_table(s, "new", ["psnr_yuv"])
    row = back[(back.dataset == "setA") & (back.sequence == "s1")].iloc[0]
    assert row.dominance == pytest.approx(-20.0) and "anchor dominates: BD-psnr_yuv ≤ -20" in format_bd(back, "md")


def test_bd_table_unknown_anchor():
    with pytest.raises(ValueError, match="codecs there: mine, vvenc, x265"):
        bd_table(_summary(), "hm")


def test_convex_hull_option_is_recorded():
    s = _summary()
    s.loc[(s.codec == "vvenc") & (s.rate == "37"), "psnr_yuv"] -= 5  # a dip
    plain = bd_table(s, "x265", ["psnr_yuv"])
    hull = bd_table(s, "x265", ["psnr_yuv"], BDOptions(convex_hull=True))
    sel = lambda t: t[(t.dataset == "setA") & (t.sequence == "s1") & (t.codec == "vvenc")].iloc[0]
    assert math.isnan(sel(plain).bd_rate) and "not monotonic" in sel(plain).note
    assert sel(hull).bd_rate < 0 and "convex hull dropped" in sel(hull).note


def test_points_drawn_equal_the_table():
    s = _summary()
    curves = dataset_curves(s, ["psnr_yuv", "ms_ssim_rgb"])
    fig = plot_metric(curves[curves.dataset == "setA"], "psnr_yuv", "setA")
    ax = fig.axes[0]
    drawn = {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in ax.lines}
    assert set(drawn) == {"x265", "vvenc", "mine"}
    for codec, (x, y) in drawn.items():
        ref = curves[(curves.dataset == "setA") & (curves.codec == codec)].sort_values("bpp")
        np.testing.assert_allclose(x, ref.bpp)
        np.testing.assert_allclose(y, ref.psnr_yuv)
        assert (
            ax.lines[[ln.get_label() for ln in ax.lines].index(codec)].get_color(),
            ax.lines[[ln.get_label() for ln in ax.lines].index(codec)].get_marker(),
        ) == codec_style(codec)
    assert "↑" in ax.get_ylabel()
    db = plot_metric(curves[curves.dataset == "setA"], "ms_ssim_rgb", "setA", ms_ssim_db=True).axes[0]
    x265 = [ln for ln in db.lines if ln.get_label() == "x265"][0]
    ref = curves[(curves.dataset == "setA") & (curves.codec == "x265")].sort_values("bpp").ms_ssim_rgb
    np.testing.assert_allclose(x265.get_ydata(), -10 * np.log10(1 - ref))


def test_grid_has_datasets_as_rows_and_metrics_as_columns():
    s = _summary()
    curves = dataset_curves(s, ["psnr_yuv", "lpips"])
    fig = plot_grid(curves, ["setA", "setB"], ["lpips", "psnr_yuv"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["setA: LPIPS ↓", "setA: PSNR-YUV (dB) ↑", "setB: LPIPS ↓", "setB: PSNR-YUV (dB) ↑"]


def test_write_plots_files_and_curves_csv(tmp_path):
    files = write_plots(_summary(), tmp_path, per_sequence=True)
    names = {str(p.relative_to(tmp_path)) for p in files}
    assert {
        "setA/psnr_yuv.png",
        "setA/psnr_yuv.pdf",
        "setA/lpips.png",
        "setB/ms_ssim_rgb.pdf",
        "grid.png",
        "grid.pdf",
        "setA/s1/psnr_yuv.png",
        "curves.csv",
    } <= names
    assert all(p.stat().st_size > 1000 for p in files if p.suffix in (".png", ".pdf"))
    back = pd.read_csv(tmp_path / "curves.csv", dtype={"rate": str})
    pd.testing.assert_frame_equal(back, dataset_curves(_summary(), ["psnr_yuv", "ms_ssim_rgb", "lpips"]).reset_index(drop=True), check_dtype=False)


def test_styles_are_stable():
    assert codec_style("x265") == codec_style("x265")
    assert codec_style("some-new-codec") == codec_style("some-new-codec")
    # a plugin's own style; a name that is no plugin (a published curve) gets the hash's
    assert codec_style("diffsit") == ("#d62728", "^")
    assert codec_style("Diff-SIT") == codec_style("Diff-SIT")
