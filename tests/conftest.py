from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.video import Video

# tests/fixtures holds plugin packages written outside the tree, with test suites of their own
# that import the installed plugin: tests/test_thirdparty_codec.py installs each and runs its
# suite in a process of its own
collect_ignore = ["fixtures"]


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip, saying why, where torch sees no CUDA device."""
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason=f"needs a CUDA device; torch {torch.__version__} sees none (torch.cuda.is_available() is False)")
        for item in gpu:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory):
    """Derived clips (sample decodes, synthetic sources) go to one cache per test session,
    unless BENCH_CACHE points at a warm one."""
    if not os.environ.get("BENCH_CACHE"):
        os.environ["BENCH_CACHE"] = str(tmp_path_factory.mktemp("bench-cache"))
    yield


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    from bench.ffmpeg import ffmpeg_exe

    return ffmpeg_exe()


@pytest.fixture(scope="session")
def synthetic():
    from bench.datasets import DATASETS

    return {s.name: s for s in DATASETS["synthetic"].resolve(None)}


def random_video(frames=3, height=64, width=96, bit_depth=8, seed=0, fps=25.0) -> Video:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    hi = (1 << bit_depth) - 1
    mk = lambda h, w: rng.integers(0, hi + 1, size=(frames, h, w)).astype(dtype)
    return Video(mk(height, width), mk(height // 2, width // 2), mk(height // 2, width // 2), bit_depth=bit_depth, fps=fps)


@pytest.fixture
def weird_dir(tmp_path) -> Path:
    """A folder whose name would break any shell command built by string concatenation."""
    d = tmp_path / "we ird 'q' \"dq\"; echo pwned"
    d.mkdir()
    return d


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
