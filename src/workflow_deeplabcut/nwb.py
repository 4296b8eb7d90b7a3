"""NWB adapter: a session's pose estimations to an NWB file with ndx-pose 0.4.

What a file holds (all in the ``behavior`` processing module unless said otherwise):

- ``Subject`` and session metadata from the ``subject``, ``session`` and ``lab`` tables;
- ``Skeletons``: one ``Skeleton`` per model, its nodes the model's body parts and its edges
  DeepLabCut's ``skeleton`` from the project config;
- per recording, an ``ImageSeries`` in ``acquisition`` pointing at the video files (relative to
  the NWB file) and the camera as a ``Device``;
- per pose estimation and individual, a ``PoseEstimation`` named
  ``<model>_recording<id>[_<individual>]`` with one ``PoseEstimationSeries`` per body part
  (x, y in pixels, likelihood as confidence, the recording's rate), the scorer, the software
  and its version, the source video and the skeleton;
- per post-processing of it, a ``PoseEstimation`` named ``..._postprocess<idx>`` with the
  cleaned positions (in cm when scaled), the raw likelihood and the parameters;
- per 3D estimation (``threed``), a ``MultiCameraPoseEstimation`` named like a raw estimation:
  one 3D ``PoseEstimationSeries`` per body part (x, y, z in the calibration's unit and world
  frame: camera 0's for a fitted calibration) and, as its children, the 2D ``PoseEstimation``
  of each view (not repeated at the top level), each linked to its camera as a
  ``CalibratedCamera`` device (intrinsics, rotation, translation, distortion); a cleaned 3D
  trajectory is a ``MultiCameraPoseEstimation`` too;
- optionally, per DeepLabCut model, ``PoseTraining`` with the project's labeled frames.

Reading back: ``pynwb.NWBHDF5IO(path, "r").read()``, or movement's ``load_poses.from_nwb_file``.
"""

from __future__ import annotations

import datetime as _dt
import glob
import json
import os
import re
import uuid
from importlib import metadata
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from . import safe_io
from .errors import InputError
from .rows import load_array

REFERENCE_FRAME = "(0, 0) is the top-left corner of the video frame; x points right, y points down"
MODULE = "behavior"


class NWBExportError(InputError):
    """The session cannot be exported; the message says why and what to do."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _postprocess_version() -> str:
    return f"{_version('workflow-deeplabcut')}; movement {_version('movement')}"


def _safe(name: str) -> str:
    """NWB object names may not contain '/'."""
    return re.sub(r"[/:]+", "-", str(name))


def estimation_name(model_name: str, recording_id: int, individual: str | None = None) -> str:
    """Return the name of a raw estimation's ``PoseEstimation`` object in an exported file."""
    base = f"{_safe(model_name)}_recording{recording_id}"
    return base if individual is None else f"{base}_{_safe(individual)}"


def _session_metadata(session_key: dict) -> tuple[dict, dict]:
    """Fetch NWBFile and Subject keyword arguments for a session."""
    from .pipeline import lab, session, subject

    subj = (subject.Subject & session_key).fetch1()
    labs = (lab.Lab & (subject.Subject.Lab & session_key)).to_dicts()
    zone = ZoneInfo(labs[0]["time_zone"]) if len(labs) == 1 else _dt.UTC
    start = pd.Timestamp(session_key["session_datetime"]).to_pydatetime().replace(tzinfo=zone)
    species = (subject.Subject.Species & session_key).to_dicts()
    subject_kwargs = {
        "subject_id": subj["subject"],
        "sex": subj["sex"],
        "date_of_birth": _dt.datetime.combine(subj["subject_birth_date"], _dt.time(), tzinfo=zone),
        "description": subj["subject_description"] or f"subject {subj['subject']}",
    }
    if species:
        subject_kwargs["species"] = species[0]["species"]
    notes = (session.SessionNote & session_key).to_dicts()
    users = (lab.User & (session.SessionExperimenter & session_key)).to_dicts()
    file_kwargs = {
        "session_description": notes[0]["session_note"]
        if notes
        else f"Behaviour session of {subj['subject']}",
        "identifier": str(uuid.uuid4()),
        "session_start_time": start,
        "session_id": f"{subj['subject']}_{start:%Y%m%d-%H%M%S}",
        "experimenter": [u["user_fullname"] or u["user"] for u in users] or None,
        "lab": labs[0]["lab_name"] if len(labs) == 1 else None,
        "source_script": f"workflow-deeplabcut (DeepLabCut {_version('deeplabcut')})",
        "source_script_file_name": "workflow_deeplabcut/nwb.py",
        "keywords": ["pose estimation", "behavior", "DeepLabCut", "DataJoint"],
    }
    return file_kwargs, subject_kwargs


