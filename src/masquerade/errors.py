"""One exception hierarchy for the whole library; only the CLI turns these into exit codes."""

from __future__ import annotations


class MasqueradeError(Exception):
    """Base of every error masquerade raises on purpose. Its message is one line for the user."""

    exit_code = 1


class UsageError(MasqueradeError):
    """The request itself is invalid (bad option, output equal to target, unsupported extension...)."""

    exit_code = 2


class MediaError(MasqueradeError):
    """A file is missing, unreadable, truncated, empty or not the kind of media it claims to be."""


class OutputError(MasqueradeError):
    """The output cannot be written (missing folder, not writable...)."""


class NoSourceFaceError(MasqueradeError):
    """A source image has no usable face."""


class ModelError(MasqueradeError):
    """A model file could not be found, verified or run."""


class ModelNotCached(ModelError):
    """A model file is not in the cache and downloads are not possible or not allowed."""


class ChecksumMismatch(ModelError):
    """A model file's SHA-256 is not one the registry accepts."""


class UnsupportedOperator(ModelError):
    """The PyTorch backend cannot run an operator of this ONNX graph."""


class ProviderUnavailable(ModelError):
    """The requested execution provider is not available in the installed runtime."""


class ClusterError(MasqueradeError):
    """A cluster run could not go on: Ray unreachable, too few resources, a worker lost for good."""


class ContentRefused(MasqueradeError):
    """The job was refused (sexual content). Never bypassable."""

    exit_code = 3


class Cancelled(MasqueradeError):
    """The run was cancelled (Ctrl-C, or a terminating signal ``signum``); the message says whether the
    output was written."""

    exit_code = 130

    def __init__(self, message: str, signum: int | None = None) -> None:
        super().__init__(message)
        self.signum = signum
