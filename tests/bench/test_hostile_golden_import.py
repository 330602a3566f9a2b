"""Hostile or malformed golden sets and imports (issue 30): each is refused with a message
naming what is wrong, and nothing is written, changed or run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "results" / "golden" / "sample"
NUMERIC = ["bpp", "bytes", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv", "psnr_rgb", "ms_ssim_rgb"]


def _bytes(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


@pytest.fixture
def golden(tmp_path) -> Path:
    dst = tmp_path / "golden"
    shutil.copytree(GOLDEN, dst)
    return dst


@pytest.fixture
def halved(tmp_path) -> Path:
    """The golden results with every measured value halved: any working check fails on them."""
    df = pd.read_csv(GOLDEN / "summary.csv", dtype={"rate": str})
    df[NUMERIC] = df[NUMERIC] * 0.5
    out = tmp_path / "halved"
    out.mkdir()
    df.to_csv(out / "summary.csv", index=False)
    return out


def _check(golden: Path, results: Path, capsys) -> tuple[int, str]:
    """`bench check` on results, asserting it changed no file of either folder."""
    before = _bytes(golden, results)
    rc = main(["check", "--golden", str(golden), "--results", str(results)])
    captured = capsys.readouterr()
    assert _bytes(golden, results) == before
    assert "OK: no drift" not in captured.out
    return rc, captured.out + captured.err


def _edit_summary(golden: Path, edit) -> None:
    df = pd.read_csv(golden / "summary.csv", dtype={"rate": str})
    edit(df).to_csv(golden / "summary.csv", index=False)


# --- the drift check fails closed ------------------------------------------------------------


def test_empty_tolerances_compare_nothing_and_fail(golden, halved, capsys):
    (golden / "tolerances.json").write_text("{}")
    rc, out = _check(golden, halved, capsys)
    assert rc == 2 and f"{golden / 'tolerances.json'}: no tolerances in it, so nothing would be compared" in out


@pytest.mark.parametrize(
    "tolerance, shown",
    [
        ({"abs": math.nan}, "psnr_yuv.abs is nan"),
        ({"abs": -0.01}, "psnr_yuv.abs is -0.01"),
        ({}, "tolerance of 'psnr_yuv' is {}"),
        ({"ab": 0.01}, '{"ab": 0.01}'),
    ],
)
def test_non_finite_negative_or_absent_tolerance_fails(golden, halved, capsys, tolerance, shown):
    tol = json.loads((golden / "tolerances.json").read_text())
    tol["psnr_yuv"] = tolerance
    (golden / "tolerances.json").write_text(json.dumps(tol))  # json writes NaN for nan, as a hand edit might
    rc, out = _check(golden, halved, capsys)
    assert rc == 2 and str(golden / "tolerances.json") in out and shown in out
    assert '(the registry\'s default for psnr_yuv is {"abs": 0.01})' in out


def test_tolerance_naming_no_column_fails(golden, halved, capsys):
    tol = json.loads((golden / "tolerances.json").read_text())
    tol["psnr-yuv"] = tol.pop("psnr_yuv")  # a typo: psnr_yuv would go unchecked
    (golden / "tolerances.json").write_text(json.dumps(tol))
    rc, out = _check(golden, halved, capsys)
    assert rc == 2 and "the tolerance of 'psnr-yuv' names no column of" in out and str(golden / "summary.csv") in out


def test_golden_column_without_tolerance_fails(golden, halved, capsys):
    tol = json.loads((golden / "tolerances.json").read_text())
    del tol["psnr_rgb"]
    (golden / "tolerances.json").write_text(json.dumps(tol))
    rc, out = _check(golden, halved, capsys)
    assert rc == 2 and f"{golden / 'summary.csv'}: column 'psnr_rgb' has no tolerance in {golden / 'tolerances.json'}" in out


@pytest.mark.parametrize("value", ["", "nan", "x"])
def test_empty_or_nan_golden_cell_fails(golden, halved, capsys, value):
    df = pd.read_csv(golden / "summary.csv", dtype={"rate": str})
    df["psnr_yuv"] = df["psnr_yuv"].astype(object)
    df.loc[2, "psnr_yuv"] = value
    df.to_csv(golden / "summary.csv", index=False)
    row = "/".join(df.loc[2, ["dataset", "sequence", "codec", "rate"]])
    rc, out = _check(golden, halved, capsys)
    assert rc == 2 and f"{golden / 'summary.csv'}: row {row}, column psnr_yuv:" in out and "is not a number" in out


def test_golden_table_without_rows_fails(golden, halved, capsys):
    _edit_summary(golden, lambda df: df.iloc[:0])
    rc, out = _check(golden, halved, capsys)
    assert rc == 2 and f"{golden / 'summary.csv'} has no rows, so nothing would be compared" in out


def test_golden_row_without_result_and_result_row_not_in_golden_fail(golden, tmp_path, capsys):
    df = pd.read_csv(golden / "summary.csv", dtype={"rate": str})
    results = tmp_path / "results"
    results.mkdir()
    df.iloc[1:].to_csv(results / "summary.csv", index=False)  # the first golden row has no result
    rc, out = _check(golden, results, capsys)
    assert rc == 1 and "1 golden row(s) with no result row (MISSING)" in out
    first = df.iloc[0]
    assert f"{first.dataset} {first.sequence} {first.codec} {first.rate} (row) " in " ".join(out.split())
    pd.concat([df, df.iloc[:1].assign(rate="99")]).to_csv(results / "summary.csv", index=False)
    rc, out = _check(golden, results, capsys)
    assert rc == 1 and "1 result row(s) not in the golden table (EXTRA)" in out and str(results / "summary.csv") in out


def test_results_without_any_matching_row_compare_nothing_and_fail(golden, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    pd.read_csv(golden / "summary.csv", dtype={"rate": str}).pipe(lambda df: df.assign(codec=df.codec + "-other")).to_csv(results / "summary.csv", index=False)
    rc, out = _check(golden, results, capsys)
    assert rc == 1 and "compared 0 values" in out and "no value compared at all" in out


def test_duplicate_golden_row_fails(golden, halved, capsys):
    _edit_summary(golden, lambda df: pd.concat([df, df.iloc[:1]]))
    rc, out = _check(golden, halved, capsys)
    assert rc == 2 and "row sample/bigbuckbunny/vvenc/32 appears more than once" in out


def test_update_refuses_results_it_could_not_compare_later(golden, tmp_path, capsys):
    df = pd.read_csv(golden / "summary.csv", dtype={"rate": str})
    df.loc[0, "psnr_yuv"] = math.nan
    results = tmp_path / "results"
    results.mkdir()
    df.to_csv(results / "summary.csv", index=False)
    before = _bytes(golden)
    assert main(["check", "--golden", str(golden), "--results", str(results), "--update"]) == 2
    err = capsys.readouterr().err
    assert "column psnr_yuv: nan is not a number" in err and "(nothing was rewritten)" in err
    assert _bytes(golden) == before


# --- a golden set is data, not code ------------------------------------------------------------


@pytest.fixture
def payload(tmp_path) -> dict[str, Path]:
    """Things a hostile golden set could point at, each creating ``marker`` if ever run or
    imported: an ffmpeg, HM/VTM trees, a DCVC checkout."""
    marker = tmp_path / "ran"
    script = f"#!/bin/sh\ntouch {marker}\necho 'ffmpeg version evil'\n"
    evil = tmp_path / "evil.sh"
    evil.write_text(script)
    evil.chmod(0o755)
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    for name in ("TAppEncoder", "TAppDecoder", "EncoderApp", "DecoderApp", "ffmpeg"):
        shutil.copy(evil, tree / "bin" / name)
    dcvc = tmp_path / "dcvc"
    (dcvc / "src" / "models").mkdir(parents=True)
    (dcvc / "src" / "models" / "video_model.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return {"marker": marker, "evil": evil, "tree": tree, "dcvc": dcvc}


def _hostile(golden: Path, **changes) -> None:
    cfg = json.loads((golden / "config.json").read_text())
    cfg.update(changes)
    (golden / "config.json").write_text(json.dumps(cfg))


def _refused(golden: Path, capsys, marker: Path, *extra: str) -> str:
    """Run `bench check` (a real run, unless extra says --results) and assert it refused before
    running anything: exit 2, no marker, the golden set's files unchanged."""
    before = _bytes(golden)
    rc = main(["check", "--golden", str(golden), *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not marker.exists(), "the golden set's binary or code ran"
    assert _bytes(golden) == before
    assert f"{golden / 'config.json'}: a golden set is data and cannot name binaries, code, weights or folders" in err
    return err


@pytest.mark.parametrize(
    "key, place, flag",
    [
        ("ffmpeg", "evil", "--ffmpeg PATH (or $BENCH_FFMPEG)"),
        ("hm_dir", "tree", "--hm-dir PATH"),
        ("vtm_dir", "tree", "--vtm-dir PATH"),
        ("dcvc_root", "dcvc", "--dcvc-root PATH"),
        ("dcvc_weights", "dcvc", "--dcvc-weights PATH"),
    ],
)
def test_config_codec_options_naming_a_location_are_refused(golden, payload, capsys, key, place, flag):
    _hostile(golden, codec_options={key: str(payload[place])})
    err = _refused(golden, capsys, payload["marker"])
    assert f"codec_options.{key}: pass it to `bench check` as {flag} instead" in err


@pytest.mark.parametrize(
    "codecs, shown",
    [
        (["x265:preset=medium:threads=1:ffmpeg={evil}"], "ffmpeg: pass it to `bench check` as --ffmpeg PATH"),
        (["hm:hm-dir={tree}"], "hm_dir: pass it to `bench check` as --hm-dir PATH"),
        (["vtm:vtm_dir={tree}"], "vtm_dir: pass it to `bench check` as --vtm-dir PATH"),
        (["dcvc-dc:dcvc_root={dcvc}"], "dcvc_root: pass it to `bench check` as --dcvc-root PATH"),
        (["dcvc-fm:image_weights={evil}"], "image_weights: the codec's default is used"),
        (["hm:cfg={evil}"], "cfg: the codec's default is used"),
        (["diffsit:pretrained={tree}"], "pretrained: the codec's default is used"),
    ],
)
def test_codec_spec_options_naming_a_location_are_refused(golden, payload, capsys, codecs, shown):
    _hostile(golden, codecs=[c.format(**payload) for c in codecs])
    err = _refused(golden, capsys, payload["marker"])
    assert f"codec {codecs[0].format(**payload)!r}: {shown}" in err


def test_metric_spec_naming_a_binary_is_refused(golden, payload, capsys):
    _hostile(golden, metrics=["psnr", f"vmaf:ffmpeg_path={payload['evil']}"])
    err = _refused(golden, capsys, payload["marker"])
    assert "ffmpeg_path: set $BENCH_FFMPEG instead" in err


@pytest.mark.parametrize(
    "key, shown",
    [
        ("out", "out: pass it to `bench check` as --keep DIR instead"),
        ("data_root", "data_root: pass it to `bench check` as --data-root DIR (or $BENCH_DATA) instead"),
        ("weights", "weights: pass it to `bench check` as --weights DIR (or $BENCH_WEIGHTS) instead"),
        ("submitit_folder", "submitit_folder: where and how jobs run is the caller's choice: remove it"),
    ],
)
def test_config_folders_are_refused(golden, payload, capsys, key, shown):
    _hostile(golden, **{key: str(payload["tree"])})
    assert shown in _refused(golden, capsys, payload["marker"])


def test_executor_settings_are_refused(golden, payload, capsys):
    _hostile(golden, executor="submitit", slurm_flags={"wrap": str(payload["evil"])})
    err = _refused(golden, capsys, payload["marker"])
    assert "executor: where and how jobs run is the caller's choice: remove it" in err and "slurm_flags:" in err


def test_a_hostile_golden_set_is_refused_even_when_only_comparing(golden, halved, payload, capsys):
    _hostile(golden, codec_options={"ffmpeg": str(payload["evil"])})
    before = _bytes(halved)
    _refused(golden, capsys, payload["marker"], "--results", str(halved))
    assert _bytes(halved) == before


def test_check_takes_locations_from_the_caller(golden, tmp_path, monkeypatch, capsys):
    """--ffmpeg, the plugins' location flags, --data-root and --weights reach the sweep that
    bench check runs (the sweep is faked: it records its configuration and writes the golden
    table back)."""
    import bench.drift

    seen = []

    def fake_run_sweep(config):
        seen.append(config)
        shutil.copy(golden / "summary.csv", Path(config.out) / "summary.csv")
        return type("Result", (), {"ok": True, "failed": []})()

    monkeypatch.setattr(bench.drift, "run_sweep", fake_run_sweep)
    monkeypatch.delenv("BENCH_WEIGHTS", raising=False)
    argv = ["check", "--golden", str(golden), "--ffmpeg", "/opt/ff", "--hm-dir", "/opt/hm", "--dcvc-root", "/opt/dcvc", "--data-root", "/data"]
    assert main([*argv, "--weights", str(tmp_path / "w")]) == 0
    assert "OK: no drift" in capsys.readouterr().out
    (config,) = seen
    assert config.codec_options == {"ffmpeg": "/opt/ff", "hm_dir": "/opt/hm", "dcvc_root": "/opt/dcvc"}
    assert (config.data_root, config.weights) == ("/data", str(tmp_path / "w"))
    assert config.codecs == ["x265:preset=medium:threads=1", "vvenc:preset=faster:threads=1"]


def test_committed_golden_sets_name_no_location():
    from bench.drift import Golden

    for cfg in sorted((ROOT / "results" / "golden").glob("*/config.json")):
        Golden.load(cfg.parent)  # GoldenError if it named a location


# --- imports take only possible numbers ---------------------------------------------------------


def _import_refused(argv: list[str], out: Path, capsys) -> str:
    """`bench import` into ``out``, holding an earlier import, with --force: refused, exit 2,
    and out's files keep their bytes; into a fresh folder: refused, and it is not created."""
    main(["import", str(ROOT / "results" / "published" / "diffsit_fig5.csv"), "--format", "long", "--out", str(out)])
    before = _bytes(out)
    capsys.readouterr()
    assert main([*argv, "--out", str(out), "--force"]) == 2
    assert _bytes(out) == before
    fresh = out.parent / "fresh"
    assert main([*argv, "--out", str(fresh)]) == 2 and not fresh.exists()
    return capsys.readouterr().err


_DCVC_POINT = {"ave_all_frame_bpp": 0.05, "ave_all_frame_psnr": 33.0, "ave_all_frame_msssim": 0.95}


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("ave_all_frame_bpp", math.nan, "ave_all_frame_bpp is nan, not a finite number"),
        ("ave_all_frame_bpp", 0, "ave_all_frame_bpp is 0; bits per pixel must be positive"),
        ("ave_all_frame_bpp", -0.01, "ave_all_frame_bpp is -0.01; bits per pixel must be positive"),
        ("ave_all_frame_psnr", math.inf, "ave_all_frame_psnr is inf, not a finite number"),
        ("ave_all_frame_psnr", -math.inf, "ave_all_frame_psnr is -inf, not a finite number"),
        ("ave_all_frame_msssim", math.nan, "ave_all_frame_msssim is nan, not a finite number"),
        ("ave_all_frame_psnr", None, "ave_all_frame_psnr is None, not a finite number"),
    ],
)
def test_dcvc_impossible_numbers_are_refused(tmp_path, capsys, key, value, shown):
    f = tmp_path / "dcvc.json"
    seqs = {"BasketballDrive_1920x1080_50.yuv": {"000": _DCVC_POINT, "001": {**_DCVC_POINT, key: value}}}
    f.write_text(json.dumps({"HEVC_B": seqs}))  # json writes NaN and Infinity, as Python's json.dump does
    err = _import_refused(["import", str(f), "--format", "dcvc", "--codec", "DCVC-DC"], tmp_path / "out", capsys)
    assert f"{f}: HEVC_B/BasketballDrive_1920x1080_50.yuv/001: {shown}; correct it in the file or remove that point" in err


