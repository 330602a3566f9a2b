"""Where a sweep's jobs run: this machine (:mod:`.local`, with GPU pinning), a Ray cluster
(:mod:`.ray`), or Slurm through submitit (:mod:`.submitit`).

Each executor is one module that owns its options: ``NAME``; ``EXTRA`` (the package it needs
and the pip extra that installs it, or None); ``Options``, its section of the sweep
configuration (a pydantic model whose fields :class:`bench.config.SweepConfig` takes in);
``add_arguments(group)``, its command-line flags (each flag's ``dest`` is its field);
``check(config)``, what can be asked before anything is planned (its cluster answers); and
``make(config)``, the executor itself (:class:`.base.Executor`). Adding an executor is such a
module and its line in :data:`bench.executors.registry.EXECUTORS`.

This package's own import is empty on purpose: a worker process imports :mod:`.pool` and
:mod:`.base` (and :mod:`bench.jobs`) and nothing of the executors' options, so it does not
pay for the configuration's schema library (pydantic).
"""
