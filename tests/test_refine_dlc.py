"""The refinement loop end to end, with real DeepLabCut training on CPU (embedded run only).

The synthetic arena's right half is a bright checkerboard. Iteration 0 is trained on frames
with the animal in the left half only; outlier extraction on the whole video returns frames
of the uncovered right half; their corrections (the ground truth, through the label import)
train iteration 1, whose error on the right half must drop by at least 30 %.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_TRAINING
from test_cli import run_cli
from test_refine import collected_data, truth_rows

from workflow_deeplabcut import dlc, synthetic

pytestmark = pytest.mark.dlc

SPEC = synthetic.SyntheticSpec(n_frames=300, tail_lag=0.125, floor="split")
TRUTH = synthetic.ground_truth(SPEC)
_X = TRUTH.xs("x", level="coords", axis=1)
CENTRE = (SPEC.size - 1) / 2
LEFT = set(np.flatnonzero((_X < CENTRE - 4).all(axis=1)).tolist())  # the animal wholly in the left half
RIGHT = set(np.flatnonzero((_X > CENTRE + 4).all(axis=1)).tolist())  # ... in the right half
#: The uncertain frames: any body part below likelihood 0.5; 20 picked uniformly (seeded).
OUTLIER_PARAMS = {"algorithm": "uncertain", "p_bound": 0.5, "numframes": 20, "extraction": "uniform"}


def _setup(pipeline, raw_root, new_session, camera, name: str):
    root = raw_root / "refine-loop" / name
    video = synthetic.make_video(root / "videos", SPEC, name="arena")
    config = dlc.create_project(name, "truth", video, root, bodyparts=list(synthetic.BODY_PARTS))
    rec = pipeline.model.VideoRecording.insert_recording(new_session("rl"), 1, camera, [video])
    pipeline.model.RecordingInfo.populate(rec)
    return config, rec


def _right_half_error(pipeline, rec: dict, model_name: str) -> float:
    """Median error (px) against the truth where the animal is in the right half."""
    frame = pipeline.model.PoseEstimation.get_trajectory({**rec, "model_name": model_name})
    frame.columns = frame.columns.droplevel("scorer")
    rows = sorted(RIGHT)
    errors = [
        np.hypot(
            frame.loc[rows, (b, "x")] - TRUTH.loc[rows, (b, "x")],
            frame.loc[rows, (b, "y")] - TRUTH.loc[rows, (b, "y")],
        )
        for b in synthetic.BODY_PARTS
    ]
    return float(np.median(np.concatenate(errors)))


def test_refinement_loop_in_python(pipeline, raw_root, new_session, camera, tmp_path):
    refine, train, model = pipeline.refine, pipeline.train, pipeline.model
    config, rec = _setup(pipeline, raw_root, new_session, camera, "loop-py")
    refine.Project.insert_project("loop-py", config)
    project = {"project_name": "loop-py"}

    # Frames to label, then labels for the left half only, and a held-out set of the right half.
    idx = refine.ExtractionParamSet.insert_new_params("uniform 60", {"algorithm": "uniform", "numframes": 60})
    refine.FrameExtraction.insert1({**project, **rec, "extraction_paramset_idx": idx})
    refine.ExtractedFrames.populate(rec)
    frames = sorted(r["frame_index"] for r in (refine.ExtractedFrames.Frame & rec).to_dicts())
    left = [f for f in frames if f in LEFT]
    held = [f for f in frames if f in RIGHT]
    assert len(left) >= 15 and len(held) >= 10
    truth_rows(TRUTH, left, "arena").to_csv(tmp_path / "left.csv", index=False)
    refine.LabelSet.import_labels("loop-py", tmp_path / "left.csv", labeled_by="truth")
    truth_rows(TRUTH, held, "arena").to_csv(tmp_path / "held.csv", index=False)
    held_set = refine.LabelSet.import_labels(
        "loop-py", tmp_path / "held.csv", labeled_by="truth", held_out=True
    )

    # Iteration 0: train, register, estimate the whole video, measure.
    base = train.TrainingParamSet.insert_new_params("refine loop", FAST_TRAINING)
    it0 = refine.Iteration.start("loop-py", base)
    m0 = (refine.Iteration & it0).fetch1("trained_model")
    task0 = (refine.Iteration & it0).proj(*train.TrainingTask.primary_key).fetch1()
    train.ModelTraining.populate(task0)
    model.ModelRegistration.populate({"model_name": m0})
    assert (model.Model & {"model_name": m0}).fetch1("iteration") == 0
    model.PoseEstimationTask.insert1({**rec, "model_name": m0, "task_mode": "trigger"})
    model.PoseEstimation.populate({**rec, "model_name": m0})
    refine.HeldOutError.populate({**rec, "model_name": m0})

    # Outliers of iteration 0 come from the uncovered right half.
    oidx = refine.OutlierParamSet.insert_new_params("uncertain < 0.5", OUTLIER_PARAMS)
    otask = refine.OutlierTask.insert_task("loop-py", {**rec, "model_name": m0}, oidx)
    refine.OutlierFrames.populate(otask)
    found = (refine.OutlierFrames & otask).fetch1()
    outliers = sorted(r["frame_index"] for r in (refine.OutlierFrames.Frame & otask).to_dicts())
    assert found["n_frames"] == len(outliers) == 20 and found["n_candidates"] >= 20
    assert not set(outliers) & set(left + held)  # labelled frames are not offered again
    uncovered = np.mean([f not in LEFT for f in outliers])
    print(f"outlier frames outside the covered half: {uncovered:.0%} of {len(outliers)}")
    assert uncovered >= 0.8, (uncovered, outliers)
    scores = [r["score"] for r in (refine.OutlierFrames.Frame & otask).to_dicts()]
    assert all(s < 0.5 for s in scores) and all(
        r["reason"] == "uncertain" for r in (refine.OutlierFrames.Frame & otask).to_dicts()
    )
    machine = pd.read_hdf(config.parent / found["machine_labels"])
    assert len(machine) == 20 and set(machine.columns.get_level_values("coords")) == {"x", "y", "likelihood"}

    # Corrections, saved as DeepLabCut's GUI saves them, come in; iteration 1 refines model 0.
    corrected = tmp_path / "CollectedData_truth.h5"
    collected_data(TRUTH, outliers, "arena", "truth", SPEC.n_frames).to_hdf(corrected, key="df_with_missing")
    refine.LabelSet.import_labels("loop-py", corrected, labeled_by="corrections")
    it1 = refine.Iteration.start("loop-py", base, parent_model=m0)
    assert dlc.read_config(config)["iteration"] == 1  # DeepLabCut's merge_datasets ran
    m1 = (refine.Iteration & it1).fetch1("trained_model")
    task1 = (refine.Iteration & it1).proj(*train.TrainingTask.primary_key).fetch1()
    train.ModelTraining.populate(task1)
    model.ModelRegistration.populate({"model_name": m1})
    assert (model.Model & {"model_name": m1}).fetch1("iteration") == 1
    assert (config.parent / "training-datasets" / "iteration-1").is_dir()
    model.PoseEstimationTask.insert1({**rec, "model_name": m1, "task_mode": "trigger"})
    model.PoseEstimation.populate({**rec, "model_name": m1})
    refine.HeldOutError.populate({**rec, "model_name": m1})

    # Model 0 is still evaluated at its own iteration, though the project is at iteration 1.
    model.ModelEvaluation.populate([{"model_name": m0}, {"model_name": m1}])
    assert (config.parent / "evaluation-results-pytorch" / "iteration-0").is_dir()
    assert len(model.ModelEvaluation & [{"model_name": m0}, {"model_name": m1}]) == 2

    # The lineage and the comparison, as rows.
    lineage = refine.Iteration.lineage(m1)
    assert lineage["parent_model"] == m0 and lineage["label_sets"] == [1, 3]
    assert [o["outlier_paramset_idx"] for o in lineage["outlier_sets"]] == [oidx]
    table = refine.compare("loop-py").set_index("iteration")
    assert list(table.index) == [0, 1] and table.loc[1, "parent_model"] == m0
    assert table.loc[1, "n_labels"] == table.loc[0, "n_labels"] + 2 * len(outliers)
    held0 = (refine.HeldOutError & held_set & {"model_name": m0}).fetch1("median_error")
    held1 = (refine.HeldOutError & held_set & {"model_name": m1}).fetch1("median_error")
    assert table.loc[0, "held_out_median_error"] == held0 and table.loc[1, "held_out_median_error"] == held1
    before, after = _right_half_error(pipeline, rec, m0), _right_half_error(pipeline, rec, m1)
    print(f"right half, median error: iteration 0 {before:.2f} px, 1 {after:.2f} px")
    print(f"held-out set, median error: iteration 0 {held0:.2f} px, 1 {held1:.2f} px")
    assert after <= 0.7 * before, (before, after)
    assert held1 <= 0.7 * held0, (held0, held1)

    # DeepLabCut's own check_labels reads the labelled folder the pipeline wrote.
    deeplabcut = dlc._import_deeplabcut()
    deeplabcut.check_labels(str(config), visualizeindividuals=False)
    assert len(list((config.parent / "labeled-data" / "arena_labeled").glob("*.png"))) == len(left) + len(
        outliers
    )


def test_refinement_loop_from_the_shell(pipeline, raw_root, new_session, camera, tmp_path):
    refine = pipeline.refine
    config, rec = _setup(pipeline, raw_root, new_session, camera, "loop-cli")
    keys = [arg for k, v in rec.items() for arg in ("-k", f"{k}={v}")]

    def shell(*args):
        done = run_cli("refine", *args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    shell("project", "loop-cli", str(config))
    idx = refine.ExtractionParamSet.insert_new_params("uniform 60", {"algorithm": "uniform", "numframes": 60})
    assert "60 frame(s)" in shell("extract", "loop-cli", *keys, "--params", str(idx))
    frames = sorted(
        r["frame_index"]
        for r in (refine.ExtractedFrames.Frame & rec & {"project_name": "loop-cli"}).to_dicts()
    )
    truth_rows(TRUTH, [f for f in frames if f in LEFT]).to_csv(tmp_path / "left.csv", index=False)
    shell(
        "import-labels", "loop-cli", str(tmp_path / "left.csv"), "--video", "arena", "--labeled-by", "truth"
    )
    truth_rows(TRUTH, [f for f in frames if f in RIGHT], "arena").to_csv(tmp_path / "held.csv", index=False)
    shell("import-labels", "loop-cli", str(tmp_path / "held.csv"), "--held-out")

    base = pipeline.train.TrainingParamSet.insert_new_params("refine loop", FAST_TRAINING)
    out = shell("next-iteration", "loop-cli", "--training-params", str(base))
    assert "Iteration 0" in out and "test error" in out
    pipeline.model.PoseEstimationTask.insert1(
        {**rec, "model_name": "loop-cli-iteration-0", "task_mode": "trigger"}
    )
    done = run_cli("run", "-k", f"subject={rec['subject']}", "-t", "PoseEstimation", "-t", "HeldOutError")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    oidx = refine.OutlierParamSet.insert_new_params("uncertain < 0.5", OUTLIER_PARAMS)
    out = shell("outliers", "loop-cli", "-m", "loop-cli-iteration-0", *keys, "--params", str(oidx))
    assert "20 of" in out
    otask = {"project_name": "loop-cli", **rec, "model_name": "loop-cli-iteration-0"}
    outliers = sorted(r["frame_index"] for r in (refine.OutlierFrames.Frame & otask).to_dicts())
    truth_rows(TRUTH, outliers, "arena").to_csv(tmp_path / "corrections.csv", index=False)
    shell("import-labels", "loop-cli", str(tmp_path / "corrections.csv"), "--labeled-by", "corrections")
    out = shell(
        "next-iteration", "loop-cli", "--training-params", str(base), "--parent", "loop-cli-iteration-0"
    )
    assert "Iteration 1" in out
    pipeline.model.PoseEstimationTask.insert1(
        {**rec, "model_name": "loop-cli-iteration-1", "task_mode": "trigger"}
    )
    done = run_cli(
        "run", "-k", f"subject={rec['subject']}", "-t", "PoseEstimation", "-t", "HeldOutError", "-t", "PoseQC"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = json.loads(shell("compare", "loop-cli", "--json"))
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["parent_model"] == "loop-cli-iteration-0"
    assert rows[1]["held_out_median_error"] <= 0.7 * rows[0]["held_out_median_error"], rows
    assert all(r["test_error"] is not None and r["fraction_below_pcutoff"] is not None for r in rows)
    assert "iterations of loop-cli" in shell("compare", "loop-cli")
