"""Errors SLR Explorer raises for bad input: each message says what is wrong and what to do."""


class SLRError(Exception):
    """Base class for every error a user can cause; the app shows its message as is."""


class SourceError(SLRError):
    """A model source cannot be found, reached or read."""


class IncompatibleModelsError(SLRError):
    """The pre-trained and post-trained models cannot be hybridised."""


class UnsupportedArchitectureError(SLRError):
    """The model class is not one whose decoder layers SLR Explorer knows how to reach."""


class IntervalError(SLRError):
    """An interval [i, j] lies outside 0 <= i <= j <= N-1."""


class PromptSetError(SLRError):
    """A CRC prompt set is malformed or cannot be tokenised."""


class ExportError(SLRError):
    """An export target is invalid or cannot be written."""


class InputError(SLRError, ValueError):
    """A number or path a user typed lies outside its range (docs/inputs.md); also a ValueError."""
