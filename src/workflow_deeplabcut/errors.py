"""One error vocabulary for the package.

Every error the package raises on purpose is a :class:`WorkflowError`, and each names the bad
value and the fix in its message. The subclasses say whose move it is:

=========================  =====================================================================
class                      cause
=========================  =====================================================================
:class:`InputError`        a file, parameter, key or value the user gave (also a ``ValueError``)
:class:`UnsafeFileError`   a file that could only be read by running code from it
:class:`PoseFileError`     a pose file from another tool cannot be read or does not fit
:class:`ConfigurationError` settings: roots, prefix, the database to use (also a ``ValueError``)
:class:`DeepLabCutError`   a DeepLabCut project, run or output (also a ``ValueError``)
:class:`DatabaseError`     the database cannot be reached or started (also a ``ConnectionError``)
:class:`SchedulerError`    the cluster's scheduler (SLURM) refused or failed a command
=========================  =====================================================================

The command line prints one line per error (``Error: <message>``) and shows a traceback only
with ``--debug``.
"""

from __future__ import annotations


class WorkflowError(Exception):
    """Base class of every error workflow-deeplabcut raises on purpose."""


class InputError(WorkflowError, ValueError):
    """Something the user gave (a file, a parameter, a key, a value) is wrong."""


class UnsafeFileError(InputError):
    """A file would need to run code to be read (pickled objects, crafted snapshots); refused."""


class PoseFileError(InputError):
    """A pose file made by another tool cannot be read, or does not fit its recording or model."""


class ConfigurationError(WorkflowError, ValueError):
    """The settings (data roots, schema prefix, database choice) are wrong or inconsistent."""


class DeepLabCutError(WorkflowError, ValueError):
    """A DeepLabCut project, run or output is missing, unreadable or inconsistent."""


class DatabaseError(WorkflowError, ConnectionError):
    """The database cannot be reached, started or used."""


class SchedulerError(WorkflowError, RuntimeError):
    """A command of the cluster's scheduler (SLURM) failed."""


__all__ = [
    "SchedulerError",
    "WorkflowError",
    "InputError",
    "UnsafeFileError",
    "PoseFileError",
    "ConfigurationError",
    "DeepLabCutError",
    "DatabaseError",
]
