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
    model_name = f"demo-{epochs}-epochs"
    _train_and_register(
        config,
        video_set_id=0,
        params={**DEMO_TRAINING, "epochs": epochs},
        desc=f"demo, {epochs} epochs",
        model_name=model_name,
        description="demo model on the synthetic video",
        say=say,
        training="Training a small DeepLabCut model on CPU (train.ModelTraining)",
        registering="Registering the model (model.Model)",
    )

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


def _train_and_register(
    config: Path,
    *,
    video_set_id: int,
    params: dict,
    desc: str,
    model_name: str,
    description: str,
    say,
    training: str,
    registering: str,
) -> None:
    """Train a demo project through the tables, then register and evaluate its model (or reuse them)."""
    from .pipeline import model, train

    project = config.parent
    idx = train.TrainingParamSet.insert_new_params(desc, params)
    train.VideoSet.insert1({"video_set_id": video_set_id}, skip_duplicates=True)
    labels = sorted(project.glob("labeled-data/*/CollectedData_*.h5"))
    train.VideoSet.File.insert(
        [
            {"video_set_id": video_set_id, "file_id": i, "file_path": settings.to_relative(p)}
            for i, p in enumerate(labels)
        ],
        skip_duplicates=True,
    )
    task = {"video_set_id": video_set_id, "paramset_idx": idx, "training_id": video_set_id}
    train.TrainingTask.insert1({**task, "project_path": settings.to_relative(project)}, skip_duplicates=True)
    say(training)
    _populate(train.ModelTraining, task)
    if not model.Model & {"model_name": model_name}:
        say(registering)
        model.Model.insert_new_model(
            model_name, config, shuffle=1, trainingsetindex=0, paramset_idx=idx, model_description=description
        )
    say("Evaluating the model (model.ModelEvaluation)")
    _populate(model.ModelEvaluation, {"model_name": model_name})


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


# ----------------------------------------------------------------------------- several animals
#: Bottom-up multi-animal training (part-affinity fields) on a small backbone, offline: ~100 s.
MULTI_ANIMAL_TRAINING = {
    **DEMO_TRAINING,
    "net_type": "resnet_50",
    "epochs": 60,
    "save_epochs": 60,
    "pytorch_cfg_updates": {**DEMO_TRAINING["pytorch_cfg_updates"], "data.train.affine": None},
}
#: DeepLabCut's ellipse tracker needs more than three points per animal; boxes with some slack
#: and a few frames of memory follow the demo's small animals.
MULTI_ANIMAL_TRACKER = {
    "track_method": "box",
    "tracker": {"boundingboxslack": 20, "max_age": 5, "iou_threshold": 0.3},
}


@dataclass
class MultiAnimalReport:
    """What the multi-animal demo did and measured."""

    directory: Path
    tables: dict = field(default_factory=dict)
    test_error: float | None = None
    test_map: float | None = None
    truth_error: dict = field(default_factory=dict)  # animal -> median px, frames where apart
    who_is_who: dict = field(default_factory=dict)  # track -> subject
    swaps: int | None = None  # identity QC
    truth_swaps: int | None = None  # track 0 changing animal, against the truth, frames apart
    coverage: dict = field(default_factory=dict)
    centroid_distance: float | None = None  # median, cm
    identity_plots: dict = field(default_factory=dict)
    plot: Path | None = None
    nwb: Path | None = None
    nwb_critical: int | None = None


def match_tracks(est: np.ndarray, truth: np.ndarray, frames: np.ndarray) -> list[int]:
    """Return, for each track, the true animal it follows (the pairing with the least median error).

    ``est`` is ``(frames, tracks, parts, 2+)``, ``truth`` ``(frames, animals, parts, 2)``;
    ``frames`` selects the frames to compare on.
    """
    from itertools import permutations

    err = np.linalg.norm(est[frames, :, None, :, :2] - truth[frames, None], axis=-1).mean(axis=-1)
    median = np.nanmedian(err, axis=0)  # (track, animal)
    n = median.shape[0]
    return list(min(permutations(range(n)), key=lambda p: sum(median[t, a] for t, a in enumerate(p))))