def _skeleton(ndx_pose, model_row: dict, parts: list[str], subject, individual: str | None = None):
    """Build the model's skeleton over ``parts``; one per individual of a multi-animal estimation."""
    edges = []
    for pair in model_row["config_template"].get("skeleton") or []:
        if len(pair) == 2 and pair[0] in parts and pair[1] in parts:
            edges.append([parts.index(pair[0]), parts.index(pair[1])])
    name = model_row["model_name"] if individual is None else f"{model_row['model_name']}_{individual}"
    return ndx_pose.Skeleton(
        name=_safe(name),
        nodes=parts,
        edges=np.array(edges, dtype="uint8").reshape(-1, 2) if edges else None,
        subject=subject,
    )


def _timing(timing) -> dict:
    """NWB timing arguments: ``rate`` for a constant frame rate, ``timestamps`` for a variable one."""
    if np.isscalar(timing):
        return {"rate": float(timing), "starting_time": 0.0}
    return {"timestamps": np.asarray(timing, dtype=float)}


#: NWB unit names of the pipeline's space units.
UNITS = {"px": "pixels", "cm": "centimeters", "mm": "millimeters", "m": "meters"}


def _series(
    ndx_pose, row: dict, likelihood, timing, unit: str, description: str, reference_frame=REFERENCE_FRAME
):
    """Build one body part's ``PoseEstimationSeries`` from a part-table row (``x_pos``, ``y_pos``).

    A row with a ``z_pos`` array gives a 3D series. ``timing`` is the frame rate, or each
    frame's time in seconds (variable frame rate).
    """
    axes = ("x_pos", "y_pos", "z_pos") if row.get("z_pos") is not None else ("x_pos", "y_pos")
    return ndx_pose.PoseEstimationSeries(
        name=_safe(row["body_part"]),
        description=description,
        data=np.column_stack([np.asarray(load_array(row[a]), float) for a in axes]),
        unit=unit,
        reference_frame=reference_frame,
        confidence=np.asarray(likelihood, dtype=float),
        confidence_definition="likelihood of the estimate, from the pose estimation software",
        **_timing(timing),
    )


