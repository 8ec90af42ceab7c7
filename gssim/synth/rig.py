"""The sensor rig of a synthetic log: gssim sensors and their mounts T_ego_sensor."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gssim.sensors import CAMERA_MODELS, SpinningLidar
from gssim.synth.config import CameraSpec, LidarSpec, SynthConfig, camera_focal

# Camera (OpenCV: x right, y down, z forward) axes in the ego frame (x fwd, y left, z up).
R_EGO_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass
class RigSensor:
    """A mounted sensor: ``sensor`` (gssim camera or LiDAR), T_ego_sensor (4, 4) float64."""

    id: str
    kind: str
    sensor: object
    T_ego_sensor: np.ndarray
    spec: object


def yaw_pitch(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """(3, 3) rotation: yaw about ego z (left positive), then pitch down (positive)."""
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    Ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    return Rz @ Ry


def camera_mount(spec: CameraSpec) -> np.ndarray:
    """T_ego_camera (4, 4) of a camera spec."""
    T = np.eye(4)
    T[:3, :3] = yaw_pitch(spec.yaw_deg, spec.pitch_deg) @ R_EGO_CAM
    T[:3, 3] = spec.position
    return T


def build_camera(spec: CameraSpec):
    if spec.model not in CAMERA_MODELS:
        raise ValueError(f"camera {spec.id}: model {spec.model!r} unknown; expected one of {sorted(CAMERA_MODELS)}")
    f = camera_focal(spec)
    return CAMERA_MODELS[spec.model](spec.width, spec.height, f, f, spec.width / 2, spec.height / 2,
                                     distortion=list(spec.distortion), rolling_shutter_s=spec.rolling_shutter_s)


def build_lidar(spec: LidarSpec) -> SpinningLidar:
    return SpinningLidar(spec.elevations(), spec.azimuth_resolution_deg, min_range=spec.min_range,
                         max_range=spec.max_range, spin_hz=spec.spin_hz)


def build_rig(cfg: SynthConfig) -> list[RigSensor]:
    """Cameras then the LiDAR of ``cfg``."""
    rig = [RigSensor(c.id, "camera", build_camera(c), camera_mount(c), c) for c in cfg.cameras]
    if cfg.lidar is not None:
        T = np.eye(4)
        T[:3, 3] = cfg.lidar.position
        rig.append(RigSensor(cfg.lidar.id, "lidar", build_lidar(cfg.lidar), T, cfg.lidar))
    return rig
