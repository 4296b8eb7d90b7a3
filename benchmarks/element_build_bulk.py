"""Write a large element-deeplabcut 0.2.8 database for ``benchmarks/element_migration.py``.

Runs in ``.element-venv`` (DataJoint 0.14)::

    .element-venv/bin/python benchmarks/element_build_bulk.py PREFIX SESSIONS PARTS FRAMES

One subject, SESSIONS sessions with one recording each, one model with PARTS body parts, and
one pose estimation per recording whose BodyPartPosition rows hold FRAMES frames (element's
five arrays per body part: frame_index, x, y, z (null), likelihood), inserted as element does.
"""

import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

prefix, sessions, parts, frames = sys.argv[1], *map(int, sys.argv[2:5])
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from element_pipeline import activate  # noqa: E402

lab, subject, session, train, model = activate(prefix)

rng = np.random.default_rng(0)
names = [f"part{i:02d}" for i in range(parts)]
lab.Device.insert1(("bench-cam", "Camera", ""))
subject.Subject.insert1({"subject": "bench", "sex": "U", "subject_birth_date": date(2023, 1, 1)})
model.BodyPart.insert([{"body_part": b} for b in names], skip_duplicates=True)
config = {"Task": "bench", "date": "Jan1", "bodyparts": names, "iteration": 0, "snapshotindex": 0}
model.Model.insert1(
    {
        "model_name": "bench",
        "task": "bench",
        "date": "Jan1",
        "iteration": 0,
        "snapshotindex": 0,
        "shuffle": 1,
        "trainingsetindex": 0,
        "scorer": "DLC_resnet50_benchJan1shuffle1_1000",
        "config_template": config,
        "project_path": "bench",
    }
)
model.Model.BodyPart.insert([{"model_name": "bench", "body_part": b} for b in names])
for i in range(sessions):
    key = {
        "subject": "bench",
        "session_datetime": datetime(2024, 1, 1) + timedelta(hours=i),
        "recording_id": 1,
    }
    session.Session.insert1({k: key[k] for k in ("subject", "session_datetime")})
    model.VideoRecording.insert1({**key, "device": "bench-cam"})
    model.VideoRecording.File.insert1({**key, "file_id": 0, "file_path": f"bench/{i}.mp4"})
    key["model_name"] = "bench"
    model.PoseEstimationTask.insert1({**key, "task_mode": "load"})
    model.PoseEstimation.insert1(
        {**key, "pose_estimation_time": datetime(2024, 6, 1)}, allow_direct_insert=True
    )
    for b in names:
        model.PoseEstimation.BodyPartPosition.insert1(
            {
                **key,
                "body_part": b,
                "frame_index": np.arange(frames),
                "x_pos": rng.uniform(0, 640, frames),
                "y_pos": rng.uniform(0, 480, frames),
                "likelihood": rng.uniform(0, 1, frames),
            },
            allow_direct_insert=True,
        )
print("built", sessions, parts, frames)