def export_session(
    session_key: dict,
    path: str | Path,
    *,
    postprocessed: bool = True,
    training_labels: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a session's pose estimations to an NWB file (ndx-pose 0.4).

    Parameters
    ----------
    session_key : dict
        Identifies one ``session.Session``.
    path : str or Path
        The ``.nwb`` file to write.
    postprocessed : bool
        Also write every ``postprocess.CleanedTrajectory`` of the estimations.
    training_labels : bool
        Also write each DeepLabCut model's labeled frames as ndx-pose ``PoseTraining``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    NWBExportError
        If the key matches no session or several, the session has no pose estimation, or the
        file exists and ``overwrite`` is false. Nothing is written then.
    """
    import ndx_pose
    import pynwb
    from pynwb.image import ImageSeries

    from . import dlc
    from .pipeline import lab, model, postprocess, session

    path = Path(path)
    if path.suffix != ".nwb":
        raise NWBExportError(f"{path.name}: NWB files end in .nwb; give a name like session.nwb.")
    if path.exists() and not overwrite:
        raise NWBExportError(f"{path} exists; choose another name or pass overwrite=True (--overwrite).")
    sessions = (session.Session & session_key).keys()
    if len(sessions) != 1:
        raise NWBExportError(
            f"The key {session_key} matches {len(sessions)} sessions; give one that identifies exactly "
            "one (subject and session_datetime)."
        )
    (skey,) = sessions
    estimations = sorted(
        (model.PoseEstimation & skey).keys(), key=lambda k: (k["recording_id"], k["model_name"])
    )
    if not estimations:
        raise NWBExportError(
            f"Session {skey} has no pose estimation; run `workflow-deeplabcut run` (or populate "
            "model.PoseEstimation) first."
        )

    file_kwargs, subject_kwargs = _session_metadata(skey)
    nwbfile = pynwb.NWBFile(**file_kwargs, subject=pynwb.file.Subject(**subject_kwargs))
    behavior = nwbfile.create_processing_module(
        MODULE, "Pose estimation and post-processing (workflow-deeplabcut)"
    )

    triangulations = _triangulations(skey, estimations)
    views = {view: t for t in triangulations.values() for view in t["views"]}
    skeletons, devices, videos = {}, {}, {}

    def raw_estimations(est, name=None, device=None) -> tuple[list, dict]:
        """Build a raw estimation's ``PoseEstimation`` objects (one per individual) and likelihoods."""
        model_row = (model.Model & est).fetch1()
        rid = est["recording_id"]
        master = (model.PoseEstimation & est).fetch1()
        window = model.PoseEstimation.window(est)
        rows = [{"individual": i, "body_part": b, **arrays} for (i, b), arrays in window.arrays().items()]
        individuals = sorted({r["individual"] for r in rows})
        multi = len(individuals) > 1
        software = "DeepLabCut" if model_row["engine"] != model.EXTERNAL_ENGINE else model_row["task"]
        version = _version("deeplabcut") if software == "DeepLabCut" else "unknown"
        # Read once: the raw likelihood is also the confidence of every cleaned version.
        likelihoods = {(r["individual"], r["body_part"]): r["likelihood"] for r in rows}
        mapped = {r["individual"]: r["animal"] for r in (model.IndividualMapping & est).to_dicts()}
        objects = []
        for ind in individuals:
            skeleton = skeletons[model_row["model_name"]]
            if multi:  # each animal its own skeleton, linked to the file's subject when it is that animal
                key = (model_row["model_name"], ind)
                if key not in skeletons:
                    own = sorted(r["body_part"] for r in rows if r["individual"] == ind)
                    subject = nwbfile.subject if mapped.get(ind) == skey["subject"] else None
                    skeletons[key] = _skeleton(ndx_pose, model_row, own, subject, ind)
                skeleton = skeletons[key]
            series = [
                _series(
                    ndx_pose,
                    r,
                    likelihoods[(ind, r["body_part"])],
                    timings[rid],
                    "pixels",
                    f"{r['body_part']} estimated by {model_row['model_name']}",
                )
                for r in sorted(rows, key=lambda r: r["body_part"])
                if r["individual"] == ind
            ]
            objects.append(
                ndx_pose.PoseEstimation(
                    name=name or estimation_name(model_row["model_name"], rid, ind if multi else None),
                    pose_estimation_series=series,
                    description=(
                        f"Raw pose estimates of recording {rid} by model {model_row['model_name']!r} "
                        f"({model_row['model_description'] or software}), individual {ind}"
                        + (f", subject {mapped[ind]}." if ind in mapped else ".")
                    ),
                    scorer=master["scorer"],
                    source_software=software,
                    source_software_version=version,
                    skeleton=skeleton,
                    source_video=videos[rid],
                    device=device or videos[rid].device,
                )
            )
        return objects, likelihoods

    timings = {}
    for est in estimations:
        model_row = (model.Model & est).fetch1()
        parts = sorted(r["body_part"] for r in (model.Model.BodyPart & est).to_dicts())
        if model_row["model_name"] not in skeletons:
            skeletons[model_row["model_name"]] = _skeleton(ndx_pose, model_row, parts, nwbfile.subject)
        rid = est["recording_id"]
        info = (model.RecordingInfo & est).fetch1()
        timings[rid] = info["fps"] if info["frame_times"] is None else model.RecordingInfo.timestamps(est)
        if rid not in videos:
            device_name = (model.VideoRecording & est).fetch1("device")
            if device_name not in devices:
                row = (lab.Device & {"device": device_name}).fetch1()
                devices[device_name] = nwbfile.create_device(
                    name=_safe(device_name), description=row.get("description") or f"camera {device_name}"
                )
            files = model.VideoRecording.video_paths(est)
            starts, total = [], 0
            for f in files:
                starts.append(total)
                total += _nframes(f) if len(files) > 1 else 0  # one file starts at 0: no probe
            videos[rid] = ImageSeries(
                name=f"video_recording{rid}",
                description=f"recording {rid}: {len(files)} file(s) from {device_name}",
                unit="n.a.",
                external_file=[os.path.relpath(f, path.resolve().parent) for f in files],
                format="external",
                starting_frame=starts,
                num_samples=int(info["nframes"]),
                **_timing(timings[rid]),
                dimension=[int(info["px_width"]), int(info["px_height"])],
                device=devices[device_name],
            )
            nwbfile.add_acquisition(videos[rid])

    cameras = {}
    for est in estimations:
        ek = (est["recording_id"], est["model_name"])
        model_row = (model.Model & est).fetch1()
        rid = est["recording_id"]
        master = (model.PoseEstimation & est).fetch1()
        multi = len({r["individual"] for r in (model.PoseEstimation.BodyPartPosition & est).to_dicts()}) > 1
        if ek in triangulations:
            likelihoods = _add_3d(
                ndx_pose,
                nwbfile,
                behavior,
                est,
                triangulations[ek],
                raw_estimations,
                cameras,
                skeletons,
                timings,
            )
        elif ek in views:
            # Written inside the MultiCameraPoseEstimation of the 3D estimation that uses it.
            likelihoods = {
                slot: arrays["likelihood"]
                for slot, arrays in model.PoseEstimation.window(est).arrays().items()
            }
        else:
            objects, likelihoods = raw_estimations(est)
            for obj in objects:
                behavior.add(obj)
        if postprocessed:
            for ck in sorted(
                (postprocess.CleanedTrajectory & est).keys(), key=lambda k: k["pp_paramset_idx"]
            ):
                _add_cleaned(
                    ndx_pose,
                    behavior,
                    ck,
                    timings[rid],
                    likelihoods,
                    master["scorer"],
                    model_row,
                    skeletons,
                    videos[rid],
                    multi,
                    triangulations.get(ek),
                )

    behavior.add(ndx_pose.Skeletons(skeletons=list(skeletons.values())))
    if training_labels:
        for name in sorted({e["model_name"] for e in estimations}):
            model_row = (model.Model & {"model_name": name}).fetch1()
            if model_row["engine"] != "pytorch":  # no DeepLabCut project, no labeled frames
                continue
            training = _training(ndx_pose, nwbfile, model_row, skeletons[name], path, dlc, model)
            if training is not None:
                behavior.add(training)

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.nwb")
    try:
        with pynwb.NWBHDF5IO(str(partial), "w") as io:
            io.write(nwbfile)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)  # a complete file or none
    return path


