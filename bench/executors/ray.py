"""The Ray executor: jobs as Ray tasks with ``num_gpus``/``num_cpus`` from each job's
:class:`bench.codec.Resources` (Ray sets ``CUDA_VISIBLE_DEVICES``), and bounded retries when a
worker dies. Needs the ``[ray]`` extra; ``ray`` is imported only where it is used (it is
optional, and heavy)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..jobs import PINNED_ENV, Job
from ..plan import PlanError
from .base import Executor, NodeProblem, run_on_node, stop_sweep, worker_init

if TYPE_CHECKING:
    from ..config import SweepConfig

NAME = "ray"
#: the package it needs, and the extra that installs it
EXTRA = ("ray", "ray")


class Options(BaseModel):
    """Ray's section of a sweep configuration."""

    #: a cluster address (None: start a local Ray)
    ray_address: str | None = None
    #: a local Ray's logical resources
    ray_num_cpus: int | None = None
    ray_num_gpus: int | None = None
    #: reruns of a job whose worker died
    ray_max_retries: int = 2


def add_arguments(group: argparse._ArgumentGroup) -> None:
    retries = Options.model_fields["ray_max_retries"].default
    group.add_argument("--ray-address", help="Ray: a running cluster (auto, ray://HEAD:10001); default: start a local Ray")
    group.add_argument("--ray-num-cpus", type=int, help="Ray, local: logical CPUs")
    group.add_argument("--ray-num-gpus", type=int, help="Ray, local: logical GPUs")
    group.add_argument("--ray-max-retries", type=int, help=f"Ray: reruns of a job whose worker died (default {retries})")


def check(config: SweepConfig) -> None:
    """A Ray head named by address answers."""
    if config.ray_address:
        check_ray(config.ray_address)


def make(config: SweepConfig) -> Executor:
    return RayExecutor(config.ray_address, config.ray_num_cpus, config.ray_num_gpus, config.ray_max_retries)


def has_ray_token() -> bool:
    """Whether this machine holds a Ray auth token (Ray >= 2.60's token authentication)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


def ray_auth_env() -> None:
    """A head started where ``~/.ray/auth_token`` exists turns token authentication on by
    itself; a driver connecting to it does not, and fails with ``InvalidAuthToken``. With a
    token here and no ``RAY_AUTH_MODE`` said, ask for token mode (a cluster without
    authentication accepts such a driver too)."""
    if "RAY_AUTH_MODE" in os.environ or not has_ray_token():
        return
    try:  # Ray's own switch: it also refreshes the mode a process that imported ray has read
        from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
    except ImportError:  # a Ray without token authentication: nothing to ask for
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _ray_host_port(address: str) -> tuple[str, int]:
    """host and GCS port of a Ray address: "auto", "host:port", "ray://host:port"."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "")
        if not address:
            current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
            address = current.read_text().strip() if current.is_file() else ""
        if not address:
            raise PlanError(
                "--ray-address auto: no Ray cluster was started on this machine (no $RAY_ADDRESS, no /tmp/ray/ray_current_cluster): "
                "start one with `ray start --head`, or pass --ray-address HEAD:6379"
            )
    address = address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PlanError(f"--ray-address {address!r}: expected HOST:PORT (the head's GCS port, 6379 by default), ray://HOST:10001, or auto")
    return host, int(port)


def check_ray(address: str) -> None:
    """The Ray head at ``address`` takes connections (a bad address is said here, not as a
    traceback from inside ``ray.init`` after the results folder was made)."""
    host, port = _ray_host_port(address)
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as e:
        raise PlanError(
            f"no Ray cluster answers at {host}:{port} ({e.strerror or e}): start it with `ray start --head --port {port}` "
            "on the head node, or fix --ray-address"
        ) from None


def _ray_where() -> dict[str, Any]:
    import ray

    ctx = ray.get_runtime_context()
    return {
        "engine": "ray",
        "node": socket.gethostname(),
        "node_id": ctx.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "task_id": ctx.get_task_id(),
        "worker_pid": os.getpid(),
    }


def _ray_task(fn, job: Job):
    import ray

    if ray.get_gpu_ids():  # Ray pinned this task: CUDA_VISIBLE_DEVICES holds its GPU
        os.environ[PINNED_ENV] = ",".join(str(g) for g in ray.get_gpu_ids())
    worker_init(max(1, job.resources.cpus))
    return run_on_node(fn, job, _ray_where())


def _check_fits(nodes: list[dict[str, float]], jobs: list[Job]) -> None:
    """Ray queues a task no node can hold, forever: refuse it instead (a codec's threads=8
    asks for 8 CPUs)."""
    cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    for job in jobs:
        if job.resources.cpus > cpus or (job.resources.gpu and gpus < 1):
            need = f"{job.resources.cpus} CPU(s)" + (" and a GPU" if job.resources.gpu else "")
            raise PlanError(
                f"{job.row_label} needs {need} a job, and no node of the Ray cluster has that many (at most {cpus:g} CPUs, {gpus:g} GPUs): "
                "give the codec fewer threads, or add such a node"
            )


@dataclass
class RayExecutor:
    """``address``: a running cluster ("auto", "HEAD:6379", "ray://head:10001"); None starts a
    local Ray with ``num_cpus``/``num_gpus`` (logical resources: ``num_gpus=2`` on a CPU
    machine schedules as if it had two). ``max_retries``: how often a job whose worker died
    is rerun before it is recorded failed."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_retries: int = 2
    _started: bool = field(default=False, init=False)
    _refs: dict[Any, Job] = field(default_factory=dict, init=False)

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        env = {k: v for k, v in os.environ.items() if k.startswith("BENCH_") or k in ("NUMBA_CACHE_DIR", "DIFFSIT_WAN_DIR")}
        if self.address is None:
            # a new local cluster ("local": never one some `ray start` left on this machine),
            # running this checkout: the workers get the driver's import path
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
            ray.init(
                address="local", num_cpus=self.num_cpus, num_gpus=self.num_gpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env}
            )
        else:
            ray_auth_env()
            try:
                ray.init(address=self.address, log_to_driver=False, runtime_env={"env_vars": env})
            except ConnectionError as e:
                raise PlanError(
                    f"cannot join the Ray cluster at {self.address}: {e}. With Ray >= 2.60 and token authentication, "
                    "set RAY_AUTH_MODE=token and give this machine the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN)"
                ) from None
        self._started = True

    def run(self, fn, jobs: list[Job]):
        import ray

        self._init()
        _check_fits([n["Resources"] for n in ray.nodes() if n["Alive"]], jobs)
        task = ray.remote(_ray_task)
        for job in jobs:
            r = job.resources
            opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": 1 if r.gpu else 0, "max_retries": self.max_retries, "retry_exceptions": False}
            if r.memory_gb:
                opts["memory"] = int(r.memory_gb * 2**30)
            self._refs[task.options(**opts).remote(fn, job)] = job
        while self._refs:
            done, _ = ray.wait(list(self._refs), num_returns=1)
            job = self._refs.pop(done[0])
            try:
                res = ray.get(done[0])
            except Exception as e:  # retries exhausted (WorkerCrashedError, ...)
                res = e
            if isinstance(res, NodeProblem):
                raise stop_sweep(res, self._cancel())
            yield job, res

    def _cancel(self) -> int:
        import ray

        n = len(self._refs)
        for ref in self._refs:
            ray.cancel(ref, force=True)
        self._refs.clear()
        return n

    def close(self) -> None:
        if self._started:
            import ray

            self._cancel()
            ray.shutdown()
            self._started = False
