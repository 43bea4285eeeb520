"""The two exception types padbench raises for anything a user can get wrong.

The CLI prints their message on one line and exits non-zero; the asv suite turns
`UnsupportedError` into a skip.
"""


class PadbenchError(ValueError):
    """Bad input or configuration: the message names the problem."""


class UnsupportedError(PadbenchError):
    """A strategy, device or mode combination this torch or machine cannot run."""
