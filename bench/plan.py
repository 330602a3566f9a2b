"""Planning a sweep: everything that can be checked before encoding anything (codec runnable,
rates of the right type and range, bit depth the codec can code, options the codec takes,
metrics runnable, sequence files present and long enough), so that an offline node or a
missing encoder fails in the first second, not deep inside a sweep, and nothing is written.

A plan lists a results folder's jobs (:class:`bench.jobs.Job`): those to run, and those a
recorded job already stands for (:func:`partition`; ``force`` redoes them anyway).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import datasets as ds
from . import decoded as decoded_store
from .codec import (
    BitDepthError,
    Codec,
    accepted_options,
    codec_class,
    contributed_options,
    create_codec,
    parse_codec_spec,
)
from .conditions import check_harness, get_conditions
from .conditions import label as conditions_label
from .datasets import Sequence
from .jobs import ID_KEYS, Job, bitstream_hash_of, jsonable
from .metrics import create_metric
from .records import Status
from .store import ResultsStore

if TYPE_CHECKING:
    from .config import SweepConfig


class PlanError(ValueError):
    """The sweep cannot start; nothing was encoded."""


@dataclass(frozen=True)
class CodecSpec:
    """One ``--codec`` item: the registry name, its options (harness-wide ones merged in), and
    its label, the ``codec`` column its rows carry (``label_specs``)."""

    label: str
    name: str
    options: dict[str, Any]


@dataclass
class Plan:
    jobs: list[Job]
    skipped: list[Job]
    codecs: dict[str, Codec]
    notes: list[str] = field(default_factory=list)
    skipped_metrics: dict[str, str] = field(default_factory=dict)


def codec_specs(config: SweepConfig) -> tuple[list[CodecSpec], list[str]]:
    """Each codec spec of the sweep with the harness-wide options it takes merged in, and the
    notes on options some codec does not take. ``intra_period`` that a codec does not take is
    a PlanError: a sweep whose codecs used different GOPs would compare them silently."""
    harness = dict(config.codec_options)
    contributed = {o.dest for o in contributed_options()}
    unknown = sorted(set(harness) - contributed - {"ffmpeg"})
    if unknown:
        raise PlanError(
            f"unknown harness-wide codec option(s) {', '.join(unknown)}; the registered codecs contribute: {', '.join(sorted(contributed | {'ffmpeg'}))}"
        )
    if config.intra_period is not None:
        harness["intra_period"] = config.intra_period
    if config.device != "cpu":
        harness["device"] = config.device
    parsed, notes, problems = [], [], []
    taken: set[str] = set()
    for item in config.codecs:
        name, own = parse_codec_spec(item)
        label = own.pop("label", None)
        cls = codec_class(name)  # UnknownCodec lists the valid names
        accepted = accepted_options(cls)
        opts = dict(own)
        for key, value in harness.items():
            if value is None or key in opts:
                continue
            if key in accepted:
                opts[key] = value
                taken.add(key)
            elif key == "intra_period":
                problems.append(
                    f"codec {name} does not take --intra-period (its options: {', '.join(accepted) or 'none'}); "
                    "run it in a sweep of its own, or leave --intra-period out"
                )
            elif key == "device":
                notes.append(f"{name} takes no device and runs on the CPU; --device {value} applies to the metrics")
        parsed.append((name, own, opts, label))
    for key in sorted(set(harness) - taken - {"intra_period", "device"}):
        notes.append(f"no codec of this sweep takes {key} ({', '.join(p[0] for p in parsed)}): it was not used")
    if problems:
        raise PlanError("cannot start the sweep:\n  " + "\n  ".join(problems))
    return label_specs(parsed), notes


_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=:,-]{0,99}")


def label_specs(parsed: list[tuple[str, dict[str, Any], dict[str, Any], str | None]]) -> list[CodecSpec]:
    """The codec column of each spec: ``label=`` where given, else the registry name, unless
    two specs share that name (``x265:preset=fast,x265:preset=slow``): then each is labelled
    by its own options, so both curves keep their rows instead of one replacing the other."""
    counts: dict[str, int] = {}
    for name, _, _, label in parsed:
        if label is None:
            counts[name] = counts.get(name, 0) + 1
    specs = []
    for name, own, opts, label in parsed:
        if label is None:
            label = name if counts[name] == 1 else ":".join([name, *(f"{k}={v}" for k, v in sorted(own.items()))])
        elif not _LABEL.fullmatch(str(label)):
            raise PlanError(f"codec label {label!r}: use letters, digits and . _ + = : , - (at most 100, starting with a letter or digit)")
        specs.append(CodecSpec(str(label), name, opts))
    return specs


def _identity(codec: Codec, metric_ids: dict[str, Any]) -> str:
    return json.dumps({"codec_identity": jsonable(codec.identity()), "metrics": metric_ids}, sort_keys=True, default=str)


def plan(
    *,
    codecs: list[CodecSpec] | list[tuple[str, dict[str, Any]]],
    dataset: str,
    sequences: list[Sequence],
    rates: list[str] | dict[str, list[str]] | None,
    frames: int | None,
    metrics: list[str],
    default_frames: int = 96,
    metrics_explicit: bool = True,
    device: str,
    out: Path,
    force: bool = False,
    save_decoded: bool = False,
    save_decoded_limit_gb: float = 20.0,
    conditions: str = "",
) -> Plan:
    """Check the sweep and list its jobs, writing nothing; PlanError says every problem.
    ``rates``: one ladder for every codec, or a ladder per codec name (others: their default)."""
    store = ResultsStore(out)
    codecs = [c if isinstance(c, CodecSpec) else CodecSpec(c[0], c[0], c[1]) for c in codecs]
    problems: list[str] = foreign_tables(store)
    notes: list[str] = []
    built = _built_codecs(codecs, problems)
    metrics, skipped_metrics, metric_ids = _runnable_metrics(metrics, sequences, device, metrics_explicit, problems)
    lengths = _lengths(sequences, frames, default_frames, problems, notes)
    ladders, depths = _ladders_and_depths(built, rates, sequences, problems, notes)
    if problems:
        raise PlanError("cannot start the sweep:\n  " + "\n  ".join(problems))

    every = [
        job
        for spec in codecs
        for job in _codec_jobs(
            spec, built[spec.label], dataset, sequences, ladders[spec.label], lengths, depths, metrics, metric_ids, device, out, save_decoded, conditions
        )
    ]
    check_unique(every)
    conflicts = curve_conflicts(every, store)
    if conflicts and not force:
        raise PlanError(f"cannot start the sweep: {out} holds jobs made with other settings:\n  " + "\n  ".join(conflicts.values()) + CONFLICT_FIX)
    jobs, skipped = partition(every, store, force)
    if save_decoded:
        check_decoded_space(jobs, out, save_decoded_limit_gb)
    return Plan(jobs, skipped, built, notes, skipped_metrics)


def _built_codecs(codecs: list[CodecSpec], problems: list[str]) -> dict[str, Codec]:
    """Each spec's codec by its label, checked; what is wrong goes to ``problems``."""
    built: dict[str, Codec] = {}
    for spec in codecs:
        name, options = spec.label, spec.options
        try:
            codec = create_codec(spec.name, **options)
        except (TypeError, ValueError) as e:  # an option it does not take, or a value it refuses
            problems.append(f"codec {name}: {e}")
            continue
        try:
            codec.check()
        except Exception as e:
            problems.append(f"codec {name}: {e}")
        built[name] = codec
    return built


