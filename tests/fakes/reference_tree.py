"""A fake HM or VTM source tree: the fake binaries (reference_codec.py) under their real names
and a low-delay cfg with the real files' GOP. For tests that run the hm and vtm codecs."""

from __future__ import annotations

import sys
from pathlib import Path

FAKE = Path(__file__).with_name("reference_codec.py")
ROLES = {"hm": ("TAppEncoder", "TAppDecoder", "encoder_lowdelay_main10.cfg"), "vtm": ("EncoderApp", "DecoderApp", "encoder_lowdelay_vtm.cfg")}


def make_tree(root: Path, kind: str, *, with_cfg: bool = True, binaries: bool = True, bin_dir: str = "bin") -> Path:
    """A source tree with the fake binaries in ``bin_dir`` and a cfg with the real low-delay
    files' GOP (8, with IntraPeriod -1 and no refresh, as theirs)."""
    enc, dec, cfg = ROLES[kind]
    (root / bin_dir).mkdir(parents=True)
    if binaries:
        script = f"#!{sys.executable}\n" + FAKE.read_text()
        for name in (enc, dec):
            p = root / bin_dir / name
            p.write_text(script)
            p.chmod(0o755)
    if with_cfg:
        (root / "cfg").mkdir()
        (root / "cfg" / cfg).write_text("#======== File I/O ===\nIntraPeriod : -1\nDecodingRefreshType : 0\nGOPSize : 8  # GOP Size\n")
    return root
