"""Errors whose message is one readable line, shown as-is in the viewer and on the command line."""


class BavisError(Exception):
    """Base of every error the plugin reports to a user: ``str(err)`` is the whole message."""


class ScanError(BavisError):
    """The file is not a usable 3D brain scan (unreadable, wrong dimensionality, no finite data...)."""


class CheckpointError(BavisError):
    """A model file cannot be loaded safely or does not match its architecture."""


class PreprocessError(BavisError):
    """A preprocessing step failed on this scan (e.g. registration is doubtful)."""


class ExplainError(BavisError):
    """An explanation map cannot be computed for this model / layer / target."""


class Cancelled(BavisError):
    """The user asked to stop; raised between steps, never mid-write."""


class UsageError(Exception):
    """A problem with the request itself (bad arguments, an unreadable covariates table, an output
    folder that collides with an input): the CLI reports ``napari-bavis: error: ...`` and exits 2.
    Deliberately not a BavisError, which is one scan's failure."""
