"""Build an element-deeplabcut 0.2.8 database with element's own code (DataJoint 0.14).

Run by the separate environment ``scripts/install-element.sh`` makes (``.element-venv``), never
by the test suite's own Python::

    .element-venv/bin/python tests/element_build.py PREFIX

It declares the schemas as element's workflow-deeplabcut 0.2 did (element-lab, element-animal,
element-session with datetime, element-deeplabcut train and model) on the MariaDB server
(``DJ_HOST``, ``DJ_USER``, ``DJ_PASS``; default 127.0.0.1, root, no password) and fills them
with what a lab's database holds: subjects, sessions, cameras, recordings, training parameter
sets (one with DeepLabCut 2.x's ``maxiters``), a training, models with their body parts and
evaluations, tasks and pose estimations whose arrays are random with gaps (NaN). One recording's
file climbs out of the data root, as a hand-made path can. It prints the number of rows it wrote
per table, as JSON.
"""

import json
import sys
from datetime import date, datetime

import numpy as np
from element_pipeline import activate  # this folder: the script's own

prefix = sys.argv[1]

lab, subject, session, train, model = activate(prefix)

rng = np.random.default_rng(0)
PARTS = ["snout", "leftear", "rightear", "tailbase"]

lab.Device.insert([("el-top", "Camera", "top view"), ("el-side", "Camera", "")])
subject.Subject.insert(
    [
        {
            "subject": "elm1",
            "sex": "M",
            "subject_birth_date": date(2023, 1, 2),
            "subject_description": "wild type",
        },
        {"subject": "elm2", "sex": "F", "subject_birth_date": date(2023, 3, 4), "subject_description": ""},
    ]
)
sessions = [
    {"subject": "elm1", "session_datetime": datetime(2024, 5, 1, 10, 0, 0)},
    {"subject": "elm1", "session_datetime": datetime(2024, 5, 2, 10, 30, 0)},
    {"subject": "elm2", "session_datetime": datetime(2024, 5, 1, 14, 0, 0)},
]
session.Session.insert(sessions)

recordings = []
for i, s in enumerate(sessions):
    rec = {**s, "recording_id": 1}
    model.VideoRecording.insert1({**rec, "device": "el-top"})
    path = f"m{i}/openfield-{i}.mp4" if i < 2 else "../outside/openfield-2.mp4"
    model.VideoRecording.File.insert1({**rec, "file_id": 0, "file_path": path})
    model.RecordingInfo.insert1(
        {**rec, "px_height": 480, "px_width": 640, "nframes": 300, "fps": 30, "recording_duration": 10.0},
        allow_direct_insert=True,
    )
    recordings.append(rec)

model.BodyPart.insert([{"body_part": b, "body_part_description": f"the {b}"} for b in PARTS])

config = {
    "Task": "openfield",
    "scorer": "Pranav",
    "date": "Oct30",
    "bodyparts": PARTS,
    "TrainingFraction": [0.95],
    "iteration": 0,
    "snapshotindex": -1,
    "default_net_type": "resnet_50",
    "batch_size": 8,
    "pcutoff": 0.4,
    "project_path": "/data/raw/openfield-Pranav-2018-10-30",
}
# element's own call; its notebooks passed the config with the training arguments.
train.TrainingParamSet.insert_new_params(
    paramset_desc="TF, 5 iterations",
    params={**config, "shuffle": 1, "trainingsetindex": 0, "maxiters": 5},
    paramset_idx=100,
)
train.TrainingParamSet.insert_new_params(
    paramset_desc="shuffle 2", params={"shuffle": 7, "trainingsetindex": 0, "epochs": 7}, paramset_idx=101
)
train.VideoSet.insert1({"video_set_id": 100})
train.VideoSet.File.insert1(
    {
        "video_set_id": 100,
        "file_id": 0,
        "file_path": "el-lab/openfield-Pranav-2018-10-30/labeled-data/m4s1/CollectedData_Pranav.h5",
    }
)
for paramset_idx in (100, 101):
    task = {"video_set_id": 100, "paramset_idx": paramset_idx, "training_id": paramset_idx}
    train.TrainingTask.insert1({**task, "project_path": "el-lab/openfield-Pranav-2018-10-30"})
