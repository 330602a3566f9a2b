"""Named test conditions: the set of choices a paper fixes together, as data.

Papers differ in frames, intra period, test sets, anchor QPs, colour conversion and PSNR-YUV
weighting, and users who cannot reproduce a published number ask for exactly that set.
``--conditions NAME`` sets it; explicit flags override it, and the override is recorded. The
condition's label (its name, plus the overrides that change what is coded) goes into each
job's configuration and each summary row, so ``bench bdrate`` can refuse to compare curves
made under different conditions.

The harness has one colour conversion (BT.709, full range, corner-aligned chroma, as DCVC)
and one PSNR-YUV weighting ((6Y+U+V)/8): a condition states what it assumes, and
``check_harness`` verifies the harness matches it, so a condition that needs another fails
loudly instead of running under the wrong convention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .codec import check_intra_period

#: what the harness computes (bench/video.py, bench/metrics/fidelity.py)
HARNESS_COLOUR = "BT.709 full range"
HARNESS_PSNR_YUV = (6, 1, 1)
#: the conditions, as data (package data beside this module)
DATA = Path(__file__).with_name("conditions.json")


class UnknownConditions(ValueError):
    pass


@dataclass(frozen=True)
class Conditions:
    name: str
    title: str
    #: the document that fixes these choices
    source: str
    #: frames per sequence; 0: all of them
    frames: int
    intra_period: int
    datasets: tuple[str, ...]
    #: rate ladder per codec name; codecs not listed use their default ladder
    rates: dict[str, tuple[int, ...]] = field(default_factory=dict)
    colour: str = HARNESS_COLOUR
    psnr_yuv_weights: tuple[int, int, int] = HARNESS_PSNR_YUV

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "frames": self.frames or "all",
            "intra_period": self.intra_period,
            "datasets": list(self.datasets),
            "rates": {k: list(v) for k, v in self.rates.items()},
            "colour": self.colour,
            "psnr_yuv_weights": list(self.psnr_yuv_weights),
        }


def _load(path: Path = DATA) -> dict[str, Conditions]:
    out = {}
    for c in json.loads(path.read_text())["conditions"]:
        rates = {codec: tuple(int(r) for r in ladder) for codec, ladder in c.pop("rates", {}).items()}
        check_intra_period(c["intra_period"])  # the codecs' rule: -1 or a positive period
        out[c["name"]] = Conditions(**{**c, "datasets": tuple(c["datasets"]), "rates": rates})
    return out


CONDITIONS: dict[str, Conditions] = _load()


def get_conditions(name: str) -> Conditions:
    try:
        return CONDITIONS[name]
    except KeyError:
        raise UnknownConditions(f"unknown test conditions {name!r}; named conditions: {', '.join(CONDITIONS)} (`bench conditions` describes each)") from None


def check_harness(c: Conditions) -> None:
    """A condition that assumes another colour conversion or PSNR weighting than the harness
    computes cannot be run honestly."""
    if c.colour != HARNESS_COLOUR or tuple(c.psnr_yuv_weights) != HARNESS_PSNR_YUV:
        raise UnknownConditions(
            f"conditions {c.name} assume {c.colour} and PSNR-YUV weights {c.psnr_yuv_weights}; the harness computes {HARNESS_COLOUR} and {HARNESS_PSNR_YUV}"
        )


def label(name: str, overrides: dict[str, Any]) -> str:
    """The conditions a result was made under: the name, and the overrides that change what is
    coded (frames, intra period); a dataset or rate-ladder override changes no point's meaning."""
    changed = {k: v for k, v in sorted(overrides.items()) if k in ("frames", "intra_period")}
    return name + (" (" + ", ".join(f"{k}={v}" for k, v in changed.items()) + ")" if changed else "")


class MixedConditions(ValueError):
    """Two codecs' curves were made under different named test conditions."""


def check_comparable(summary, anchor: str) -> list[str]:
    """Refuse a comparison of curves made under different named conditions; returns the notes
    for a caption (which conditions each side ran under, and rows that name none)."""
    if "conditions" not in summary:
        return []
    named = summary.assign(conditions=summary["conditions"].fillna("").astype(str))
    per_codec = named.groupby("codec")["conditions"].agg(lambda s: sorted(set(s)))
    mixed = {c: v for c, v in per_codec.items() if len([x for x in v if x]) > 1}
    if mixed:
        c, v = next(iter(mixed.items()))
        raise MixedConditions(f"{c} has results under several test conditions ({'; '.join(v)}): pass --results for one of them")
    anchor_cond = next((x for x in per_codec.get(anchor, []) if x), "")
    for codec, values in per_codec.items():
        cond = next((x for x in values if x), "")
        if anchor_cond and cond and cond != anchor_cond:
            raise MixedConditions(
                f"{anchor} ran under test conditions {anchor_cond!r} and {codec} under {cond!r}: BD numbers between them compare "
                "different experiments. Rerun one under the other's conditions, or pass --mixed-conditions to compare anyway"
            )
    return [f"{codec}: {next((x for x in v if x), 'no named conditions')}" for codec, v in per_codec.items()]
