"""The executors by name (:data:`EXECUTORS`) and what the sweep and the CLI ask of them:
the package an executor needs (:func:`require`), its pre-flight check, its construction, and
its command-line flags. Adding an executor is its module (see :mod:`bench.executors`) and
its line here."""

from __future__ import annotations

import argparse
import importlib.util
from typing import TYPE_CHECKING, Any

from ..plan import PlanError
from . import local, ray, submitit
from .base import Executor

if TYPE_CHECKING:
    from ..config import SweepConfig

#: every executor, by the name ``--executor`` takes
EXECUTORS = {module.NAME: module for module in (local, ray, submitit)}
#: their sections of the sweep configuration
OPTIONS = tuple(module.Options for module in EXECUTORS.values())


def option_names() -> list[str]:
    """Every executor option's configuration key (and command-line ``dest``)."""
    return [name for options in OPTIONS for name in options.model_fields]


def require(executor: str) -> None:
    """Refuse an executor whose package is missing, before anything runs."""
    if executor not in EXECUTORS:
        raise PlanError(f"unknown executor {executor!r}: {', '.join(EXECUTORS)}")
    if EXECUTORS[executor].EXTRA is None:
        return
    module, extra = EXECUTORS[executor].EXTRA
    if importlib.util.find_spec(module) is None:
        raise PlanError(f"--executor {executor} needs the [{extra}] extra ({module} is not installed): pip install 'diffsit-bench[{extra}]'")


def check_executor(config: SweepConfig) -> None:
    """Everything about the executor that can be known before the results folder is made:
    its package, and that its cluster answers (Slurm and the partition; a Ray address)."""
    require(config.executor)
    EXECUTORS[config.executor].check(config)


def make_executor(config: SweepConfig) -> Executor:
    """The executor a configuration names."""
    return EXECUTORS[config.executor].make(config)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor`` and every executor's flags, as one group of ``parser``."""
    group = parser.add_argument_group("where jobs run (bench.executors; docs/clusters.md)")
    group.add_argument("--executor", choices=list(EXECUTORS), default="local", help="local processes (default), a Ray cluster, or Slurm through submitit")
    for module in EXECUTORS.values():
        module.add_arguments(group)


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The executor options given on the command line (those left out keep their defaults)."""
    return {name: value for name in option_names() if (value := getattr(args, name, None)) is not None}
