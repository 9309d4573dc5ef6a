"""Errors of the knowledge base. Each message is one line a user can act on."""


class IcdError(Exception):
    """Base class: the CLI prints the message and exits non-zero."""


class MalformedCode(IcdError):
    """Text that cannot be an ICD-10-CM code."""


class UnknownCode(IcdError):
    """A well-formed code that is not in the loaded release."""


class DatabaseMissing(IcdError):
    """No knowledge-base file where one was expected."""


class SourceError(IcdError):
    """A source file that is missing, unreadable or malformed."""
