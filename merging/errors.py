"""Errors merging raises for inputs a method cannot take (the service answers them with 422).

Both are ``ValueError`` subclasses, like :mod:`graphs.errors`, so callers that already map
``ValueError`` to a client error keep working; catch :class:`MergeInputError` to tell "this
method cannot merge these inputs" apart from a bug.
"""

__all__ = ["MergeInputError", "UnsupportedMergeError"]


class MergeInputError(ValueError):
    """The inputs are wrong for the requested merge (missing data, bad option values)."""


class UnsupportedMergeError(MergeInputError):
    """The method does not support these networks (architectures, widths, depths, ops)."""