def _nframes(video: Path) -> int:
    from . import video as video_mod

    return video_mod.probe(video).nframes


def _add_cleaned(
    ndx_pose, behavior, ck, timing, raw, scorer, model_row, skeletons, source_video, multi, triangulation=None
):
    """Add one cleaned trajectory; ``raw`` holds the estimation's likelihoods by (individual, part).

    A cleaned 3D estimation (``triangulation`` given) is a ``MultiCameraPoseEstimation``.
    """
    from .pipeline import postprocess

    master = (postprocess.CleanedTrajectory & ck).fetch1()
    params = (postprocess.PostprocessParamSet & ck).fetch1()
    rows = (postprocess.CleanedTrajectory.BodyPart & ck).to_dicts()
    unit = UNITS.get(master["space_unit"], master["space_unit"])
    frame = REFERENCE_FRAME if triangulation is None else triangulation["reference_frame"]
    for ind in sorted({r["individual"] for r in rows}):
        series = [
            _series(
                ndx_pose,
                r,
                raw[(ind, r["body_part"])],
                timing,
                unit,
                (
                    f"{r['body_part']} after post-processing: {r['n_low_likelihood']} points below the "
                    f"likelihood threshold removed, {r['n_interpolated']} interpolated, "
                    f"{r['n_missing']} missing."
                ),
                frame,
            )
            for r in sorted(rows, key=lambda r: r["body_part"])
            if r["individual"] == ind
        ]
        name = estimation_name(model_row["model_name"], ck["recording_id"], ind if multi else None)
        if triangulation is not None:
            behavior.add(
                ndx_pose.MultiCameraPoseEstimation(
                    name=f"{name}_postprocess{ck['pp_paramset_idx']}",
                    pose_estimation_series=series,
                    description=(
                        f"Post-processed ({params['pp_paramset_desc']}) 3D estimates of {name}; "
                        "parameters: " + json.dumps(params["pp_params"], sort_keys=True)
                    ),
                    scorer=scorer,
                    source_software="workflow-deeplabcut (movement)",
                    source_software_version=_postprocess_version(),
                    skeleton=skeletons[model_row["model_name"]],
                )
            )
            continue
        behavior.add(
            ndx_pose.PoseEstimation(
                name=f"{name}_postprocess{ck['pp_paramset_idx']}",
                pose_estimation_series=series,
                description=(
                    f"Post-processed ({params['pp_paramset_desc']}) estimates of {name}; parameters: "
                    + json.dumps(params["pp_params"], sort_keys=True)
                ),
                scorer=scorer,
                source_software="workflow-deeplabcut (movement)",
                source_software_version=_postprocess_version(),
                skeleton=skeletons.get((model_row["model_name"], ind), skeletons[model_row["model_name"]]),
                source_video=source_video,
                device=source_video.device,
            )
        )


