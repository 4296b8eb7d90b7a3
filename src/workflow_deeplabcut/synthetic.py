"""Deterministic synthetic behaviour data with known ground truth.

The geometry, for every generated video:

- frames are ``size x size`` RGB on a dark, lightly noisy background;
- body part ``head`` is a red disc (radius ``size/16``) that moves anti-clockwise on a
  circle of radius ``size/4`` around the frame centre, one turn every ``period`` frames;
- body part ``tail`` is a green disc (radius ``size/21``) on the same circle, half a turn
  behind the head;
- so both parts move at the constant speed ``2*pi*(size/4)/period`` pixels per frame.

A DeepLabCut project made from such a video has ``n_labeled`` labeled frames whose labels
are the exact ground truth. Nothing is downloaded; the same arguments give the same files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BODY_PARTS = ("head", "tail")
MULTI_BODY_PARTS = ("head", "body", "tail")  # each animal of a MultiAnimalSpec video
_COLOURS = {"head": (235, 40, 40), "body": (60, 90, 240), "tail": (40, 235, 40)}


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic video (see the module docstring for the geometry)."""

    n_frames: int = 300
    size: int = 128
    fps: float = 30.0
    period: int = 100
    seed: int = 0
    #: How far the tail trails the head on the circle, as a fraction of a turn.
    tail_lag: float = 0.5
    #: ``"plain"``: a dark floor; ``"split"``: the right half of the arena is a bright
    #: checkerboard (a part of the behaviour that looks different, for the refinement loop).
    floor: str = "plain"

    @property
    def radius(self) -> float:
        """Radius of the circular path, in pixels."""
        return self.size / 4

    @property
    def speed(self) -> float:
        """Speed of each body part, in pixels per frame."""
        return 2 * math.pi * self.radius / self.period


def ground_truth(spec: SyntheticSpec) -> pd.DataFrame:
    """Return the true position of every body part in every frame.

    Parameters
    ----------
    spec : SyntheticSpec
        The video's parameters.

    Returns
    -------
    pandas.DataFrame
        Indexed by frame, with columns ``(bodypart, coord)`` for coords ``x`` and ``y``.
    """
    t = np.arange(spec.n_frames)
    centre = (spec.size - 1) / 2
    columns = {}
    for i, part in enumerate(BODY_PARTS):
        angle = 2 * np.pi * t / spec.period - i * 2 * np.pi * spec.tail_lag
        columns[(part, "x")] = centre + spec.radius * np.cos(angle)
        columns[(part, "y")] = centre - spec.radius * np.sin(angle)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(spec.n_frames, name="frame"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["bodyparts", "coords"])
    return frame


