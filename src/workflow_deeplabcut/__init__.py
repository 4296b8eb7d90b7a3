"""workflow-deeplabcut: DeepLabCut 3 pose estimation as a reproducible DataJoint pipeline.

Import :mod:`workflow_deeplabcut.pipeline` to connect and activate the schemas.
"""

import warnings

# With no datajoint.json the embedded database is the intended default, not a problem to report.
warnings.filterwarnings("ignore", message="No datajoint.json found", category=UserWarning)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

__version__ = "0.1.0"
