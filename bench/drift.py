"""CI drift check: rerun a small recorded configuration and compare with golden tables.

A golden set is a folder holding
- ``config.json``: the sweep to run, as a :class:`~bench.config.SweepConfig` (dataset, codecs
  with options, rates, frames, metrics; an unknown key is an error); encoders whose output
  could depend on thread count are pinned to one thread there. It holds only what is
  measured (GOLDEN_KEYS): where binaries, code, weights, data and output are come from the
  caller's flags and environment (:class:`Locations`), since CI runs what a golden set says;
- ``summary.csv``: the golden results of that sweep (regenerated on purpose with --update);
- ``tolerances.json``: per column, an absolute and/or relative tolerance (default: each
  column's own, from the metric registry).

Tolerances are meant to be tight: the default set catches a 0.01 dB PSNR move and a 0.5 %
bpp move. The encoders are deterministic for a given binary and thread count, so on the
reference ffmpeg a clean run reproduces the golden numbers to the last digit.

The check fails closed: a golden set that would compare nothing, or let a value through
unchecked, is an error (exit 2) naming the file, row and column, never "no drift". That is an
empty or non-finite/negative tolerance, a tolerance naming no column, a golden column without
one, an empty golden cell, a golden table without rows, a repeated row. ``frames``, ``width``
and ``height`` are compared exactly. A golden row without a result row (MISSING), a result row
not in the golden table (EXTRA) and a result that is not a number are drift (exit 1).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import datasets, ffmpeg, weights
from .codec import codec_class, contributed_options, location_options
from .config import SweepConfig, SweepConfigError
from .metrics import default_tolerances, metric_class
from .spec import parse_spec
from .store import KEY, ResultsStore, atomic_write_text
from .sweep import run_sweep


class GoldenError(ValueError):
    """A golden set or a results table that cannot be compared; the message names the file,
    the row and the column, and how to fix it."""


#: columns of a golden table compared exactly, with no tolerance: a change in them means the
#: run measured something else
EXACT = ("frames", "width", "height")
_TOLERANCE_FORM = '{"abs": x} and/or {"rel": r}, each a finite number >= 0'
#: what a golden config.json may set: what is measured. Where binaries, code, weights, data
#: and output are, and where jobs run, are the caller's (flags, environment): a golden set is
#: data that CI runs, and must not choose what runs.
GOLDEN_KEYS = (
    "about",
    "dataset",
    "codecs",
    "sequences",
    "rates",
    "frames",
    "metrics",
    "size",
    "fps",
    "bit_depth",
    "intra_period",
    "conditions",
    "device",
    "jobs",
)


@dataclass
class Locations:
    """Where things are, from the caller of ``bench check`` (its flags and environment)."""

    codec_options: dict[str, str] = field(default_factory=dict)
    data_root: str | None = None
    weights: str | None = None


@dataclass
class Golden:
    root: Path
    config: dict
    tolerances: dict[str, dict[str, float]]
    #: False: tolerances.json is absent and ``tolerances`` are the registry's defaults
    tolerances_from_file: bool = True

    @classmethod
    def load(cls, root: str | Path) -> Golden:
        root = Path(root)
        cfg, tol = root / "config.json", root / "tolerances.json"
        if not cfg.is_file():
            raise GoldenError(f"{root} is not a golden set: {cfg} is missing")
        config = _json(cfg)
        refuse_locations(config, cfg)
        if tol.is_file():
            return cls(root, config, read_tolerances(tol))
        return cls(root, config, default_tolerances(), tolerances_from_file=False)

    def tolerances_for(self, table: pd.DataFrame) -> dict[str, dict[str, float]]:
        """The tolerances to use on ``table``: the file's as written (each key must then name
        one of its columns), or the registry's defaults for the columns it has."""
        if self.tolerances_from_file:
            return self.tolerances
        return {c: t for c, t in self.tolerances.items() if c in table.columns}

    @property
    def summary_path(self) -> Path:
        """The golden table: a summary.csv, laid out as a results folder's."""
        return ResultsStore(self.root).summary_path

    def summary(self) -> pd.DataFrame:
        path = self.summary_path
        if not path.is_file():
            raise GoldenError(f"{path} is missing; create it on purpose with `bench check --golden {self.root} --update`")
        return ResultsStore(self.root).summary()

    def sweep_config(self, out: Path, where: Locations | None = None) -> SweepConfig:
        """The golden configuration, run into ``out`` with the caller's locations."""
        config = _sweep_config(self.config, self.root / "config.json")
        where = where or Locations()
        config.out, config.progress, config.force = str(out), False, True
        config.codec_options, config.data_root, config.weights = dict(where.codec_options), where.data_root, where.weights
        return config