def render_frames(spec: SyntheticSpec) -> np.ndarray:
    """Render the video frames.

    Parameters
    ----------
    spec : SyntheticSpec
        The video's parameters.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(n_frames, size, size, 3)``.
    """
    rng = np.random.default_rng(spec.seed)
    truth = ground_truth(spec)
    yy, xx = np.mgrid[0 : spec.size, 0 : spec.size]
    frames = rng.integers(10, 40, size=(spec.n_frames, spec.size, spec.size, 3), dtype=np.uint8)
    if spec.floor == "split":
        squares = ((xx // 8 + yy // 8) % 2).astype(np.uint8)
        right = xx >= spec.size / 2
        frames[:, right] = (150 + 60 * squares[right])[None, :, None] + frames[:, right] % 16
    elif spec.floor != "plain":
        raise ValueError(f"floor must be 'plain' or 'split', not {spec.floor!r}.")
    radii = {"head": spec.size / 16, "tail": spec.size / 21}
    for f in range(spec.n_frames):
        for part in BODY_PARTS:
            x, y = truth.at[f, (part, "x")], truth.at[f, (part, "y")]
            disc = (xx - x) ** 2 + (yy - y) ** 2 <= radii[part] ** 2
            frames[f][disc] = _COLOURS[part]
    return frames


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: float,
    times: np.ndarray | None = None,
    *,
    codec: str = "mpeg4",
    options: dict | None = None,
) -> Path:
    """Write frames to an MP4 file with PyAV (MPEG-4 Part 2, near-lossless quality).

    Parameters
    ----------
    path : Path
        Output file; its parent directory must exist.
    frames : numpy.ndarray
        ``uint8`` frames of shape ``(n, height, width, 3)``.
    fps : float
        Frame rate; fractional rates such as 29.97 are kept exactly as a fraction.
    times : numpy.ndarray, optional
        Each frame's presentation time in seconds (a variable-frame-rate video), stored to the
        millisecond; default ``frame / fps``.
    codec : str
        A PyAV encoder, e.g. ``libx264``; ``options`` are its options (default for ``mpeg4``:
        ``{"qscale": "2"}``).

    Returns
    -------
    Path
        The written file.
    """
    import fractions

    import av

    rate = fractions.Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = options if options is not None else {"qscale": "2"} if codec == "mpeg4" else {}
        if times is not None:
            stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(round(times[i] * 1000)), fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_video(directory: Path, spec: SyntheticSpec, name: str = "synthetic") -> Path:
    """Render and write a synthetic video, plus ``<name>_truth.csv`` with the ground truth.

    Parameters
    ----------
    directory : Path
        Folder to write into (created if missing).
    spec : SyntheticSpec
        The video's parameters.
    name : str
        File stem.

    Returns
    -------
    Path
        The video file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ground_truth(spec).to_csv(directory / f"{name}_truth.csv")
    return write_video(directory / f"{name}.mp4", render_frames(spec), spec.fps)


def make_dlc_project(
    directory: Path,
    spec: SyntheticSpec | None = None,
    *,
    task: str = "synthetic",
    scorer: str = "truth",
    n_labeled: int = 20,
    video_name: str = "synthetic",
) -> Path:
    """Create a DeepLabCut project around a synthetic video, with labeled frames.

    The project's ``labeled-data`` holds ``n_labeled`` evenly spaced frames labeled with the
    exact ground truth, in DeepLabCut's ``CollectedData_<scorer>.h5`` layout.

    Parameters
    ----------
    directory : Path
        Working directory; the project folder is created inside it.
    spec : SyntheticSpec, optional
        The video's parameters (defaults to ``SyntheticSpec()``).
    task, scorer : str
        DeepLabCut project task and scorer names.
    n_labeled : int
        How many frames to label.
    video_name : str
        The video's stem (and its labeled-data folder's name).

    Returns
    -------
    Path
        The project's ``config.yaml``.
    """
    from . import dlc

    spec = spec or SyntheticSpec()
    directory = Path(directory)
    video = make_video(directory / "videos", spec, name=video_name)
    config_path = dlc.create_project(task, scorer, video, directory, bodyparts=list(BODY_PARTS))
    write_labels(config_path.parent, video.stem, render_frames(spec), ground_truth(spec), scorer, n_labeled)
    return config_path


def write_labels(
    project: Path, stem: str, frames: np.ndarray, truth: pd.DataFrame, scorer: str, n_labeled: int
) -> Path:
    """Label ``n_labeled`` evenly spaced frames of a project's video with the truth, as DeepLabCut does.

    The frames go to ``labeled-data/<stem>/imgNNNN.png`` and the labels to
    ``CollectedData_<scorer>.h5`` (key ``df_with_missing``), with columns ``scorer/`` then the
    truth's own levels (``bodyparts/coords``, or ``individuals/bodyparts/coords``).

    Returns
    -------
    Path
        The labels file.
    """
    from PIL import Image

    label_dir = Path(project) / "labeled-data" / stem
    label_dir.mkdir(parents=True, exist_ok=True)
    picked = np.linspace(0, len(frames) - 1, n_labeled).round().astype(int)
    index = []
    for f in picked:
        name = f"img{f:04d}.png"
        Image.fromarray(frames[f]).save(label_dir / name)
        index.append(("labeled-data", stem, name))
    columns = pd.MultiIndex.from_tuples(
        [(scorer, *c) for c in truth.columns], names=["scorer", *truth.columns.names]
    )
    labels = pd.DataFrame(
        truth.loc[picked].to_numpy(), index=pd.MultiIndex.from_tuples(index), columns=columns
    )
    path = label_dir / f"CollectedData_{scorer}.h5"
    labels.to_hdf(path, key="df_with_missing", mode="w")
    return path


#: The example of element-deeplabcut's tutorial: its project folder, task, date and output folder.
DLC2_EXAMPLE = {
    "project": "from_top_tracking-DataJoint-2023-10-11",
    "task": "from_top_tracking",
    "date": "Oct11",
    "iterations": 100000,
    "outputs": "videos/device_1_recording_1_model_from_top_tracking_100000_maxiters",
    "parts": {"head": "head", "tail": "tailbase"},  # the synthetic parts under the tutorial's names
}


def make_dlc2_example(raw_root: Path, processed_root: Path, spec: SyntheticSpec | None = None) -> dict:
    """Write a DeepLabCut 2.x project with a trained TensorFlow model and its outputs, in 2.x's layout.

    It stands in for element-deeplabcut's tutorial data (downloaded from DataJoint's bucket),
    under the same names (:data:`DLC2_EXAMPLE`), around a synthetic video: the project
    (``config.yaml`` without ``engine``; ``dlc-models/iteration-0/…/train/pose_cfg.yaml`` and
    ``snapshot-100000.index/.meta/.data-00000-of-00001``) under ``raw_root``, the video in its
    ``videos``, and under ``processed_root`` (same relative folder) the outputs as DeepLabCut
    2.x's ``analyze_videos`` wrote them: ``train1DLC_resnet50_…_100000.h5`` (``table``
    format), ``.csv`` and ``_meta.pickle``, the ground truth plus 0.5 px noise.

    Returns
    -------
    dict
        ``config``, ``video``, ``output_dir`` (Paths), ``scorer`` and ``truth`` (the frame written).
    """
    import pickle

    from ruamel.yaml import YAML

    spec = spec or SyntheticSpec()
    ex = DLC2_EXAMPLE
    project = Path(raw_root) / ex["project"]
    video = make_video(project / "videos", spec, name="train1")
    parts = list(ex["parts"].values())
    config = {
        "Task": ex["task"],
        "scorer": "DataJoint",
        "date": ex["date"],
        "multianimalproject": False,
        "identity": None,
        "project_path": str(project),
        "video_sets": {str(video): {"crop": f"0, {spec.size}, 0, {spec.size}"}},
        "bodyparts": parts,
        "start": 0,
        "stop": 1,
        "numframes2pick": 20,
        "skeleton": [parts],
        "pcutoff": 0.6,
        "TrainingFraction": [0.95],
        "iteration": 0,
        "default_net_type": "resnet_50",
        "default_augmenter": "default",
        "snapshotindex": -1,
        "batch_size": 8,
        "cropping": False,
    }
    yaml = YAML(typ="safe", pure=True)
    with open(project / "config.yaml", "w") as fh:
        yaml.dump(config, fh)
    model = project / "dlc-models" / "iteration-0" / f"{ex['task']}{ex['date']}-trainset95shuffle1"
    for sub in ("train", "test"):
        (model / sub).mkdir(parents=True, exist_ok=True)
        with open(model / sub / "pose_cfg.yaml", "w") as fh:
            yaml.dump({"net_type": "resnet_50", "all_joints_names": parts, "num_joints": len(parts)}, fh)
    for suffix in (".index", ".meta", ".data-00000-of-00001"):  # a TensorFlow checkpoint is three files
        (model / "train" / f"snapshot-{ex['iterations']}{suffix}").write_bytes(b"\0")

    scorer = f"DLC_resnet50_{ex['task']}{ex['date']}shuffle1_{ex['iterations']}"
    truth = ground_truth(spec)
    rng = np.random.default_rng(spec.seed)
    columns = pd.MultiIndex.from_product(
        [[scorer], parts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    values = np.empty((spec.n_frames, len(columns)))
    for i, part in enumerate(ex["parts"]):
        values[:, 3 * i] = truth[(part, "x")] + rng.normal(0, 0.5, spec.n_frames)
        values[:, 3 * i + 1] = truth[(part, "y")] + rng.normal(0, 0.5, spec.n_frames)
        values[:, 3 * i + 2] = rng.uniform(0.9, 1.0, spec.n_frames)
    frame = pd.DataFrame(values, columns=columns)
    out = Path(processed_root) / ex["project"] / ex["outputs"]
    out.mkdir(parents=True, exist_ok=True)
    frame.to_hdf(out / f"train1{scorer}.h5", key="df_with_missing", format="table", mode="w")
    frame.to_csv(out / f"train1{scorer}.csv")
    meta = {"data": {"Scorer": scorer, "fps": spec.fps, "nframes": spec.n_frames, "bodyparts": parts}}
    (out / f"train1{scorer}_meta.pickle").write_bytes(pickle.dumps(meta))
    return {
        "config": project / "config.yaml",
        "video": video,
        "output_dir": out,
        "scorer": scorer,
        "truth": frame,
    }


def write_dlc_outputs(
    directory: Path,
    video_stem: str,
    body_parts: list[str],
    n_frames: int,
    *,
    scorer: str = "DLC_Resnet50_syntheticJan1shuffle1_snapshot_30",
    fps: float = 30.0,
    seed: int = 0,
) -> Path:
    """Write DeepLabCut-style outputs (``.h5`` and ``_meta.pickle``) with random positions.

    The layout is exactly ``analyze_videos``'s: key ``df_with_missing``, columns
    ``scorer/bodyparts/coords`` with ``x``, ``y``, ``likelihood``, one row per frame.

    Parameters
    ----------
    directory : Path
        Output folder (created if missing).
    video_stem : str
        Stem of the analysed video; files are named ``<stem><scorer>.h5``.
    body_parts : list of str
        Body parts to write.
    n_frames : int
        Number of frames (rows).
    scorer, fps, seed
        Scorer name, frame rate in the meta pickle, random seed.

    Returns
    -------
    Path
        The ``.h5`` file.
    """
    import pickle

    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    columns = pd.MultiIndex.from_product(
        [[scorer], list(body_parts), ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    values = rng.uniform(0, 640, size=(n_frames, len(columns)))
    values[:, 2::3] = rng.uniform(0, 1, size=(n_frames, len(body_parts)))
    h5 = directory / f"{video_stem}{scorer}.h5"
    pd.DataFrame(values, columns=columns).to_hdf(h5, key="df_with_missing", mode="w", format="fixed")
    meta = {"data": {"fps": fps, "nframes": n_frames, "Scorer": scorer, "bodyparts": list(body_parts)}}
    with open(directory / f"{video_stem}{scorer}_meta.pickle", "wb") as fh:
        pickle.dump(meta, fh)
    return h5


@dataclass(frozen=True)
class Corruption:
    """What :func:`noisy_estimate` did to the truth, so tests can check every count."""

    noise_px: float
    low_frames: dict  # body part -> sorted frames given likelihood LOW_LIKELIHOOD (junk positions)
    long_gap: range  # frames of the one long low-likelihood gap (in every body part)
    jump_frame: int  # a confident frame of "head" displaced by JUMP_PX


LOW_LIKELIHOOD = 0.05
HIGH_LIKELIHOOD = 0.95
JUMP_PX = 60.0


def noisy_estimate(
    spec: SyntheticSpec | None = None, *, noise_px: float = 1.0, n_outliers: int = 20, seed: int = 0
) -> tuple[pd.DataFrame, Corruption]:
    """Make a pose estimate of the synthetic video with known defects, as DeepLabCut would write it.

    The truth plus Gaussian noise (``noise_px``) with, per body part, ``n_outliers`` isolated
    low-likelihood frames and one 15-frame low-likelihood gap (both with junk positions 40 px
    off), and one confident frame where ``head`` jumps ``JUMP_PX`` to the right.

    Parameters
    ----------
    spec : SyntheticSpec, optional
        The video's parameters (defaults to ``SyntheticSpec()``).
    noise_px : float
        Standard deviation of the noise, in pixels.
    n_outliers : int
        Isolated low-likelihood frames per body part.
    seed : int
        Random seed.

    Returns
    -------
    frame : pandas.DataFrame
        Columns ``(bodyparts, coords)`` with coords ``x``, ``y``, ``likelihood``.
    corruption : Corruption
        Where the defects are.
    """
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(seed)
    truth = ground_truth(spec)
    n = spec.n_frames
    long_gap = range(int(n * 2 / 3), int(n * 2 / 3) + 15)
    jump = n // 3
    # Isolated outliers stay away from the edges (interpolation needs both sides), the long gap
    # and the jump, and from each other, so each is its own one-frame gap.
    allowed = [
        f for f in range(5, n - 5, 2) if abs(f - jump) > 2 and not (long_gap[0] - 3 <= f <= long_gap[-1] + 3)
    ]
    columns, low = {}, {}
    for part in BODY_PARTS:
        x = truth[(part, "x")].to_numpy() + rng.normal(0, noise_px, n)
        y = truth[(part, "y")].to_numpy() + rng.normal(0, noise_px, n)
        likelihood = np.full(n, HIGH_LIKELIHOOD)
        frames = np.sort(rng.choice(allowed, n_outliers, replace=False))
        bad = np.concatenate([frames, np.array(long_gap)])
        likelihood[bad] = LOW_LIKELIHOOD
        x[bad] += 40
        y[bad] -= 40
        if part == "head":
            x[jump] += JUMP_PX
        columns[(part, "x")], columns[(part, "y")], columns[(part, "likelihood")] = x, y, likelihood
        low[part] = sorted(int(f) for f in bad)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(n, name="frame"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["bodyparts", "coords"])
    return frame, Corruption(noise_px, low, long_gap, jump)


def write_dlc_h5(frame: pd.DataFrame, path: Path, scorer: str = "DLC_external") -> Path:
    """Write a ``(bodyparts, coords)`` frame as a DeepLabCut ``.h5`` output file."""
    out = frame.copy()
    out.columns = pd.MultiIndex.from_tuples(
        [(scorer, *c) for c in frame.columns], names=["scorer", "bodyparts", "coords"]
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_hdf(path, key="df_with_missing", mode="w", format="fixed")
    return path


# --------------------------------------------------------------------------- several animals
@dataclass(frozen=True)
class MultiAnimalSpec:
    """Parameters of a synthetic video of several look-alike animals whose paths cross.

    The geometry: frames are ``size x size``; each animal is a chain of three discs on its circle
    of radius ``size/4.5``: a red ``head`` (radius ``size/26``), a blue ``body`` (``size/26``)
    trailing it by ``body_lag`` of a turn and a green ``tail`` (``size/32``) trailing the body by
    as much. (Three parts, not two: DeepLabCut assembles an animal from at least two links.)
    Animal ``k``'s circle is centred at ``x = size/2 + (k - (n-1)/2) * spacing * radius``, so
    neighbouring circles intersect; even
    animals turn anti-clockwise, odd ones clockwise, all with one turn every ``period`` frames,
    and odd animals start ``phase`` radians later. The paths cross, but not at the same time:
    with the defaults neighbours come within ~28 px of each other (centre to centre) twice a
    turn, and are nearer than 30 px in 14% of the frames.
    All animals look the same: only their motion tells them apart.
    """

    n_frames: int = 300
    size: int = 160
    fps: float = 30.0
    period: int = 100
    n_animals: int = 2
    seed: int = 0
    body_lag: float = 0.05
    phase: float = 3 * math.pi / 8
    spacing: float = 1.4  # circle centres apart, in radii (< 2: the circles intersect)

    @property
    def radius(self) -> float:
        """Radius of each animal's circle, in pixels."""
        return self.size / 4.5

    @property
    def individuals(self) -> list[str]:
        """The animals' names, as DeepLabCut's config lists them."""
        return [f"animal{k + 1}" for k in range(self.n_animals)]

    @property
    def disc_radii(self) -> dict:
        """Each body part's disc radius, in pixels."""
        return {"head": self.size / 26, "body": self.size / 26, "tail": self.size / 32}


