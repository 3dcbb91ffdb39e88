"""Errors the graphs library raises for bad input.

All are ``ValueError`` subclasses with a one-line, user-facing message, so the service can
turn them into a 4xx problem+json and the CLI into a one-line error without guessing.
"""


class GraphsError(ValueError):
    """Base class: the input (file, architecture, permutation) is wrong, not the code."""


class CheckpointError(GraphsError):
    """The checkpoint file is malformed, unsafe, too large or holds unusable values."""


class ArchitectureError(GraphsError):
    """The architecture op graph is malformed or disagrees with the tensors."""


class UnsupportedOpError(ArchitectureError):
    """A traced module uses an operation the op graph cannot describe."""


class MissingArchitectureError(ArchitectureError):
    """No architecture in the metadata, none given, and none could be inferred."""
