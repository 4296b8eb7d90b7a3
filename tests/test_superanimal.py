"""DeepLabCut's SuperAnimal models as pipeline models: pose estimation without training.

No weights are downloaded: the test writes them where DeepLabCut and the hubs look (the Hugging
Face cache in the hub's layout, torch's hub cache for the detector's backbone). The pose network
and the detector are DeepLabCut's own classes with generated weights; the detector's class
scores are set so that it always finds an animal, so poses come out only if DeepLabCut loaded
the weights this test wrote.
"""

import io

import av
import numpy as np
import pytest
from conftest import hub_cache

from workflow_deeplabcut import superanimal, synthetic

pytestmark = pytest.mark.dlc

SUPERANIMAL, POSE, DETECTOR = "superanimal_topviewmouse", "resnet_50", "fasterrcnn_mobilenet_v3_large_fpn"


def _weights(scratch) -> dict:
    """Generate the pose network, detector and backbone weights DeepLabCut will load.

    torchvision builds the detector with its ImageNet backbone: a generated one, in a scratch
    hub cache (the test's own torch cache stays empty until the test fills it).
    """
    import torch
    import torchvision
    from deeplabcut.pose_estimation_pytorch.config.pose import PoseConfig
    from deeplabcut.pose_estimation_pytorch.models import DETECTORS, PoseModel

    cfg = PoseConfig.build_for_superanimal_inference(
        SUPERANIMAL, model_name=POSE, detector_name=DETECTOR, max_individuals=1, device="cpu"
    ).to_dict()
    torch.manual_seed(0)
    pose = PoseModel.build(cfg["model"], pretrained_backbone=False).state_dict()
    backbone = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    home = torch.hub.get_dir()
    torch.hub.set_dir(str(scratch))
    try:
        target = scratch / "checkpoints" / superanimal.detector_backbone(DETECTOR).name
        target.parent.mkdir(parents=True)
        torch.save(backbone, target)
        detector = DETECTORS.build({**cfg["detector"]["model"], "pretrained": False}).state_dict()
    finally:
        torch.hub.set_dir(home)
    with torch.no_grad():  # every proposal is an animal: detections whatever the image
        detector["model.roi_heads.box_predictor.cls_score.weight"].zero_()
        detector["model.roi_heads.box_predictor.cls_score.bias"][:] = torch.tensor([-20.0, 20.0])

    def saved(obj) -> bytes:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    return {
        "pose": saved({"model": pose}),
        "detector": saved({"model": detector}),
        "backbone": saved(backbone),
    }


def _clip(source, target, n=8):
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as src:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), src.decode(video=0), strict=False)]
    return synthetic.write_video(target, np.stack(frames), 30.0)


def test_superanimal_model_runs_from_local_caches(
    pipeline, synthetic_video, raw_root, new_session, camera, tmp_path
):
    model = pipeline.model
    key = model.Model.insert_superanimal_model("topview", SUPERANIMAL, POSE, DETECTOR, pcutoff=0.3)
    row = (model.Model & key).fetch1()
    parts = sorted(r["body_part"] for r in (model.Model.BodyPart & key).to_dicts())
    assert row["engine"] == "superanimal" and len(parts) == 27 and "tail_base" in parts
    assert row["scorer"] == f"{SUPERANIMAL}_{POSE}_{DETECTOR}"
    assert model.Model.pcutoff(key) == 0.3
    with pytest.raises(Exception, match="has no superanimal_topviewmouse_nonet"):
        model.Model.insert_superanimal_model("bad", SUPERANIMAL, "nonet", DETECTOR)

    clip = _clip(synthetic_video, raw_root / "superanimal" / "clip.mp4")
    rec = model.VideoRecording.insert_recording(new_session("sa"), 1, camera, [clip])
    model.RecordingInfo.populate(rec)
    task = model.PoseEstimationTask.generate(rec, "topview")
    assert (model.PoseEstimationTask & task).fetch1("task_mode") == "trigger"

    # Offline, nothing cached: a clear error that says how to fetch the weights; nothing written.
    failed = model.PoseEstimation.populate(task, suppress_errors=True)["error_list"]
    assert len(
        failed
    ) == 1 and "hf_hub_download('mwmathis/DeepLabCutModelZoo-SuperAnimal-TopViewMouse'" in str(failed[0][1])
    output = model.PoseEstimationTask.output_dir(task)
    assert not list(output.glob("*.h5"))

    weights = _weights(tmp_path / "scratch-torch")
    repo, pose_file = superanimal.model_zoo_entry(SUPERANIMAL, POSE)
    hub_cache(repo, pose_file, weights["pose"])
    hub_cache(repo, superanimal.model_zoo_entry(SUPERANIMAL, DETECTOR)[1], weights["detector"])
    backbone = superanimal.detector_backbone(DETECTOR)
    with pytest.raises(superanimal.DLCConfigError, match="ImageNet backbone weights"):
        superanimal.analyze((model.Model & key).fetch1("config_template"), [clip], output, {})
    backbone.parent.mkdir(parents=True, exist_ok=True)
    backbone.write_bytes(weights["backbone"])
    assert superanimal.find_weights(SUPERANIMAL, POSE, download=False).name == pose_file

    result = model.PoseEstimation.populate(task, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    info = model.PoseEstimation.info(task)
    assert info["nframes"] == 8 and info["individuals"] == ["animal0"] and sorted(info["body_parts"]) == parts
    trajectory = model.PoseEstimation.get_trajectory(task)
    assert np.isfinite(trajectory.to_numpy()).any()  # the detector found the animal: our weights ran
    assert sorted(p.name for p in output.iterdir() if p.is_file()) == [f"clip_{row['scorer']}.h5"]
