"""The training loop: one stage of one model, under accelerate.

Device placement, mixed precision (bf16 on CUDA by default) and DDP come from ``accelerate``,
so the same script runs as ``python -m diffsit train``, under ``accelerate launch`` and under
``torchrun``. The whole loss is computed inside ``TrainStep.forward`` so DDP sees one forward
per step. Batches are a pure function of (seed, step, rank) and the torch RNG (quantization
noise) is checkpointed, so a resumed run continues exactly as an uninterrupted one would.

A run folder holds::

    log.csv                 step, losses, bpp per frame type, PSNR of x~ and x^, lr, s/step
    checkpoint/             latest state: config.json, model.safetensors, training_state.pt
    model/                  the result: a Diff-SIT model folder (what the codec loads)

``model.safetensors`` metadata carries the training config, the data description, the git
commit, the step, and which perceptual term was used.
"""

from __future__ import annotations

import csv
import json
import pickle
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from bench import weights
from bench.metrics.fidelity import ms_ssim, psnr_from_mse
from bench.metrics.perceptual import DISTS, LPIPS
from bench.provenance import git_state

from ..gop import GROUP, FrameType, display_types, schedule
from ..model import DiffSIT, DiffSITConfig
from ..odfte import ODFTE, ODFTEConfig, encode_empty_prompt
from ..presets import preset_config
from ..stem.mv import FLOW_SCALE, backbone_warp_clamped, estimate_flow
from .config import TrainConfig
from .data import ClipSampler, build_source

LOG_FIELDS = (
    "step",
    "stage",
    "loss",
    "bpp",
    "bpp_intra",
    "bpp_p",
    "bpp_mv",
    "psnr_tilde",
    "psnr_hat",
    "perceptual",
    "temporal",
    "aux",
    "lr",
    "sec_per_step",
    "psnr_intra",
)


def bits(likelihoods) -> torch.Tensor:
    """Total bits of a (nested) likelihood dict, as CompressAI's RD loss counts them."""
    if isinstance(likelihoods, dict):
        return sum(bits(v) for v in likelihoods.values())
    return -torch.log2(likelihoods.clamp_min(1e-9)).sum()