def _runnable_metrics(
    metrics: list[str], sequences: list[Sequence], device: str, explicit: bool, problems: list[str]
) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """The metrics that can run on these sequences, those left out (and why), and the
    identity of each that runs. A metric asked for by name that cannot run is a problem; one
    of the default set is left out and recorded."""
    runnable, skipped_metrics, metric_ids = [], {}, {}
    for m in metrics:
        try:
            metric = create_metric(m, device=device)
            metric.check()
            why = "; ".join(f"{seq.name}: {w}" for seq in sequences if (w := metric.unsupported(seq.width, seq.height)))
            if why:
                raise ValueError(why)
            metric_ids[metric.name] = jsonable(metric.identity())
        except Exception as e:
            if explicit:
                problems.append(f"metric {m}: {e}")
            else:  # the default set is "what can run here": record what was left out and why
                skipped_metrics[m] = str(e)
            continue
        runnable.append(m)
    return runnable, skipped_metrics, metric_ids


def _lengths(sequences: list[Sequence], frames: int | None, default_frames: int, problems: list[str], notes: list[str]) -> dict[str, int]:
    """Frames to code of each sequence: ``frames`` (0: all), or the dataset's default length."""
    lengths = {}
    for seq in sequences:
        have = seq.available_frames()
        if frames is None:  # the dataset's default length is a cap, not a demand
            n = min(default_frames, have)
            if n < default_frames:
                notes.append(f"{seq.name} has {have} frames; using all of them (default is {default_frames})")
        else:
            n = have if frames == 0 else frames
            if n > have:
                problems.append(f"{seq.name} has {have} frames, fewer than --frames {frames} ({seq.path})")
        lengths[seq.name] = n
    return lengths


