"""workflow-deeplabcut: DeepLabCut 3 pose estimation as a reproducible DataJoint pipeline.

Import :mod:`workflow_deeplabcut.pipeline` to connect and activate the schemas.
"""

__version__ = "0.1.0"
