"""Schema ``session``: experimental sessions of a subject."""

import datajoint as dj

from . import lab, subject  # noqa: F401  (resolve '-> subject.Subject', '-> lab.User')

schema = dj.Schema()


@schema
class Session(dj.Manual):
    definition = """
    -> subject.Subject
    session_datetime: datetime
    """


@schema
class SessionDirectory(dj.Manual):
    definition = """
    -> Session
    ---
    session_dir: varchar(255)  # the session's folder, relative to a data root
    """


@schema
class SessionNote(dj.Manual):
    definition = """
    -> Session
    ---
    session_note: varchar(1024)
    """


@schema
class SessionExperimenter(dj.Manual):
    definition = """
    -> Session
    -> lab.User
    """
