"""element-deeplabcut 0.2.8's pipeline, declared as its workflow did (DataJoint 0.14 only).

Imported by ``tests/element_build.py`` and ``benchmarks/element_build_bulk.py``, which run in
``.element-venv``; never by the test suite's own Python.
"""

import os
import sys
import types

import datajoint as dj


def activate(prefix: str):
    """Connect to the MariaDB server (``DJ_HOST``, ``DJ_USER``, ``DJ_PASS``) and declare the schemas.

    Returns the modules ``(lab, subject, session, train, model)``.
    """
    dj.config["database.host"] = os.environ.get("DJ_HOST", "127.0.0.1")
    dj.config["database.user"] = os.environ.get("DJ_USER", "root")
    dj.config["database.password"] = os.environ.get("DJ_PASS", "")
    dj.config["database.use_tls"] = False
    dj.config["safemode"] = False

    import element_deeplabcut.train  # noqa: F401  first: element 0.2.8's train and model import in a circle
    from element_animal import subject
    from element_deeplabcut import model, train
    from element_lab import lab
    from element_session import session_with_datetime as session

    # The linking module, as workflow-deeplabcut 0.2's pipeline.py was.
    link = types.ModuleType("element_link")
    sys.modules["element_link"] = link
    link.get_dlc_root_data_dir = lambda: ["/data/raw"]
    link.get_dlc_processed_data_dir = lambda: "/data/processed"
    lab.activate(prefix + "lab")
    for name in ("Source", "Lab", "Protocol", "User", "Project", "Device"):
        setattr(link, name, getattr(lab, name))
    link.Experimenter = lab.User
    subject.activate(prefix + "subject", linking_module="element_link")
    link.Subject = subject.Subject
    session.activate(prefix + "session", linking_module="element_link")
    link.Session = session.Session
    train.activate(prefix + "train", linking_module="element_link")
    link.train = train  # model's foreign key names train.TrainingParamSet
    model.activate(prefix + "model", linking_module="element_link")
    return lab, subject, session, train, model
