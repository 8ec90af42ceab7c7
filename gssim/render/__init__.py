"""Rendering: backend dispatch, autograd, and the torch reference."""
from gssim.render.api import CameraOutput, LidarOutput, render

__all__ = ["render", "CameraOutput", "LidarOutput"]
