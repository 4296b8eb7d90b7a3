"""workflow-deeplabcut: DeepLabCut 3 pose estimation as a reproducible DataJoint pipeline.

Import :mod:`workflow_deeplabcut.pipeline` to connect and activate the schemas.
"""

import logging
import warnings

# With no datajoint.json the embedded database is the intended default, not a problem to report.
warnings.filterwarnings("ignore", message="No datajoint.json found", category=UserWarning)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
# MariaDB is one of the backends this project tests on every run: the warning is not news.
warnings.filterwarnings("ignore", message="MariaDB is not officially supported", category=UserWarning)


def _not_native_type_noise(record: logging.LogRecord) -> bool:
    # DataJoint 2.3.5 reads our int32 keys back from MySQL/MariaDB as 'int' and warns at every
    # foreign key that copies one: the columns are declared with core types.
    return not str(record.msg).startswith("Native type ")


logging.getLogger("datajoint").addFilter(_not_native_type_noise)

__version__ = "0.1.0"