train.ModelTraining.insert1(
    {
        "video_set_id": 100,
        "paramset_idx": 100,
        "training_id": 100,
        "latest_snapshot": 1030000,
        "config_template": config,
    },
    allow_direct_insert=True,
)

models = {
    "el-openfield-v1": {
        "snapshotindex": -1,
        "scorer": "DLCresnet50openfieldOct30shuffle1",
        "paramset_idx": 100,
    },
    "el-openfield-v0": {
        "snapshotindex": 0,
        "scorer": "DLC_resnet50_openfieldOct30shuffle1_500000",
        "paramset_idx": None,
    },
}
for name, m in models.items():
    model.Model.insert1(
        {
            "model_name": name,
            "task": "openfield",
            "date": "Oct30",
            "iteration": 0,
            "snapshotindex": m["snapshotindex"],
            "shuffle": 1,
            "trainingsetindex": 0,
            "scorer": m["scorer"],
            "config_template": {**config, "snapshotindex": m["snapshotindex"]},
            "project_path": "el-lab/openfield-Pranav-2018-10-30",
            "model_description": f"{name} (TensorFlow)",
            "paramset_idx": m["paramset_idx"],
        }
    )
    model.Model.BodyPart.insert([{"model_name": name, "body_part": b} for b in PARTS])
model.ModelEvaluation.insert1(
    {
        "model_name": "el-openfield-v1",
        "train_iterations": 1030000,
        "train_error": 2.5,
        "test_error": 4.25,
        "p_cutoff": 0.4,
        "train_error_p": 2.0,
        "test_error_p": 3.5,
    },
    allow_direct_insert=True,
)

estimations = 0
for rec in recordings:
    for name in models:
        key = {**rec, "model_name": name}
        model.PoseEstimationTask.insert1(
            {**key, "task_mode": "load", "pose_estimation_output_dir": f"{rec['subject']}/{name}"}
        )
        if name == "el-openfield-v0" and rec is recordings[1]:
            continue  # a task that was never computed
        model.PoseEstimation.insert1(
            {**key, "pose_estimation_time": datetime(2024, 6, 1, 9, 0, 0)}, allow_direct_insert=True
        )
        n = 300
        for part in PARTS:
            x, y = rng.uniform(0, 640, n), rng.uniform(0, 480, n)
            x[rng.integers(0, n, 5)] = np.nan
            model.PoseEstimation.BodyPartPosition.insert1(
                {
                    **key,
                    "body_part": part,
                    "frame_index": np.arange(n),
                    "x_pos": x,
                    "y_pos": y,
                    "likelihood": rng.uniform(0, 1, n),
                },
                allow_direct_insert=True,
            )
        estimations += 1

tables = {
    "Device": lab.Device,
    "Subject": subject.Subject,
    "Session": session.Session,
    "VideoRecording": model.VideoRecording,
    "VideoRecording.File": model.VideoRecording.File,
    "RecordingInfo": model.RecordingInfo,
    "BodyPart": model.BodyPart,
    "TrainingParamSet": train.TrainingParamSet,
    "VideoSet": train.VideoSet,
    "VideoSet.File": train.VideoSet.File,
    "TrainingTask": train.TrainingTask,
    "ModelTraining": train.ModelTraining,
    "Model": model.Model,
    "Model.BodyPart": model.Model.BodyPart,
    "ModelEvaluation": model.ModelEvaluation,
    "PoseEstimationTask": model.PoseEstimationTask,
    "PoseEstimation": model.PoseEstimation,
    "PoseEstimation.BodyPartPosition": model.PoseEstimation.BodyPartPosition,
}
print(json.dumps({name: len(table()) for name, table in tables.items()}))