def _ladders_and_depths(
    built: dict[str, Codec], rates: list[str] | dict[str, list[str]] | None, sequences: list[Sequence], problems: list[str], notes: list[str]
) -> tuple[dict[str, list], dict[tuple[str, int], int]]:
    """Each codec's rate points, parsed, and the depth it codes each source depth at."""
    ladders, depths = {}, {}
    for name, codec in built.items():
        try:
            ladder = rates.get(codec.name) if isinstance(rates, dict) else rates
            ladders[name] = [codec.parse_rate(r) for r in (ladder or codec.default_rates)]
        except ValueError as e:
            problems.append(str(e))
        for depth in sorted({seq.bit_depth for seq in sequences}):
            try:
                depths[name, depth] = codec.coded_bit_depth(depth)
            except BitDepthError as e:
                problems.append(f"{', '.join(s.name for s in sequences if s.bit_depth == depth)}: {e}")
            else:
                if depths[name, depth] != depth:
                    notes.append(f"{name} codes {depths[name, depth]}-bit: {depth}-bit sources are converted for it and its output back")
    return ladders, depths


def _codec_jobs(
    spec: CodecSpec, codec: Codec, dataset, sequences, ladder, lengths, depths, metrics, metric_ids, device, out, save_decoded, conditions=""
) -> list[Job]:
    """One codec's jobs: every sequence at every rate point."""
    needs = codec.resources()
    if device.startswith("cuda") and not needs.gpu:  # its metrics run on the GPU
        needs = dataclasses.replace(needs, gpu=True)
    common = dict(
        dataset=dataset,
        codec=spec.name,
        label=spec.label,
        codec_options=tuple(sorted(spec.options.items())),
        metrics=tuple(metrics),
        device=device,
        out=str(out),
        identity=_identity(codec, metric_ids),
        resources=needs,
        codec_target=f"{type(codec).__module__}:{type(codec).__qualname__}",
        save_decoded=save_decoded,
        conditions=conditions,
    )
    return [
        Job(sequence=seq, rate=rate, frames=lengths[seq.name], coded_bit_depth=depths[spec.label, seq.bit_depth], **common)
        for seq in sequences
        for rate in ladder
    ]


def check_unique(jobs: list[Job]) -> None:
    """Two jobs of one plan with one id would write one record: a plan error, not a lost row."""
    seen: dict[str, Job] = {}
    twice = []
    for job in jobs:
        if job.job_id in seen:
            twice.append(f"{job.row_label} on {job.sequence.name} at rate {job.rate}")
        seen[job.job_id] = job
    if twice:
        raise PlanError(
            "cannot start the sweep: it lists the same job twice (" + "; ".join(sorted(set(twice))) + "). "
            "Give each rate point once, and each codec spec once (or tell two specs apart with label=NAME)"
        )


CONFLICT_FIX = (
    "\nA curve made of points coded under different settings is not one curve. "
    "Write this run elsewhere with --out DIR, or pass --force to replace the jobs listed (their records and bitstreams are removed)."
)


