"""A Diff-SIT model: STEM (intra, P, MV coders) + ODFTE, with its config and weights.

Saved as a folder: ``config.json`` and ``model.safetensors``. The SHA-256 of the weights (over
the tensors in name order, the coding constants included) goes into every bitstream, so a
decoder refuses a stream made by other weights.

The coding constants (``coding_constant``) are what ``update()`` derives from the weights with
an exp, a log or an erf: the range coder's CDF tables, the scale table, the exact gains and
the scale-index thresholds. They are computed once, by whoever trains the model, and stored:
recomputing them at load time would give other bits on another CPU, and a range decoder
whose tables differ by one count is lost. ``random_model()`` builds an untrained model from a seed, labelled as such:
for tests and plumbing only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from .deferred import Deferred, Scratch, replay, storage_key
from .odfte import ODFTE, ODFTEConfig, encode_empty_prompt, tiny_config
from .pretrained import resolve_pretrained
from .stem.intra import IntraCoder, step_gain, step_ratio
from .stem.mv import MVCoder
from .stem.pframe import PCoder

_TABLES = ("._offset", "._quantized_cdf", "._cdf_length")  # the hyperpriors' (EntropyBottleneck)
_EXACT = (".exact_gain", ".exact_thresholds")
# the Gaussian coders' tables: the package's one copy (diffsit.stem.intra.gaussian_tables),
# part of the state (and so of the hash) but not of a model's file
_SHARED = tuple(f".gaussian.{name}" for name in ("_offset", "_quantized_cdf", "_cdf_length", "scale_table"))


def level_lambda(lam: float, level: int) -> float:
    """The lambda a model trained at ``lam`` codes at on step level ``level``. At high rate the
    distortion is proportional to the step squared and its slope against the rate too, so a
    step 1/k as fine stands for lambda / k^2 (gain k = q^level)."""
    k = step_gain(level)
    return lam / (k * k)


def lambda_level(lam: float, trained: float) -> int:
    """The step level of a model trained at ``trained`` nearest to coding at ``lam`` (the
    inverse of :func:`level_lambda`, rounded)."""
    return round(math.log(trained / lam) / (2 * math.log(step_ratio())))


class MissingTextEmbedding(ValueError):
    """A Wan-based model saved without its umT5 empty-prompt embedding."""


@dataclass
class DiffSITConfig:
    name: str = "tiny"
    intra: dict = field(default_factory=lambda: {"n": 32, "m": 48})
    # the motion coders are the smallest that still learn flow well: the four shipped tiny
    # models must fit in 16 MB
    mv: dict = field(default_factory=lambda: {"n": 20, "m": 20})
    pframe: dict = field(default_factory=lambda: {"n": 32, "m": 48, "ctx": 16, "mv_n": 20, "mv_m": 20})
    odfte: ODFTEConfig = field(default_factory=tiny_config)
    window: int = 9  # ODFTE window, 9 + 12m frames
    # frames consecutive ODFTE windows share, crossfaded (gop.overlapping_chunks): without it
    # every window refines on its own and a seam can show between them (docs/measurements/diffsit.md)
    window_overlap: int = 0
    # the encoder-chosen strength map's block size (diffsit.strength); 0: none, x^ is ODFTE's
    # output as is (the paper's decoder-only form). Pixels of the padded frame.
    strength_block: int = 32
    intra_period: int = -1
    # the rate weight lambda the STEM was trained with, and the weight of its MSE (TrainConfig's
    # lam and distortion_weight): the encoder's mode decision weighs a frame's bits against its
    # squared error as training did. None: not known (every P frame codes its residual)
    lam: float | None = None
    distortion_weight: float = 100.0
    # a P frame whose coded residual does not pay for its bits in that cost sends its motion
    # alone, and the prediction is the frame (bitstream version 6)
    p_skip: bool = True
    trained: bool = False
    description: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=list) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DiffSITConfig:
        d = json.loads(text)
        d["odfte"] = ODFTEConfig(**d["odfte"])
        return cls(**d)


class DiffSIT(nn.Module):
    def __init__(self, config: DiffSITConfig, *, deferred: bool = False):
        """``deferred``: build ODFTE without its weights' memory (``diffsit.deferred``), the
        same random draws recorded; :meth:`materialize` gives them values before any use."""
        super().__init__()
        self.config = config
        self.intra = IntraCoder(**config.intra)
        self.mv = MVCoder(**config.mv)
        self.pframe = PCoder(**config.pframe)
        mode = Deferred() if deferred else contextlib.nullcontext()
        with mode:
            self.odfte = ODFTE(config.odfte)
            self.odfte.add_lora()
        self._deferred = mode.recipes if deferred else None
        self._sha256: bytes | None = None

    @property
    def model_id(self) -> str:
        return self.config.name

    def rd_tradeoff(self, p_skip: bool | None = None) -> tuple[float, float] | None:
        """(lambda, distortion weight) of the encoder's P-frame mode decision, or None when it
        codes every residual (``p_skip`` off, or a model that does not know its lambda). At a
        step level the lambda is the one that level's steps stand for (:func:`level_lambda`).
        ``p_skip``: the caller's setting, over the config's (None: the config's)."""
        skip = self.config.p_skip if p_skip is None else p_skip
        if not skip or self.config.lam is None:
            return None
        return level_lambda(self.config.lam, self.step_level), self.config.distortion_weight

    @property
    def step_level(self) -> int:
        """The texture coders' step level (``diffsit.stem.intra.step_gain``): 0 codes at the
        trained steps. The motion coders keep theirs: a finer step buys texture, not motion."""
        return self.intra.step_level

    @contextlib.contextmanager
    def at_step_level(self, level: int):
        """Code at ``level`` inside the block (the intra coder and the P coder's residual
        codec), then at the trained steps again."""
        step_gain(level)  # validates it
        before = self.intra.step_level, self.pframe.codec.step_level
        self.intra.step_level = self.pframe.codec.step_level = level
        try:
            yield self
        finally:
            self.intra.step_level, self.pframe.codec.step_level = before

    @torch.no_grad()
    def update(self) -> None:
        """The coding constants, after training (weights may have changed: rehash)."""
        self._sha256 = None
        self.intra.update()
        self.mv.update()
        self.pframe.update()

    @staticmethod
    def coding_constant(key: str) -> bool:
        """Derived from the weights by update(), stored, never recomputed at load time."""
        return key.endswith(_TABLES + _EXACT) and not key.endswith(_SHARED)

    @staticmethod
    def shared_constant(key: str) -> bool:
        return key.endswith(_SHARED)

    def set_dtype(self, dtype: torch.dtype | None) -> DiffSIT:
        """ODFTE's weights in ``dtype`` (fp32, bf16, fp16); STEM keeps its own: it is exact.

        The weights hash stays that of the weights as loaded: a stream names the weights,
        and running ODFTE in another precision is a way of running the same ones."""
        self.weights_sha256()
        self.odfte.to(dtype or torch.float32)
        return self

    def weights_sha256(self) -> bytes:
        """Hash of the weights, computed once per update(): every encode, decode and manifest
        asks for it, and a Wan-1.3B model has gigabytes to hash."""
        if self._sha256 is None:
            self._sha256 = self._hash()
        return self._sha256

    def _hash(self) -> bytes:
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            _hash_tensor(h, name, t)
        return h.digest()

    def deferred_names(self) -> set[str]:
        """The state's tensors that have no values yet (``deferred=True``, before materialize)."""
        return {k for k, t in self.state_dict(keep_vars=True).items() if t.is_meta}

    @torch.no_grad()
    def materialize(self, dtype: torch.dtype | None = None, state: dict[str, torch.Tensor] | None = None) -> DiffSIT:
        """Give a deferred model's tensors their values one at a time, in the weights hash's
        order, hashing them on the way: ``state``'s (a file's, taken out of it as used) where it
        has the tensor, else its recorded initialisation, in float32 as load_state_dict copies
        it; ODFTE's are then kept in ``dtype`` (:meth:`set_dtype`). One float32 tensor at a
        time is held besides the model: a bf16 Wan-1.3B ODFTE never exists whole in float32."""
        state = {} if state is None else state
        scratch, h = Scratch(), hashlib.sha256()
        for name, t in sorted(self.state_dict(keep_vars=True).items()):
            if t.is_meta:
                # the scratch is overwritten by the next tensor: only for a value cast into another
                cast = dtype not in (None, t.dtype) and name.startswith("odfte.") and t.is_floating_point()
                value = self._fill(name, t, state.pop(name, None), scratch if cast else None)
                self._assign(name, value.to(dtype) if cast else value)
                t = value
            _hash_tensor(h, name, t)
        for name, t in [*self.named_parameters(), *self.named_buffers()]:
            if t.is_meta:  # outside the state (a non-persistent buffer): not hashed
                self._assign(name, self._fill(name, t, None, None))
        self._deferred = None
        self._sha256 = h.digest()
        return self.set_dtype(dtype)  # the tensors built with values (norms' ones, buffers)

    def _fill(self, name: str, meta: torch.Tensor, stored: torch.Tensor | None, scratch) -> torch.Tensor:
        """A deferred tensor's float32 value, in ``scratch`` when it is only to be cast."""
        shape, stride = tuple(meta.shape), meta.stride()
        out = scratch.like(shape, stride, meta.dtype) if scratch else torch.empty_strided(shape, stride, dtype=meta.dtype)
        if stored is None:
            return replay(self._deferred[storage_key(meta)], out)
        if stored.shape != meta.shape:
            raise ValueError(f"size mismatch for {name}: the file holds {tuple(stored.shape)}, the model has {tuple(meta.shape)}")
        return out.copy_(stored)  # as load_state_dict copies it

    def _assign(self, name: str, value: torch.Tensor) -> None:
        owner, _, leaf = name.rpartition(".")
        module = self.get_submodule(owner)
        if leaf in module._parameters:
            module._parameters[leaf] = nn.Parameter(value, requires_grad=module._parameters[leaf].requires_grad)
        else:
            module._buffers[leaf] = value

    def from_wan_folder(self, key: str) -> bool:
        """Weights that come unchanged from the Wan2.1 folder (frozen decoder, and the base DiT
        unless it was trained: ``odfte.full_dit``), which a pretrained-based model does not save
        again: STEM, the FTE, LoRA, the (trained) VAE encoder, the text embedding, and with
        dit=full the whole DiT, are ours."""
        if not self.config.odfte.pretrained_dir:
            return False
        frozen = key.startswith(("odfte.vae.decoder.", "odfte.vae.post_quant_conv."))
        base_dit = key.startswith("odfte.transformer.") and "lora_" not in key and not self.config.odfte.full_dit
        return frozen or base_dit

    def save(self, folder: str | Path, metadata: dict[str, str] | None = None, dtype: torch.dtype | None = None) -> Path:
        """``metadata``: strings stored in the safetensors header (training provenance).
        ``dtype``: store floating-point weights in it (float16 for the shipped models; they
        are loaded back into float32, and the stream hash is of the loaded weights)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config
        if config.odfte.pretrained_dir:
            # relative to the model folder: no absolute path of the training machine in the
            # file, and a model moved with its Wan folder still finds it
            rel = os.path.relpath(Path(config.odfte.pretrained_dir).resolve(), folder.resolve())
            config = replace(config, odfte=replace(config.odfte, pretrained_dir=rel))
        (folder / "config.json").write_text(config.to_json())
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not (self.from_wan_folder(k) or self.shared_constant(k))}
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() and not self.coding_constant(k) else v for k, v in state.items()}
        meta = {**(metadata or {}), "model_id": self.model_id, "trained": str(self.config.trained), "storage_dtype": str(dtype or "float32")}
        save_file(state, str(folder / "model.safetensors"), metadata=meta)
        return folder

    @staticmethod
    def read_metadata(folder: str | Path) -> dict[str, str]:
        from safetensors import safe_open

        with safe_open(str(Path(folder) / "model.safetensors"), framework="pt") as f:
            return dict(f.metadata() or {})

    @classmethod
    def load(
        cls, folder: str | Path, *, pretrained_dir: str | Path | None = None, need_text_embedding: bool = True, dtype: torch.dtype | None = None
    ) -> DiffSIT:
        """``pretrained_dir``: the Wan folder of a pretrained-based model, over the one its
        config names (``diffsit.pretrained.resolve_pretrained``). ``dtype``: ODFTE's
        (:meth:`set_dtype`); a model not based on a Wan folder loads straight into it
        (:meth:`materialize`), one diffusers loads from the Wan folder is cast after loading."""
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg, weights = folder / "config.json", folder / "model.safetensors"
        for f in (cfg, weights):
            if not f.is_file():
                raise FileNotFoundError(f"Diff-SIT model folder {folder} lacks {f.name}")
        config = DiffSITConfig.from_json(cfg.read_text())
        if config.odfte.pretrained_dir or pretrained_dir:
            config.odfte.pretrained_dir = resolve_pretrained(pretrained_dir, stored=config.odfte.pretrained_dir, model_folder=folder)
            if need_text_embedding and config.odfte.text_embedding != "umt5-empty-prompt":
                raise MissingTextEmbedding(
                    f"model {folder} runs on Wan2.1 but holds no umT5 empty-prompt embedding (its text condition would be "
                    f"zeros, which Wan never saw). Compute it once with `python -m diffsit embed-prompt {folder}` "
                    "(reads the Wan folder's text_encoder/ and tokenizer/)."
                )
        model = cls(config, deferred=not config.odfte.pretrained_dir)
        state = load_file(str(weights))
        state = {k: v for k, v in state.items() if not model.shared_constant(k)}  # files saved with a copy
        if "pframe.refine.0.weight" in state:
            raise ValueError(
                f"{weights} holds a P coder of bitstream version 4 (pure conditional coding), which this version "
                "replaced by residual coding from the motion-compensated prediction: retrain it "
                "(`python -m diffsit train`, docs/diffsit-training.md), or use the version of diffsit it was trained with"
            )
        for key, t in state.items():
            if model.coding_constant(key) and key.endswith(_TABLES):  # CompressAI's tables start empty: give them the stored shape
                owner, _, buffer = key.rpartition(".")
                getattr(model.get_submodule(owner), buffer).resize_(t.shape)
        deferred = model.deferred_names()
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in deferred}, strict=False)
        missing = [k for k in missing if k not in deferred or k not in state]
        # log_gain: models saved before the coders had quantization gains keep gain 1 (zeros)
        ours_missing = [k for k in missing if not (model.from_wan_folder(k) or model.coding_constant(k) or model.shared_constant(k) or k.endswith("log_gain"))]
        if unexpected or ours_missing:
            raise ValueError(f"{weights} does not fit this model: missing {ours_missing[:5]}, unexpected {unexpected[:5]}")
        if any(model.coding_constant(k) for k in missing):
            # a model saved before the constants were stored: derive them here. Streams it
            # writes decode where they were made; save it again to make them portable
            model.update()
        model._sha256 = None
        if deferred:
            return model.materialize(dtype, state).eval()
        return (model.set_dtype(dtype) if dtype else model).eval()

    @classmethod
    def freeze(cls, folder: str | Path, *, force: bool = False) -> bytes:
        """Store the coding constants in a model folder saved without them (or, ``force``,
        recompute them), keeping its storage dtype and metadata. Returns the weights hash."""
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls.load(folder)
        stored = load_file(str(folder / "model.safetensors"))
        if force or not any(model.coding_constant(k) for k in stored):
            model.update()
        return model.rewrite(folder)

    @classmethod
    def embed_prompt(cls, folder: str | Path, *, pretrained_dir: str | Path | None = None) -> bytes:
        """Compute and store a Wan-based model's umT5 empty-prompt embedding (once)."""
        folder = Path(folder)
        model = cls.load(folder, pretrained_dir=pretrained_dir, need_text_embedding=False)
        if not model.config.odfte.pretrained_dir:
            raise ValueError(f"model {folder} does not run on Wan2.1 (no pretrained_dir): it has no text encoder to embed with")
        model.odfte.set_text_embedding(encode_empty_prompt(model.config.odfte.pretrained_dir, model.config.odfte.text_tokens))
        return model.rewrite(folder)

    def rewrite(self, folder: str | Path) -> bytes:
        """Save over ``folder`` (atomically per file) with its storage dtype and metadata;
        returns the weights hash of the result."""
        folder = Path(folder)
        meta = self.read_metadata(folder)
        dtype = {"torch.float16": torch.float16, "torch.bfloat16": torch.bfloat16}.get(meta.get("storage_dtype", ""))
        keep = {k: v for k, v in meta.items() if k not in ("model_id", "trained", "storage_dtype")}
        tmp = folder.with_name(f".{folder.name}.rewriting")
        self.save(tmp, metadata=keep, dtype=dtype)
        for name in ("config.json", "model.safetensors"):
            (tmp / name).replace(folder / name)
        tmp.rmdir()
        self._sha256 = None
        return type(self).load(folder, pretrained_dir=self.config.odfte.pretrained_dir).weights_sha256()


def random_model(seed: int = 0, config: DiffSITConfig | None = None, dtype: torch.dtype | None = None) -> DiffSIT:
    """An UNTRAINED model with weights drawn from ``seed`` (identical in every process on one
    machine: PyTorch's samplers are not the same on every CPU, and the weights hash tells),
    ODFTE's in ``dtype`` (:meth:`DiffSIT.set_dtype`: the hash is of the float32 draws)."""
    config = config or DiffSITConfig()
    config.name = f"{config.name}-random-seed{seed}"
    config.trained = False
    config.description = "randomly initialised, untrained: for tests and plumbing only"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DiffSIT(config, deferred=True)
    model.update()
    return model.materialize(dtype).eval()


def _hash_tensor(h, name: str, t: torch.Tensor) -> None:
    h.update(name.encode())
    h.update(t.detach().cpu().contiguous().numpy())  # its bytes, without a copy of them
