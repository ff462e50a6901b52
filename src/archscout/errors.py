"""Exceptions a user can cause. Each carries one line that the CLI prints as-is."""


class ArchscoutError(Exception):
    """Base class: a mistake in user input or environment, reported without a traceback."""


class SpaceError(ArchscoutError):
    """A malformed search space, or a value that does not belong to the space."""


class ConstraintError(ArchscoutError):
    """A malformed constraint expression, or one that no architecture can satisfy."""


class StorageError(ArchscoutError):
    """A database that cannot be used as archscout storage (foreign, corrupt, newer schema)."""


class StudyError(ArchscoutError):
    """A study that does not exist, or exists with settings that conflict with the request."""


class UnknownNameError(ArchscoutError):
    """An unknown strategy, benchmark or evaluator name."""


class EvaluationError(ArchscoutError):
    """An evaluator could not score an architecture (recorded on the trial, never fatal)."""


class TabularError(ArchscoutError):
    """A malformed tabular-benchmark file (bad entry, metric, header or format version)."""


class DataError(ArchscoutError):
    """A dataset that cannot be loaded: unknown name, missing file, bad features or labels."""
