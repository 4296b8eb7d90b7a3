"""Quality gates: a model, an estimation or a cleaned trajectory too poor to trust is flagged.

A pipeline that reports ``errors 0`` for a model that tracks nothing misleads its user. Three
gates turn the numbers the pipeline already computes into warnings, each with the figure, the
threshold and the likely fix:

* a model whose test error passes a fraction of the frame diagonal
  (``max_test_error_fraction`` in its training params, default :data:`MAX_TEST_ERROR_FRACTION`);
  stored in ``ModelEvaluation.warning``;
* an estimation with more than ``QCParamSet.max_below_pcutoff`` of its points below the
  p-cutoff; stored in ``PoseQC.warning``;
* a cleaned trajectory with a body part missing in more than ``max_missing`` of its frames
  (post-processing params); stored in ``CleanedTrajectory.warning``.

Warnings are not errors: the rows exist and the work is done; ``status`` and ``run`` list them
apart from errors. The functions here are pure; :func:`collect` reads the stored warnings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Default gate on a model's test error, as a fraction of the frame diagonal (1 %: 8 px on 640x480).
MAX_TEST_ERROR_FRACTION = 0.01

MODEL_FIX = (
    "train longer, or start from pretrained weights (init_weights: auto, with the backbone's weights "
    "in the Hugging Face cache; ModelTraining.init_weights says what a training started from)"
)


@dataclass(frozen=True)
class QualityWarning:
    """One flagged row: the table, its key and the message (figure, threshold, fix)."""

    table: str
    key: dict
    message: str


def model_warning(test_error: float | None, frame_size: tuple[int, int] | None, max_fraction: float) -> str:
    """Return the warning for a model's test error ("" when it passes or cannot be judged).

    Parameters
    ----------
    test_error : float or None
        Test RMSE in pixels.
    frame_size : (width, height) or None
        The labeled frames' size.
    max_fraction : float
        The gate, as a fraction of the frame diagonal.
    """
    if test_error is None or not np.isfinite(test_error) or not frame_size:
        return ""
    diagonal = float(np.hypot(*frame_size))
    if test_error <= max_fraction * diagonal:
        return ""
    return (
        f"test error {test_error:.1f} px is {test_error / diagonal:.1%} of the {frame_size[0]}x"
        f"{frame_size[1]} frame's diagonal (gate {max_fraction:.1%}, {max_fraction * diagonal:.1f} px): "
        f"{MODEL_FIX}"
    )


def estimation_warning(fraction_below: float, worst_part: str, pcutoff: float, max_below: float) -> str:
    """Return the warning for an estimation with too many points below the p-cutoff ("" if none)."""
    if fraction_below <= max_below:
        return ""
    return (
        f"{fraction_below:.0%} of points are below the p-cutoff {pcutoff:g} (gate {max_below:.0%}; "
        f"worst: {worst_part}): the model does not track these videos; check its evaluation, then "
        f"{MODEL_FIX}, or label frames from these videos"
    )


def trajectory_warning(missing: dict, nframes: int, threshold: float, max_missing: float) -> str:
    """Return the warning for a cleaned trajectory with a body part missing too often ("" if none).

    ``missing`` maps a body part (or ``individual/body part``) to its frames missing after
    cleaning; ``threshold`` is the likelihood threshold that removed points.
    """
    if nframes <= 0 or not missing:
        return ""
    part, worst = max(missing.items(), key=lambda item: item[1])
    fraction = worst / nframes
    if fraction <= max_missing:
        return ""
    return (
        f"{part} is missing in {worst} of {nframes} frames ({fraction:.0%}, gate {max_missing:.0%}) "
        f"after dropping points below likelihood {threshold:g}: improve the model ({MODEL_FIX}), "
        "or lower likelihood_threshold if its likelihoods are known to run low"
    )


def collect(restriction: dict | None = None, only: str | None = None) -> list[QualityWarning]:
    """Return the stored warnings of the pipeline's rows (those matching ``restriction``).

    Tables whose keys lack an attribute of the restriction are left out, as in ``run``;
    ``only`` keeps one of the three tables (another name gives none).
    """
    from .pipeline import model, postprocess, qc

    tables = {
        "ModelEvaluation": model.ModelEvaluation,
        "PoseQC": qc.PoseQC,
        "CleanedTrajectory": postprocess.CleanedTrajectory,
    }
    found = []
    for name, table in tables.items():
        if only is not None and name != only:
            continue
        if restriction and not set(restriction) <= set(table.primary_key):
            continue
        rows = (table & (restriction or {}) & "warning != ''").to_dicts()
        for row in rows:
            found.append(QualityWarning(name, {k: row[k] for k in table.primary_key}, row["warning"]))
    return found
