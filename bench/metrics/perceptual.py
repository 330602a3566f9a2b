"""Perceptual metrics through their reference packages: LPIPS, DISTS, CLIPIQA.

The values are the reference implementations' values: the networks are the packages' own
classes, with the packages' own calibration weights (LPIPS's linear layers and DISTS's
alpha/beta ship inside their wheels). Only the ImageNet backbones are loaded by us, from the
files ``bench.weights`` locates, because the packages would download them (and, with
torchvision >= 0.28, call an API that no longer exists). Frames go in as RGB in [0, 1] at
their original size, batched, on the metric's device.

``random_weights=True`` builds the same networks with random backbones: for tests only.
"""

from __future__ import annotations

import contextlib
from importlib import resources

import numpy as np
import torch

from .. import weights
from . import Column, FrameBatch, Metric, MetricUnavailable


@contextlib.contextmanager
def _backbone(module, attr: str, build):
    """Make ``module.attr(pretrained=...)`` return our backbone while a package builds itself."""
    original = getattr(module, attr)
    setattr(module, attr, lambda *a, **k: build(original))
    try:
        yield
    finally:
        setattr(module, attr, original)


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


class _TorchMetric(Metric):
    weights_key: str = ""
    package: str = ""

    def __init__(self, device="cpu", random_weights: bool = False):
        super().__init__(device)
        self.random_weights = random_weights
        self._net: torch.nn.Module | None = None

    def check(self) -> None:
        if not self.random_weights and weights.locate(self.weights_key) is None:
            raise MetricUnavailable(weights.missing_message(self.weights_key))

    def _backbone_builder(self):
        """For _backbone(): torchvision's architecture, with the located weights unless random."""
        state = None if self.random_weights else weights.load_state_dict(self.weights_key)

        def build(tv_constructor):
            m = tv_constructor(weights=None)
            if state is not None:
                m.load_state_dict(state)
            return m

        return build

    @property
    def net(self) -> torch.nn.Module:
        if self._net is None:
            self.check()
            self._net = self.build().to(self.device).eval()
            for p in self._net.parameters():
                p.requires_grad_(False)
        return self._net

    def build(self) -> torch.nn.Module:
        raise NotImplementedError

    def describe(self):
        return {**super().describe(), "random_weights": self.random_weights, "backbone": weights.WEIGHTS[self.weights_key].filename}

    def identity(self):
        info = {"metric": self.name, "random_weights": self.random_weights, "package": _package_version(self.package)}
        if not self.random_weights:
            info["backbone"] = weights.fingerprint(self.weights_key)
        return info


class LPIPS(_TorchMetric):
    """LPIPS v0.1, AlexNet, inputs scaled to [-1, 1] (lpips' ``normalize=True``)."""

    name = "lpips"
    column_info = (Column("lpips", "LPIPS", higher_is_better=False, tolerance={"abs": 0.001}, perceptual=True),)
    weights_key = "alexnet"
    package = "lpips"

    def build(self) -> torch.nn.Module:
        import lpips
        import lpips.pretrained_networks as pn

        with _backbone(pn.tv, "alexnet", self._backbone_builder()):
            # pretrained=True loads LPIPS's own linear layers from inside the lpips wheel
            return lpips.LPIPS(pretrained=True, net="alex", version="0.1", verbose=False)

    @torch.no_grad()
    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        x, y = batch.ref_rgb.to(self.device), batch.dist_rgb.to(self.device)
        d = self.net(x, y, normalize=True)
        return {"lpips": d.reshape(-1).double().cpu().numpy()}


class DISTS(_TorchMetric):
    name = "dists"
    column_info = (Column("dists", "DISTS", higher_is_better=False, tolerance={"abs": 0.001}, perceptual=True),)
    weights_key = "vgg16"
    package = "DISTS-pytorch"

    def build(self) -> torch.nn.Module:
        import DISTS_pytorch.DISTS_pt as dp

        with _backbone(dp.models, "vgg16", self._backbone_builder()):
            net = dp.DISTS(load_weights=False)
        # DISTS-pytorch reads alpha/beta from sys.prefix, which is wrong in most installs; the
        # same file ships inside the package, so read it from there.
        ab = torch.load(resources.files("DISTS_pytorch") / "weights.pt", map_location="cpu", weights_only=True)
        net.alpha.data, net.beta.data = ab["alpha"], ab["beta"]
        return net

    @torch.no_grad()
    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        x, y = batch.ref_rgb.to(self.device), batch.dist_rgb.to(self.device)
        d = self.net(x, y, batch_average=False)
        return {"dists": d.reshape(-1).double().cpu().numpy()}


class CLIPIQA(Metric):
    """CLIP-IQA (no-reference; higher is better) through pyiqa, an optional extra."""

    name = "clipiqa"
    column_info = (Column("clipiqa", "CLIPIQA", tolerance={"abs": 0.002}, perceptual=True, aliases=("clip-iqa",)),)

    def identity(self):
        return {"metric": self.name, "pyiqa": _package_version("pyiqa"), "clip": weights.fingerprint("clip_rn50")}

    def __init__(self, device="cpu"):
        super().__init__(device)
        self._metric = None

    def check(self) -> None:
        import importlib.util

        if importlib.util.find_spec("pyiqa") is None:
            raise MetricUnavailable("CLIPIQA needs pyiqa, an optional extra: pip install 'diffsit-bench[clipiqa]'")
        if weights.locate("clip_rn50") is None:
            raise MetricUnavailable(weights.missing_message("clip_rn50"))

    @torch.no_grad()
    def compute(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        if self._metric is None:
            self.check()
            import pyiqa

            self._metric = pyiqa.create_metric("clipiqa", device=self.device)
        return {"clipiqa": self._metric(batch.dist_rgb.to(self.device)).reshape(-1).double().cpu().numpy()}
