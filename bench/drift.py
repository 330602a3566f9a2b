"""CI drift check: rerun a small recorded configuration and compare with golden tables.

A golden set is a folder holding
- ``config.json``: the sweep to run, as a :class:`~bench.sweep.SweepConfig` (dataset, codecs
  with options, rates, frames, metrics; an unknown key is an error); encoders whose output
  could depend on thread count are pinned to one thread there;
- ``summary.csv``: the golden results of that sweep (regenerated on purpose with --update);
- ``tolerances.json``: per column, an absolute and/or relative tolerance (default: each
  column's own, from the metric registry).

Tolerances are meant to be tight: the default set catches a 0.01 dB PSNR move and a 0.5 %
bpp move. The encoders are deterministic for a given binary and thread count, so on the
reference ffmpeg a clean run reproduces the golden numbers to the last digit.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .metrics import default_tolerances
from .store import KEY, atomic_write_text
from .sweep import SweepConfig, SweepConfigError, run_sweep


class GoldenError(ValueError):
    pass


@dataclass
class Golden:
    root: Path
    config: dict
    tolerances: dict[str, dict[str, float]]

    @classmethod
    def load(cls, root: str | Path) -> Golden:
        root = Path(root)
        cfg, tol = root / "config.json", root / "tolerances.json"
        if not cfg.is_file():
            raise GoldenError(f"{root} is not a golden set: {cfg} is missing")
        tolerances = json.loads(tol.read_text()) if tol.is_file() else default_tolerances()
        return cls(root, json.loads(cfg.read_text()), tolerances)

    def summary(self) -> pd.DataFrame:
        path = self.root / "summary.csv"
        if not path.is_file():
            raise GoldenError(f"{path} is missing; create it on purpose with `bench check --golden {self.root} --update`")
        return pd.read_csv(path, dtype={"rate": str})

    def sweep_config(self, out: Path) -> SweepConfig:
        try:
            config = SweepConfig.from_dict(self.config)
        except SweepConfigError as e:
            raise GoldenError(f"{self.root / 'config.json'}: {e}") from None
        config.out, config.progress, config.force = str(out), False, True
        return config


def run_golden_config(golden: Golden, out: Path) -> pd.DataFrame:
    result = run_sweep(golden.sweep_config(out))
    if not result.ok:
        errors = "; ".join(f"{r['job_id']}: {r.get('error', '')}" for r in result.failed)
        raise GoldenError(f"the golden configuration did not run cleanly: {errors}")
    return pd.read_csv(out / "summary.csv", dtype={"rate": str})


def compare(golden: pd.DataFrame, new: pd.DataFrame, tolerances: dict[str, dict[str, float]]) -> pd.DataFrame:
    """One row per compared value: golden, new, delta, allowed, and whether it drifted."""
    cols = [c for c in tolerances if c in golden.columns]
    g = golden.set_index(KEY)
    n = new.set_index(KEY)
    rows = []
    for key in g.index.union(n.index):
        label = dict(zip(KEY, key))
        if key not in n.index:
            rows.append({**label, "column": "(row)", "golden": math.nan, "new": math.nan, "delta": math.nan, "allowed": math.nan, "status": "MISSING"})
            continue
        if key not in g.index:
            rows.append({**label, "column": "(row)", "golden": math.nan, "new": math.nan, "delta": math.nan, "allowed": math.nan, "status": "EXTRA"})
            continue
        for col in cols:
            old, cur = float(g.at[key, col]), float(n.at[key, col]) if col in n.columns else math.nan
            tol = tolerances[col]
            allowed = tol.get("abs", 0.0) + tol.get("rel", 0.0) * abs(old)
            delta = cur - old
            bad = math.isnan(cur) or abs(delta) > allowed
            rows.append({**label, "column": col, "golden": old, "new": cur, "delta": delta, "allowed": allowed, "status": "DRIFT" if bad else "ok"})
    return pd.DataFrame(rows, columns=[*KEY, "column", "golden", "new", "delta", "allowed", "status"])


def update(golden: Golden, new: pd.DataFrame) -> Path:
    keep = [*KEY, "frames", "width", "height", *[c for c in golden.tolerances if c in new.columns and c not in ("frames",)]]
    keep = list(dict.fromkeys(keep))
    path = golden.root / "summary.csv"
    atomic_write_text(path, new[keep].to_csv(index=False, float_format="%.10g"))
    if not (golden.root / "tolerances.json").is_file():
        atomic_write_text(golden.root / "tolerances.json", json.dumps(golden.tolerances, indent=2) + "\n")
    return path


def check(golden_dir: str | Path, results: str | Path | None = None, *, do_update: bool = False, keep: str | Path | None = None) -> tuple[pd.DataFrame, bool]:
    """Compare (or, with do_update, rewrite) a golden set. Returns the comparison and ok."""
    golden = Golden.load(golden_dir)
    if results is not None:
        path = Path(results)
        new = pd.read_csv(path if path.is_file() else path / "summary.csv", dtype={"rate": str})
    elif keep is not None:
        new = run_golden_config(golden, Path(keep))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
            new = run_golden_config(golden, Path(tmp))
    if do_update:
        update(golden, new)
        return compare(new, new, golden.tolerances), True
    table = compare(golden.summary(), new, golden.tolerances)
    return table, bool((table["status"] == "ok").all())


def format_report(table: pd.DataFrame, ok: bool) -> str:
    moved = table[(table["status"] != "ok") | (table["delta"].abs() > 0)]
    lines = [f"compared {len(table)} values: {int((table.status != 'ok').sum())} out of tolerance, {int((table.delta.abs() > 0).sum())} moved at all"]
    if not moved.empty:
        lines.append(moved.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    lines.append("OK: no drift" if ok else "DRIFT: results moved beyond tolerance (update on purpose with --update)")
    return "\n".join(lines)