def multi_animal_truth(spec: MultiAnimalSpec) -> pd.DataFrame:
    """Return the true position of every animal's body parts in every frame.

    Returns
    -------
    pandas.DataFrame
        Indexed by frame, with columns ``(individuals, bodyparts, coords)``, coords ``x``, ``y``.
    """
    t = np.arange(spec.n_frames)
    centre = (spec.size - 1) / 2
    columns = {}
    for k, name in enumerate(spec.individuals):
        cx = centre + (k - (spec.n_animals - 1) / 2) * spec.spacing * spec.radius
        turn = 1 if k % 2 == 0 else -1
        start = (math.pi + spec.phase) if k % 2 else 0.0
        for i, part in enumerate(MULTI_BODY_PARTS):
            angle = turn * (2 * np.pi * t / spec.period - i * 2 * np.pi * spec.body_lag) + start
            columns[(name, part, "x")] = cx + spec.radius * np.cos(angle)
            columns[(name, part, "y")] = centre - spec.radius * np.sin(angle)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(spec.n_frames, name="frame"))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["individuals", "bodyparts", "coords"])
    return frame


def apart_frames(spec: MultiAnimalSpec) -> np.ndarray:
    """Return a boolean per frame: True where no two animals' discs overlap or touch."""
    truth = multi_animal_truth(spec)
    reach = 2 * max(spec.disc_radii.values())
    apart = np.ones(spec.n_frames, bool)
    names = spec.individuals
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            for pa in MULTI_BODY_PARTS:
                for pb in MULTI_BODY_PARTS:
                    d = np.hypot(
                        truth[(names[a], pa, "x")] - truth[(names[b], pb, "x")],
                        truth[(names[a], pa, "y")] - truth[(names[b], pb, "y")],
                    )
                    apart &= d.to_numpy() > reach
    return apart