def _sweep_config(data: dict, path: Path) -> SweepConfig:
    try:
        return SweepConfig.from_dict(data)
    except SweepConfigError as e:
        raise GoldenError(f"{path}: {e}") from None


def _how_to_pass(name: str) -> str:
    flags = {
        "out": "--keep DIR",
        "data_root": f"--data-root DIR (or ${datasets.DATA_ENV})",
        "weights": f"--weights DIR (or ${weights.ENV})",
        "ffmpeg": f"--ffmpeg PATH (or ${ffmpeg.ENV_VAR})",
        **{o.dest: f"{o.flag} PATH" for o in contributed_options()},
    }
    if name == "ffmpeg_path":
        return f"set ${ffmpeg.ENV_VAR} instead"
    if name in flags:
        return f"pass it to `bench check` as {flags[name]} instead"
    return "the codec's default is used; a configuration that needs another is one for `bench run`"


def _spec_locations(specs: list[str], kind: str, names) -> list[str]:
    """``kind 'spec': key`` for each option of a codec or metric spec that names a location."""
    out = []
    for spec in specs:
        try:
            name, opts = parse_spec(spec)
        except ValueError:
            continue  # not a spec: the plan says so before anything runs
        try:
            found = names(name) | location_options()
        except Exception:  # an unknown or broken plugin: the plan names it; the shared names still apply
            found = location_options()
        out += [f"{kind} {spec!r}: {key}: {_how_to_pass(key)}" for key in opts if key in found]
    return out


def refuse_locations(data: dict, path: Path) -> None:
    """GoldenError listing every key of a golden config.json that says where a binary, code,
    weights, data or output are, or where jobs run, with how the caller passes it instead."""
    config = _sweep_config(data, path)
    problems = [f"{key}: {_how_to_pass(key)}" for key in ("out", "data_root", "weights") if key in data]
    problems += [f"codec_options.{key}: {_how_to_pass(key)}" for key in data.get("codec_options", {})]
    problems += [
        f"{key}: where and how jobs run is the caller's choice: remove it"
        for key in data
        if key not in (*GOLDEN_KEYS, "out", "data_root", "weights", "codec_options")
    ]
    problems += _spec_locations(config.codecs, "codec", lambda n: location_options(codec_class(n)))
    problems += _spec_locations(config.metrics or [], "metric", lambda n: set(metric_class(n).location_options))
    if problems:
        raise GoldenError(
            f"{path}: a golden set is data and cannot name binaries, code, weights or folders, nor say where jobs run "
            "(CI would run what the file names); refused, nothing ran:\n  " + "\n  ".join(problems)
        )


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise GoldenError(f"{path}: not valid JSON ({e})") from None


def read_tolerances(path: Path) -> dict[str, dict[str, float]]:
    """tolerances.json, refused unless every entry is a usable tolerance: a NaN, negative or
    absent bound would let any value pass."""
    data = _json(path)
    if not isinstance(data, dict) or not data:
        raise GoldenError(f"{path}: no tolerances in it, so nothing would be compared; map each compared column to {_TOLERANCE_FORM}")
    defaults = default_tolerances()
    for col, tol in data.items():
        hint = f" (the registry's default for {col} is {json.dumps(defaults[col])})" if col in defaults else ""
        if not isinstance(tol, dict) or not tol or set(tol) - {"abs", "rel"}:
            raise GoldenError(f"{path}: the tolerance of {col!r} is {json.dumps(tol)}; it must be {_TOLERANCE_FORM}{hint}")
        for kind, v in tol.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise GoldenError(f"{path}: the tolerance {col}.{kind} is {v!r}; it must be a finite number >= 0{hint}")
    return data


