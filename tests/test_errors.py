"""One error vocabulary: every error the package raises on purpose is a WorkflowError, by cause."""

from workflow_deeplabcut import database, dlc, embedded, ingest, nwb, poses, settings, video
from workflow_deeplabcut.errors import (
    ConfigurationError,
    DatabaseError,
    DeepLabCutError,
    InputError,
    PoseFileError,
    UnsafeFileError,
    WorkflowError,
)


def test_every_error_class_has_its_cause():
    causes = {
        dlc.DLCConfigError: DeepLabCutError,
        dlc.DLCOutputError: DeepLabCutError,
        video.VideoError: InputError,
        settings.PathOutsideRootsError: InputError,
        ingest.IngestError: InputError,
        poses.PostprocessParamsError: InputError,
        nwb.NWBExportError: InputError,
        UnsafeFileError: InputError,
        PoseFileError: InputError,
        database.DatabaseUnreachableError: DatabaseError,
        embedded.EmbeddedDatabaseError: DatabaseError,
    }
    for cls, cause in causes.items():
        assert issubclass(cls, cause) and issubclass(cls, WorkflowError), cls
    # Existing callers keep working: input and configuration errors are ValueErrors.
    assert issubclass(InputError, ValueError) and issubclass(ConfigurationError, ValueError)
    assert issubclass(DatabaseError, ConnectionError)


def test_configuration_errors_name_the_value_and_the_fix():
    import pytest

    with pytest.raises(ConfigurationError, match=r"Unknown setting\(s\) \['prefixx'\]; known: "):
        settings.configure(prefixx="a_")
    with pytest.raises(ConfigurationError, match="Try 'lab_'"):
        settings.check_prefix("Lab_")