def render_multi_animal(spec: MultiAnimalSpec) -> np.ndarray:
    """Render the frames of a :class:`MultiAnimalSpec` video (``uint8``, ``(n, size, size, 3)``)."""
    rng = np.random.default_rng(spec.seed)
    truth = multi_animal_truth(spec)
    yy, xx = np.mgrid[0 : spec.size, 0 : spec.size]
    frames = rng.integers(10, 40, size=(spec.n_frames, spec.size, spec.size, 3), dtype=np.uint8)
    for f in range(spec.n_frames):
        for name in spec.individuals:
            for part in MULTI_BODY_PARTS:
                x, y = truth.at[f, (name, part, "x")], truth.at[f, (name, part, "y")]
                frames[f][(xx - x) ** 2 + (yy - y) ** 2 <= spec.disc_radii[part] ** 2] = _COLOURS[part]
    return frames


def make_multi_animal_video(directory: Path, spec: MultiAnimalSpec | None = None, name: str = "pair") -> Path:
    """Write a :class:`MultiAnimalSpec` video and ``<name>_truth.csv`` into ``directory``; return it."""
    spec = spec or MultiAnimalSpec()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    multi_animal_truth(spec).to_csv(directory / f"{name}_truth.csv")
    return write_video(directory / f"{name}.mp4", render_multi_animal(spec), spec.fps)


