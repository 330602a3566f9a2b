"""``bench measure``: add or change metrics of finished results without encoding anything.

A job's bitstream is keyed by what makes it (``Job.bitstream_hash``: the codec, its identity,
the source range), its metric values by the decoded samples and each metric's identity. So a
new metric is measured from the stored bitstream, decoded again; the jobs here carry their
recorded codec identity, so even an encoder upgraded since cannot make them encode again.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from . import datasets as ds
from .config import SweepConfig
from .executors.registry import make_executor
from .jobs import Job, jsonable
from .metrics import create_metric, resolve_metrics
from .plan import Plan, PlanError, reuse_of
from .provenance import now, provenance
from .records import JobRecord, Status
from .store import ResultsStore
from .sweep import SweepPart, execute


def measure_results(out: str | Path, metrics: list[str], *, jobs: int = 1, device: str = "cpu", progress: bool = True) -> SweepPart:
    """Measure ``metrics`` (added to what each job measured) on every done job of ``out``."""
    store = ResultsStore(out)
    if not store.jobs_dir.is_dir():
        raise PlanError(f"{out} has no {store.JOBS}/ folder: `bench measure` works on the --out folder of `bench run`")
    specs = resolve_metrics(metrics)
    with store.lock():
        records = store.jobs(Status.DONE)
        if not records:
            raise PlanError(f"{out} holds no finished job to measure")
        planned = [(rec, _job(rec, specs, device, store)) for rec in records]
        skipped = [job for rec, job in planned if rec.config_hash == job.config_hash()]
        todo = [dataclasses.replace(job, reuse=reuse_of(rec.to_dict(), store)) for rec, job in planned if rec.config_hash != job.config_hash()]
        missing = [j.job_id for j in todo if j.reuse is None]
        if missing:
            raise PlanError(
                f"{len(missing)} job(s) of {out} have no stored bitstream to measure again (e.g. {missing[0]}): "
                "`bench measure` never encodes; rerun them with `bench run`"
            )
        config = SweepConfig(codecs=sorted({j.row_label for _, j in planned}), dataset=planned[0][1].dataset, jobs=jobs, device=device, progress=progress)
        # the run that made the bitstreams stays the provenance; this adds what was measured later
        prov = store.manifest().get("provenance") or provenance({}, config=config)
        prov = {**prov, "measured_later": [*prov.get("measured_later", []), {"metrics": specs, "time": now(), "command": sys.argv}]}
        records = execute(Plan(todo, skipped, {}), make_executor(config), store, prov, progress=progress)
    return SweepPart(Path(out), records, len(skipped), [])


def _job(rec: JobRecord, specs: list[str], device: str, store: ResultsStore) -> Job:
    """The recorded job, with the metrics it had and those asked for."""
    config = rec.config or {}
    width, height, depth = config["geometry"]
    seq = ds.Sequence(rec.dataset, rec.sequence, Path(config["source"]), width, height, 25.0, depth)
    names = {s.split(":", 1)[0] for s in specs}
    earlier = [m for m in rec.metric_specs or sorted(config.get("metrics", {})) if m.split(":", 1)[0] not in names]
    wanted = [*earlier, *specs]
    metric_ids = {}
    for spec in wanted:
        m = create_metric(spec, device=device)
        metric_ids[m.name] = jsonable(m.identity())
    identity = json.dumps({"codec_identity": config.get("codec_identity"), "metrics": metric_ids}, sort_keys=True, default=str)
    return Job(
        dataset=rec.dataset,
        sequence=seq,
        codec=rec.codec_name or config["codec"],
        label=rec.codec,
        codec_options=tuple(sorted(config.get("codec_options", {}).items())),
        rate=config["rate"],
        frames=config["frames"],
        start=config.get("start", 0),
        metrics=tuple(wanted),
        device=device,
        out=str(store.root),
        coded_bit_depth=config.get("coded_bit_depth", depth),
        identity=identity,
        conditions=config.get("conditions", ""),
    )
