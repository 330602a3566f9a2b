"""The sweep configuration's one validation path, and the executors' own options: every
executor's flags land in its section of SweepConfig, by name, with no table in between."""

from __future__ import annotations

import argparse

import pytest

from bench.cli import build_parser, sweep_config
from bench.config import SweepConfig, SweepConfigError
from bench.executors import registry
from bench.provenance import git_commit, git_state


def _run_args(*flags: str) -> argparse.Namespace:
    args = build_parser().parse_args(["run", "--codec", "x265", "--dataset", "synthetic", *flags])
    args.command_line = []
    return args


def test_each_executor_owns_its_options():
    """Each executor module names itself, its extra, its options, flags, check and make; its
    flags' dests are exactly its option fields, and SweepConfig takes every field in."""
    parser = argparse.ArgumentParser()
    for name, module in registry.EXECUTORS.items():
        assert module.NAME == name
        assert all(callable(getattr(module, f)) for f in ("add_arguments", "check", "make"))
        group = parser.add_argument_group(name)
        module.add_arguments(group)
        assert {a.dest for a in group._group_actions} == set(module.Options.model_fields), name
        assert set(module.Options.model_fields) <= set(SweepConfig.keys())
    assert len(registry.option_names()) == len(set(registry.option_names())), "two executors share an option name"


def test_flags_reach_the_config_with_the_models_defaults():
    cfg = sweep_config(_run_args())
    assert (cfg.ray_max_retries, cfg.slurm_time_min, cfg.slurm_flags, cfg.gpus) == (2, 60, {}, None)
    cfg = sweep_config(
        _run_args("--executor", "submitit", "--slurm-time", "5", "--slurm-flag", "account=lab", "--slurm-flag=--qos=x=y", "--ray-max-retries", "0")
    )
    assert cfg.executor == "submitit" and cfg.slurm_time_min == 5.0 and cfg.ray_max_retries == 0
    assert cfg.slurm_flags == {"account": "lab", "qos": "x=y"}
    with pytest.raises(SweepConfigError, match=r"--slurm-flag 'account': expected KEY=VALUE \(e.g. account=lab\)"):
        sweep_config(_run_args("--slurm-flag", "account"))


def test_one_validation_path():
    """from_dict, direct construction and replace() validate alike."""
    cfg = SweepConfig(codecs="x265,x264", dataset="synthetic", frames="all", size="64x48", out=None, rates=[32, 37])
    assert cfg.codecs == ["x265", "x264"] and cfg.frames == 0 and cfg.size == (64, 48) and cfg.rates == ["32", "37"]
    with pytest.raises(SweepConfigError, match="'jobs' must be an integer"):
        SweepConfig(codecs=["x265"], dataset="synthetic", jobs="two")
    with pytest.raises(SweepConfigError, match="'executor' must be local, ray or submitit, got 'k8s'"):
        SweepConfig.from_dict({"codecs": ["x265"], "dataset": "synthetic", "executor": "k8s"})
    with pytest.raises(SweepConfigError, match="'slurm_time_min' must be a number"):
        cfg.replace(slurm_time_min="soon")
    with pytest.raises(SweepConfigError, match="'size' must be WxH"):
        SweepConfig.from_dict({"codecs": ["x265"], "dataset": "synthetic", "size": "big"})
    with pytest.raises(SweepConfigError, match="is a mapping of keys to values, not list"):
        SweepConfig.from_dict(["x265"])
    assert SweepConfig(codecs=["x265"], conditions="ctc-lowdelay").dataset is None  # the conditions name the datasets
    assert cfg.replace(frames=3).frames == 3 and cfg.frames == 0


def test_to_dict_lists_what_is_set():
    cfg = SweepConfig(codecs=["x265"], dataset="synthetic", slurm_flags={"account": "lab"})
    d = cfg.to_dict()
    assert list(d)[:2] == ["codecs", "dataset"] and d["slurm_flags"] == {"account": "lab"}
    assert "rates" not in d and "about" not in d


def test_git_provenance_is_one_implementation(tmp_path):
    state = git_state()
    assert set(state) <= {"commit", "dirty"}
    commit = git_commit()
    assert commit is None or commit.split("-")[0] == state["commit"]
    assert git_state(tmp_path)["commit"] is None  # outside a checkout
