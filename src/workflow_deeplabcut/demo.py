"""The demo: the whole pipeline on generated data, on the embedded database, offline.

It generates a synthetic behaviour video with known trajectories and a DeepLabCut project
with labeled frames (see :mod:`workflow_deeplabcut.synthetic`), then trains, registers,
evaluates and runs a small model on CPU through the pipeline's tables, cleans the trajectories,
computes kinematics and QC pictures, exports the session to NWB, and reports the evaluation
error, the error against the ground truth and the speed against the true speed. Run twice, it
reuses what is there.

The demo keeps to its own folder and schema prefix (``workflow_dlc_demo_``), so it never
mixes with a lab's data.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import settings

DEMO_PREFIX = "workflow_dlc_demo_"

#: The demo's made-up spatial scale, so its kinematics come out in cm and cm/s.
DEMO_PX_PER_CM = 10.0
DEMO_POSTPROCESS = {
    "likelihood_threshold": 0.6,
    "max_gap": 10,
    "smoothing": "savgol",
    "window": 9,
    "polyorder": 2,
    "px_per_cm": DEMO_PX_PER_CM,
    "heading_body_parts": ["tail", "head"],
}

#: Small, fast, offline training: timm resnet10t backbone, full frames, constant learning rate.
DEMO_TRAINING = {
    "shuffle": 1,
    "trainingsetindex": 0,
    "epochs": 30,
    "batch_size": 4,
    "save_epochs": 10,
    "device": "cpu",
    "backbone": "resnet10t",
    "seed": 0,
    "init_weights": "random",  # the demo is the same everywhere, offline or not
    "pytorch_cfg_updates": {
        "data.train.crop_sampling": None,
        "runner.optimizer.params.lr": 1e-3,
        "runner.scheduler": None,
        "runner.eval_interval": 1000,
    },
}


@dataclass
class DemoReport:
    """What the demo did and measured."""

    directory: Path
    tables: dict = field(default_factory=dict)
    train_error: float | None = None
    test_error: float | None = None
    truth_error: dict = field(default_factory=dict)
    plot: Path | None = None
    output_dir: Path | None = None
    true_speed: float | None = None  # cm/s
    speed: dict = field(default_factory=dict)  # median speed per body part, cm/s
    distance: float | None = None  # cm travelled by the centroid
    qc: dict = field(default_factory=dict)  # body part -> fraction below p-cutoff
    qc_plots: dict = field(default_factory=dict)
    labeled_video: Path | None = None
    nwb: Path | None = None
    nwb_critical: int | None = None
    nwb_summary: str = ""


def default_directory() -> Path:
    """Return the demo's default folder, ``<per-user data folder>/demo``."""
    return settings.data_home() / "demo"


