"""Checkpoints of random weights for DCVC-FM, DCVC-DC and DCVC-RT, made from their own classes.

The integration tests run the adapters against the real code of microsoft/DCVC, but Microsoft's
trained checkpoints are not redistributable here. These files have every tensor the real
classes load (``load_state_dict`` is strict), under the file names the adapters expect. Two
things are not random: the q-scale tensors, which are spread over 1/4..4 (increasing with the
q index for the encoder, the inverse for the decoder) so that a higher q index quantises more
finely and gives more bits, as in the trained models; untrained, they are all ones and every
rate point would be the same.

    usage: python dcvc_checkpoints.py MODEL_DIR [OUT_DIR]
    (MODEL_DIR: DCVC-family/DCVC-FM, -DC or -RT; OUT_DIR: default MODEL_DIR/checkpoints)

Run it with the Python that has torch; it imports the model folder's ``src`` package, which
needs no built C++ coder as long as nothing calls ``update()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

FILES = {
    "DCVC-FM": ("cvpr2024_image.pth.tar", "cvpr2024_video.pth.tar"),
    "DCVC-DC": ("cvpr2023_image_yuv420_psnr.pth.tar", "cvpr2023_video_yuv420_psnr.pth.tar"),
    "DCVC-RT": ("cvpr2025_image.pth.tar", "cvpr2025_video.pth.tar"),
}

LOW, HIGH = 0.25, 4.0


def ladder(n: int):
    """n q scales from LOW to HIGH, evenly spaced in log."""
    import math

    import torch

    return torch.exp(torch.linspace(math.log(LOW), math.log(HIGH), n))


def spread(param, *, decoder: bool = False) -> None:
    """Set a (levels, ...) q-scale tensor to the ladder along its first axis (its inverse for a
    decoder-side scale), in place."""
    import torch

    with torch.no_grad():
        steps = ladder(param.shape[0]).view(-1, *([1] * (param.dim() - 1)))
        param.copy_((1 / steps if decoder else steps).expand_as(param))


def build(family: str, src):
    """(image net, video net) of ``family`` with spread q scales."""
    if family == "DCVC-FM":
        i_net, p_net = src.image_model.DMCI(), src.video_model.DMC()
        pairs = [(i_net, "q_scale"), (p_net, "mv_y_q"), (p_net, "y_q")]
    elif family == "DCVC-DC":
        i_net, p_net = src.image_model.IntraNoAR(), src.video_model.DMC()
        pairs = [(i_net, "q_scale"), (p_net, "mv_y_q_scale"), (p_net, "y_q_scale")]
    else:
        i_net, p_net = src.image_model.DMCI(), src.video_model.DMC()
        pairs = [(i_net, "q_scale")]
        spread(p_net.q_encoder)
        spread(p_net.q_decoder, decoder=True)
    for net, stem in pairs:
        spread(getattr(net, f"{stem}_enc"))
        spread(getattr(net, f"{stem}_dec"), decoder=True)
    return i_net, p_net


def make(model_dir: Path, out_dir: Path | None = None) -> list[Path]:
    import importlib
    import types

    import torch

    model_dir = Path(model_dir).resolve()
    family = model_dir.name
    if family not in FILES:
        raise SystemExit(f"{model_dir}: not a DCVC model folder ({', '.join(FILES)})")
    torch.manual_seed(0)
    sys.path.insert(0, str(model_dir))
    try:
        src = types.SimpleNamespace(**{m: importlib.import_module(f"src.models.{m}") for m in ("image_model", "video_model")})
        nets = build(family, src)
    finally:
        sys.path.remove(str(model_dir))
        for name in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
            del sys.modules[name]
    out_dir = Path(out_dir or model_dir / "checkpoints")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for net, name in zip(nets, FILES[family]):
        torch.save(net.state_dict(), out_dir / name)  # tensors only: loads with weights_only=True
        written.append(out_dir / name)
    return written


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    for path in make(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None):
        print(path)