def curve_conflicts(jobs: list[Job], store: ResultsStore) -> dict[str, str]:
    """Recorded jobs of the same curve (dataset, sequence, codec label) whose settings differ
    from this run's: frames, options, tool versions, or the identity of a metric both measure.
    Running would mix them in one curve (or, at the same rate, replace half of it). Returns
    each such record's id with what differs."""
    by_curve: dict[tuple, list[dict]] = {}
    for rec in store.records():
        by_curve.setdefault((rec.get("dataset"), rec.get("sequence"), rec.get("codec")), []).append(rec)
    found: dict[str, str] = {}
    planned = {job.job_id for job in jobs}  # a point this run codes again is replaced whole
    for job in jobs:
        want = job.config()
        for rec in by_curve.get((job.dataset, job.sequence.name, job.row_label), []):
            if rec["job_id"] in planned or rec["job_id"] in found:
                continue
            diff = settings_diff(rec.get("config") or {}, want)
            if diff:
                found[rec["job_id"]] = f"{job.row_label} on {job.sequence.name} at rate {rec.get('rate')} ({rec['job_id']}): {diff}"
    return found


def settings_diff(recorded: dict, wanted: dict, limit: int = 4) -> str:
    """What differs between two job configurations, rate and source path aside; '' if nothing."""
    a, b = _flat(recorded), _flat(wanted)
    a_metrics = {k.split(".")[1] for k in a if k.startswith("metrics.")}
    b_metrics = {k.split(".")[1] for k in b if k.startswith("metrics.")}
    shared = a_metrics & b_metrics  # a metric added or left out changes no number of the other
    keys = sorted(
        (k for k in set(a) | set(b) if k not in ("rate", "source") and (not k.startswith("metrics.") or k.split(".")[1] in shared)),
        key=lambda k: (k.split(".")[0] not in ID_KEYS, k),  # what the user set, before what follows from it
    )
    diffs = [f"{k} {a.get(k, '(none)')!s} (this run: {b.get(k, '(none)')!s})" for k in keys if a.get(k) != b.get(k)]
    return "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: json.dumps(d, sort_keys=True, default=str) if isinstance(d, list) else d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def foreign_tables(store: ResultsStore) -> list[str]:
    """A results folder is `bench run`'s only if its tables are its records' (imported,
    published or another tool's tables would be rewritten from the records, and lost)."""
    rows = store.foreign_rows()
    if not rows:
        return []
    return [
        f"{store.root} holds {rows} summary row(s) that no job record under {store.jobs_dir} made "
        "(an imported or published table, or another tool's): `bench run` would rewrite the table and lose them. "
        "Write this run to another --out (a report reads both folders)"
    ]


def check_decoded_space(jobs: list[Job], out: Path, limit_gb: float) -> None:
    """--save-decoded is refused before any job runs when its videos would pass the limit
    or not fit on the disk (decoded videos are big: 1080p is 3 MB a frame raw)."""
    raw = sum(decoded_store.raw_bytes(j.sequence.width, j.sequence.height, j.frames, j.sequence.bit_depth) for j in jobs)
    expect = raw * decoded_store.TYPICAL_RATIO
    free = decoded_store.free_bytes(out)
    size = decoded_store.human
    if raw > limit_gb * 1e9:
        raise PlanError(
            f"--save-decoded would keep {size(raw)} of raw video ({len(jobs)} jobs; FFV1 typically stores about "
            f"{size(expect)}), over the {limit_gb:g} GB limit: raise --save-decoded-limit-gb, or keep fewer "
            "(--sequences, --rates, --frames)"
        )
    if expect > free:
        raise PlanError(f"--save-decoded would need about {size(expect)} under {out}, which has {size(free)} free")


def partition(jobs: list[Job], store: ResultsStore, force: bool = False) -> tuple[list[Job], list[Job]]:
    """(to run, already done): a recorded job stands for one whose resolved configuration is
    equal, every part of it."""
    todo, done = [], []
    for job in jobs:
        rec = store.load_record(job.job_id)
        if not force and rec and rec.get("status") == Status.DONE and rec.get("config_hash") == job.config_hash() and _has_decoded(job, rec, store):
            done.append(job)
        elif not force and rec and rec.get("status") == Status.DONE and bitstream_hash_of(rec.get("config") or {}) == job.bitstream_hash():
            todo.append(dataclasses.replace(job, reuse=reuse_of(rec, store)))  # None if its files are gone
        else:
            todo.append(job)
    return todo, done