def make_multi_animal_project(
    directory: Path,
    spec: MultiAnimalSpec | None = None,
    *,
    task: str = "social",
    scorer: str = "truth",
    n_labeled: int = 30,
    video_name: str = "pair",
) -> Path:
    """Create a multi-animal DeepLabCut project around a :class:`MultiAnimalSpec` video.

    The config lists the animals as ``individuals`` and ``head``, ``body``, ``tail`` as
    ``multianimalbodyparts`` (skeleton head–body–tail); ``labeled-data`` holds ``n_labeled`` evenly
    spaced frames labeled with the exact truth in DeepLabCut's multi-animal layout (columns
    ``scorer/individuals/bodyparts/coords``). The video and ``<video_name>_truth.csv`` are
    written to ``directory/videos``.

    Returns
    -------
    Path
        The project's ``config.yaml``.
    """
    from . import dlc

    spec = spec or MultiAnimalSpec()
    directory = Path(directory)
    video = make_multi_animal_video(directory / "videos", spec, video_name)
    config_path = dlc.create_project(
        task, scorer, video, directory, bodyparts=list(MULTI_BODY_PARTS), individuals=spec.individuals
    )
    write_labels(
        config_path.parent, video.stem, render_multi_animal(spec), multi_animal_truth(spec), scorer, n_labeled
    )
    return config_path


def write_multi_animal_h5(
    values: np.ndarray,
    individuals: list[str],
    bodyparts: list[str],
    path: Path,
    *,
    scorer: str = "DLC_external",
    key: str = "tracks",
) -> Path:
    """Write ``(frames, individuals, parts, 3)`` x/y/likelihood as a DeepLabCut multi-animal ``.h5``.

    The layout of DeepLabCut's ``_el.h5`` tracks: columns ``scorer/individuals/bodyparts/coords``,
    one row per frame, under HDF key ``key`` (DeepLabCut's own: ``tracks``).
    """
    columns = pd.MultiIndex.from_product(
        [[scorer], list(individuals), list(bodyparts), ["x", "y", "likelihood"]],
        names=["scorer", "individuals", "bodyparts", "coords"],
    )
    frame = pd.DataFrame(np.asarray(values, dtype=np.float64).reshape(len(values), -1), columns=columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_hdf(path, key=key, mode="w", format="fixed")
    return path
