"""Errors of running a coding program; each message says what to change."""

from icd_graph.errors import IcdError


class NoteError(IcdError):
    """A note that cannot be coded: empty, binary or unreadable."""


class ModelError(IcdError):
    """The language model is unreachable, refused the request, or kept failing."""


class ProgramFileError(IcdError):
    """A compiled program file that is missing, malformed, or made for another program or release."""


class BatchError(IcdError):
    """A batch input or output file that cannot be used."""
