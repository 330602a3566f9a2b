"""``name:key=value:key=value`` specs for codecs and metrics on the command line."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: the option whose value is the rest of the spec, verbatim
PASSTHROUGH = "params"


def convert(value: str) -> Any:
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    return value


def parse_pairs(items: Iterable[str], *, what: str, example: str = "key=value") -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}``: the one KEY=VALUE parser for
    command-line lists. ``what`` names the flag in the error (``--set``), ``example`` shows
    a valid item. Values stay text; the caller converts them."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} {item!r}: expected KEY=VALUE (e.g. {example})")
        out[key.strip()] = value
    return out


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``mycodec:preset=slow:threads=1`` -> ("mycodec", {"preset": "slow", "threads": 1}).

    A part without ``=`` continues the value before it, so values may hold colons:
    ``diffsit:model=preset:tiny:3:allow_untrained=true`` gives model ``preset:tiny:3``.
    ``params=`` takes the rest of the spec as one text, the encoder's own ``key=value:...``
    list: ``x265:preset=slow:params=ref=2:me=hex`` gives params ``ref=2:me=hex``."""
    name, *items = spec.strip().split(":")
    raw: dict[str, str] = {}
    last = None
    for i, item in enumerate(items):
        key, sep, value = item.partition("=")
        if key == PASSTHROUGH and sep:
            raw[PASSTHROUGH] = ":".join([value, *items[i + 1 :]])
            break
        if not sep or not key:
            if last is None:
                raise ValueError(f"option {item!r} in {spec!r} is not KEY=VALUE")
            raw[last] += ":" + item
            continue
        last = key.replace("-", "_")
        raw[last] = value
    return name, {k: v if k == PASSTHROUGH else convert(v) for k, v in raw.items()}
