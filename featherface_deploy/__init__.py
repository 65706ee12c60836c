"""featherface-deploy: export FeatherFace face detectors and run them behind one runtime.

Importing this package loads numpy and Pillow only; torch and each backend are
imported when a model of that format is opened.
"""

from featherface_deploy.detector import FaceDetector
from featherface_deploy.errors import FeatherFaceError
from featherface_deploy.postprocess import Detections, PostprocessConfig

__version__ = "0.1.0"
__all__ = ["Detections", "FaceDetector", "FeatherFaceError", "PostprocessConfig", "__version__"]
