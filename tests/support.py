"""What several test modules share: synthetic clips, stand-in tools, the fake Wan2.1 folder.

Test modules import it (``from support import random_video``): tests/ is on pytest's
``pythonpath`` (pyproject.toml), so no test module imports another.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from bench.video import Video

#: the repository, the tests folder and the fake tools in it
ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
FAKES = TESTS / "fakes"


def random_video(frames=3, height=64, width=96, bit_depth=8, seed=0, fps=25.0) -> Video:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    hi = (1 << bit_depth) - 1
    mk = lambda h, w: rng.integers(0, hi + 1, size=(frames, h, w)).astype(dtype)
    return Video(mk(height, width), mk(height // 2, width // 2), mk(height // 2, width // 2), bit_depth=bit_depth, fps=fps)


def fake_ffmpeg(tmp_path, encoders: str):
    """A stand-in ffmpeg that answers -version and -encoders but has no HEVC/VVC encoder."""
    path = tmp_path / "ffmpeg"
    path.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *-version*) echo "ffmpeg version fake-1.0";;\n'
        f'  *-encoders*) printf " V..... {encoders}  test\\n";;\n'
        '  *-decoders*) printf " V..... hevc  test\\n";;\n'
        "esac\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def make_fake_wan(folder, seed: int = 4):
    """A Wan2.1-T2V-1.3B-Diffusers-shaped folder (vae/, transformer/, text_encoder/,
    tokenizer/) holding the tiny config's shapes and random weights, written with
    save_pretrained as the real one is: the full-scale path without the download. Returns
    the ODFTE whose VAE and DiT were saved."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    from diffsit.odfte import ODFTE, tiny_config

    torch.manual_seed(seed)
    base = ODFTE(tiny_config())
    base.vae.save_pretrained(folder / "vae")
    base.transformer.save_pretrained(folder / "transformer")
    # umT5 with a word-level tokenizer that, like umT5's, ends every text with </s>
    tok = Tokenizer(models.WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(folder / "tokenizer")
    text_dim = base.transformer.config.text_dim
    UMT5EncoderModel(UMT5Config(vocab_size=8, d_model=text_dim, d_kv=8, d_ff=64, num_layers=1, num_heads=4)).save_pretrained(folder / "text_encoder")
    return base
