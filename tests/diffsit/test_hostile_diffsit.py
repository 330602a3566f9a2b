"""Diff-SIT against streams and working directories made to mislead it (issue 30).

A stream's CRC catches damage, not intent: every stream here has a valid CRC. Each test checks
the refusal's message and that nothing was decoded, loaded or written before it."""

from __future__ import annotations

import shutil
import struct
import zlib

import pytest

pytest.importorskip("compressai")
pytest.importorskip("diffusers")

from support import random_video

import diffsit.zoo as zoo_module
from diffsit.__main__ import main as diffsit_main
from diffsit.bitstream import MAGIC, MAX_DIMENSION, MAX_FRAMES, BitstreamError, decode_stream
from diffsit.codec import DiffSITCodec
from diffsit.model import DiffSIT, random_model
from diffsit.pipeline import decode_samples, encode_video
from diffsit.zoo import RatePoint, family_lambdas, load_model, rate_point, spec_for_model_id, weights_root


def craft(*, model_id="tiny-lambda1", sha=bytes(32), width=176, height=144, fps=(25, 1), frames=1) -> bytes:
    """A version-7 stream written by hand, not by the encoder (which refuses such fields): one
    intra record of junk strings per frame actually present (at most 2), and a valid CRC."""
    mid = model_id.encode()
    header = struct.pack("<H", len(mid)) + mid + sha + struct.pack("<HHIIIiHBb", width, height, *fps, frames, -1, 0, 0, 0)
    body = MAGIC + struct.pack("<HI", 7, len(header)) + header
    for index in range(min(frames, 2)):
        body += struct.pack("<IBB", index, 0, 2) + struct.pack("<I", 400) + bytes(range(200)) * 2 + struct.pack("<I", 8) + b"hyperpri"
    return body + struct.pack("<I", zlib.crc32(body))


class Forbidden(AssertionError):
    pass


@pytest.fixture
def no_model_loads(monkeypatch):
    """Make loading any model a test failure: a refusal must come before it."""
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise Forbidden(f"a model was loaded for {args}")

    monkeypatch.setattr(zoo_module, "load_model", forbidden)
    monkeypatch.setattr(DiffSIT, "load", forbidden)
    return calls


def _cli_decode(data: bytes, tmp_path, capsys) -> tuple[int, str]:
    stream, out = tmp_path / "s.dsit", tmp_path / "out.yuv"
    stream.write_bytes(data)
    rc = diffsit_main(["decode", str(stream), "-o", str(out)])
    assert not out.exists()
    return rc, capsys.readouterr().err


# --- geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(width=65534, height=65534), r"width 65534 is outside 1\.\.8192"),
        (dict(height=0), r"height 0 is outside 1\.\.8192"),
        (dict(frames=MAX_FRAMES + 1), rf"frames {MAX_FRAMES + 1} is outside 1\.\.{MAX_FRAMES}"),
        (dict(frames=0), r"frames 0 is outside"),
    ],
)
def test_a_huge_or_empty_geometry_is_refused_before_any_model_or_picture(fields, message, tmp_path, capsys, no_model_loads):
    data = craft(**fields)
    assert len(data) < 1000  # a few hundred bytes asking for gigabytes
    with pytest.raises(BitstreamError, match=message):
        decode_stream(data)
    rc, err = _cli_decode(data, tmp_path, capsys)
    assert rc == 2 and __import__("re").search(message, err) and "nothing was decoded" in err
    codec = DiffSITCodec()
    with pytest.raises(BitstreamError, match=message):
        codec.decode(tmp_path / "s.dsit", tmp_path)
    assert no_model_loads == [] and codec._models == {}


def test_a_huge_geometry_is_refused_before_the_picture_decoder_runs(monkeypatch):
    """With the stream's own model loaded (the bench codec's case), the header check still
    comes before the intra decoder sizes a 65534x65534 picture."""
    model = load_model("random", allow_untrained=True)

    def forbidden(*args, **kwargs):
        raise Forbidden("the picture decoder ran")

    monkeypatch.setattr(model.intra, "decompress_image", forbidden)
    data = craft(model_id=model.model_id, sha=model.weights_sha256(), width=65534, height=65534)
    with pytest.raises(BitstreamError, match="width 65534"):
        decode_samples(model, data)


