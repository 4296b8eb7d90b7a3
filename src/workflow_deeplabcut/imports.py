"""Pose data made elsewhere enters the pipeline as a PoseEstimation of an external model."""

from __future__ import annotations

from pathlib import Path

from . import poses
from .rows import one_key


def import_pose_file(
    path: str | Path,
    software: str,
    recording_key: dict,
    model_name: str,
    *,
    loader_params: dict | None = None,
    model_description: str = "",
) -> dict:
    """Import one pose file onto a recording: register the model, add the task, populate.

    The file is read with movement's loaders (:func:`workflow_deeplabcut.poses.load_external`)
    before anything is written. When the model does not exist it is registered as external
    with the file's body parts. If the import fails, the task and a model registered by this
    call are removed again, so a failed import leaves nothing behind.

    Parameters
    ----------
    path : str or Path
        The pose file, inside a data root.
    software : str
        ``DeepLabCut``, ``SLEAP``, ``LightningPose`` or ``NWB``.
    recording_key : dict
        Identifies one ``model.VideoRecording`` (it needs its ``RecordingInfo``).
    model_name : str
        An existing model, or the name to register the external model under.
    loader_params : dict, optional
        For NWB: ``processing_module_key`` and ``pose_estimation_key``.
    model_description : str
        Description of a newly registered model.

    Returns
    -------
    dict
        The new ``PoseEstimation``'s primary key.
    """
    from .pipeline import model
    from .settings import to_relative

    to_relative(path)  # refuses a file outside the data roots before anything is written
    ds = poses.load_external(Path(path), software, **(loader_params or {}))
    recording = one_key(model.VideoRecording, recording_key)
    if not model.RecordingInfo & recording:
        model.RecordingInfo.populate(recording)
    new_model = not model.Model & {"model_name": model_name}
    if new_model:
        model.Model.insert_external_model(
            model_name,
            [str(k) for k in ds.keypoints.values],
            software,
            model_description=model_description or f"imported from {software}",
        )
    key = None
    try:
        key = model.PoseEstimationTask.generate_import(
            recording, model_name, path, software, loader_params=loader_params
        )
        model.PoseEstimation.populate(key)  # raises the reason, e.g. a frame-count mismatch
    except Exception:
        if key is not None:
            (model.PoseEstimationTask & key).delete_quick()
        if new_model:
            (model.Model.BodyPart & {"model_name": model_name}).delete_quick()
            (model.Model & {"model_name": model_name}).delete_quick()
        raise
    return key