@pytest.mark.parametrize(
    "key, values, shown",
    [
        ("bpp", [0.1, math.nan], "results.bpp[1] (point 1): bpp is nan, not a finite number"),
        ("bpp", [0.1, 0.0], "results.bpp[1] (point 1): bpp is 0.0; bits per pixel must be positive"),
        ("bpp", [-0.1, 0.1], "results.bpp[0] (point 0): bpp is -0.1; bits per pixel must be positive"),
        ("psnr-rgb", [30.0, math.inf], "results.psnr-rgb[1] (point 1): psnr-rgb is inf, not a finite number"),
        ("ms-ssim-rgb", [math.nan, 0.9], "results.ms-ssim-rgb[0] (point 0): ms-ssim-rgb is nan"),
        ("psnr-yuv", [30.0, "x"], "results.psnr-yuv[1] (point 1): psnr-yuv is 'x', not a finite number"),
        ("bpp", [], "results.bpp is empty: the file has no points to import"),
    ],
)
def test_compressai_impossible_numbers_are_refused(tmp_path, capsys, key, values, shown):
    results = {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0], "ms-ssim-rgb": [0.9, 0.95], "psnr-yuv": [31.0, 33.0], key: values}
    f = tmp_path / "compressai.json"
    f.write_text(json.dumps({"name": "ssf2020", "results": results}))
    err = _import_refused(["import", str(f), "--format", "compressai", "--dataset", "uvg"], tmp_path / "out", capsys)
    assert f"{f}: {shown}" in err


