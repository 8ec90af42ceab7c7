"""gssim: driving-scene sensor simulation with 2D Gaussian splatting."""
from gssim.core.surfels import Surfels
from gssim.render import CameraOutput, LidarOutput, render
from gssim.render.culling import SurfelChunks
from gssim.recon import Scene, load_scene
from gssim.sensors import FisheyeCamera, OpenCVCamera, PinholeCamera, SolidStateLidar, SpinningLidar

__version__ = "0.1.0"
__all__ = ["Surfels", "SurfelChunks", "render", "CameraOutput", "LidarOutput", "PinholeCamera", "OpenCVCamera",
           "FisheyeCamera", "SpinningLidar", "SolidStateLidar", "Scene", "load_scene", "__version__"]
