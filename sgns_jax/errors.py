"""User-facing error types.

Every problem caused by the user's input (a missing or empty corpus, a bad config value, an
unknown word) raises a subclass of :class:`SgnsError`, itself a ``ValueError``. The CLI prints
its message on one line and exits with status 2 (1 for a file system that refuses a read or a
write, 130 for an interrupt); anything else is a bug and keeps its traceback.
"""


class SgnsError(ValueError):
    """Base class of every user-input error raised by sgns_jax."""

    exit_code = 2  # the CLI's exit status for this error


class CorpusError(SgnsError):
    """The corpus is missing, unreadable, empty, or has no word reaching ``min_count``."""


class ConfigError(SgnsError):
    """A configuration value is out of range (window < 1, sample < 0, min_count < 1, ...)."""


class VocabularyError(SgnsError):
    """A word is not in the vocabulary, or a vocabulary file is malformed."""


class VectorsFormatError(SgnsError):
    """A word2vec-format vectors file is malformed."""


class StorageError(SgnsError):
    """A file could not be read or written: disk full, no permission, read-only file system, a
    directory where a file belongs. The message names the file and what to do; nothing that
    was there before is left half-replaced."""

    exit_code = 1


class CheckpointError(SgnsError):
    """A checkpoint is damaged, is in the way of a fresh run, or does not belong to this run
    (another corpus, vocabulary or model)."""


class TrainingDiverged(SgnsError):
    """The loss became NaN or infinite."""