def _flows(target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """DIS flow per batch element (an input to the learned coders, so it carries no gradient)."""
    with torch.no_grad():
        return torch.cat([estimate_flow(target[i : i + 1].float(), reference[i : i + 1].float()) for i in range(target.shape[0])])


def _clamp_ste(x: torch.Tensor) -> torch.Tensor:
    """The decoder's clamp to [0, 1] in value, the identity in gradient: a plain clamp would stop
    the gradient of every out-of-range pixel, which stalls a decoder that starts out of range."""
    return x + (x.clamp(0, 1) - x).detach()


def gop_forward(model, clip: torch.Tensor, intra_period: int = -1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """STEM over a clip (B, T, 3, H, W) in the codec's coding order, differentiably.

    Every reference is the *reconstructed* frame, as at decode time, so gradients run along
    the P chain. Returns x~ (B, T, 3, H, W) and the bits of each frame type."""
    recon: dict[int, torch.Tensor] = {}
    spent = {t: clip.new_zeros(()) for t in FrameType}
    for fc in schedule(clip.shape[1], intra_period):
        cur = clip[:, fc.index]
        if fc.type is FrameType.INTRA:
            out = model.intra(cur)
            rec = _clamp_ste(out["x_hat"])
        elif fc.type is FrameType.PRED:
            ref = recon[fc.reference]
            out = model.pframe(cur, ref, _flows(cur, ref))
            rec = _clamp_ste(out["x_hat"])
        else:
            ref = recon[fc.reference]
            out = model.mv(_flows(cur, ref), ref)
            rec = out["x_hat"]
        recon[fc.index] = rec
        spent[fc.type] = spent[fc.type] + bits(out["likelihoods"])
    return torch.stack([recon[i] for i in range(clip.shape[1])], dim=1), spent


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of pictures in [0, 1] for the training log (the harness's: a zero error is ``PSNR_MAX``)."""
    return float(psnr_from_mse(F.mse_loss(a.detach().float(), b.detach().float()).item(), 1.0))


class Perceptual(nn.Module):
    """The perceptual term of stage 2: LPIPS or DISTS when their ImageNet weights are present,
    else 1 - MS-SSIM (differentiable, the harness's MS-SSIM in torch)."""

    def __init__(self, choice: str):
        super().__init__()
        if choice == "auto":
            choice = "lpips" if weights.locate("alexnet") else "dists" if weights.locate("vgg16") else "ms_ssim"
        self.choice = choice
        self.net = None
        if choice in ("lpips", "dists"):
            self.net = (LPIPS if choice == "lpips" else DISTS)().net  # raises, naming the file, if missing

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Mean over frames of (N, 3, H, W) in [0, 1]."""
        if self.choice == "none":
            return x.new_zeros(())
        if self.choice == "lpips":
            return self.net(x_hat, x, normalize=True).mean()
        if self.choice == "dists":
            return self.net(x_hat, x, batch_average=True)
        return 1 - ms_ssim(x_hat.float(), x.float(), differentiable=True).mean()


class TrainStep(nn.Module):
    """model + loss: forward(clip) -> (loss, logs)."""

    def __init__(self, model, config: TrainConfig):
        super().__init__()
        self.model, self.config = model, config
        self.perceptual = Perceptual(config.perceptual if config.stage == 2 else "none")

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, m = self.config, self.model
        b, t, _, h, w = clip.shape
        logs: dict[str, float] = {}
        aux = sum(c.entropy_bottleneck.loss() for c in _entropy_coders(m))
        if cfg.stage == 0:
            z = clip.permute(0, 2, 1, 3, 4) * 2 - 1
            rec = m.odfte._vae(m.odfte._decode, m.odfte._vae(m.odfte._encode, z))
            rec = (rec + 1) / 2
            loss = F.mse_loss(rec, clip.permute(0, 2, 1, 3, 4))
            logs.update(loss=loss.item(), psnr_hat=_psnr(rec, clip.permute(0, 2, 1, 3, 4)))
            return loss, logs
        if cfg.objective == "intra":
            return self._intra(clip, logs, aux)
        if cfg.objective == "motion":
            return self._motion(clip, logs, aux)
        if cfg.objective == "pframe":
            return self._pframe(clip, logs, aux)
        with torch.set_grad_enabled(torch.is_grad_enabled() and (cfg.stage == 1 or cfg.train_stem)):
            x_tilde, spent = gop_forward(m, clip, m.config.intra_period)
        pixels = b * t * h * w
        bpp = sum(spent.values()) / pixels
        logs.update(
            bpp=bpp.item(),
            bpp_intra=spent[FrameType.INTRA].item() / pixels,
            bpp_p=spent[FrameType.PRED].item() / pixels,
            bpp_mv=spent[FrameType.MV].item() / pixels,
            psnr_tilde=_psnr(x_tilde, clip),
            aux=aux.item(),
        )
        if cfg.stage == 1:
            loss = cfg.lam * bpp + cfg.distortion_weight * F.mse_loss(x_tilde, clip)
            if cfg.intra_all_frames:
                frames = clip.reshape(b * t, 3, h, w)
                out = m.intra(frames)
                intra_bpp = bits(out["likelihoods"]) / pixels
                loss = loss + cfg.intra_all_frames * (cfg.lam * intra_bpp + cfg.distortion_weight * F.mse_loss(_clamp_ste(out["x_hat"]), frames))
        else:
            types = display_types(t, m.config.intra_period)
            tmap = torch.tensor([[1.0 if ty.is_backbone else 0.0 for ty in types]] * b, device=clip.device)
            x_hat = m.odfte(x_tilde.permute(0, 2, 1, 3, 4), tmap).permute(0, 2, 1, 3, 4)
            perc = self.perceptual(x_hat.reshape(b * t, 3, h, w), clip.reshape(b * t, 3, h, w))
            temporal = F.mse_loss(x_hat.diff(dim=1), clip.diff(dim=1)) if t > 1 else x_hat.new_zeros(())
            loss = (
                cfg.lam * bpp
                + cfg.distortion_weight * (F.mse_loss(x_hat, clip) + cfg.temporal_weight * temporal)
                + cfg.perceptual_weight * perc
                + cfg.tilde_weight * cfg.distortion_weight * F.mse_loss(x_tilde, clip)
            )
            logs.update(psnr_hat=_psnr(x_hat, clip), perceptual=perc.item(), temporal=temporal.item())
        logs["loss"] = loss.item()  # the RD objective; the aux (quantile) loss is logged apart
        return loss + aux, logs

    def _intra(self, clip: torch.Tensor, logs: dict, aux: torch.Tensor):
        """The intra coder alone, on every frame of the clips."""
        cfg = self.config
        frames = clip.reshape(-1, *clip.shape[2:])
        out = self.model.intra(frames)
        pixels = frames.shape[0] * frames.shape[-2] * frames.shape[-1]
        bpp = bits(out["likelihoods"]) / pixels
        x_hat = _clamp_ste(out["x_hat"])
        loss = cfg.lam * bpp + cfg.distortion_weight * F.mse_loss(x_hat, frames)
        logs.update(loss=loss.item(), bpp=bpp.item(), bpp_intra=bpp.item(), psnr_tilde=_psnr(x_hat, frames), aux=aux.item())
        return loss + aux, logs

    def _motion(self, clip: torch.Tensor, logs: dict, aux: torch.Tensor):
        """The two flow coders alone, each on the warp of the (source) reference by its coded
        flow: the MV coder one frame from the reference (an MV frame beside its backbone), the
        P coder's motion coder three frames (the previous group's backbone)."""
        cfg, m = self.config, self.model
        ref, near, far = clip[:, 0], clip[:, 1], clip[:, 3]
        mv = m.mv(_flows(near, ref), ref)
        pm = m.pframe.motion(_flows(far, ref) / FLOW_SCALE)
        p_pred = backbone_warp_clamped(ref, pm["x_hat"] * FLOW_SCALE)
        pixels = ref.shape[0] * ref.shape[-2] * ref.shape[-1]
        mv_bpp, p_bpp = bits(mv["likelihoods"]) / pixels, bits(pm["likelihoods"]) / pixels
        mse = (F.mse_loss(mv["x_hat"], near) + F.mse_loss(p_pred, far)) / 2
        loss = cfg.lam * (mv_bpp + p_bpp) / 2 + cfg.distortion_weight * mse
        logs.update(
            loss=loss.item(),
            bpp=(mv_bpp + p_bpp).item() / 2,
            bpp_mv=mv_bpp.item(),
            bpp_p=p_bpp.item(),
            psnr_tilde=float(psnr_from_mse(mse.item(), 1.0)),
            aux=aux.item(),
        )
        return loss + aux, logs

    def _pframe(self, clip: torch.Tensor, logs: dict, aux: torch.Tensor):
        """The P coder alone: frame 3 of each clip from frame 0 coded by the (frozen) intra
        coder, as a P frame references the previous group's backbone. The same frame coded
        intra is logged beside it (bpp_intra, psnr_intra): the cost a P frame must beat."""
        cfg, m = self.config, self.model
        ref, cur = clip[:, 0], clip[:, GROUP]
        with torch.no_grad():
            ref_hat = m.intra(ref)["x_hat"].clamp(0, 1)
            as_intra = m.intra(cur)
        out = m.pframe(cur, ref_hat, _flows(cur, ref_hat))
        x_hat = _clamp_ste(out["x_hat"])
        pixels = cur.shape[0] * cur.shape[-2] * cur.shape[-1]
        bpp = bits(out["likelihoods"]) / pixels
        loss = cfg.lam * bpp + cfg.distortion_weight * F.mse_loss(x_hat, cur)
        logs.update(
            loss=loss.item(),
            bpp=bpp.item(),
            bpp_p=bpp.item(),
            bpp_mv=bits(out["likelihoods"]["mv"]).item() / pixels,
            bpp_intra=bits(as_intra["likelihoods"]).item() / pixels,
            psnr_tilde=_psnr(x_hat, cur),
            psnr_intra=_psnr(as_intra["x_hat"].clamp(0, 1), cur),
            aux=aux.item(),
        )
        return loss + aux, logs


def _entropy_coders(model):
    return [model.intra, model.mv.flow_coder, model.pframe.motion, model.pframe.codec]


def trainable_parameters(model, config: TrainConfig) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(main, aux) parameters of a stage; everything else gets requires_grad False."""
    for p in model.parameters():
        p.requires_grad_(False)
    odfte = model.odfte
    if config.stage == 0:
        modules = [odfte.vae]
    else:
        modules = [model.intra, model.mv, model.pframe] if config.stage == 1 or config.train_stem else []
        if config.objective == "intra":
            modules = [model.intra]
        elif config.objective == "motion":
            modules = [model.mv, model.pframe.motion]
        elif config.objective == "pframe":
            modules = [model.pframe]
        if config.stage == 2:
            modules += [odfte.fte, odfte.vae.encoder, odfte.vae.quant_conv]
    for mod in modules:
        for p in mod.parameters():
            p.requires_grad_(True)
    if config.stage == 2:
        for name, p in odfte.transformer.named_parameters():
            p.requires_grad_(config.dit == "full" or "lora_" in name)
    for prefix in config.freeze:
        # a misspelt prefix would silently train what it meant to hold
        hits = [p for n, p in model.named_parameters() if n == prefix or n.startswith(prefix.rstrip(".") + ".")]
        if not hits:
            top = sorted({n.split(".")[0] for n, _ in model.named_parameters()})
            raise ValueError(f"freeze: {prefix!r} names no parameter of the model (names start with {', '.join(top)}; e.g. 'pframe.codec.g_a')")
        for p in hits:
            p.requires_grad_(False)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    aux = [p for n, p in named if n.endswith("quantiles")]
    main = [p for n, p in named if not n.endswith("quantiles")]
    return main, aux


def _lr_lambda(config: TrainConfig):
    def f(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        start = int(config.decay_from * config.steps)
        if step < start:
            return 1.0
        return 1.0 - 0.9 * (step - start) / max(1, config.steps - start)

    return f


def build_model(config: TrainConfig):
    if config.init:
        model = DiffSIT.load(_model_folder(config.init), pretrained_dir=config.model.get("pretrained_dir"))
    else:
        overrides = dict(config.model)
        preset, pretrained = overrides.pop("preset", None), overrides.pop("pretrained_dir", None)
        if preset is None and pretrained is None:
            if "odfte" in overrides:
                overrides["odfte"] = ODFTEConfig(**overrides["odfte"])
            model_config = DiffSITConfig(**overrides)
        else:
            model_config = preset_config(preset or "wan2.1-1.3b", pretrained, **overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = DiffSIT(model_config)
        if model_config.odfte.pretrained_dir:
            # once, from the user's Wan folder; stored with the model from here on
            model.odfte.set_text_embedding(encode_empty_prompt(model_config.odfte.pretrained_dir, model_config.odfte.text_tokens))
    if config.init_odfte:
        donor = DiffSIT.load(_model_folder(config.init_odfte))
        model.config.odfte = donor.config.odfte
        model.odfte = ODFTE(donor.config.odfte)
        model.odfte.add_lora()
        model.odfte.load_state_dict(donor.odfte.state_dict())
    if config.pframe_from_intra:
        model.pframe.init_from_intra(model.intra)
    model.config.name = config.name
    if config.stage >= 1:
        model.config.lam, model.config.distortion_weight = config.lam, config.distortion_weight
    return model


def _model_folder(path: str | Path) -> Path:
    """A run folder's result, its latest checkpoint, or a model folder itself."""
    p = Path(path)
    for cand in (p / "model", p / "checkpoint", p):
        if (cand / "model.safetensors").is_file():
            return cand
    raise FileNotFoundError(f"{path}: no Diff-SIT model here (looked for model/, checkpoint/ and model.safetensors)")


@torch.no_grad()
def measure_latent_stats(model, sampler: ClipSampler, batches: int = 8, batch_size: int = 4, device="cpu") -> None:
    """Per-channel mean and std of the VAE's latents over training clips, into the config and
    the normalisation buffers (Wan's ``latents_mean``/``latents_std`` are such statistics)."""
    lat = []
    for i in range(batches):
        clip = sampler.batch(10_000_000 + i, batch_size).to(device)
        lat.append(model.odfte.vae.encode(clip.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mode().float().cpu())
    z = torch.cat(lat).transpose(0, 1).reshape(lat[0].shape[1], -1)
    mean, std = z.mean(dim=1), z.std(dim=1).clamp_min(1e-3)
    model.config.odfte.vae["latents_mean"] = [round(v, 6) for v in mean.tolist()]
    model.config.odfte.vae["latents_std"] = [round(v, 6) for v in std.tolist()]
    model.odfte.latents_mean.copy_(mean.view_as(model.odfte.latents_mean))
    model.odfte.latents_inv_std.copy_((1 / std).view_as(model.odfte.latents_inv_std))
    model.odfte.vae.register_to_config(latents_mean=model.config.odfte.vae["latents_mean"], latents_std=model.config.odfte.vae["latents_std"])


def _save_checkpoint(folder: Path, model, optimizer, scheduler, step: int, metadata: dict) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # no update() here: it resizes buffers that DDP broadcasts from every process. A
    # checkpoint codes with the constants of its run's start; the result's are its own
    model.save(tmp, metadata={**metadata, "step": str(step)})
    state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    torch.save(state, tmp / "training_state.pt")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)  # the commit point: a kill leaves either the old or the new checkpoint
    shutil.rmtree(old, ignore_errors=True)


def _load_training_state(path: Path) -> dict:
    """The optimizer, scheduler and RNG state of a checkpoint: tensors and plain values only
    (what _save_checkpoint writes), so a checkpoint from elsewhere cannot run code on load."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} holds more than tensors and plain values, which this trainer never writes, and is not loaded "
            f"({str(e).splitlines()[0]}). Start over with --no-resume, or use another --out."
        ) from None


def train(config: TrainConfig, out: str | Path, *, resume: bool = True, progress: bool = True, until: int | None = None) -> Path | None:
    """Run one stage; returns the result's model folder (``out/model``).

    ``until``: stop after that step, leaving a checkpoint and no result (None returned), as a
    killed run would; the next call resumes it."""
    out = Path(out)
    acc = _accelerator(config, out)
    sampler = ClipSampler([build_source(s) for s in config.data], list(config.data_weights), config.frames, config.crop, config.seed)
    model, state, start = _start(config, out / "checkpoint", resume)
    if config.stage == 2 and config.dit == "full":
        model.config.odfte.full_dit = True  # the base DiT is trained: save it too
    model.odfte.set_gradient_checkpointing(config.gradient_checkpointing)
    model.train()
    for coder in _entropy_coders(model):
        coder.noisy_decoder_input = config.quantize == "noise"
    main, aux = trainable_parameters(model, config)
    optimizer, scheduler = _optimizer(model, config, main, aux)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and "cuda_rng" in state:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    else:
        torch.manual_seed(config.seed * 1000 + acc.process_index)
    step_module = TrainStep(model, config)
    step_module, optimizer, scheduler = acc.prepare(step_module, optimizer, scheduler)
    metadata = {
        "training_config": config.to_json(),
        "data": json.dumps(sampler.describe()),
        "git": json.dumps(git_state()),
        "stage": str(config.stage),
        "perceptual": acc.unwrap_model(step_module).perceptual.choice,
        "processes": str(acc.num_processes),
    }
    run = _Run(config, out, acc, sampler, step_module, optimizer, scheduler, main, metadata)
    run.open_log(start)
    if not run.loop(start, until, progress):
        return None
    return run.finish()


def _accelerator(config: TrainConfig, out: Path):
    # accelerate is the [train] extra's, and costs a second to import: only a training run needs it
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    precision = ("bf16" if cuda else "no") if config.mixed_precision == "auto" else config.mixed_precision
    return Accelerator(
        cpu=not cuda,
        mixed_precision=precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        log_with="tensorboard" if config.tensorboard else None,
        project_dir=str(out),
    )


def _start(config: TrainConfig, ckpt: Path, resume: bool) -> tuple[DiffSIT, dict | None, int]:
    """The model, the saved training state (None: a fresh start) and the first step."""
    if resume and (ckpt / "training_state.pt").is_file():
        saved = TrainConfig.from_dict(json.loads(DiffSIT.read_metadata(ckpt)["training_config"]))
        if saved != config:
            raise ValueError(f"{ckpt} was written by a different training config; use another --out, or --no-resume to start over")
        model = DiffSIT.load(ckpt, pretrained_dir=config.model.get("pretrained_dir"))
        state = _load_training_state(ckpt / "training_state.pt")
        return model, state, state["step"]
    return build_model(config), None, 0


def _optimizer(model, config: TrainConfig, main: list, aux: list):
    """Adam over three groups (the weights, the entropy models' quantiles, the quantization
    gains), each with its learning rate, and its schedule."""
    gains = {id(p) for n, p in model.named_parameters() if n.endswith("log_gain")}
    optimizer = torch.optim.Adam(
        [
            {"params": [p for p in main if id(p) not in gains], "lr": config.lr},
            {"params": aux, "lr": config.lr_aux},
            {"params": [p for p in main if id(p) in gains], "lr": config.lr_gain},
        ]
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, [_lr_lambda(config), lambda s: 1.0, _lr_lambda(config)])


@dataclass
class _Run:
    """One training run's loop, its log and its result, once everything is prepared."""

    config: TrainConfig
    out: Path
    acc: Any
    sampler: ClipSampler
    step_module: Any
    optimizer: Any
    scheduler: Any
    main: list
    metadata: dict

    @property
    def log_path(self) -> Path:
        return self.out / "log.csv"

    def open_log(self, start: int) -> None:
        config, acc = self.config, self.acc
        if config.tensorboard:
            acc.init_trackers("diffsit", config={k: v for k, v in json.loads(config.to_json()).items() if isinstance(v, (int, float, str, bool))})
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.json").write_text(config.to_json())
            if start == 0 or not self.log_path.is_file():
                with open(self.log_path, "w", newline="") as fh:
                    csv.writer(fh).writerow(LOG_FIELDS)

    def loop(self, start: int, until: int | None, progress: bool) -> bool:
        """Steps ``start`` to the end; False when it stopped at ``until`` (a checkpoint, no result)."""
        config, acc = self.config, self.acc
        bar = tqdm(total=config.steps, initial=start, disable=not (progress and acc.is_main_process), desc=f"stage {config.stage} {config.name}")
        tick = time.perf_counter()
        for step in range(start, config.steps):
            clip = self.sampler.batch(step, config.batch_size, acc.process_index).to(acc.device)
            with acc.autocast():
                loss, logs = self.step_module(clip)
            self.optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            if config.grad_clip:
                acc.clip_grad_norm_(self.main, config.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            bar.update(1)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                self._log(done, logs, (time.perf_counter() - tick) / config.log_every, bar)
                tick = time.perf_counter()
            if (done % config.checkpoint_every == 0 or done == config.steps or done == until) and done != start:
                acc.wait_for_everyone()
                if acc.is_main_process:
                    _save_checkpoint(self.out / "checkpoint", acc.unwrap_model(self.step_module).model, self.optimizer, self.scheduler, done, self.metadata)
            if done == until:
                bar.close()
                acc.end_training()
                return False
        bar.close()
        return True

    def _log(self, done: int, logs: dict, sec_per_step: float, bar) -> None:
        config = self.config
        row = {"step": done, "stage": config.stage, "lr": self.scheduler.get_last_lr()[0], "sec_per_step": sec_per_step, **logs}
        bar.set_postfix({k: f"{row[k]:.4g}" for k in ("loss", "bpp", "psnr_tilde", "psnr_hat") if k in row})
        if self.acc.is_main_process:
            with open(self.log_path, "a", newline="") as fh:
                csv.writer(fh).writerow([row.get(k, "") for k in LOG_FIELDS])
        if config.tensorboard:
            self.acc.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=done)

    def finish(self) -> Path:
        """The result: the model with its coding constants, saved to ``out/model``."""
        config, acc = self.config, self.acc
        acc.wait_for_everyone()
        model = acc.unwrap_model(self.step_module).model
        result = self.out / "model"
        if acc.is_main_process:
            model.eval()
            if config.stage == 0:
                measure_latent_stats(model, self.sampler, device=acc.device)
            # stage 1 never touches ODFTE: fine-tuning a part of STEM in a trained model (the
            # recipe's per-lambda P-coder runs) leaves a model as complete as it started
            model.config.trained = config.stage == 2 or (config.stage == 1 and model.config.trained)
            model.config.description = (
                f"Diff-SIT {model.config.name}, trained by diffsit.train stage {config.stage}"
                f" (lambda={config.lam:g}, {config.steps} steps); see model.safetensors metadata"
            )
            model.update()
            tmp = result.with_name("model.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save(tmp, metadata={**self.metadata, "step": str(config.steps)})
            shutil.rmtree(result, ignore_errors=True)
            tmp.rename(result)
        acc.wait_for_everyone()
        acc.end_training()
        return result
