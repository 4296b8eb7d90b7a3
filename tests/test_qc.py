"""Quality control (schema ``qc``): metrics as rows, pictures as files, labeled videos.

Runs on the imported estimate with known defects (``noisy`` in conftest).
"""

import numpy as np
import pytest
from PIL import Image

from workflow_deeplabcut import plots, synthetic, video
from workflow_deeplabcut.settings import get_settings


@pytest.fixture(scope="module")
def qc_key(pipeline, noisy):
    qc = pipeline.qc
    key = {**noisy["key"], "qc_paramset_idx": 0}
    for table in (qc.PoseQC, qc.QCPlots):
        result = table.populate(key, suppress_errors=True)
        assert not result["error_list"], result["error_list"]
    return key


def test_metrics_match_the_known_defects(pipeline, noisy, qc_key):
    corruption = noisy["corruption"]
    n = noisy["spec"].n_frames
    rows = {r["body_part"]: r for r in (pipeline.qc.PoseQC.BodyPart & qc_key).to_dicts()}
    for part, row in rows.items():
        assert row["fraction_below_pcutoff"] == pytest.approx(len(corruption.low_frames[part]) / n)
        assert row["longest_gap"] == len(corruption.long_gap)
        assert row["longest_gap_start"] == corruption.long_gap[0]
        assert row["median_likelihood"] == pytest.approx(synthetic.HIGH_LIKELIHOOD)
    # The confident 60 px jump of the head is two jumps (there and back); the tail has none.
    assert rows["head"]["n_jumps"] == 2
    assert rows["tail"]["n_jumps"] == 0
    master = (pipeline.qc.PoseQC & qc_key).fetch1()
    assert master["n_jumps"] == 2 and master["nframes"] == n


def test_metrics_are_queryable_across_sessions(pipeline, qc_key):
    qc = pipeline.qc
    bad = qc.PoseQC.BodyPart & "fraction_below_pcutoff > 0.1" & "longest_gap >= 15"
    assert {r["body_part"] for r in (bad & qc_key).to_dicts()} == {"head", "tail"}
    assert not qc.PoseQC.BodyPart & qc_key & "fraction_below_pcutoff > 0.5"


def test_qc_pictures_are_valid_images(pipeline, qc_key):
    paths = pipeline.qc.QCPlots.paths(qc_key)
    root = get_settings().processed_data_dir
    for name, path in paths.items():
        assert path.is_relative_to(root) and path.is_file(), name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == plots.PICTURE_SIZE, (name, image.size)
            pixels = np.asarray(image.convert("L"), dtype=float)
        # Not blank: axes, lines and text make contrast.
        assert pixels.std() > 10, name
        assert (pixels < 128).mean() > 0.005, name


def test_labeled_video_draws_confident_points(pipeline, noisy):
    qc = pipeline.qc
    qc.LabeledVideoParams.insert1(
        {
            "labeled_video_idx": 1,
            "labeled_video_desc": "frames 10-39",
            "pcutoff": 0.6,
            "start_frame": 10,
            "n_frames": 30,
            "dot_radius": 3,
        }
    )
    key = {**noisy["key"], "labeled_video_idx": 1}
    qc.LabeledVideoTask.insert1(key)
    result = qc.LabeledVideo.populate(key, suppress_errors=True)
    assert not result["error_list"], result["error_list"]
    row = (qc.LabeledVideo & key).fetch1()
    path = qc.LabeledVideo.path(key)
    info = video.probe(path)
    assert (info.nframes, info.width, info.height) == (30, 128, 128) == (row["nframes"], 128, 128)
    assert info.fps == pytest.approx(30.0)
    import av

    with av.open(str(path)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    frame = noisy["frame"]
    head, tail = plots.marker_colours(2)  # body parts are drawn in sorted order: head, tail
    for part, colour in (("head", head), ("tail", tail)):
        x, y = round(frame.at[10, (part, "x")]), round(frame.at[10, (part, "y")])
        assert np.abs(first[y, x] - np.array(colour)).max() < 40, (part, first[y, x], colour)


def test_labeled_video_out_of_range_writes_nothing(pipeline, noisy):
    qc = pipeline.qc
    qc.LabeledVideoParams.insert1(
        {"labeled_video_idx": 2, "labeled_video_desc": "past the end", "pcutoff": 0.6, "start_frame": 5000}
    )
    key = {**noisy["key"], "labeled_video_idx": 2}
    qc.LabeledVideoTask.insert1(key)
    result = qc.LabeledVideo.populate(key, suppress_errors=True)
    assert "No frames in range [5000" in str(result["error_list"])
    assert not qc.LabeledVideo & key
    folder = get_settings().processed_data_dir / (pipeline.model.PoseEstimation & key).fetch1("output_dir")
    assert not list(folder.glob("labeled/*labeled2*"))