def run_golden_config(golden: Golden, out: Path, where: Locations | None = None) -> pd.DataFrame:
    result = run_sweep(golden.sweep_config(out, where))
    if not result.ok:
        errors = "; ".join(f"{r['job_id']}: {r.get('error', '')}" for r in result.failed)
        raise GoldenError(f"the golden configuration did not run cleanly: {errors}")
    return ResultsStore(out).summary()


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _row_label(key) -> str:
    return "/".join(map(str, key))


def _check_keys(table: pd.DataFrame, where: str) -> None:
    """Every row identified once by a complete key, or a GoldenError naming the row."""
    missing = [k for k in KEY if k not in table.columns]
    if missing:
        raise GoldenError(f"{where}: no {', '.join(missing)} column; a results table has {', '.join(KEY)}")
    empty = table[list(KEY)].isna().any(axis=1)
    if empty.any():
        raise GoldenError(f"{where}: data row {int(empty.to_numpy().argmax()) + 1} has an empty {'/'.join(KEY)} cell")
    dup = table.duplicated(list(KEY))
    if dup.any():
        raise GoldenError(f"{where}: row {_row_label(table.loc[dup, list(KEY)].iloc[0])} appears more than once")


def check_golden_table(
    golden: pd.DataFrame, tolerances: dict[str, dict[str, float]], where: str = "the golden table", tol_where: str = "tolerances.json"
) -> list[str]:
    """The columns to compare, after refusing a golden table that would compare nothing or let
    a value pass unchecked: no rows, a tolerance naming no column, a column without tolerance,
    an empty or non-finite cell."""
    _check_keys(golden, where)
    if golden.empty:
        raise GoldenError(f"{where} has no rows, so nothing would be compared; re-record it on purpose with --update")
    if not tolerances:
        raise GoldenError(f"{tol_where}: no tolerances, so nothing would be compared; map each column of {where} to {_TOLERANCE_FORM}")
    unknown = [c for c in tolerances if c not in golden.columns]
    if unknown:
        raise GoldenError(
            f"{tol_where}: the tolerance of {unknown[0]!r} names no column of {where} (its columns: {', '.join(golden.columns)}); remove it or fix its name"
        )
    exact = [c for c in EXACT if c in golden.columns and c not in tolerances]
    unchecked = [c for c in golden.columns if c not in (*KEY, *exact, *tolerances)]
    if unchecked:
        raise GoldenError(f"{where}: column {unchecked[0]!r} has no tolerance in {tol_where}; add one ({_TOLERANCE_FORM}) or drop the column")
    cols = [*tolerances, *exact]
    for col in cols:
        bad = ~np.isfinite(pd.to_numeric(golden[col], errors="coerce").to_numpy(dtype=float))
        if bad.any():
            i = int(bad.argmax())
            raise GoldenError(
                f"{where}: row {_row_label(golden.loc[golden.index[i], list(KEY)])}, column {col}: {golden[col].iloc[i]!r} is not a number; "
                "a golden cell must hold the recorded value: re-record on purpose with --update"
            )
    return cols


def compare(
    golden: pd.DataFrame,
    new: pd.DataFrame,
    tolerances: dict[str, dict[str, float]],
    *,
    golden_where: str = "the golden table",
    new_where: str = "the results",
    tol_where: str = "tolerances.json",
) -> pd.DataFrame:
    """One row per compared value (golden, new, delta, allowed, status), plus one per row of
    either table that the other lacks (MISSING: a golden row with no result; EXTRA: a result
    row not in the golden table). GoldenError if the golden table cannot be compared."""
    cols = check_golden_table(golden, tolerances, golden_where, tol_where)
    _check_keys(new, new_where)
    g = golden.set_index(list(KEY))
    n = new.set_index(list(KEY))
    rows = []
    for key in g.index.union(n.index):
        label = dict(zip(KEY, key))
        if key not in n.index or key not in g.index:
            status = "MISSING" if key not in n.index else "EXTRA"
            rows.append({**label, "column": "(row)", "golden": math.nan, "new": math.nan, "delta": math.nan, "allowed": math.nan, "status": status})
            continue
        for col in cols:
            old = float(g.at[key, col])
            cur = _number(n.at[key, col]) if col in n.columns else math.nan
            tol = tolerances.get(col, {"abs": 0.0})
            allowed = tol.get("abs", 0.0) + tol.get("rel", 0.0) * abs(old)
            delta = cur - old
            bad = not math.isfinite(cur) or abs(delta) > allowed
            rows.append({**label, "column": col, "golden": old, "new": cur, "delta": delta, "allowed": allowed, "status": "DRIFT" if bad else "ok"})
    return pd.DataFrame(rows, columns=[*KEY, "column", "golden", "new", "delta", "allowed", "status"])


