"""The shipped tiny Diff-SIT models: present, small, trained, with provenance, and a rate ladder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("compressai")
pytest.importorskip("diffusers")

from diffsit.codec import DiffSITCodec
from diffsit.model import DiffSIT
from diffsit.pipeline import encode_video
from diffsit.train.recipe import VIDEOS
from diffsit.zoo import load_model, shipped_models, weights_root

LAMBDAS = (0.5, 1, 2, 4)
NAMES = [f"tiny-lambda{lam:g}" for lam in LAMBDAS]


def test_four_models_ship_within_16_mb():
    assert set(NAMES) <= set(shipped_models())
    total = sum(f.stat().st_size for name in NAMES for f in (weights_root() / name).iterdir())
    assert total <= 16_000_000, total


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_is_trained_with_provenance(name):
    folder = weights_root() / name
    model = load_model(name)  # refuses untrained models, so this also checks the flag
    assert model.config.trained and model.model_id == name
    meta = DiffSIT.read_metadata(folder)
    cfg = json.loads(meta["training_config"])
    assert f"lambda{cfg['lam']:g}" in name
    # the recipe's last run: stage 2 (ODFTE), or the per-lambda P-coder run (pframe-L) after it,
    # which leaves ODFTE as stage 2 trained it
    assert cfg["stage"] == 2 or (cfg["stage"] == 1 and cfg["objective"] == "pframe" and cfg["init"])
    data = json.loads(meta["data"])
    kinds = {s["kind"] for s in data["sources"]}
    assert kinds <= {"photos", "lavfi", "videos"}
    # real video only from the recipe's OpenCV clips: never the sample test clips
    assert {Path(s["path"]).name for s in data["sources"] if s["kind"] == "videos"} <= set(VIDEOS)
    assert json.loads(meta["git"]).get("commit") and meta["perceptual"] in (("lpips", "dists", "ms_ssim") if cfg["stage"] == 2 else ("none",))
    assert meta["storage_dtype"] == "torch.float16"


def test_the_codec_loads_the_shipped_ladder_by_default():
    codec = DiffSITCodec()
    codec.check()
    assert {codec.model_for(lam).model_id for lam in LAMBDAS} == set(NAMES)


def test_bpp_falls_as_lambda_grows():
    from bench.datasets import get_dataset

    (seq,) = get_dataset("sample").resolve(None, ["carphone"])
    video = seq.open(frames=6)
    sizes = [len(encode_video(load_model(n), video, output=False).data) for n in NAMES]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4, sizes


@pytest.mark.slow
def test_every_p_frame_of_the_shipped_ladder_beats_intra(tmp_path):
    """Issue 19's must-show, kept: on bikes and carphone (9 frames, the four λ) each P frame
    costs less than the same frame coded intra at equal or better PSNR. New weights that lose
    it fail here, as a golden would; docs/measurements/diffsit.md holds the table."""
    from diffsit.experiments.p_vs_intra import p_vs_intra

    df = p_vs_intra(sequences=["bikes", "carphone"], frames=9, out=tmp_path)
    assert len(df) == 16
    losers = df[~df.p_wins][["sequence", "lambda", "frame", "p_bytes", "p_psnr_rgb", "intra_bytes_at_p_psnr"]]
    assert losers.empty, losers.to_string()
    # a win above the whole intra curve is a dominance: fewer bytes than the curve's top
    above = df[df.intra_curve == "above"]
    assert (above.p_bytes < above.intra_bytes_at_p_psnr).all()


# --- what README and docs say about the shipped configs ---------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DIFFSIT_DOC = "docs/diffsit.md"  # the reference page of the codec, its models and options
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _stated(doc: str, pattern: str) -> tuple[str, ...]:
    """The groups of the one statement ``pattern`` finds in ``doc`` (whitespace folded): a
    statement reworded so it no longer matches fails here, to be checked again by hand."""
    import re

    text = " ".join((ROOT / doc).read_text().split())
    found = re.findall(pattern, text)
    assert len(found) == 1, f"{doc}: expected one statement matching {pattern!r}, found {len(found)}"
    return found[0] if isinstance(found[0], tuple) else (found[0],)


def _number(word: str) -> int:
    return WORDS[word.lower()] if word.lower() in WORDS else int(word)


@pytest.fixture(scope="module")
def shipped_config() -> dict:
    """The one config the four shipped models share, name, lambda and description aside."""
    configs = {name: json.loads((weights_root() / name / "config.json").read_text()) for name in NAMES}
    for name, cfg in configs.items():
        assert cfg["lam"] == float(name.removeprefix("tiny-lambda"))  # tiny-lambda{0.5,1,2,4}
    shared = [{k: v for k, v in cfg.items() if k not in ("name", "lam", "description")} for cfg in configs.values()]
    assert all(c == shared[0] for c in shared)
    return shared[0]


def test_readme_quotes_the_shipped_config(shipped_config):
    from diffsit.model import DiffSITConfig

    cfg, odfte = shipped_config, shipped_config["odfte"]
    (overlap,) = _stated(DIFFSIT_DOC, r"share `window_overlap` frames \((\d+) for the shipped models\)")
    assert int(overlap) == cfg["window_overlap"]
    (frames,) = _stated("README.md", r"`--frames (\d+)` is one ODFTE window")
    (base,) = _stated(DIFFSIT_DOC, r"ODFTE windows of (\d+)\+12m frames")
    assert int(frames) == int(base) == cfg["window"]
    default, block = _stated(DIFFSIT_DOC, r"`DiffSITConfig\.strength_block`, (\d+) by default\): .{0,200}? per (\d+)×\d+ block")
    assert int(default) == DiffSITConfig().strength_block == int(block) == cfg["strength_block"]
    (t_star,) = _stated(DIFFSIT_DOC, r"`WanTransformer3DModel` at t\* = (\d+)")
    assert int(t_star) == odfte["t_star"]
    space, time = _stated(DIFFSIT_DOC, r"The tiny VAE downsamples (\d+)× in space, as Wan's does, and (\d+)× in time")
    assert int(space) == 2 ** (len(odfte["vae"]["dim_mult"]) - 1) and int(time) == 2 ** sum(odfte["vae"]["temperal_downsample"])
    ph, pw = _stated(DIFFSIT_DOC, r"its DiT patchifies (\d+)×(\d+)")
    assert [int(ph), int(pw)] == odfte["transformer"]["patch_size"][1:]
    (intra,) = _stated("docs/architecture.md", r"(one) intra frame unless `intra_period` says otherwise")
    assert _number(intra) == 1 and cfg["intra_period"] == -1
    from diffsit.train.recipe import WINDOW_OVERLAP

    recipe, written = _stated("docs/diffsit-training.md", r"windows that share (\d+) frames \(`recipe\.WINDOW_OVERLAP`.{0,300}?\"window_overlap\": (\d+)\}")
    assert int(recipe) == int(written) == WINDOW_OVERLAP == cfg["window_overlap"]


def test_measurements_quote_the_shipped_config(shipped_config):
    from diffsit.experiments.seams import boundary_pairs
    from diffsit.gop import chunks, overlapping_chunks

    cfg = shipped_config
    window, overlap = cfg["window"], cfg["window_overlap"]
    doc = "docs/measurements/diffsit.md"
    (stated,) = _stated(doc, r"The shipped tiny models run with `window_overlap = (\d+)`")
    assert int(stated) == overlap
    (frames,) = _stated(doc, r"default: the first (\d+) frames, one ODFTE window")
    assert int(frames) == window
    total, apart, length = _stated(doc, r"first (\d+) frames = (\w+) (\d+)-frame windows")
    assert int(length) == window and len(chunks(int(total), window)) == _number(apart)
    (cuts,) = _stated(doc, r"The boundary pairs are t = ([\d, ]+) \(")
    assert [int(v) for v in cuts.split(",")] == boundary_pairs(int(total), window).tolist()
    together, total2, before = _stated(doc, r"\((\w+) windows for (\d+) frames instead of (\w+)\)")
    assert len(overlapping_chunks(int(total2), window, overlap)) == _number(together)
    assert len(chunks(int(total2), window)) == _number(before)


# --- the zoo: family -> λ -> folder, from the models' configs ---------------------------------


def test_the_zoo_reads_the_shipped_family_from_the_configs(shipped_config):
    from diffsit.zoo import LADDER, families, family_lambdas

    ladder = families()["tiny"]
    assert list(ladder) == [float(lam) for lam in LADDER] == family_lambdas("tiny")
    for lam, folder in ladder.items():
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["lam"] == lam and cfg["name"] == f"tiny-lambda{lam:g}"
    assert DiffSITCodec.default_rates == tuple(reversed(LADDER))
    (stated,) = _stated("docs/architecture.md", r"trained ladder \(([\d., ]+) for `tiny`\)")
    assert tuple(float(v) for v in stated.split(",")) == LADDER


def test_a_shipped_model_is_found_by_its_config_not_its_folder_name(tmp_path, monkeypatch):
    """A folder renamed on disk still serves the model its config names, at the config's λ;
    a config whose name is not FAMILY-lambda{its lam} is a model of no family."""
    import shutil

    import diffsit.zoo as zoo

    shutil.copytree(weights_root() / "tiny-lambda2", tmp_path / "renamed")
    shutil.copytree(weights_root() / "tiny-lambda1", tmp_path / "other")
    cfg = json.loads((tmp_path / "other" / "config.json").read_text())
    (tmp_path / "other" / "config.json").write_text(json.dumps({**cfg, "name": "solo"}))
    monkeypatch.setattr(zoo, "WEIGHTS", tmp_path)
    assert zoo.shipped_models() == ["solo", "tiny-lambda2"]
    assert zoo.families() == {"tiny": {2.0: tmp_path / "renamed"}}
    assert zoo.model_folder("tiny-lambda2") == tmp_path / "renamed" and zoo.shipped()["solo"].family is None
    assert zoo.rate_point("tiny", 2) == zoo.RatePoint("tiny-lambda2", 0)
