"""Diff-SIT's ``bench`` plugin (the ``bench.codecs`` entry point ``diffsit``).

Rate points are λ values; :func:`diffsit.zoo.rate_point` says which model and step level code
each. The models come from the zoo's per-process cache (:func:`diffsit.zoo.shared_model`) and are
never changed here: the codec's own settings (``strength_block``, ``p_skip``) go to the
pipeline (:func:`diffsit.pipeline.encode_video`) with each call.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.codec import Codec, CodecUnavailable, EncodeResult, Rate, RateSpec, Requirement
from bench.video import Video

from .bitstream import FORMAT_VERSION, stream_model_id
from .pipeline import RefinementCache, check_picture_hash, check_strength_block, decode_intermediate, encode_video, parse_dtype, reconstruct, to_video
from .zoo import LADDER, rate_point, shared_model, spec_for_model_id

#: the [diffsit] extra: the intra coder, the refiner, its adapters, the weights format
EXTRA_PACKAGES = ("compressai", "diffusers", "peft", "safetensors")


class DiffSITCodec(Codec):
    """``bench`` plugin. Rate points are λ values: a trained λ maps to the model
    ``{model}-lambda{λ}``, any other to the nearest one at a step level (``diffsit.zoo.rate_point``)."""

    name = "diffsit"
    rate_name = "lambda"
    learned = True
    rate_spec = RateSpec("float", 0, exclusive_low=True)
    default_rates = tuple(reversed(LADDER))
    extension = ".dsit"
    plot_style = ("#d62728", "^")
    # STEM codes RGB in [0, 1], whatever the source's depth; the stream does not record the
    # depth, so decode() without bit_depth gives 8 bits
    bit_depths = (8, 10)
    location_options = ("pretrained",)

    def __init__(
        self,
        *,
        model: str = "tiny",
        allow_untrained: bool = False,
        device: str = "cpu",
        dtype: str | None = None,
        verify: bool = False,
        strength_block: int | None = None,
        picture_hash: str = "crc32",
        pretrained: str | None = None,
        reuse_refinement: bool = True,
        p_skip: bool | None = None,
    ):
        """``strength_block``: override the model's strength-map block (0: ODFTE's output as is,
        the paper's form). The stream records it, so decoding needs no option.
        ``dtype``: ODFTE's weights and activations (bf16, fp16 or fp32, the default); STEM is
        integer-exact whatever it is. ``picture_hash``: crc32 (default), md5 or none.
        ``pretrained``: the Wan2.1-T2V-1.3B-Diffusers folder of a Wan-based model (default: the
        model's own, or $DIFFSIT_WAN_DIR). ``reuse_refinement``: decode() takes ODFTE's output
        from this instance's encode() of the same stream when x~ matches it sample for sample
        (:class:`RefinementCache`), instead of running ODFTE a second time; false runs it
        again, for timing a decoder on its own. ``p_skip``: override the model's P-frame skip
        decision (false: every P frame codes its residual, as bitstream version 5 did)."""
        self.model_spec, self.allow_untrained, self.device, self.verify = model, allow_untrained, device, verify
        self.strength_block = check_strength_block(strength_block)
        self.dtype = parse_dtype(dtype)
        self.picture_hash = check_picture_hash(picture_hash)
        self.pretrained = pretrained
        self.reuse_refinement = reuse_refinement
        self.p_skip = p_skip
        # verify checks that the decoder reproduces the encoder: it runs ODFTE again
        self._cache = RefinementCache() if reuse_refinement and not verify else None
        self._models: dict[Any, Any] = {}

    def parse_rate(self, text: str | Rate) -> float:
        lam = float(super().parse_rate(text))
        rate_point(self.model_spec, lam)  # a λ beyond the family's reach fails at plan time
        return lam

    def model_for(self, lam: float):
        """The (shared, unchanged) model that codes ``lam``; this codec holds it while it lives."""
        spec = rate_point(self.model_spec, lam).spec
        if spec not in self._models:
            self._models[spec] = self._shared(spec)
        return self._models[spec]

    def settings(self) -> dict[str, Any]:
        """This codec's coding settings over the models' configs (only those it sets)."""
        changes = {"strength_block": self.strength_block, "p_skip": self.p_skip}
        return {k: v for k, v in changes.items() if v is not None}

    def _shared(self, spec: str):
        return shared_model(spec, allow_untrained=self.allow_untrained, pretrained_dir=self.pretrained, dtype=self.dtype, device=self.device)

    @classmethod
    def contract_options(cls) -> dict[str, Any]:
        """bench.testing's contract: a random-weight tiny model, decoder checked against the
        encoder's reconstruction (the shipped weights are the goldens' business)."""
        return {"model": "random", "allow_untrained": True, "verify": True}

    def requirements(self) -> list[Requirement]:
        """The [diffsit] extra's packages: the intra coder, the refiner and its adapters."""
        return [Requirement(f"Python package {m}", importlib.util.find_spec(m) is not None, fix="pip install 'diffsit-bench[diffsit]'") for m in EXTRA_PACKAGES]

    def check(self) -> None:
        missing = [m for m in EXTRA_PACKAGES if importlib.util.find_spec(m) is None]
        if missing:
            raise CodecUnavailable(f"diffsit needs the [diffsit] extra ({', '.join(missing)} missing): pip install 'diffsit-bench[diffsit]'")
        for lam in self.default_rates[:1]:
            self.model_for(lam)

    def encode(self, video: Video, rate: Rate, workdir: Path) -> EncodeResult:
        lam = self.parse_rate(rate)
        model = self.model_for(lam)
        # With verify=true the encoder keeps its reconstruction, so the harness can check that
        # the decoder reproduces it exactly (a model without a strength map then runs ODFTE
        # only for this, doubling the time).
        enc = encode_video(
            model,
            video,
            device=self.device,
            output=self.verify,
            picture_hash_kind=self.picture_hash,
            cache=self._cache,
            step_level=rate_point(self.model_spec, lam).level,
            strength_block=self.strength_block,
            p_skip=self.p_skip,
        )
        rec = to_video(enc.x_hat.cpu(), video.width, video.height, video.fps, video.bit_depth) if self.verify else None
        path = Path(workdir) / f"diffsit_lambda{lam:g}{self.extension}"
        path.write_bytes(enc.data)
        records = enc.stream.records
        return EncodeResult(
            path,
            frame_bytes=enc.stream.record_bytes(),
            frame_types=[r.type.value for r in records],
            display_index=[r.index for r in records],
            reconstruction=rec,
            tools={
                "model_id": model.model_id,
                "step_level": enc.stream.step_level,
                "weights_sha256": model.weights_sha256().hex(),
                # decode_s then leaves out ODFTE, which encode_s holds (RefinementCache)
                "decoder_reuses_refinement": self._cache is not None,
            },
            decode_leaves_out="ODFTE's refinement, which the encoder ran (in encode_s); a receiver runs it" if self._cache is not None else "",
        )

    def decode(self, path: Path, workdir: Path, *, bit_depth: int | None = None) -> Video:
        data = Path(path).read_bytes()
        mid = stream_model_id(data)
        model = next((m for m in self._models.values() if m.model_id == mid), None)
        if model is None:
            model = self._models[mid] = self._shared(spec_for_model_id(mid))
        stream, x_tilde = decode_intermediate(model, data, device=self.device)
        x_hat = reconstruct(model, stream, x_tilde, self._cache)
        return to_video(x_hat.cpu(), stream.width, stream.height, float(stream.fps), bit_depth or 8)

    def identity(self) -> dict[str, Any]:
        # reuse_refinement moves decode time, not a number: the same job either way
        info = {k: v for k, v in self.describe().items() if k not in ("models", "reuse_refinement")}
        hashes, configs = {}, {}
        for lam in self.default_rates:
            with contextlib.suppress(Exception):  # an unloadable model fails at plan time, with its own message
                m = self.model_for(lam)
                hashes[m.model_id] = m.weights_sha256().hex()
                # the weights hash leaves out config.json, whose lambda, skip decision and
                # strength block change the stream all the same: the config as resolved
                configs[m.model_id] = hashlib.sha256(replace(m.config, **self.settings()).to_json().encode()).hexdigest()[:16]
        info["weights_sha256"] = hashes
        info["model_config_sha256"] = configs
        info["format_version"] = FORMAT_VERSION
        # the libraries whose kernels make the numbers: ODFTE's UNet (diffusers), STEM's
        # entropy coder (compressai), torch under both (stdlib import: only this needs it)
        from importlib.metadata import PackageNotFoundError, version

        info["libraries"] = {}
        for lib in ("torch", "diffusers", "compressai"):
            with contextlib.suppress(PackageNotFoundError):
                info["libraries"][lib] = version(lib)
        return info

    def describe(self) -> dict[str, Any]:
        info = {
            **super().describe(),
            "model": self.model_spec,
            "allow_untrained": self.allow_untrained,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "verify": self.verify,
            "picture_hash": self.picture_hash,
            "reuse_refinement": self.reuse_refinement,
        }
        info["strength_block"] = self.strength_block if self.strength_block is not None else "the model's"
        info["p_skip"] = self.p_skip if self.p_skip is not None else "the model's"
        for spec, m in self._models.items():
            info.setdefault("models", {})[spec] = {"model_id": m.model_id, "weights_sha256": m.weights_sha256().hex(), "trained": m.config.trained}
        return info