def test_the_encoder_refuses_what_the_decoder_would_before_coding():
    wide = random_video(frames=1, height=16, width=MAX_DIMENSION + 16)
    # no model at all: the refusal comes before the model is touched
    with pytest.raises(BitstreamError, match=rf"video to code: width {MAX_DIMENSION + 16} is outside 1\.\.{MAX_DIMENSION}"):
        encode_video(None, wide)


# --- frame rate -----------------------------------------------------------------------------


@pytest.mark.parametrize("fps, field", [((25, 0), "fps denominator 0"), ((0, 1), "fps numerator 0")])
def test_a_zero_fps_term_is_a_clear_error_not_a_traceback(fps, field, tmp_path, capsys, no_model_loads):
    data = craft(fps=fps)
    with pytest.raises(BitstreamError, match=field):
        decode_stream(data)
    rc, err = _cli_decode(data, tmp_path, capsys)
    assert rc == 2 and field in err and "Traceback" not in err
    assert no_model_loads == []


# --- model ids ------------------------------------------------------------------------------


def test_a_stream_s_model_id_is_never_a_path(tmp_path, capsys, monkeypatch, no_model_loads):
    """Even a path to a real, loadable model folder is refused: a stream's bytes choose no file."""
    folder = tmp_path / "planted"
    random_model(0).save(folder)
    monkeypatch.chdir(tmp_path)
    for mid in ("../../etc", "/etc", str(folder), "planted", "./planted", "tiny-random-seed0/../../x"):
        with pytest.raises(BitstreamError, match="never used as a path"):
            spec_for_model_id(mid)
        data = craft(model_id=mid)
        rc, err = _cli_decode(data, tmp_path, capsys)
        assert rc == 2 and "never used as a path" in err and "--model ./DIR" in err, err
        with pytest.raises(BitstreamError, match="never used as a path"):
            DiffSITCodec().decode(tmp_path / "s.dsit", tmp_path)
    assert no_model_loads == []
    # what a stream may name: a shipped model, or an untrained preset by seed
    assert spec_for_model_id("tiny-lambda1") == "tiny-lambda1" and spec_for_model_id("tiny-random-seed3") == "preset:tiny:3"


# --- the working directory ------------------------------------------------------------------


@pytest.fixture
def hostile_cwd(tmp_path, monkeypatch):
    """A cwd holding a folder named tiny-lambda4 with λ 2's weights, one named tiny with junk,
    and a file named tiny-lambda1."""
    shutil.copytree(weights_root() / "tiny-lambda2", tmp_path / "tiny-lambda4")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "model.safetensors").write_bytes(b"junk")
    (tmp_path / "tiny-lambda1").write_bytes(b"not even a folder")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


def test_a_folder_in_the_cwd_does_not_replace_a_shipped_model(hostile_cwd, tmp_path_factory):
    from bench.video import write_yuv

    before = _listing(hostile_cwd)
    shipped = DiffSIT.load(weights_root() / "tiny-lambda4").weights_sha256()
    other = DiffSIT.load(weights_root() / "tiny-lambda2").weights_sha256()
    assert load_model("tiny-lambda4").weights_sha256() == shipped
    # the bench codec: the family, its rate points and its models
    assert family_lambdas("tiny") == [0.5, 1.0, 2.0, 4.0] and rate_point("tiny", 4) == RatePoint("tiny-lambda4", 0)
    codec = DiffSITCodec(model="tiny")
    codec.check()
    assert codec.model_for(4.0).weights_sha256() == shipped and codec.identity()["weights_sha256"]["tiny-lambda4"] == shipped.hex()
    # the CLI
    io = tmp_path_factory.mktemp("io")  # outside the cwd, whose listing must not change
    src, out = write_yuv(random_video(frames=1, height=32, width=32), io / "clip_32x32_25.yuv"), io / "clip.dsit"
    assert diffsit_main(["encode", str(src), "-o", str(out), "--model", "tiny-lambda4"]) == 0
    assert decode_stream(out.read_bytes()).weights_sha256 == shipped
    # a folder is used when named as a path
    assert load_model("./tiny-lambda4").weights_sha256() == other
    assert _listing(hostile_cwd) == before  # nothing written there


def test_a_bare_name_that_is_not_shipped_says_how_to_name_a_folder(hostile_cwd):
    from bench.codec import CodecUnavailable

    with pytest.raises(CodecUnavailable, match=r"no shipped Diff-SIT model 'tiny'.*name it with a path: \./tiny"):
        load_model("tiny")
    with pytest.raises(CodecUnavailable, match="not a folder"):
        load_model("./tiny-lambda1")
