"""The two exception types padbench raises for anything a user can get wrong.

The CLI prints their message on one line and exits non-zero; the asv suite turns
`UnsupportedError` into a skip.
"""


class PadbenchError(ValueError):
    """Bad input or configuration: the message names the problem."""


class UnsupportedError(PadbenchError):
    """A strategy, device or mode combination this torch or machine cannot run."""


# Messages of an allocation that failed: torch's CUDA OOM, and the CPU allocator's
# "DefaultCPUAllocator: can't allocate memory" (a RuntimeError, not an OutOfMemoryError).
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure, on any device."""
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or isinstance(exc, MemoryError) or any(t in text for t in _OOM_TEXT)


def describe(exc: BaseException) -> str:
    """``Type: first line`` of an exception: a user-facing message fits on one line."""
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0][:300] if msg else ''}".rstrip(": ")


def failure(exc: BaseException) -> dict:
    """The ``status``/``message`` fields of a record for a case that raised ``exc``.

    The one place an exception becomes a result: ``unsupported`` (the strategy says why it
    cannot run), ``oom`` (an allocation failed) or ``error`` with the exception's type, its first
    line and where it was raised, so a sweep records the failure and goes on.
    """
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, UnsupportedError):
        return {"status": "unsupported", "message": first}
    if is_oom(exc):
        return {"status": "oom", "message": describe(exc)}
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" ({tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno})" if tb is not None else ""
    return {"status": "error", "message": f"{describe(exc)}{where}"}
