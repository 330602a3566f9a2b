"""A Diff-SIT model: STEM (intra, P, MV coders) + ODFTE, with its config and weights.

Saved as a folder: ``config.json`` and ``model.safetensors``. The SHA-256 of the weights (over
the tensors in name order) goes into every bitstream, so a decoder refuses a stream made by
other weights. ``random_model()`` builds an untrained model from a seed, labelled as such:
for tests and plumbing only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from .odfte import ODFTE, ODFTEConfig, tiny_config


@dataclass
class DiffSITConfig:
    name: str = "tiny"
    intra: dict = field(default_factory=lambda: {"n": 32, "m": 48})
    mv: dict = field(default_factory=lambda: {"n": 32, "m": 32})
    pframe: dict = field(default_factory=lambda: {"n": 32, "m": 48, "ctx": 16})
    odfte: ODFTEConfig = field(default_factory=tiny_config)
    window: int = 9  # ODFTE window, 9 + 12m frames
    intra_period: int = -1
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
    def __init__(self, config: DiffSITConfig):
        super().__init__()
        from .stem.intra import IntraCoder
        from .stem.mv import MVCoder
        from .stem.pframe import PCoder

        self.config = config
        self.intra = IntraCoder(**config.intra)
        self.mv = MVCoder(**config.mv)
        self.pframe = PCoder(**config.pframe)
        self.odfte = ODFTE(config.odfte)
        self.odfte.add_lora()

    @property
    def model_id(self) -> str:
        return self.config.name

    def update(self) -> None:
        """Entropy-coder tables, after training or loading."""
        self.intra.update()
        self.mv.update()
        self.pframe.update()

    def weights_sha256(self) -> bytes:
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.digest()

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(self.config.to_json())
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"model_id": self.model_id, "trained": str(self.config.trained)})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> DiffSIT:
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg, weights = folder / "config.json", folder / "model.safetensors"
        for f in (cfg, weights):
            if not f.is_file():
                raise FileNotFoundError(f"Diff-SIT model folder {folder} lacks {f.name}")
        model = cls(DiffSITConfig.from_json(cfg.read_text()))
        model.load_state_dict(load_file(str(weights)))
        model.update()
        return model.eval()


def random_model(seed: int = 0, config: DiffSITConfig | None = None) -> DiffSIT:
    """An UNTRAINED model with weights drawn from ``seed`` (identical in every process)."""
    config = config or DiffSITConfig()
    config.name = f"{config.name}-random-seed{seed}"
    config.trained = False
    config.description = "randomly initialised, untrained: for tests and plumbing only"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DiffSIT(config)
    model.update()
    return model.eval()
