from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report import OVERALL, BDOptions, bd_table, codec_style, dataset_curves, format_bd, plot_grid, plot_metric, write_plots


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
    allrow = t[(t.dataset == "setA") & (t.sequence == OVERALL) & (t.codec == "vvenc") & (t.metric == "psnr_yuv")].iloc[0]
    assert allrow.bd_rate < -30 and allrow.method == "pchip" and allrow.anchor == "x265"
    per = t[(t.dataset == "setA") & (t.sequence == "s1") & (t.codec == "vvenc") & (t.metric == "psnr_yuv")].iloc[0]
    assert per.bd_rate == pytest.approx(-40.0, abs=1e-6)
    lp = t[(t.dataset == "setA") & (t.sequence == "s1") & (t.codec == "vvenc") & (t.metric == "lpips")].iloc[0]
    assert lp.bd_rate == pytest.approx(-40.0, abs=1e-6)  # lower-is-better handled
    few = t[(t.codec == "mine") & (t.sequence == OVERALL)]
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
        == "dataset,sequence,codec,anchor,metric,frame_type,method,bd_rate,ci_low,ci_high,bd_metric,dominance,overlap,overlap_rate,low_overlap,points_anchor,points_test,sequences,note,curves"
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


# --- class-level aggregates, overlap marks, frame types, excluded rates ------------------------


def _ladder_summary(frames: dict[str, int], cheaper: dict[str, float], *, shift: float = 0.0) -> pd.DataFrame:
    """Per sequence a concave PSNR ladder; the test codec needs ``cheaper[seq]`` times the
    anchor's bits at every quality (its per-sequence BD-rate is exactly that, minus 1)."""
    rows = []
    for i, (seq, n) in enumerate(frames.items()):
        for k in range(5):
            bpp = 0.01 * 2**k * (1 + 0.3 * i)
            psnr = 30 + 3 * k - 0.1 * k * k + i
            rows.append({"dataset": "d", "sequence": seq, "codec": "anchor", "rate": str(22 + 3 * k), "frames": n, "bpp": bpp, "psnr_yuv": psnr})
            rows.append(
                {"dataset": "d", "sequence": seq, "codec": "test", "rate": str(22 + 3 * k), "frames": n, "bpp": bpp * cheaper[seq], "psnr_yuv": psnr + shift}
            )
    return pd.DataFrame(rows)


def _row(t, seq, metric="psnr_yuv", codec="test"):
    return t[(t.sequence == seq) & (t.metric == metric) & (t.codec == codec)].iloc[0]


def test_overall_weighs_frames_average_is_the_mean_and_both_are_labelled():
    from bench import bdrate as bd
    from bench.report import AVERAGE, UNWEIGHTED

    frames = {"long1": 600, "long2": 500, "short1": 240, "short2": 240}
    s = _ladder_summary(frames, {"long1": 0.8, "long2": 0.8, "short1": 1.0, "short2": 1.0})
    t = bd_table(s, "anchor", ["psnr_yuv"])
    assert _row(t, "long1").bd_rate == pytest.approx(-20.0, abs=1e-9) and _row(t, "short1").bd_rate == pytest.approx(0.0, abs=1e-9)
    assert _row(t, AVERAGE).bd_rate == pytest.approx(-10.0, abs=1e-9)
    # Overall is BD on curves whose points are the frame-weighted means (DCVC's mean_over_rate_point)
    w = s.assign(wb=s.bpp * s.frames, wq=s.psnr_yuv * s.frames).groupby(["codec", "rate"])[["wb", "wq", "frames"]].sum()
    curve = lambda c: list(zip(w.loc[c].wb / w.loc[c].frames, w.loc[c].wq / w.loc[c].frames))
    overall = _row(t, OVERALL).bd_rate
    assert overall == pytest.approx(bd.bd_rate(curve("anchor"), curve("test")), abs=1e-9)
    # the long sequences, 20 % cheaper, weigh more: further from the Average than the unweighted curve
    assert overall < _row(t, UNWEIGHTED).bd_rate < 0
    # equal frame counts: the frame-weighted and the unweighted curve are one curve
    same = bd_table(s.assign(frames=96), "anchor", ["psnr_yuv"])
    assert _row(same, OVERALL).bd_rate == pytest.approx(_row(same, UNWEIGHTED).bd_rate, abs=1e-12)
    text = format_bd(t, "md")
    for label in ("| d | Overall | test |", "| d | Average | test |", "| d | all (unweighted) | test |"):
        assert label in text
    assert "Overall = BD-rate of the class curves with every sequence weighted by its frame count (DCVC's Overall)" in text
    assert "Average = mean of the per-sequence BD-rates (DCVC's Average)" in text and "every sequence weighted equally" in text
    assert "\nd,Overall,test,anchor,psnr_yuv,all,pchip," in format_bd(t, "csv")


