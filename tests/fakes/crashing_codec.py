"""A codec whose native code crashes the process at one rate point (os.abort(), as a C++
coder's 'double free or corruption' does), for the crash-isolation test."""

from __future__ import annotations

import os

from baselines.x265 import X265


class AbortsAt44(X265):
    name = "aborts-at-44"
    native_code = True

    def encode(self, video, rate, workdir):
        if int(rate) == 44:
            os.abort()
        return super().encode(video, rate, workdir)
