"""bench.records: the typed job record reads and writes today's JSON unchanged."""

import json

import pytest

from bench.records import JobRecord, RecordError, Status, as_dict
from bench.store import dumps

DONE = {
    "job_id": "x265-sample-bikes-32-abc",
    "config_hash": "abc",
    "config": {"codec": "x265", "rate": 32, "geometry": [352, 288, 8]},
    "dataset": "sample",
    "sequence": "bikes",
    "codec": "x265",
    "codec_name": "x265",
    "rate": 32,
    "source": {"path": "/data/bikes.yuv", "start": 0, "frames": 3, "bit_depth": 8},
    "node": "host",
    "started": "2026-01-01T00:00:00+00:00",
    "status": "done",
    "summary": {"dataset": "sample", "sequence": "bikes", "codec": "x265", "rate": "32", "bpp": 0.1},
    "bitstream": "bitstreams/x265-sample-bikes-32-abc.hevc",
    "bitstream_md5": "0" * 32,
    "bitstream_hash": "def",
    "samples_md5": "1" * 32,
    "metric_specs": ["psnr"],
    "codec_config": {"name": "x265"},
    "cost": {"cpu": "x"},
    "encoder": {"command": ["x265"], "tools": {}},
    "metrics": {"psnr": {}},
    "notes": [],
    "timings": {"encode_s": 0.1},
    "finished": "2026-01-01T00:00:01+00:00",
}


def test_a_record_round_trips_byte_for_byte():
    rec = JobRecord.from_dict(json.loads(dumps(DONE)))
    assert rec.status is Status.DONE and rec.done and rec.summary["bpp"] == 0.1
    assert dumps(rec.to_dict()) == dumps(DONE)
    assert list(rec.to_dict()) == list(DONE)


def test_status_is_a_string_in_json():
    assert Status.DONE == "done" and json.dumps(Status.TIMED_OUT) == '"timed_out"' and str(Status.LOST) == "lost"
    rec = JobRecord(job_id="j", status=Status.CRASHED, error="boom")
    assert rec.to_dict() == {"job_id": "j", "status": "crashed", "error": "boom"}


def test_unknown_keys_are_kept_where_they_were():
    data = {"job_id": "j", "future": {"a": 1}, "status": "failed", "error": "e"}
    rec = JobRecord.from_dict(data)
    assert rec.extra == {"future": {"a": 1}}
    assert list(rec.to_dict()) == ["job_id", "future", "status", "error"] and rec.to_dict() == data
    assert rec["future"] == {"a": 1} and rec.get("nothing", 5) == 5


def test_explicit_nulls_and_order_survive():
    data = {"status": "failed", "job_id": "j", "logs": None, "rate": "1.5"}
    assert JobRecord.from_dict(data).to_dict() == data and list(JobRecord.from_dict(data).to_dict()) == list(data)


def test_replace_adds_fields_after_the_read_ones():
    rec = JobRecord.from_dict({"job_id": "j", "status": "failed"}).replace(ran_on={"engine": "ray"}, newer=1)
    assert rec.to_dict() == {"job_id": "j", "status": "failed", "ran_on": {"engine": "ray"}, "newer": 1}


@pytest.mark.parametrize(
    "data, says",
    [
        ([1, 2], "JSON object"),
        ({"status": "done"}, "needs a job_id"),
        ({"job_id": "", "status": "done"}, "non-empty"),
        ({"job_id": "j"}, "no status"),
        ({"job_id": "j", "status": "exploded"}, "none that bench writes"),
    ],
)
def test_what_is_no_record_is_refused_clearly(data, says):
    with pytest.raises(RecordError, match=says):
        JobRecord.from_dict(data)


def test_as_dict_checks_a_dict():
    assert as_dict(DONE) == DONE and as_dict(JobRecord.from_dict(DONE)) == DONE
    with pytest.raises(RecordError):
        as_dict({"job_id": "j", "status": "?"})


def test_records_are_frozen():
    rec = JobRecord.from_dict(DONE)
    with pytest.raises(AttributeError):
        rec.status = Status.FAILED


def test_a_record_made_here_names_its_status():
    with pytest.raises(TypeError):
        JobRecord(job_id="j")  # no default status: a record says how its job ended
    with pytest.raises(TypeError):
        JobRecord("j", Status.DONE)  # keywords only: 30 fields are not read by position
