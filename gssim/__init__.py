"""gssim: driving-scene sensor simulation with 2D Gaussian splatting."""
from gssim.core.surfels import Surfels
from gssim.sensors import FisheyeCamera, OpenCVCamera, PinholeCamera

__version__ = "0.1.0"
__all__ = ["Surfels", "PinholeCamera", "OpenCVCamera", "FisheyeCamera", "__version__"]
