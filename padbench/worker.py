"""One case in a worker process with a time limit: a crash, a hang or the OOM killer ends that case, not the sweep.

On CUDA an illegal memory access poisons the process's context, and a segfault in a kernel or
an extension takes the interpreter with it; a strategy can also hang. `measure_isolated` runs
`padbench.runner.measure_case` in ``python -m padbench.worker`` (the case as JSON, as
`runner.peak_memory` runs `padbench.memprobe`) in a session of its own, so a timeout kills the
worker and the memory probe it started. A worker that dies leaves a record all the same:
``crashed`` (a signal, or an exit without a record), ``timeout`` or ``oom`` (killed by the
kernel's OOM killer), with what it said last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import is_oom

_MEMORY_EVENTS = (Path("/sys/fs/cgroup/memory.events"), True),  # cgroup v2: counts every OOM kill
_MEMORY_EVENTS += ((Path("/sys/fs/cgroup/memory/memory.oom_control"), False),)  # v1: the cgroup's own only


def _oom_kills() -> tuple[int, bool] | None:
    """(OOM kills in this cgroup so far, whether the count sees every kind of OOM kill), or None."""
    for path, complete in _MEMORY_EVENTS:
        try:
            for line in path.read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1]), complete
        except (OSError, ValueError):
            continue
    return None


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def exit_status(returncode: int, stderr: str, oom_before=None, oom_after=None) -> dict:
    """``status``/``message`` of a worker that ended without writing its record."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = next((i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")), None)
    if fatal is not None:  # faulthandler: the error, then the innermost frame (most recent call first)
        tail = " ".join([lines[fatal], *[ln for ln in lines[fatal:] if ln.startswith("File ")][:1]])
    else:
        tail = lines[-1] if lines else ""
    said = f"; last words: {tail[:300]}" if tail else ""
    if returncode < 0:
        sig = _signal_name(-returncode)
        if -returncode == signal.SIGKILL:
            if oom_before and oom_after and oom_after[0] > oom_before[0]:
                return {"status": "oom", "message": f"killed by the kernel's OOM killer ({sig}){said}"}
            if not (oom_before and oom_after and oom_after[1]):  # no count that would have seen it
                return {"status": "oom", "message": f"killed by {sig}, most likely the kernel's OOM killer{said}"}
        return {"status": "crashed", "message": f"worker killed by {sig}{said}"}
    if is_oom(RuntimeError(tail)):
        return {"status": "oom", "message": f"worker exited with {returncode}{said}"}
    return {"status": "crashed", "message": f"worker exited with {returncode} and no record{said}"}


def measure_isolated(case, *, timeout: float, threads: int | None = None, **measure) -> dict:
    """`runner.measure_case(case, **measure)` in a fresh worker process that may take ``timeout`` s."""
    from .runner import base_record

    fd, out = tempfile.mkstemp(prefix="padbench-worker-", suffix=".json")
    os.close(fd)
    payload = json.dumps({"case": case.to_dict(), "measure": measure, "threads": threads, "out": out})
    before = _oom_kills()
    proc = subprocess.Popen([sys.executable, "-m", "padbench.worker", payload], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            return {**base_record(case), "status": "timeout", "message": f"no result after {timeout:g} s (killed)"}
        text = Path(out).read_text()
        if proc.returncode == 0 and text:
            return json.loads(text)
        return {**base_record(case), **exit_status(proc.returncode, stderr, before, _oom_kills())}
    except BaseException:  # Ctrl-C: the worker (its own session, so not signalled) goes too
        _kill(proc)
        raise
    finally:
        for leftover in (out, out + ".tmp"):
            if os.path.exists(leftover):
                os.unlink(leftover)


def _kill(proc: subprocess.Popen) -> None:
    """The worker and everything it started (the memory probe), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


def main(argv=None) -> int:
    import faulthandler

    faulthandler.enable()  # a segfault's last words name where it happened
    payload = json.loads((argv or sys.argv[1:])[0])
    import torch

    from .results import json_safe
    from .runner import Case, measure_case

    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    rec = measure_case(Case.from_dict(payload["case"]), **payload["measure"])
    tmp = payload["out"] + ".tmp"
    with open(tmp, "w") as fh:  # whole or not at all: a worker killed mid-write leaves no half record
        json.dump(json_safe(rec), fh, allow_nan=False)
    os.replace(tmp, payload["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
