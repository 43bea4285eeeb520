"""Strategies that fail on purpose, for the sweep tests only: loaded through PADBENCH_PLUGINS.

Each dies the way a real strategy can (a segfault in an extension, an abort, a hang, the kernel's
OOM killer's SIGKILL); only an isolated sweep survives them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from padbench.strategies import Strategy, register


class _Dies(Strategy):
    summary = "fails on purpose (tests only)"

    def die(self):
        raise NotImplementedError

    def __call__(self, batch):
        self.die()


@register
class Segfault(_Dies):
    name = "crash_segv"

    def die(self):
        ctypes.string_at(0)


@register
class Abort(_Dies):
    name = "crash_abort"

    def die(self):
        os.abort()


@register
class Hang(_Dies):
    name = "hang"

    def die(self):
        time.sleep(3600)


@register
class Killed(_Dies):
    name = "killed"

    def die(self):
        os.kill(os.getpid(), signal.SIGKILL)