def test_overall_needs_frame_counts_and_says_so():
    from bench.report import UNWEIGHTED

    s = _ladder_summary({"a": 600, "b": 240}, {"a": 0.8, "b": 1.0})
    s.loc[s.sequence == "b", "frames"] = np.nan
    t = bd_table(s, "anchor", ["psnr_yuv"])
    row = _row(t, OVERALL)
    assert math.isnan(row.bd_rate) and "no frame-weighted curve: anchor on d: no frame count (frames) for b" in row.note
    assert not math.isnan(_row(t, UNWEIGHTED).bd_rate)
    with pytest.raises(ValueError, match="sequence is called 'Overall'"):
        bd_table(s.assign(sequence="Overall"), "anchor")


def test_low_overlap_gives_a_marked_number_and_strict_mode_refuses():
    # the test ladder sits 10 dB higher: its quality range meets the anchor's in 2 of 22 dB
    s = _ladder_summary({"a": 96, "b": 96}, {"a": 0.5, "b": 0.5}, shift=9.0)
    t = bd_table(s, "anchor", ["psnr_yuv"])
    row = _row(t, "a")
    assert not math.isnan(row.bd_rate) and row.low_overlap and row.overlap < 0.5
    assert "† low overlap: the quality ranges overlap by" in row.note and "--min-overlap 0.5 would refuse it" in row.note
    text = format_bd(t, "md")
    assert f"{row.bd_rate:+.2f}%† ({100 * row.overlap:.0f}% overlap)" in text
    assert "† = the curves' quality ranges overlap by less than 50% of their union" in text and "(no overlap at all is refused)" in text
    avg = _row(t, "Average")
    assert avg.low_overlap and "† 2 of 2 per-sequence BD-rates rest on less than 50% overlap" in avg.note
    strict = bd_table(s, "anchor", ["psnr_yuv"], BDOptions(min_overlap=0.5))
    row = _row(strict, "a")
    assert math.isnan(row.bd_rate) and "less than the 50% --min-overlap asks for" in row.note and not row.low_overlap
    # where the ranges do not meet at all, nothing is computed, whatever the options
    none = bd_table(_ladder_summary({"a": 96}, {"a": 1.0}, shift=40.0), "anchor", ["psnr_yuv"])
    assert math.isnan(_row(none, "a").bd_rate) and "do not overlap" in _row(none, "a").note


def test_rate_exclude_leaves_points_out_of_every_curve():
    s = _ladder_summary({"a": 96}, {"a": 0.9})
    t = bd_table(s, "anchor", ["psnr_yuv"], BDOptions(rate_exclude=("34",)))
    assert (_row(t, "a").points_anchor, _row(t, "a").points_test) == (4, 4)
    # a number names a rate point whatever its zero padding (DCVC's keys are '022')
    padded = s.assign(rate=s.rate.str.zfill(3))
    t2 = bd_table(padded, "anchor", ["psnr_yuv"], BDOptions(rate_exclude=("34",)))
    assert _row(t2, "a").points_anchor == 4 and _row(t2, "a").bd_rate == pytest.approx(_row(t, "a").bd_rate)
    with pytest.raises(ValueError, match="--rate-exclude 99: no rate point is called that; the rate points are 022, 025"):
        bd_table(padded, "anchor", ["psnr_yuv"], BDOptions(rate_exclude=("99",)))


