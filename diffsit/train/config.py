"""Training configuration: one JSON file (or dict) per run, stored in every checkpoint.

A *run* trains one stage of one model:

- stage 0: the Wan VAE as an autoencoder (MSE); afterwards its decoder is frozen and the
  per-channel latent mean and std are measured and written into the model config (as Wan's
  published ``latents_mean``/``latents_std`` were);
- stage 1: STEM alone, lambda * R + w_d * MSE(x~, x) over whole GOP clips (``objective``
  ``gop``), or one part of STEM on what it does: ``intra`` (the intra coder on single frames)
  or ``motion`` (the two flow coders, on the warp their coded flow gives);
- stage 2: end to end, lambda * R + w_d * MSE(x^, x) + w_p * perceptual(x^, x)
  + w_t * MSE(x~, x), with the VAE decoder frozen.

R is bits per pixel over the clip (all frame types), MSE is on RGB in [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class TrainConfig:
    stage: int = 1
    name: str = "tiny"  # the model's id (e.g. tiny-lambda2); stage 2 models are marked trained
    lam: float = 1.0  # the rate weight lambda (larger -> lower rate)
    steps: int = 1000
    batch_size: int = 4
    frames: int = 9  # clip length: one ODFTE window (9 + 12m)
    crop: tuple[int, int] = (128, 128)
    lr: float = 1e-4
    lr_aux: float = 1e-3  # CompressAI's entropy-bottleneck quantiles
    lr_gain: float = 1e-2  # the coders' per-channel quantization gains (log scale): the fast rate knob
    warmup: int = 50
    decay_from: float = 0.8  # fraction of steps after which the lr falls linearly to 10 %
    grad_clip: float = 1.0
    distortion_weight: float = 100.0  # w_d
    perceptual: str = "auto"  # auto | lpips | dists | ms_ssim | none
    perceptual_weight: float = 4.0  # w_p
    tilde_weight: float = 0.25  # w_t, stage 2: keeps x~ an image (the encoder's flow runs on it)
    # w_c, stage 2 (ours, not the paper's): weight of the MSE between x^'s and x's frame-to-frame
    # differences, relative to w_d. Per-frame MSE leaves free how the error changes from frame
    # to frame; this term makes ODFTE's error follow the source's motion rather than flicker
    temporal_weight: float = 0.0
    dit: str = "lora"  # lora | full: which DiT weights stage 2 trains
    # stage 2: False freezes STEM (its rate and x~ stay those of the stage-1 model) and trains
    # ODFTE alone, at a quarter of the cost per step
    train_stem: bool = True
    # stage 1: also intra-code every frame of the clip, with this weight on its own RD loss. A
    # GOP clip holds one intra frame, so without it the intra coder sees a few images a step
    # (DCVC-style training starts from a separately trained intra model instead).
    intra_all_frames: float = 0.0
    # stage 1: gop (STEM over GOP clips, every part), intra (the intra coder alone, on each
    # frame of the clips: its pretraining), or motion (the MV coder and the P coder's motion
    # coder alone: lambda * R + w_d * MSE(warp(reference, coded flow), frame), the MV coder
    # from one frame back as MV frames see it, the P one from three back, across a group), or
    # pframe (the P coder alone, every part of it, on a frame three after a reference coded by
    # the frozen intra coder, as a P frame references the previous group's backbone; it logs
    # the same frame coded intra beside it, bpp_intra and psnr_intra, which P must beat)
    objective: str = "gop"
    # stage 1, a model built from ``init``: start the P coder's contextual codec from the
    # intra coder's transforms and entropy model (its context inputs at zero weight), so that
    # P coding starts where intra coding is and has only the context to learn
    pframe_from_intra: bool = False
    # names (prefixes) of parameters this run leaves as its starting point had them, whatever
    # the objective trains: e.g. a P coder's transforms through the GOP stages, where its
    # quantization gains (``pframe.codec.log_gain``) still move the rate
    freeze: list[str] = field(default_factory=list)
    # what STEM's decoders see in training: ste (straight-through rounding, as coded) or noise
    # (additive uniform noise: for training from scratch; fine-tune with ste afterwards)
    quantize: str = "ste"
    data: list[str] = field(default_factory=lambda: ["photos"])
    data_weights: list[float] = field(default_factory=lambda: [1.0])
    seed: int = 0
    init: str | None = None  # a model folder or run folder to start from; None: a fresh model
    init_odfte: str | None = None  # take ODFTE weights (and config) from here instead
    # a fresh model: DiffSITConfig overrides, or {"preset": NAME, "pretrained_dir": DIR, ...}
    # (diffsit.presets: tiny, wan2.1-1.3b, wan2.1-1.3b-shaped); pretrained_dir also finds the
    # Wan folder of an init or checkpoint whose own path does not resolve here
    model: dict = field(default_factory=dict)
    # recompute the DiT blocks' and the VAE's activations in the backward pass (memory for time)
    gradient_checkpointing: bool = False
    log_every: int = 10
    checkpoint_every: int = 200
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, none on CPU) | no | bf16 | fp16
    tensorboard: bool = False

    def __post_init__(self):
        self.crop = tuple(self.crop)
        if self.stage not in (0, 1, 2):
            raise ValueError(f"stage must be 0, 1 or 2, got {self.stage}")
        if self.perceptual not in ("auto", "lpips", "dists", "ms_ssim", "none"):
            raise ValueError(f"perceptual must be auto, lpips, dists, ms_ssim or none, got {self.perceptual!r}")
        if self.quantize not in ("ste", "noise"):
            raise ValueError(f"quantize must be ste or noise, got {self.quantize!r}")
        if self.objective not in ("gop", "intra", "motion", "pframe"):
            raise ValueError(f"objective must be gop, intra, motion or pframe, got {self.objective!r}")
        if self.objective != "gop" and self.stage != 1:
            raise ValueError(f"objective {self.objective!r} is a stage-1 objective (STEM's parts); stage {self.stage} trains the whole GOP")
        if self.objective in ("motion", "pframe") and self.frames < 4:
            raise ValueError(f"objective {self.objective} needs clips of at least 4 frames (a P frame is three after its reference)")
        if self.dit not in ("lora", "full"):
            raise ValueError(f"dit must be lora or full, got {self.dit!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be positive")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