def update(golden: Golden, new: pd.DataFrame, new_where: str = "the run's summary") -> Path:
    """Rewrite the golden tables from ``new``, refusing one the next check could not compare."""
    tolerances = golden.tolerances_for(new)
    keep = list(dict.fromkeys([*KEY, *[c for c in EXACT if c in new.columns], *tolerances]))
    missing = [c for c in keep if c not in new.columns]
    if missing:
        raise GoldenError(f"{new_where} has no {missing[0]!r} column, which {golden.root / 'tolerances.json'} compares; nothing was rewritten")
    try:
        check_golden_table(new[keep], tolerances, new_where, str(golden.root / "tolerances.json"))
    except GoldenError as e:
        raise GoldenError(f"{e} (nothing was rewritten)") from None
    path = ResultsStore(golden.root).write_summary(new[keep])
    if not golden.tolerances_from_file:
        atomic_write_text(golden.root / "tolerances.json", json.dumps(tolerances, indent=2) + "\n")
    return path


def _read_results(results: str | Path) -> tuple[pd.DataFrame, str]:
    path = Path(results)
    if path.is_file():
        return pd.read_csv(path, dtype={"rate": str}), str(path)
    store = ResultsStore(path)
    return store.summary(), str(store.summary_path)


def check(
    golden_dir: str | Path,
    results: str | Path | None = None,
    *,
    do_update: bool = False,
    keep: str | Path | None = None,
    where: Locations | None = None,
) -> tuple[pd.DataFrame, bool]:
    """Compare (or, with do_update, rewrite) a golden set, running it with the caller's
    locations ``where``. Returns the comparison and ok: ok only if at least one value was
    compared and nothing drifted, went missing or was extra."""
    golden = Golden.load(golden_dir)
    if results is not None:
        new, new_where = _read_results(results)
    elif keep is not None:
        new, new_where = run_golden_config(golden, Path(keep), where), str(ResultsStore(keep).summary_path)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            new, new_where = run_golden_config(golden, Path(tmp), where), "the run's summary.csv"
    if do_update:
        update(golden, new, new_where)
        golden = Golden.load(golden_dir)
        table = compare(new, new, golden.tolerances_for(new))
        return table, True
    old = golden.summary()
    where = {"golden_where": str(golden.summary_path), "new_where": new_where, "tol_where": str(golden.root / "tolerances.json")}
    table = compare(old, new, golden.tolerances_for(old), **where)
    table.attrs.update(golden=where["golden_where"], results=new_where)
    compared = int((table["column"] != "(row)").sum())
    return table, compared > 0 and bool((table["status"] == "ok").all())


def format_report(table: pd.DataFrame, ok: bool) -> str:
    values = table[table["column"] != "(row)"]
    moved = table[(table["status"] != "ok") | (table["delta"].abs() > 0)]
    counts = table["status"].value_counts()
    lines = [f"compared {len(values)} values: {int(counts.get('DRIFT', 0))} out of tolerance, {int((values.delta.abs() > 0).sum())} moved at all"]
    if not moved.empty:
        lines.append(moved.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    if ok:
        lines.append("OK: no drift")
        return "\n".join(lines)
    what = [f"{int(counts.get('DRIFT', 0))} value(s) beyond tolerance or not a number"]
    if counts.get("MISSING", 0):
        what.append(f"{int(counts['MISSING'])} golden row(s) with no result row (MISSING)")
    if counts.get("EXTRA", 0):
        what.append(f"{int(counts['EXTRA'])} result row(s) not in the golden table (EXTRA)")
    if values.empty:
        what.append("no value compared at all")
    files = f" [golden {table.attrs['golden']}, results {table.attrs['results']}]" if "golden" in table.attrs else ""
    lines.append(f"DRIFT: {'; '.join(what)}{files} (update on purpose with --update)")
    return "\n".join(lines)
