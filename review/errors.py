"""Errors of the review app: each is one line the page or the command line shows as it is."""

from icd_graph.errors import IcdError


class ReviewError(IcdError):
    """A request or file that cannot be used (a code that is not billable, a bad span, a
    malformed --out line)."""


class Conflict(ReviewError):
    """The decision changed in another tab since this page showed it; nothing was applied."""
