"""Errors of dataset loading; each message names the file, line, env var or flag to fix."""

from icd_graph.errors import IcdError


class DatasetError(IcdError):
    """A dataset spec, folder or file that cannot be used."""
