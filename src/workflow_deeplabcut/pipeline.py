"""The activated pipeline: ``from workflow_deeplabcut.pipeline import lab, subject, session, train, model``.

Importing this module connects DataJoint to the pipeline's database (starting the embedded
PostgreSQL when no server is configured) and activates the schemas under the configured
prefix (``WORKFLOW_DLC_PREFIX``, default ``workflow_dlc_``), with the ``postprocess`` and ``qc``
schemas beyond the tutorial's five.
"""

from . import database, lab, model, postprocess, qc, session, subject, train
from .settings import with_prefix

SCHEMAS = {
    "lab": lab,
    "subject": subject,
    "session": session,
    "train": train,
    "model": model,
    "postprocess": postprocess,
    "qc": qc,
}


def activate() -> database.Target:
    """Connect and activate every schema (idempotent); return where the database is."""
    target = database.configure_datajoint()
    database.connect()
    for name, module in SCHEMAS.items():
        if not module.schema.is_activated():
            module.schema.activate(with_prefix(name))
    return target


target = activate()

__all__ = ["lab", "subject", "session", "train", "model", "postprocess", "qc", "activate", "target"]