def run_demo(
    directory: Path | None = None,
    *,
    fresh: bool = False,
    epochs: int = 30,
    prefix: str = DEMO_PREFIX,
    progress=None,
) -> DemoReport:
    """Run the demo end to end.

    Parameters
    ----------
    directory : Path, optional
        Where to write the data (default :func:`default_directory`).
    fresh : bool
        Delete the demo's rows and folder first.
    epochs : int
        Training epochs.
    prefix : str
        Schema prefix of the demo's tables (its own, so the demo never touches a lab's data).
    progress : callable, optional
        Called with a short message before each step.

    Returns
    -------
    DemoReport
    """
    say = progress or (lambda message: None)
    directory = Path(directory or default_directory()).expanduser().resolve()
    raw, processed = directory / "raw", directory / "processed"
    if fresh and directory.exists():
        say(f"Removing {directory}")
        shutil.rmtree(directory)
    raw.mkdir(parents=True, exist_ok=True)
    processed.mkdir(parents=True, exist_ok=True)
    settings.configure(prefix=prefix, root_data_dirs=[raw], processed_data_dir=processed)
    say("Connecting to the database")
    from .pipeline import lab, model, postprocess, qc, session, subject, train

    if fresh:
        say("Deleting the demo's earlier rows")
        for table in (
            subject.Subject,
            model.Model,
            train.VideoSet,
            train.TrainingParamSet,
            model.BodyPart,
            lab.Device,
            postprocess.PostprocessParamSet,
        ):
            table.delete(prompt=False)

    from . import synthetic

    spec = synthetic.SyntheticSpec()
    project_parent = raw / "project"
    configs = sorted(project_parent.glob("*/config.yaml"))
    if configs:
        config = configs[0]
    else:
        say("Generating a synthetic video and a labeled DeepLabCut project")
        config = synthetic.make_dlc_project(project_parent, spec)
    project = config.parent

    say("Registering the training task")
    params = {**DEMO_TRAINING, "epochs": epochs}
    idx = train.TrainingParamSet.insert_new_params(f"demo, {epochs} epochs", params)
    train.VideoSet.insert1({"video_set_id": 0}, skip_duplicates=True)
    labels = sorted(project.glob("labeled-data/*/CollectedData_*.h5"))
    train.VideoSet.File.insert(
        [
            {"video_set_id": 0, "file_id": i, "file_path": settings.to_relative(p)}
            for i, p in enumerate(labels)
        ],
        skip_duplicates=True,
    )
    task = {"video_set_id": 0, "paramset_idx": idx, "training_id": 0}
    train.TrainingTask.insert1({**task, "project_path": settings.to_relative(project)}, skip_duplicates=True)
    say("Training a small DeepLabCut model on CPU (train.ModelTraining)")
    _populate(train.ModelTraining, task)

    model_name = f"demo-{epochs}-epochs"
    if not model.Model & {"model_name": model_name}:
        say("Registering the model (model.Model)")
        model.Model.insert_new_model(
            model_name,
            config,
            shuffle=1,
            trainingsetindex=0,
            paramset_idx=idx,
            model_description="demo model on the synthetic video",
        )
    say("Evaluating the model (model.ModelEvaluation)")
    _populate(model.ModelEvaluation, {"model_name": model_name})

    say("Adding the subject, session and video recording")
    lab.Device.insert1({"device": "demo-camera", "modality": "video"}, skip_duplicates=True)
    subject.Subject.insert1(
        {"subject": "demo-mouse", "sex": "U", "subject_birth_date": "2025-01-01"}, skip_duplicates=True
    )
    # A (synthetic) mouse: the NWB file then names its species, as best practice asks.
    subject.Species.insert1({"species": "Mus musculus"}, skip_duplicates=True)
    subject.Subject.Species.insert1(
        {"subject": "demo-mouse", "species": "Mus musculus"}, skip_duplicates=True
    )
    session_key = {"subject": "demo-mouse", "session_datetime": "2025-06-01 10:00:00"}
    session.Session.insert1(session_key, skip_duplicates=True)
    recording = {**session_key, "recording_id": 0}
    if not model.VideoRecording & recording:
        model.VideoRecording.insert_recording(
            session_key, 0, "demo-camera", [project / "videos" / "synthetic.mp4"]
        )
    _populate(model.RecordingInfo, recording)

    say("Estimating poses (model.PoseEstimation)")
    pose_key = {**recording, "model_name": model_name}
    if not model.PoseEstimationTask & pose_key:
        model.PoseEstimationTask.generate(recording, model_name, task_mode="trigger")
    _populate(model.PoseEstimation, pose_key)

    say("Cleaning the trajectories and computing kinematics (postprocess)")
    pp_idx = postprocess.PostprocessParamSet.insert_new_params(
        "demo: Savitzky-Golay 9, heading tail -> head, 10 px/cm", DEMO_POSTPROCESS
    )
    postprocess.PostprocessTask.generate(pose_key, pp_idx)
    pp_key = {**pose_key, "pp_paramset_idx": pp_idx}
    _populate(postprocess.CleanedTrajectory, pp_key)
    _populate(postprocess.Kinematics, pp_key)
    say("Quality control: metrics and pictures (qc.PoseQC, qc.QCPlots)")
    _populate(qc.PoseQC, pose_key)
    _populate(qc.QCPlots, pose_key)
    say("Drawing the estimate onto the video (qc.LabeledVideo, H.264: the dashboard plays it)")
    qc.LabeledVideoTask.insert1({**pose_key, "labeled_video_idx": 0}, skip_duplicates=True)
    _populate(qc.LabeledVideo, pose_key)

    report = DemoReport(directory=directory)
    from . import nwb

    say("Exporting the session to NWB (ndx-pose) and checking it with nwbinspector")
    report.nwb = nwb.export_session(session_key, directory / "demo-session.nwb", overwrite=True)
    messages = nwb.inspect(report.nwb)
    report.nwb_critical = sum(m.importance.name == "CRITICAL" for m in messages)
    report.nwb_summary = nwb.summary(messages)
    kin = postprocess.Kinematics.get_dataset(pp_key)
    report.true_speed = spec.speed * spec.fps / DEMO_PX_PER_CM
    # numpy, not xarray's reductions: numbagg would compile its kernels first (see poses.without_jit)
    report.speed = {
        str(p): float(np.nanmedian(kin.speed.sel(keypoints=p).values)) for p in kin.keypoints.values
    }
    report.distance = float(np.nansum(kin.distance.values))
    qc_key = {**pose_key, "qc_paramset_idx": 0}
    report.qc = {
        r["body_part"]: r["fraction_below_pcutoff"] for r in (qc.PoseQC.BodyPart & qc_key).to_dicts()
    }
    report.qc_plots = qc.QCPlots.paths(qc_key)
    report.labeled_video = qc.LabeledVideo.path({**pose_key, "labeled_video_idx": 0})
    evaluation = (model.ModelEvaluation & {"model_name": model_name}).fetch1()
    report.train_error, report.test_error = evaluation["train_error"], evaluation["test_error"]
    trajectory = model.PoseEstimation.get_trajectory(pose_key)
    truth = synthetic.ground_truth(spec)
    for part in synthetic.BODY_PARTS:
        err = np.hypot(
            trajectory[(model_name, part, "x")].to_numpy() - truth[(part, "x")].to_numpy(),
            trajectory[(model_name, part, "y")].to_numpy() - truth[(part, "y")].to_numpy(),
        )
        report.truth_error[part] = float(np.median(err))
    report.output_dir = model.PoseEstimationTask.output_dir(pose_key)
    report.plot = plot_trajectory(trajectory, truth, report.output_dir / "trajectory.png")
    for name, table in {
        "train.ModelTraining": train.ModelTraining,
        "model.Model": model.Model,
        "model.ModelEvaluation": model.ModelEvaluation,
        "model.RecordingInfo": model.RecordingInfo,
        "model.PoseEstimation": model.PoseEstimation,
        "model.PoseEstimation.BodyPartPosition": model.PoseEstimation.BodyPartPosition,
        "postprocess.CleanedTrajectory": postprocess.CleanedTrajectory,
        "postprocess.Kinematics": postprocess.Kinematics,
        "qc.PoseQC": qc.PoseQC,
        "qc.QCPlots": qc.QCPlots,
        "qc.LabeledVideo": qc.LabeledVideo,
    }.items():
        report.tables[name] = len(table.keys())
    return report


def _populate(table, key) -> None:
    result = table.populate(key, suppress_errors=True)
    if result["error_list"]:
        raise RuntimeError(f"{table.__name__} failed: {result['error_list'][0]}")


def plot_trajectory(trajectory, truth, path: Path) -> Path:
    """Plot estimated trajectories over the ground truth into a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scorer = trajectory.columns.get_level_values("scorer")[0]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for part in truth.columns.get_level_values("bodyparts").unique():
        ax.plot(truth[(part, "x")], truth[(part, "y")], color="0.7", lw=3, label=f"{part} (truth)")
        ax.plot(
            trajectory[(scorer, part, "x")], trajectory[(scorer, part, "y")], lw=1, label=f"{part} (estimate)"
        )
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title("DeepLabCut estimate vs ground truth")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