def _triangulations(skey: dict, estimations: list[dict]) -> dict:
    """Describe the session's 3D estimations: their calibration and views, by (recording, model)."""
    from .pipeline import threed

    present = {(e["recording_id"], e["model_name"]) for e in estimations}  # a 3D one has all its views
    out = {}
    for task in (threed.TriangulationTask & skey).to_dicts():
        ek = (task["recording_id"], task["model_name"])
        if ek not in present:
            continue
        tkey = {k: task[k] for k in threed.TriangulationTask.primary_key}
        views = sorted(
            (threed.TriangulationTask.View & tkey).to_dicts(),
            key=lambda v: threed.Rig.camera_names(tkey).index(v["camera_name"]),
        )
        calibration = (threed.Calibration & tkey).fetch1()
        method = (threed.TriangulationParamSet & tkey).fetch1("method")
        first = threed.Rig.camera_names(tkey)[0]
        source = (threed.CalibrationSource & tkey).fetch1("source")
        out[ek] = {
            "key": tkey,
            "method": method,
            "views": [(v["view_recording_id"], v["view_model"]) for v in views],
            "cameras": [v["camera_name"] for v in views],
            "calibration": calibration,
            "reference_frame": (
                f"the world frame of calibration {tkey['calibration_id']} of rig {tkey['rig_name']!r}"
                + (
                    f": camera {first!r}'s, x right and y down in its image, z along its optical axis"
                    if source == "board_videos"
                    else " (imported from anipose's calibration.toml)"
                )
                + f", in {calibration['unit']}"
            ),
        }
    return out


def _add_3d(ndx_pose, nwbfile, behavior, est, tri, raw_estimations, cameras, skeletons, timings) -> dict:
    """Add a 3D estimation as a ``MultiCameraPoseEstimation`` with its views; return its likelihoods."""
    from .pipeline import model, threed

    calibrated = {c.name: c for c in threed.Calibration.cameras(tri["key"])}
    children = []
    for (rid, view_model), camera in zip(tri["views"], tri["cameras"], strict=False):
        cam = calibrated[camera]
        device_name = _safe(f"{tri['key']['rig_name']}-{camera}-calibration{tri['key']['calibration_id']}")
        if device_name not in cameras:
            cameras[device_name] = ndx_pose.CalibratedCamera(
                name=device_name,
                description=(
                    f"camera {camera!r} of rig {tri['key']['rig_name']!r}, calibration "
                    f"{tri['key']['calibration_id']} ({cam.size[0]}x{cam.size[1]} px, reprojection error "
                    f"{cam.reprojection_error:.3f} px; OpenCV camera model)"
                ),
                intrinsic_matrix=np.asarray(cam.K, float),
                rotation_matrix=np.asarray(cam.R, float),
                translation_vector=np.asarray(cam.tvec, float).reshape(3),
                distortion_coefficients=np.asarray(cam.dist, float).reshape(-1),
            )
            nwbfile.add_device(cameras[device_name])
        key = {
            **{k: est[k] for k in ("subject", "session_datetime")},
            "recording_id": rid,
            "model_name": view_model,
        }
        objects, _ = raw_estimations(
            key, name=f"{_safe(camera)}_{estimation_name(view_model, rid)}", device=cameras[device_name]
        )
        children.extend(objects)
    model_row = (model.Model & est).fetch1()
    master = (model.PoseEstimation & est).fetch1()
    window = model.PoseEstimation.window(est)
    rows = [{"individual": i, "body_part": b, **arrays} for (i, b), arrays in window.arrays().items()]
    unit = tri["calibration"]["unit"]
    series = [
        _series(
            ndx_pose,
            r,
            r["likelihood"],
            timings[est["recording_id"]],
            UNITS.get(unit, unit),
            f"{r['body_part']} triangulated ({tri['method']}) from cameras {', '.join(tri['cameras'])}",
            tri["reference_frame"],
        )
        for r in sorted(rows, key=lambda r: r["body_part"])
    ]
    behavior.add(
        ndx_pose.MultiCameraPoseEstimation(
            name=estimation_name(model_row["model_name"], est["recording_id"]),
            pose_estimation_series=series,
            pose_estimations=children,
            description=(
                f"3D pose estimates triangulated ({tri['method']}) from the views of cameras "
                f"{', '.join(tri['cameras'])} with calibration {tri['key']['calibration_id']} of rig "
                f"{tri['key']['rig_name']!r}; likelihood is the mean of the views used."
            ),
            scorer=master["scorer"],
            source_software="workflow-deeplabcut (OpenCV)",
            source_software_version=(
                f"{_version('workflow-deeplabcut')}; opencv {_version('opencv-python-headless')}"
            ),
            skeleton=skeletons[model_row["model_name"]],
        )
    )
    return {(r["individual"], r["body_part"]): r["likelihood"] for r in rows}


