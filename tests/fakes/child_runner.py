"""A runner for baselines.dcvc's child process that runs no DCVC: for testing the process
plumbing (answers, errors, crashes) without a build."""

from __future__ import annotations

import os

from bench.codec import CodecUnavailable


class EchoRunner:
    def __init__(self, **init):
        self.init = init

    def echo(self, **kwargs):
        return {"init": self.init, **kwargs}

    def fail(self):
        raise ValueError("a bad frame")

    def unavailable(self):
        raise CodecUnavailable("the coder is not built: build it so")

    def abort(self):
        os.abort()  # as a C++ coder's "double free or corruption" does
