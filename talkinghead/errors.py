"""Errors the user can act on.

Anything raised as a :class:`TalkingHeadError` is a problem with the user's input or environment
(an unreadable file, no face, missing weights). The CLI prints its message as one line and exits
non-zero without a traceback; library callers can catch it. Bugs stay ordinary exceptions.
"""


class TalkingHeadError(Exception):
    """Base class for errors caused by input or environment, with a message saying what to do."""


class InputError(TalkingHeadError):
    """A user file is unreadable, corrupt, of an unsupported kind or has the wrong shape."""


class NoFaceError(InputError):
    """No usable face was found where one was required."""


class WeightsError(TalkingHeadError):
    """Weights are missing, unsafe, truncated, corrupt (a hash mismatch) or do not match their config."""


class OutputError(TalkingHeadError):
    """An output could not be written whole (a full disk, a read-only folder, a writer that failed); the
    earlier file at that path, if any, is kept (see :mod:`talkinghead.atomic`)."""


class DependencyError(TalkingHeadError):
    """A package that a command or option needs is not installed (or does not import); the message
    names it and the pip command (see :mod:`talkinghead.deps`)."""
