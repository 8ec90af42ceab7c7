"""Sensors looking at an object: orbit poses, framing cameras and LiDARs, thumbnails.

Every view looks at the object's box centre (the object frame's origin) from a point on
a sphere that frames the object's bounding sphere; azimuth 0 looks at the object's
front (the eye on +x), elevation is above the horizon.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gssim.core.surfels import Surfels
from gssim.render import render
from gssim.sensors import PinholeCamera, SolidStateLidar

CAMERA_FOV_DEG = 50.0


def orbit_eye(radius: float, azimuth_deg: float, elevation_deg: float, fov_deg: float = CAMERA_FOV_DEG) -> np.ndarray:
    """(3,) eye on the orbit that frames a sphere of ``radius`` around the origin in ``fov_deg``."""
    distance = 1.05 * radius / math.sin(math.radians(fov_deg) / 2)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return distance * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


def look_at(eye: np.ndarray, target: np.ndarray, kind: str) -> np.ndarray:
    """T_world_sensor (4, 4) float64 at ``eye`` looking at ``target`` with z up: a camera
    (OpenCV: x right, y down, z forward) or a LiDAR (x forward, y left, z up)."""
    f = np.asarray(target, float) - np.asarray(eye, float)
    f /= np.linalg.norm(f)
    up = np.array([0.0, 0.0, 1.0]) if abs(f[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
    right = np.cross(f, up)
    right /= np.linalg.norm(right)
    T = np.eye(4)
    if kind == "camera":
        T[:3, :3] = np.stack([right, np.cross(f, right), f], 1)
    else:
        T[:3, :3] = np.stack([f, -right, np.cross(f, -right)], 1)
    T[:3, 3] = eye
    return T


def framing_camera(size: int, fov_deg: float = CAMERA_FOV_DEG) -> PinholeCamera:
    """A square pinhole camera of ``size`` pixels and horizontal field of view ``fov_deg``."""
    f = size / 2 / math.tan(math.radians(fov_deg) / 2)
    return PinholeCamera(size, size, f, f, size / 2, size / 2)


def framing_lidar(radius: float, distance: float, cells: int = 64) -> SolidStateLidar:
    """A flash LiDAR of cells x cells rays whose field of view just holds a sphere of
    ``radius`` seen from ``distance``."""
    half = math.degrees(math.asin(min(radius / distance, 0.99))) * 1.1
    res = round(2 * half / cells, 4)
    return SolidStateLidar(res * cells, res * cells, res, res, min_range=0.1,
                                 max_range=distance + 2 * radius)


def render_shaded(surfels: Surfels, radius: float, size: int = 128, azimuth_deg: float = 35.0,
                  elevation_deg: float = 25.0, background: float = 0.95) -> np.ndarray:
    """(size, size, 3) uint8 view of object-frame surfels (RGB features) from the front-left
    3/4 view, Lambert-shaded by the rendered normals (light from above, front, left)."""
    eye = orbit_eye(radius, azimuth_deg, elevation_deg)
    with torch.no_grad():
        out = render(surfels, framing_camera(size), look_at(eye, np.zeros(3), "camera"), backend="cpu")
    light = torch.tensor([0.5, 0.4, 0.77])
    light = light / light.norm()
    shade = 0.45 + 0.55 * (out.normal @ light).clamp(min=0)
    rgb = out.color * shade[..., None] + (1 - out.alpha)[..., None] * background
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
