"""The activated pipeline: ``from workflow_deeplabcut.pipeline import lab, subject, session, train, model``.

Importing this module connects DataJoint to the pipeline's database (starting the embedded
PostgreSQL when no server is configured) and activates the schemas under the configured
prefix (``WORKFLOW_DLC_PREFIX``, default ``workflow_dlc_``), with the ``postprocess``, ``qc``,
``threed``, ``refine`` and ``jobs`` schemas beyond the tutorial's five. Declaration holds a
server-side lock, so processes that start together on a fresh prefix do not race.
"""

from . import database, jobs, lab, migrate, model, postprocess, qc, refine, session, subject, threed, train
from .settings import with_prefix

SCHEMAS = {
    "lab": lab,
    "subject": subject,
    "session": session,
    "train": train,
    "model": model,
    "postprocess": postprocess,
    "qc": qc,
    "threed": threed,
    "refine": refine,
    "jobs": jobs,
}


def activate() -> database.Target:
    """Connect and activate every schema (idempotent); return where the database is."""
    target = database.configure_datajoint()
    conn = database.connect()
    pending = [(name, module) for name, module in SCHEMAS.items() if not module.schema.is_activated()]
    if pending:
        migrate.refuse_element_schemas(conn)
        with database.declaration_lock():
            for name, module in pending:
                try:
                    database.create_schema(with_prefix(name), like=with_prefix("lab"))
                    module.schema.activate(with_prefix(name))
                except BaseException:
                    # A schema activated halfway (the server went away) has unbound tables:
                    # forget it, so that importing again activates it whole.
                    module.schema.database = None
                    raise
    migrate.require_current()
    return target


def tables() -> dict:
    """Return every table class of the pipeline (parts included), by its full table name."""
    found = {}
    for module in SCHEMAS.values():
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and getattr(value, "database", None)
                and hasattr(value, "full_table_name")
            ):
                found[value.full_table_name] = value
                for part in vars(value).values():
                    if isinstance(part, type) and hasattr(part, "full_table_name"):
                        found[part.full_table_name] = part
    return found


target = activate()

__all__ = [
    "lab",
    "subject",
    "session",
    "train",
    "model",
    "postprocess",
    "qc",
    "threed",
    "refine",
    "jobs",
    "activate",
    "tables",
    "target",
]