def run_multi_animal_demo(
    directory: Path | None = None,
    *,
    fresh: bool = False,
    epochs: int = MULTI_ANIMAL_TRAINING["epochs"],
    prefix: str = DEMO_PREFIX,
    progress=None,
) -> MultiAnimalReport:
    """Run the multi-animal demo: two look-alike animals whose paths cross, trained and tracked.

    It generates :class:`~workflow_deeplabcut.synthetic.MultiAnimalSpec`'s video and a labeled
    multi-animal DeepLabCut project, trains a bottom-up model on CPU, registers and evaluates
    it, tracks the animals (``box`` tracker), says which track is which subject (from the known
    truth, as a lab would from the animals' marks), cleans, computes kinematics and social
    distances, checks identities and exports NWB. It reports each animal's median error against
    the truth where the animals are apart, and the identity swaps. Same folder and prefix
    rules as :func:`run_demo`; the two demos share them.
    """
    say = progress or (lambda message: None)
    directory = Path(directory or default_directory()).expanduser().resolve()
    raw, processed = directory / "raw", directory / "processed"
    if fresh and (raw / "multi-project").exists():
        say(f"Removing {raw / 'multi-project'}")
        shutil.rmtree(raw / "multi-project")
    raw.mkdir(parents=True, exist_ok=True)
    processed.mkdir(parents=True, exist_ok=True)
    settings.configure(prefix=prefix, root_data_dirs=[raw], processed_data_dir=processed)
    say("Connecting to the database")
    from .pipeline import lab, model, postprocess, qc, session, subject, train

    names = ("demo-pair-1", "demo-pair-2")
    if fresh:
        say("Deleting the multi-animal demo's earlier rows")
        (subject.Subject & [{"subject": n} for n in names]).delete(prompt=False)
        (model.Model & [k for k in model.Model.keys() if k["model_name"].startswith("demo-pair-")]).delete(
            prompt=False
        )
        (train.VideoSet & {"video_set_id": 1}).delete(prompt=False)

    from . import synthetic

    spec = synthetic.MultiAnimalSpec()
    configs = sorted((raw / "multi-project").glob("*/config.yaml"))
    if configs:
        config = configs[0]
    else:
        say("Generating a video of two animals whose paths cross, and a labeled multi-animal project")
        config = synthetic.make_multi_animal_project(raw / "multi-project", spec)
    project = config.parent

    model_name = f"demo-pair-{epochs}-epochs"
    _train_and_register(
        config,
        video_set_id=1,
        params={**MULTI_ANIMAL_TRAINING, "epochs": epochs, "save_epochs": epochs},
        desc=f"demo, two animals, {epochs} epochs",
        model_name=model_name,
        description="demo, two animals",
        say=say,
        training="Training a small multi-animal DeepLabCut model on CPU (train.ModelTraining)",
        registering="Registering the model and its individuals (model.Model, model.Model.Individual)",
    )

    say("Adding the two subjects, the session and the video recording")
    lab.Device.insert1({"device": "demo-camera", "modality": "video"}, skip_duplicates=True)
    subject.Species.insert1({"species": "Mus musculus"}, skip_duplicates=True)
    for name in names:
        subject.Subject.insert1(
            {"subject": name, "sex": "U", "subject_birth_date": "2025-01-01"}, skip_duplicates=True
        )
        subject.Subject.Species.insert1({"subject": name, "species": "Mus musculus"}, skip_duplicates=True)
    session_key = {"subject": names[0], "session_datetime": "2025-06-02 10:00:00"}
    session.Session.insert1(session_key, skip_duplicates=True)
    recording = {**session_key, "recording_id": 0}
    if not model.VideoRecording & recording:
        model.VideoRecording.insert_recording(
            session_key, 0, "demo-camera", [project / "videos" / "pair.mp4"]
        )
    _populate(model.RecordingInfo, recording)

    say("Detecting, assembling and tracking the animals (model.PoseEstimation)")
    pose_key = {**recording, "model_name": model_name}
    if not model.PoseEstimationTask & pose_key:
        model.PoseEstimationTask.generate(
            recording, model_name, task_mode="trigger", analyze_videos_params=MULTI_ANIMAL_TRACKER
        )
    _populate(model.PoseEstimation, pose_key)

    report = MultiAnimalReport(directory=directory)
    trajectory = model.PoseEstimation.get_trajectory(pose_key)
    tracks = list(trajectory.columns.get_level_values("individuals").unique())
    parts = list(synthetic.MULTI_BODY_PARTS)
    est = np.stack(
        [
            np.stack([trajectory.xs((t, p), axis=1, level=(1, 2)).to_numpy() for p in parts], 1)
            for t in tracks
        ],
        1,
    )
    truth = (
        synthetic.multi_animal_truth(spec).to_numpy().reshape(spec.n_frames, spec.n_animals, len(parts), 2)
    )
    apart = synthetic.apart_frames(spec)
    pairing = match_tracks(est, truth, apart)
    say("Saying which track is which subject (model.IndividualMapping)")
    if not model.IndividualMapping & pose_key:
        model.IndividualMapping.map(pose_key, {t: names[a] for t, a in zip(tracks, pairing, strict=True)})
    report.who_is_who = {
        r["individual"]: r["animal"] for r in (model.IndividualMapping & pose_key).to_dicts()
    }
    for t, a in zip(tracks, pairing, strict=True):
        err = np.linalg.norm(est[apart, tracks.index(t), :, :2] - truth[apart, a], axis=-1)
        report.truth_error[names[a]] = float(np.nanmedian(err))
    centroid = np.nanmean(est[..., :2], axis=2)
    nearest = np.argmin(
        np.linalg.norm(centroid[:, :1, None] - truth.mean(axis=2)[:, None], axis=-1)[:, 0], -1
    )
    seen = np.isfinite(centroid[:, 0]).all(-1) & apart  # close by, "nearest" is ambiguous
    report.truth_swaps = int(np.count_nonzero(np.diff(nearest[seen]) != 0))

    say("Cleaning, kinematics and distances between the animals (postprocess)")
    pp_idx = postprocess.PostprocessParamSet.insert_new_params(
        "demo: Savitzky-Golay 9, heading tail -> head, 10 px/cm", DEMO_POSTPROCESS
    )
    postprocess.PostprocessTask.generate(pose_key, pp_idx)
    pp_key = {**pose_key, "pp_paramset_idx": pp_idx}
    _populate(postprocess.CleanedTrajectory, pp_key)
    _populate(postprocess.Kinematics, pp_key)
    if not postprocess.SocialParamSet & {"social_paramset_desc": "head to tail"}:
        postprocess.SocialParamSet.insert_new("head to tail", [["head", "tail"]])
    _populate(postprocess.SocialMeasures, pp_key)
    say("Checking identities (qc.IdentityQC): presence, fragments, swaps, a picture per animal")
    _populate(qc.IdentityQC, pose_key)
    id_key = {**pose_key, "identity_paramset_idx": 0}
    report.swaps = (qc.IdentityQC & id_key).fetch1("n_swaps")
    root = settings.get_settings().processed_data_dir
    for r in (qc.IdentityQC.Individual & id_key).to_dicts():
        label = report.who_is_who.get(r["individual"], r["individual"])
        report.coverage[label] = r["coverage"]
        report.identity_plots[label] = root / r["identity_plot"]
    social = postprocess.SocialMeasures.get_dataframe({**pp_key, "social_paramset_idx": 0})
    report.centroid_distance = float(np.nanmedian(social.to_numpy()))
    evaluation = (model.ModelEvaluation & {"model_name": model_name}).fetch1()
    report.test_error = evaluation["test_error"]
    metrics = (model.ModelEvaluation.Metrics & {"model_name": model_name}).to_dicts()
    report.test_map = metrics[0]["test_map"] if metrics else None

    from . import nwb

    say("Exporting the session to NWB: one PoseEstimation per animal")
    report.nwb = nwb.export_session(session_key, directory / "demo-pair-session.nwb", overwrite=True)
    report.nwb_critical = sum(m.importance.name == "CRITICAL" for m in nwb.inspect(report.nwb))
    report.plot = _plot_tracks(
        est, truth, tracks, pairing, names, model.PoseEstimationTask.output_dir(pose_key)
    )
    for name, table in {
        "model.Model.Individual": model.Model.Individual,
        "model.PoseEstimation.BodyPartPosition": model.PoseEstimation.BodyPartPosition,
        "model.IndividualMapping": model.IndividualMapping,
        "postprocess.SocialMeasures.Pair": postprocess.SocialMeasures.Pair,
        "postprocess.SocialMeasures.PartDistance": postprocess.SocialMeasures.PartDistance,
        "qc.IdentityQC.Individual": qc.IdentityQC.Individual,
        "qc.IdentityQC.Swap": qc.IdentityQC.Swap,
    }.items():
        report.tables[name] = len((table & pose_key).keys())
    return report


def _plot_tracks(est, truth, tracks, pairing, names, folder: Path) -> Path:
    """Plot each track's head over its animal's true path, one colour per animal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for k, (track, animal) in enumerate(zip(tracks, pairing, strict=True)):
        colour = plt.get_cmap("tab10")(animal)
        ax.plot(truth[:, animal, 0, 0], truth[:, animal, 0, 1], color="0.8", lw=4)
        ax.plot(
            est[:, k, 0, 0], est[:, k, 0, 1], color=colour, lw=1, label=f"{track} = {names[animal]} (head)"
        )
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    ax.set_title("Tracked heads over the true paths (grey)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(folder) / "tracks.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