def _frames_rows(summary: pd.DataFrame, intra_cost: float = 4.0) -> pd.DataFrame:
    """frames.csv rows consistent with ``summary``: frame 0 is I and costs ``intra_cost``
    times a P frame; the I frame's PSNR is 1 dB above the row's mean."""
    rows = []
    for r in summary.itertuples():
        n = int(r.frames)
        p_bpp = r.bpp * n / (intra_cost + n - 1)
        for f in range(n):
            intra = f == 0
            psnr = r.psnr_yuv + (1.0 if intra else -1.0 / (n - 1))
            rows.append(
                {
                    "dataset": r.dataset,
                    "sequence": r.sequence,
                    "codec": r.codec,
                    "rate": r.rate,
                    "frame": f,
                    "frame_type": "I" if intra else "P",
                    "bits": 0,
                    "bpp": p_bpp * (intra_cost if intra else 1),
                    "psnr_yuv": psnr,
                }
            )
    return pd.DataFrame(rows)


def test_frame_type_split_from_frames_csv(tmp_path, capsys):
    from bench.cli import main
    from bench.store import frame_type_split, read_summaries, with_frame_types

    s = _ladder_summary({"a": 8, "b": 4}, {"a": 0.8, "b": 0.8})
    split = frame_type_split(_frames_rows(s))
    one = split[(split.sequence == "a") & (split.codec == "anchor") & (split.rate == "22")].iloc[0]
    src = s[(s.sequence == "a") & (s.codec == "anchor") & (s.rate == "22")].iloc[0]
    assert (one.i_frames, one.p_frames) == (1, 7)
    assert one.i_frame_bpp == pytest.approx(4 * one.p_frame_bpp) and (one.i_frame_bpp + 7 * one.p_frame_bpp) / 8 == pytest.approx(src.bpp)
    assert one.i_frame_psnr_yuv == pytest.approx(src.psnr_yuv + 1)
    # frames without a type: the split is unknown, not "all P"
    assert frame_type_split(_frames_rows(s).assign(frame_type="")).empty
    run = tmp_path / "run"
    run.mkdir()
    s.to_csv(run / "summary.csv", index=False)
    _frames_rows(s).to_csv(run / "frames.csv", index=False)
    filled = with_frame_types(read_summaries([run]))
    assert filled.i_frames.notna().all() and filled.p_frame_bpp.notna().all()
    t = bd_table(filled, "anchor", ["psnr_yuv"], BDOptions(frame_types=("all", "i", "p")))
    for ft in ("all", "i", "p"):
        sel = t[(t.frame_type == ft) & (t.sequence == "a")]
        assert sel.bd_rate.iloc[0] == pytest.approx(-20.0, abs=1e-6)  # every frame 20 % cheaper
    assert main(["bdrate", "--anchor", "anchor", "--results", str(run), "--metric", "psnr_yuv", "--frame-type", "i,p"]) == 0
    out = capsys.readouterr().out
    assert "| dataset | sequence | codec | frame_type | psnr_yuv |" in out and "| d | a | test | i | -20.00% |" in out
    # results without frame types: the I/P cells say why
    t = bd_table(s, "anchor", ["psnr_yuv"], BDOptions(frame_types=("p",)))
    assert "anchor: no P-frame values: neither a frame_type per frame (frames.csv) nor p_frame_* columns" in t.note.iloc[0]
    assert main(["bdrate", "--anchor", "anchor", "--results", str(run), "--frame-type", "b"]) == 2
    assert "choose from all, i, p" in capsys.readouterr().err


def test_html_bd_table_uses_the_same_labels():
    from bench.htmlreport import _bd_sections

    s = _ladder_summary({"a": 600, "b": 240}, {"a": 0.8, "b": 1.0})
    html = _bd_sections({"anchor": bd_table(s, "anchor", ["psnr_yuv"])}, ["psnr_yuv"], BDOptions())
    for label in ("<td>Overall</td>", "<td>Average</td>", "<td>all (unweighted)</td>", "(DCVC&#x27;s Overall)", "(DCVC&#x27;s Average)"):
        assert label in html
