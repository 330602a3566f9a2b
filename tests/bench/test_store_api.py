"""ResultsStore's reader API: the one module that names a results folder's files."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from bench.records import JobRecord, RecordError, Status
from bench.safepath import UnsafePath
from bench.store import ResultsStore, TableWriter


def _record(job_id: str, status: Status = Status.DONE, rate: int = 32, **kw) -> JobRecord:
    summary = {"dataset": "d", "sequence": "s", "codec": "c", "rate": str(rate), "frames": 2, "bpp": 0.5, "bitstream": f"bitstreams/{job_id}.bin"}
    done = status is Status.DONE
    return JobRecord(
        job_id=job_id,
        dataset="d",
        sequence="s",
        codec="c",
        rate=rate,
        status=status,
        summary=summary if done else None,
        bitstream=summary["bitstream"] if done else None,
        error=None if done else "boom",
        **kw,
    )


def _frames(rate: int) -> pd.DataFrame:
    return pd.DataFrame({"dataset": "d", "sequence": "s", "codec": "c", "rate": str(rate), "frame": [0, 1], "frame_type": ["I", "P"], "bits": [8.0, 4.0]})


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    st = ResultsStore(tmp_path / "run")
    with st.lock():
        tables = TableWriter(st, {"command": ["bench", "run"]})
        tables.add(_record("a", decoded={"path": "decoded/a.mkv"}), _frames(32))
        tables.add(_record("b", rate=37), _frames(37))
        tables.add(_record("f", Status.FAILED, rate=40).to_dict(), None)  # a dict is read as a record
        tables.finish()
    return st


def test_typed_jobs_and_their_files(store):
    assert [j.job_id for j in store.jobs()] == ["a", "b", "f"]
    assert [j.job_id for j in store.jobs(Status.DONE)] == ["a", "b"] and [j.job_id for j in store.jobs(Status.FAILED)] == ["f"]
    a = store.job("a")
    assert isinstance(a, JobRecord) and a.done and a.summary["bpp"] == 0.5 and store.job("nope") is None
    assert store.bitstream_path(a) == store.root / "bitstreams" / "a.bin" and store.bitstream_path(store.job("f")) is None
    assert store.decoded_path(a) == store.root / "decoded" / "a.mkv" and store.decoded_path(store.job("b")) is None
    assert list(store.job_frames("a")["bits"]) == [8.0, 4.0] and store.job_frames("f") is None
    # the record files hold what the worker's dicts held: the same JSON
    assert json.loads(store.record_path("a").read_text()) == _record("a", decoded={"path": "decoded/a.mkv"}).to_dict()


def test_tables_and_manifest(store):
    assert list(store.summary()["rate"]) == ["32", "37"]  # rates are text, as the key reads them
    assert len(store.frames()) == 4 and set(store.frames()["rate"]) == {"32", "37"}
    m = store.manifest()
    assert m["counts"] == {"done": 2, "failed": 1} and m["jobs"]["f"]["status"] == "failed" and m["provenance"]["command"] == ["bench", "run"]
    assert store.read_manifest() == m
    assert ResultsStore(store.root / "nowhere").frames().empty and ResultsStore(store.root / "nowhere").manifest() == {}


def test_stores_under_a_folder(store, tmp_path):
    other = ResultsStore(tmp_path / "deeper" / "run2")
    other.commit(_record("z"), None)
    assert [s.root for s in ResultsStore.under(tmp_path)] == [tmp_path / "deeper" / "run2", store.root]
    assert ResultsStore.summary_files(tmp_path) == [store.summary_path]


def test_a_linked_manifest_is_not_read(store, tmp_path):
    (tmp_path / "elsewhere.json").write_text("{}")
    store.manifest_path.unlink()
    store.manifest_path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafePath):
        store.read_manifest()


def test_what_is_no_record_is_not_committed_nor_listed(store):
    with pytest.raises(RecordError, match="none that bench writes"):
        store.commit({"job_id": "x", "status": "exploded"}, None)
    assert not store.record_path("x").exists()
    store.record_path("y").write_text(json.dumps({"job_id": "y", "status": "exploded"}))
    assert "y" not in [j.job_id for j in store.jobs()] and store.job("y") is None


def test_written_tables_of_a_folder_no_sweep_made(tmp_path):
    st = ResultsStore(tmp_path / "imported")
    path = st.write_summary(pd.DataFrame({"dataset": ["d"], "rate": ["1"], "bpp": [0.1234567890123]}), float_format=None)
    assert path == st.summary_path and "0.1234567890123" in path.read_text()
    st.write_manifest_data({"imported": {"rows": 1}})
    assert st.manifest() == {"imported": {"rows": 1}} and st.manifest_path.read_text().endswith("}\n")


def test_no_module_but_the_store_names_its_files():
    """A results folder's file names are ResultsStore's (SUMMARY, FRAMES, MANIFEST, frames_path):
    a string literal of one anywhere else in the packages (f-strings included) is a second
    place that would have to change with it."""
    names = {ResultsStore.SUMMARY, ResultsStore.FRAMES, ResultsStore.MANIFEST, f".{ResultsStore.FRAMES}"}
    root = Path(__file__).resolve().parents[2]
    found = []
    for package in ("bench", "baselines", "diffsit"):
        for path in sorted((root / package).rglob("*.py")):
            if path == root / "bench" / "store.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Constant) and node.value in names:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    assert not found, "ask bench.store.ResultsStore instead:\n" + "\n".join(found)
