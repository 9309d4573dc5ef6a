"""Errors of serving an app or calling the coding service: each is one line that says what to do."""

from icd_graph.errors import IcdError


class ServiceError(IcdError):
    """A server that cannot start (a port in use, an unknown host), or a coding service that cannot
    be reached or answers what no client of this release expects."""
