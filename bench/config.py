"""A sweep's configuration (:class:`SweepConfig`): the CLI's ``run`` flags and a golden set's
``config.json`` map onto it one to one. One validation path (pydantic) serves both, and a
direct ``SweepConfig(...)`` too: an unknown key or a value of the wrong type is a
:class:`SweepConfigError` naming it.

The executors' settings are not written here: each executor module owns its section
(``bench.executors.<name>.Options``), which this model takes in as a base
(``bench.executors.registry.OPTIONS``).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from .executors.registry import EXECUTORS, OPTIONS


class SweepConfigError(ValueError):
    """A sweep configuration that cannot be read (unknown key, wrong type)."""


#: the keys a configuration must have (``dataset`` may come from ``conditions``)
_REQUIRED = ("codecs", "dataset")
_LISTS = ("codecs", "rates", "sequences", "metrics")
_TEXTS = ("out", "data_root", "weights", "dataset")


class SweepConfig(*OPTIONS):  # each executor's section (bench.executors.registry.OPTIONS) is a base
    """Everything a sweep needs."""

    model_config = ConfigDict(extra="forbid")

    #: codec specs, ``name[:key=value...]``
    codecs: list[str]
    #: a registered dataset name, or a .yuv file / folder of them
    dataset: str | None = None
    #: rate points in each codec's own knob; None: each codec's default ladder
    rates: list[str] | None = None
    sequences: list[str] | None = None
    #: first N frames; None: the dataset's default length; 0 (or "all"): all
    frames: int | None = None
    #: metric specs or column names; None: every metric that can run here
    metrics: list[str] | None = None
    #: results folder; None: results/<dataset>/<codec>/ per codec
    out: str | None = None
    data_root: str | None = None
    #: geometry, rate and depth of raw .yuv input whose name does not say
    size: tuple[int, int] | None = None
    fps: float | None = None
    bit_depth: int | None = None
    #: frames between intra frames, for every codec of the sweep (each must take it)
    intra_period: int | None = None
    #: device for metrics and for codecs that take one
    device: str = "cpu"
    #: parallel jobs (processes) of the local executor
    jobs: int = 1
    #: where jobs run: a name of bench.executors.registry.EXECUTORS (local, ray, submitit)
    executor: str = "local"
    force: bool = False
    #: keep each job's decoded video (decoded/<job>.mkv, lossless FFV1) for `bench visualize`
    save_decoded: bool = False
    #: the most raw video (GB) --save-decoded may keep in one sweep; the plan refuses more
    save_decoded_limit_gb: float = 20.0
    #: folder of pretrained weights files (sets $BENCH_WEIGHTS)
    weights: str | None = None
    #: harness-wide codec options (``ffmpeg``, and the locations plugins contribute),
    #: passed to every codec of the sweep that takes them
    codec_options: dict[str, Any] = Field(default_factory=dict)
    #: named test conditions (bench.conditions): frames, intra period, datasets and anchor
    #: ladders where no other field says otherwise
    conditions: str | None = None
    #: free text (a golden set says what it is for)
    about: str = ""
    progress: bool = True

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise SweepConfigError(_message(e)) from None

    @classmethod
    def keys(cls) -> list[str]:
        """The configuration's keys: the sweep's own, then the executors'."""
        own = [k for k in cls.__annotations__ if k in cls.model_fields]
        return own + [k for options in OPTIONS for k in options.model_fields]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """From a mapping (JSON); an unknown key or a value of the wrong type is a
        SweepConfigError naming it and the valid keys."""
        if not isinstance(data, dict):
            raise SweepConfigError(f"a sweep configuration is a mapping of keys to values, not {type(data).__name__}")
        return cls(**data)

    def replace(self, **changes: Any) -> SweepConfig:
        """A copy with ``changes``, validated as a new configuration is."""
        return type(self)(**{**{k: getattr(self, k) for k in self.keys()}, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The keys that are set (codecs and dataset always), as a manifest records them."""
        values = self.model_dump()
        return {k: values[k] for k in self.keys() if values[k] not in (None, "", {}) or k in _REQUIRED}

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown sweep configuration key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(cls.keys())}")
        missing = [k for k in _REQUIRED if data.get(k) is None and not (k == "dataset" and data.get("conditions"))]
        if missing:
            raise ValueError(f"the sweep configuration needs {' and '.join(missing)}")
        return data

    @field_validator(*_LISTS, mode="before")
    @classmethod
    def _listify(cls, value: Any, info) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"sweep configuration {info.field_name!r} must be a list or a comma-separated string, got {value!r}")
        return [str(x) for x in value]

    @field_validator(*_TEXTS, mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return None if value is None else str(value)

    @field_validator("frames", mode="before")
    @classmethod
    def _frames(cls, value: Any) -> Any:
        return 0 if str(value).lower() == "all" else value

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if value is None:
            return None
        try:
            w, h = value.lower().split("x") if isinstance(value, str) else value
            return int(w), int(h)
        except (TypeError, ValueError):
            raise ValueError(f"sweep configuration 'size' must be WxH or [W, H], got {value!r}") from None

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        if value not in EXECUTORS:
            *others, last = EXECUTORS
            raise ValueError(f"sweep configuration 'executor' must be {', '.join(others)} or {last}, got {value!r}")
        return value

    @field_validator("codec_options", mode="before")
    @classmethod
    def _codec_options(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("sweep configuration 'codec_options' must be a mapping of option names to values")
        return value


def _message(error: ValidationError) -> str:
    """pydantic's errors as a sentence each: a validator's own message as it is, a value of
    the wrong type with the key, the type wanted and the value given."""
    out = []
    for e in error.errors():
        key = ".".join(map(str, e["loc"]))
        if e.get("ctx", {}).get("error") is not None:
            out.append(str(e["ctx"]["error"]))
        elif e["type"].startswith("int_"):
            out.append(f"sweep configuration {key!r} must be an integer, got {e['input']!r}")
        elif e["type"].startswith("float_"):
            out.append(f"sweep configuration {key!r} must be a number, got {e['input']!r}")
        else:
            out.append(f"sweep configuration {key!r}: {e['msg']}, got {e['input']!r}")
    return "; ".join(out)