def reuse_of(rec: dict, store: ResultsStore) -> dict[str, Any] | None:
    """What a job whose bitstream stands needs to be measured again: the stream's bytes, the
    per-frame bits the encoder reported, and the recorded metric values with their keys."""
    name = Path(str(rec.get("bitstream", ""))).name
    path, frames_path = store.bitstreams / name, store.frames_path(rec["job_id"])
    if not name or not path.is_file() or path.is_symlink() or not frames_path.is_file():
        return None
    frames = pd.read_csv(frames_path)
    n = len(frames)
    per_frame = {
        "bits": frames["bits"].tolist() if "bits" in frames else [np.nan] * n,
        "frame_type": frames["frame_type"].fillna("").astype(str).tolist() if "frame_type" in frames else [""] * n,
        "qp": frames["qp"].tolist() if "qp" in frames else [np.nan] * n,
    }
    skip = {"dataset", "sequence", "codec", "rate", "frame", "frame_type", "bits", "bpp", "qp"}
    return {
        "bitstream": path.read_bytes(),
        "bitstream_md5": rec.get("bitstream_md5"),
        "per_frame": per_frame,
        "encoder": rec.get("encoder") or {},
        "samples_md5": rec.get("samples_md5"),
        "metric_ids": (rec.get("config") or {}).get("metrics", {}),
        "values": {c: frames[c].tolist() for c in frames.columns if c not in skip},
    }


def _has_decoded(job: Job, rec: dict, store: ResultsStore) -> bool:
    """Whether a recorded job has what --save-decoded asks for (a job done without it is
    redone: its numbers would be the same, but there is nothing to look at)."""
    if not job.save_decoded:
        return True
    kept = rec.get("decoded") or {}
    return bool(kept.get("path")) and (store.root / kept["path"]).is_file()


def apply_conditions(config: SweepConfig) -> tuple[SweepConfig, dict[str, Any] | None]:
    """``config`` with its named test conditions filled in where no flag says otherwise, and
    what to record: the conditions, the overrides, and the label the rows carry."""
    if not config.conditions:
        if not config.dataset:
            raise PlanError("a sweep needs --dataset (or --conditions NAME, whose datasets it then runs)")
        return config, None
    c = get_conditions(config.conditions)
    check_harness(c)
    overrides = {k: getattr(config, k) for k in ("dataset", "frames", "intra_period", "rates") if getattr(config, k) is not None}
    filled = config.replace(
        frames=c.frames if config.frames is None else config.frames,
        intra_period=c.intra_period if config.intra_period is None else config.intra_period,
    )
    recorded = {**c.describe(), "overrides": overrides, "label": conditions_label(c.name, overrides)}
    return filled, recorded


def plan_dataset(config: SweepConfig, name: str, specs: list[CodecSpec], metrics: list[str], conditions: dict | None) -> list[tuple[Path, Plan]]:
    """Every results folder's plan for one dataset of the sweep."""
    dataset = ds.get_dataset(name, size=config.size, fps=config.fps, bit_depth=config.bit_depth)
    sequences = dataset.resolve(ds.data_root(config.data_root), config.sequences)
    rates: list[str] | dict[str, list[str]] | None = config.rates
    if rates is None and conditions:  # the condition's ladder per anchor; the others their own
        rates = {codec: [str(r) for r in ladder] for codec, ladder in conditions["rates"].items()}
    outs: dict[Path, list[CodecSpec]] = {}
    for spec in specs:
        out = Path(config.out) if config.out else Path("results") / dataset.name / spec.name
        outs.setdefault(out, []).append(spec)
    label = conditions["label"] if conditions else ""
    common = dict(
        dataset=dataset.name,
        sequences=sequences,
        rates=rates,
        frames=config.frames,
        default_frames=dataset.default_frames,
        metrics=metrics,
        metrics_explicit=bool(config.metrics),
        device=config.device,
        force=config.force,
        save_decoded=config.save_decoded,
        save_decoded_limit_gb=config.save_decoded_limit_gb,
        conditions=label,
    )
    return [(out, plan(codecs=group, out=out, **common)) for out, group in outs.items()]
