"""Plugins found through entry points (``bench.codecs``, ``bench.metrics``), read once per
process: ``importlib.metadata.entry_points`` reads every installed distribution's metadata
on each call (tens of milliseconds), and a job looks its codec and metrics up several times."""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points


@functools.cache
def group(name: str) -> tuple[EntryPoint, ...]:
    """The entry points of ``name``, as installed when first asked in this process (a
    package installed later is seen after :func:`forget`, or by a new process)."""
    return tuple(entry_points(group=name))


def forget() -> None:
    """Read the installed plugins again on the next lookup."""
    group.cache_clear()