def _training(ndx_pose, nwbfile, model_row, skeleton, path: Path, dlc, model):
    """Build ``PoseTraining`` from a DeepLabCut project's labeled frames (None if it has none)."""
    from pynwb.image import ImageSeries

    from .settings import find_full_path

    project = find_full_path(model_row["project_path"])
    files = sorted(project.glob("labeled-data/*/CollectedData_*.h5"))
    if not files:
        return None
    nodes = list(skeleton.nodes[:])
    sources, frames = {}, []
    for h5 in files:
        labels = safe_io.read_pandas_hdf(h5)  # never pandas.read_hdf: it unpickles
        stem = h5.parent.name
        video = next(iter(sorted((project / "videos").glob(f"{glob.escape(stem)}.*"))), None)
        if stem not in sources:
            sources[stem] = ImageSeries(
                name=_safe(f"{model_row['model_name']}_{stem}"),
                description=f"video {stem} of DeepLabCut project {project.name}",
                unit="n.a.",
                external_file=[os.path.relpath(video or h5.parent, path.resolve().parent)],
                format="external",
                starting_frame=[0],
                num_samples=_nframes(video) if video else 0,
                rate=1.0,
            )
        annotator = str(labels.columns.get_level_values("scorer")[0])
        for index, row in labels.iterrows():
            image = index[-1] if isinstance(index, tuple) else Path(str(index)).name
            locations = np.full((len(nodes), 2), np.nan)
            for i, part in enumerate(nodes):
                try:
                    locations[i] = [row[(annotator, part, "x")], row[(annotator, part, "y")]]
                except KeyError:
                    continue
            visible = np.isfinite(locations).all(axis=1)
            instance = ndx_pose.SkeletonInstance(
                name="instance_0",
                id=np.uint8(0),
                node_locations=locations,
                node_visibility=visible,
                skeleton=skeleton,
            )
            number = re.search(r"(\d+)", str(image))
            frames.append(
                ndx_pose.TrainingFrame(
                    name=_safe(f"{stem}_{image}"),
                    annotator=annotator,
                    skeleton_instances=ndx_pose.SkeletonInstances(skeleton_instances=[instance]),
                    source_video=sources[stem],
                    source_video_frame_index=np.uint64(int(number.group(1))) if number else None,
                )
            )
    return ndx_pose.PoseTraining(
        name=_safe(f"PoseTraining_{model_row['model_name']}"),
        training_frames=ndx_pose.TrainingFrames(training_frames=frames),
        source_videos=ndx_pose.SourceVideos(image_series=list(sources.values())),
    )


def inspect(path: str | Path) -> list:
    """Run nwbinspector on a file and return its messages (``importance`` tells how bad)."""
    from nwbinspector import inspect_nwbfile

    return list(inspect_nwbfile(nwbfile_path=str(path)))


def summary(messages: list) -> str:
    """Count nwbinspector's messages by importance, e.g. ``0 critical, 1 best-practice violation``."""
    counts = {"CRITICAL": 0, "BEST_PRACTICE_VIOLATION": 0, "BEST_PRACTICE_SUGGESTION": 0}
    for m in messages:
        counts[m.importance.name] = counts.get(m.importance.name, 0) + 1
    words = {
        "CRITICAL": "critical",
        "BEST_PRACTICE_VIOLATION": "best-practice violation(s)",
        "BEST_PRACTICE_SUGGESTION": "best-practice suggestion(s)",
    }
    return ", ".join(f"{n} {words.get(name, name.lower())}" for name, n in counts.items())