def test_compressai_yuv_psnr_in_another_convention_is_refused(tmp_path, capsys):
    """A file whose psnr-yuv is not (4Y + U + V)/6 of its planes (here the 6:1:1 value) is not
    CompressAI's convention: storing it under either column would be a guess."""
    y, u, v = 34.0, 40.0, 42.0
    results = {"bpp": [0.1], "psnr-y": [y], "psnr-u": [u], "psnr-v": [v], "psnr-yuv": [(6 * y + u + v) / 8]}
    f = tmp_path / "compressai.json"
    f.write_text(json.dumps({"name": "other", "results": results}))
    err = _import_refused(["import", str(f), "--format", "compressai", "--dataset", "uvg"], tmp_path / "out", capsys)
    assert f"{f}: results.psnr-yuv[0] is 35.75, but (4Y + U + V)/6 of its psnr-y/u/v is 36.3333" in err


@pytest.mark.parametrize("cell", ["inf", "-inf", "nan", ""])
def test_long_table_non_finite_values_are_refused(tmp_path, capsys, cell):
    f = tmp_path / "t.csv"
    f.write_text(f"dataset,metric,codec,bpp,value\nuvg,lpips,a,0.1,0.3\nuvg,lpips,a,0.2,{cell}\n")
    err = _import_refused(["import", str(f), "--format", "long"], tmp_path / "out", capsys)
    assert f"{f}: column value has non-numbers, first at data row 2" in err
