"""KITTI-360 -> gssim log (``gssim convert --from kitti360 ROOT --scene SEQUENCE OUT``).

``ROOT`` is the KITTI-360 folder, ``SEQUENCE`` a sequence name such as
``2013_05_28_drive_0000_sync``.  Layout read (as on the KITTI-360 download page and in
``autonomousvision/kitti360Scripts``)::

    calibration/perspective.txt          P_rect_0X (3x4), R_rect_0X (3x3), S_rect_0X (w h)
    calibration/calib_cam_to_pose.txt    image_0X: 3x4 camera -> GPS/IMU "pose" frame
    calibration/calib_cam_to_velo.txt    3x4 (unrectified) image_00 camera -> Velodyne
    calibration/image_02.yaml, image_03.yaml   fisheye intrinsics, MEI unified model
    data_2d_raw/SEQ/image_00/timestamps.txt     the time reference of every frame
    data_2d_raw/SEQ/image_0{0,1}/data_rect/NNNNNNNNNN.png   rectified perspective images
    data_2d_raw/SEQ/image_0{2,3}/data_rgb/NNNNNNNNNN.png    fisheye images
    data_3d_raw/SEQ/velodyne_points/data/NNNNNNNNNN.bin     float32 x, y, z, reflectance
    data_3d_raw/SEQ/velodyne_points/timestamps.txt          (optional, only reported)
    data_poses/SEQ/poses.txt             frame index + 3x4 row-major T_world_imu
    data_poses/SEQ/cam0_to_world.txt     (optional) cross-checked against the camera 0 poses
    data_3d_bboxes/train/SEQ.xml         3D boxes (``train_full/`` is used when ``train/``
                                         lacks the sequence; no file: no actors)

Frames
    One log frame per line of ``poses.txt`` (frames without a pose are skipped, as the
    devkit does).  ``t`` is the ``image_00`` timestamp of the frame minus that of the first
    converted frame (a constant offset; the absolute start is kept in
    ``log.json["kitti360"]["time_origin"]``).  All sensors of a frame share that time:
    the cameras are triggered by the Velodyne when it faces forward; other cameras'
    timestamp differences are only reported.  A camera folder (or the Velodyne folder)
    that is absent altogether is left out with a warning (KITTI-360 is downloaded in
    parts); a missing image of a present camera is an error; a missing ``.bin`` of a
    present Velodyne leaves that frame without LiDAR (known gaps, e.g. drive 0002),
    with a warning counting them.

Frames and poses (KITTI-360 -> ours)
    * World: KITTI-360's world (Mercator metres from a fixed origin near Karlsruhe,
      x east, y north, z up) is kept as it is; it is right-handed with z up.
    * GPS/IMU "pose" frame: x forward, y right, z down (FRD; calib_cam_to_pose maps the
      camera's y-down axis to +z, and the devkit's convertOxtsToPose/postprocessPoses
      turns a z-up OXTS pose into it by T @ diag(1, -1, -1)).  Our ego frame is the IMU
      frame turned to x forward, y left, z up, same origin:
      ``T_world_ego = T_world_imu @ F`` with ``F = diag(1, -1, -1, 1)`` (F = F^-1), and for
      every sensor ``T_ego_sensor = F @ T_imu_sensor``.
    * Perspective cameras (image_00, image_01 -> ``cam_front_left``, ``cam_front_right``):
      the images in ``data_rect`` are rectified, so the camera frame is the rectified one:
      ``T_imu_cam = calib_cam_to_pose[image_0X] @ inv(R_rect_0X)`` (as the devkit's
      ``CameraPerspective``).  Camera axes are already OpenCV (x right, y down, z forward).
      Pinhole with fx, fy, cx, cy from ``P_rect_0X[:3, :3]``; ``P_rect_01[0, 3]`` (the
      stereo baseline) is not used: calib_cam_to_pose places the camera.
    * Fisheye cameras (image_02, image_03 -> ``cam_fisheye_left``, ``cam_fisheye_right``):
      ``T_imu_cam = calib_cam_to_pose[image_0X]`` (no rectification).  The MEI unified model
      (unit sphere, shifted by xi, radial k1, k2 and tangential p1, p2, then gamma1,
      gamma2, u0, v0) is not our equidistant fisheye; see "Fisheye fit" below.
    * Velodyne HDL-64E (``lidar_top``): the Velodyne frame is x forward, y left, z up
      (calib_cam_to_velo maps camera z to +x and camera y to -z).
      ``T_imu_velo = calib_cam_to_pose[image_00] @ inv(calib_cam_to_velo)`` (devkit
      ``Kitti360Viewer3DRaw.loadExtrinsics``), then the origin is moved up the spin axis
      by the estimated (upper-block) beam-origin height ``vo`` (see "LiDAR"):
      ``T_ego_lidar = F @ T_imu_velo @ Trans(0, 0, vo)``.
    * Pixel centres: KITTI/OpenCV put the centre of the top-left pixel at (0, 0), gssim at
      (0.5, 0.5), so cx = P_rect[0, 2] + 0.5, cy = P_rect[1, 2] + 0.5 (fisheye: u0, v0 +
      0.5 before the fit).
    * Rolling shutter: none; KITTI-360's perspective and fisheye cameras are global-shutter
      CCDs (``rolling_shutter_s = 0``).

Fisheye fit
    Our FisheyeCamera projects r = f * theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 +
    k4 theta^8) around (cx, cy).  The MEI pixel of every direction with theta up to the
    farthest image edge (about 100 degrees for KITTI-360) on a (theta, phi) grid is
    fitted by least squares in pixels over (f, f*k1..f*k4, cx, cy) with fx/fy fixed to
    gamma1/gamma2, under linear constraints that keep theta_d increasing up to
    theta = pi - 0.02 and reaching the image corners (our camera must invert it at every
    pixel, also in the dark corners outside the fisheye circle).  The tangential terms
    p1, p2 cannot be represented; the reported error includes them.  The maximum pixel
    error over the fitted field is logged and stored in
    ``log.json["kitti360"]["fisheye_fit_max_error_px"]``.  With the published KITTI-360
    calibration (1400 x 1400): image_02 1.21 px max (0.25 px rms), image_03 1.63 px max
    (0.38 px rms); without p1, p2 both would be about 0.79 px.  The largest errors are at the
    outer edge of the field (theta ~ 100 deg).

LiDAR
    The ``.bin`` holds float32 (x, y, z, reflectance) in the Velodyne frame, not
    motion-compensated, without ring index or per-point time.
    * Returns: rows that are not finite, at the origin (the usual "no return"
      placeholder), nearer than ``min_range`` (1 m) or farther than ``max_range`` (120 m)
      are dropped; reflectance (already in [0, 1]) is clipped to [0, 1].
    * Time: the HDL-64E spins clockwise (seen from above) at 10 Hz and the cameras fire
      when it faces forward; as in the devkit's ``curlVelodyneData`` (which moves a point
      by the fraction atan2(y, x) / 2 pi of the ego motion between frames), a point at
      azimuth ``az = atan2(y, x)`` was measured at ``t_frame - az / (2 pi * 10 Hz)``: the
      sweep starts and ends behind the car (az = +-180 deg) 50 ms before/after the frame
      time.  This matches our SpinningLidar with ``clockwise=True, azimuth_start_deg=180``.
    * Motion compensation: each point is moved into the sensor frame at the frame time,
      ``p' = T(t_frame)^-1 T(t_i) p`` with the ego poses interpolated between frames
      (linear translation, slerp; constant velocity beyond the ends) (common.motion_compensate).
    * Beams: recovered from elevation (the ``.bin`` order is not relied on).  If the
      HDL-64E's per-laser vertical offsets (typically 0.1-0.2 m) are in the points, a near
      point's elevation seen from the Velodyne origin is off by several beam spacings, so
      the model is: each block of 32 lasers (upper block = the 32 highest beams) has its
      own origin height ``h_k`` on the spin axis, and ``z = rho tan(el_b) + h_k``.  The 64
      elevations and the two heights are fitted to the returns of up to 20 scans spread
      over the sequence (``fit_beam_model``: three starts -- gap clustering, the nominal
      HDL-64E table shifted and stretched, per block -- each refined by alternating
      nearest-beam assignment with trimmed least squares; the best wins).  Beam index =
      row of that table (top beam first); it is not the HDL-64E laser id.  The log's
      LiDAR origin is the upper block's beam origin (``vo = h_0``, stored as
      ``log.json["kitti360"]["lidar_beam_origin_m"]``, both heights as
      ``lidar_block_origins_m``); for the lower block our single-origin ray model is off by
      ``h_1 - h_0`` (a few cm) in height.  The share of returns farther than 1/3 beam
      spacing from their beam is logged.

Boxes (data_3d_bboxes XML, OpenCV FileStorage)
    Each object with a ``transform`` (4x4: rotation times scale, translation) of a unit
    cube (``vertices`` at +-0.5, in the world frame) is one box sample; ``timestamp`` is
    -1 for a static object, else its frame index.  Centre = transform @ mean(vertices);
    size along the object axes = column norms of transform[:3, :3] times the vertex
    extents (length along local x, the heading of the devkit's ``_heading`` arrow, width
    along y, height along z); rotation = columns divided by their norms, orthonormalised.
    A mirrored transform (det < 0) has its y axis flipped and a box whose local z points
    down is turned by 180 deg about its x axis (the same box; x forward, z up kept).
    Objects are grouped by (semanticId, instanceId) (devkit ``local2global``); only
    movable classes become actors (car, truck, bus, caravan, trailer, train, motorcycle,
    bicycle, person, rider, unknown vehicle; buildings, poles, signs ... are scene).
    Dynamic objects get one pose per annotated frame (at that frame's image_00 time,
    posed or not; the size is the median of the samples'); static ones a stationary
    track (two equal poses) over their [start_frame, end_frame].  Actor id:
    ``<label>_<instanceId>`` (e.g. ``car_4``); the source ids are kept in the actor's
    ``kitti360`` entry.
"""
from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gssim.data.convert.common import (ConvertError, beams_from_elevation, elevations_deg, lidar_points,
                                       map_class, motion_compensate, pose_matrix, progress_bar, sensor_track,
                                       read_image, source_dir, source_file)
from gssim.data.poses import PoseTrack
from gssim.data.writer import LogWriter
from gssim.sensors.camera import FisheyeCamera, PinholeCamera
from gssim.sensors.limits import SensorConfigError
from gssim.sensors.lidar import SpinningLidar, _load_presets

logger = logging.getLogger(__name__)

DATASET = "kitti360"
# GPS/IMU frame (x forward, y right, z down) <-> ego frame (x forward, y left, z up).
F_IMU_EGO = np.diag([1.0, -1.0, -1.0, 1.0])
# (KITTI-360 camera, our sensor id, image folder, model)
CAMERAS = (("image_00", "cam_front_left", "data_rect", "perspective"),
           ("image_01", "cam_front_right", "data_rect", "perspective"),
           ("image_02", "cam_fisheye_left", "data_rgb", "fisheye"),
           ("image_03", "cam_fisheye_right", "data_rgb", "fisheye"))
LIDAR_ID = "lidar_top"
SPIN_HZ = 10.0
MIN_RANGE, MAX_RANGE = 1.0, 120.0
# Scans sampled to fit the beam table.
BEAM_TABLE_SCANS = 20

# KITTI-360 label ids as stored in the XML ``semanticId`` (``kittiId`` in the devkit's
# helpers/labels.py) -> label name.
KITTI_ID_NAMES = {
    1: "road", 2: "parking", 3: "sidewalk", 4: "terrain", 5: "vegetation", 6: "gate", 7: "wall", 8: "fence",
    9: "sky", 10: "rail track", 11: "building", 12: "garage", 13: "car", 14: "truck", 15: "trailer",
    16: "caravan", 17: "motorcycle", 18: "bicycle", 19: "person", 20: "rider", 21: "pole", 22: "smallpole",
    23: "traffic light", 24: "traffic sign", 25: "lamp", 26: "trash bin", 27: "vending machine", 28: "box",
    29: "stop", 30: "guard rail", 31: "bridge", 32: "tunnel", 33: "train", 34: "bus",
    35: "unknown construction", 36: "unknown vehicle", 37: "unknown object",
}
# Label text spellings of the XML ``label`` field that differ from the label names.
LABEL_TEXT_NAMES = {"unknownVehicle": "unknown vehicle", "unknownObject": "unknown object",
                    "unknownConstruction": "unknown construction", "trafficLight": "traffic light",
                    "trafficSign": "traffic sign", "trashbin": "trash bin", "trashBin": "trash bin",
                    "vendingmachine": "vending machine", "guardrail": "guard rail", "railtrack": "rail track"}
# Movable KITTI-360 classes -> our classes (everything else is part of the scene).
CLASS_TABLE = {"car": "car", "truck": "truck", "bus": "bus", "caravan": "trailer", "trailer": "trailer",
               "train": "other", "motorcycle": "motorcycle", "bicycle": "bicycle", "person": "pedestrian",
               "rider": "cyclist", "unknown vehicle": "other"}


# --- small parsers -----------------------------------------------------------------------

def _read_text(root: Path, rel: str, what: str) -> str:
    path = source_file(DATASET, root, rel, what)
    try:
        return path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvertError(DATASET, rel, f"cannot read {what}: {exc}") from None


def _floats(text: str, rel: str, field: str, count: int | None) -> np.ndarray:
    try:
        vals = np.array([float(v) for v in text.split()], np.float64)
    except ValueError:
        raise ConvertError(DATASET, rel, f"expected numbers, got {text.strip()[:80]!r}", field) from None
    if count is not None and vals.size != count:
        raise ConvertError(DATASET, rel, f"expected {count} numbers, got {vals.size}", field)
    if not np.all(np.isfinite(vals)):
        raise ConvertError(DATASET, rel, "non-finite number", field)
    return vals


def _key_values(text: str) -> dict[str, str]:
    """``KEY: values`` lines (perspective.txt, calib_cam_to_pose.txt)."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = rest
    return out


def _rotation(R: np.ndarray, rel: str, field: str, tol: float = 1e-2) -> np.ndarray:
    """The rotation nearest to R (printed calibrations carry ~1e-7 rounding); an error
    naming the field when R is not close to a rotation at all."""
    U, _, Vt = np.linalg.svd(R)
    Q = U @ Vt
    if np.linalg.det(Q) < 0 or np.abs(Q - R).max() > tol:
        raise ConvertError(DATASET, rel, "is not a rotation matrix", field)
    return Q


def _rigid(M34: np.ndarray, rel: str, field: str) -> np.ndarray:
    M34 = M34.reshape(3, 4)
    return pose_matrix(_rotation(M34[:, :3], rel, field), M34[:, 3])


def _read_opencv_yaml(text: str, rel: str) -> dict:
    """The subset of OpenCV's ``%YAML:1.0`` files the fisheye calibration uses: nested
    ``key: scalar`` / ``key:`` mappings by indentation (no lists, no quoting)."""
    root: dict = {}
    stack = [(-1, root)]
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("%") or line.strip() == "---":
            continue
        indent = len(line) - len(line.lstrip())
        key, sep, value = line.strip().partition(":")
        if not sep:
            raise ConvertError(DATASET, rel, f"line {n}: expected 'key: value', got {line.strip()[:60]!r}")
        while stack and indent <= stack[-1][0]:
            stack.pop()
        if not stack:
            raise ConvertError(DATASET, rel, f"line {n}: bad indentation")
        parent = stack[-1][1]
        value = value.strip()
        if value:
            parent[key.strip()] = value.strip("'\"")
        else:
            child: dict = {}
            parent[key.strip()] = child
            stack.append((indent, child))
    return root


def _yaml_number(d: dict, path: str, rel: str) -> float:
    node = d
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConvertError(DATASET, rel, "missing field", path)
        node = node[part]
    try:
        v = float(node)
    except (TypeError, ValueError):
        raise ConvertError(DATASET, rel, f"expected a number, got {node!r}", path) from None
    if not math.isfinite(v):
        raise ConvertError(DATASET, rel, "non-finite number", path)
    return v


def _read_timestamps(root: Path, rel: str) -> list[np.datetime64 | None]:
    """KITTI timestamps (``2013-05-28 08:46:02.939519704`` per line, line k = frame k) as
    datetime64[ns]; blank lines are None."""
    out: list[np.datetime64 | None] = []
    for n, line in enumerate(_read_text(root, rel, "timestamps file").splitlines()):
        s = line.strip()
        if not s:
            out.append(None)
            continue
        try:
            out.append(np.datetime64(s.replace(" ", "T"), "ns"))
        except ValueError:
            raise ConvertError(DATASET, rel, f"line {n + 1} (frame {n}): not a timestamp: {s[:60]!r}") from None
    return out


# --- calibration -------------------------------------------------------------------------

@dataclass
class MeiCalibration:
    """KITTI-360 fisheye intrinsics (MEI unified model), pixel convention of the source."""

    width: int
    height: int
    xi: float
    k1: float
    k2: float
    p1: float
    p2: float
    gamma1: float
    gamma2: float
    u0: float
    v0: float

    def project(self, dirs: np.ndarray) -> np.ndarray:
        """Source pixels (M, 2) of camera-frame directions (M, 3): unit sphere, shift by
        xi, radial-tangential distortion, then gamma, u0, v0 (Mei & Rives 2007)."""
        d = np.asarray(dirs, np.float64)
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        mx, my = d[:, 0] / (d[:, 2] + self.xi), d[:, 1] / (d[:, 2] + self.xi)
        r2 = mx * mx + my * my
        rad = self.k1 * r2 + self.k2 * r2 * r2
        xd = mx + mx * rad + 2 * self.p1 * mx * my + self.p2 * (r2 + 2 * mx * mx)
        yd = my + my * rad + self.p1 * (r2 + 2 * my * my) + 2 * self.p2 * mx * my
        return np.stack([self.gamma1 * xd + self.u0, self.gamma2 * yd + self.v0], -1)

    def radial(self, theta: np.ndarray) -> np.ndarray:
        """Normalised distorted radius of the radial part at angle theta off the axis."""
        rho = np.sin(theta) / (np.cos(theta) + self.xi)
        r2 = rho * rho
        return rho * (1 + self.k1 * r2 + self.k2 * r2 * r2)


@dataclass
class FisheyeFit:
    """Our equidistant FisheyeCamera parameters fitted to a MEI camera (gssim pixels)."""

    fx: float
    fy: float
    cx: float
    cy: float
    distortion: list[float]
    max_error_px: float
    rms_error_px: float
    theta_max_deg: float


def fit_mei_fisheye(mei: MeiCalibration, n_theta: int = 120, n_phi: int = 48) -> FisheyeFit:
    """Least-squares fit of our equidistant fisheye [k1..k4] to a MEI camera over its
    field of view up to the farthest image edge (see the module docstring).  Errors are
    measured on a denser grid, tangential terms included."""
    from scipy.optimize import minimize

    # gssim pixel coordinates: the source's (0, 0) is the centre of the top-left pixel.
    u0, v0 = mei.u0 + 0.5, mei.v0 + 0.5
    W, H = mei.width, mei.height
    reach_u, reach_v = max(u0, W - u0), max(v0, H - v0)
    edge = max(reach_u / mei.gamma1, reach_v / mei.gamma2)
    corner = math.hypot(reach_u / mei.gamma1, reach_v / mei.gamma2) + 2.0 / min(mei.gamma1, mei.gamma2)
    # The MEI radius grows with theta up to cos(theta) = -1/xi (the sphere's silhouette).
    th_turn = math.acos(max(-1.0, -1.0 / mei.xi)) if mei.xi > 1 else math.pi - 1e-3
    th = np.linspace(0.0, th_turn * 0.999, 20000)
    rd = mei.radial(th)
    inc = np.flatnonzero(np.diff(rd) <= 0)
    last = int(inc[0]) if len(inc) else len(th) - 1
    th_fit = float(th[min(int(np.searchsorted(rd[:last + 1], edge)), last)])

    def dirs_of(theta, phi):
        return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)

    TH, PH = np.meshgrid(np.linspace(1e-4, th_fit, n_theta), np.linspace(-np.pi, np.pi, n_phi, endpoint=False))
    TH, PH = TH.ravel(), PH.ravel()
    ref = mei.project(dirs_of(TH, PH)) + 0.5
    powers = np.stack([TH, TH ** 3, TH ** 5, TH ** 7, TH ** 9], 1)
    ones, zeros = np.ones((len(TH), 1)), np.zeros((len(TH), 1))
    A = np.concatenate([np.concatenate([mei.gamma1 * powers * np.cos(PH)[:, None], ones, zeros], 1),
                        np.concatenate([mei.gamma2 * powers * np.sin(PH)[:, None], zeros, ones], 1)])
    b = np.concatenate([ref[:, 0], ref[:, 1]])
    scale = np.abs(A).max(0)
    An = A / scale
    Q, q = An.T @ An, An.T @ b
    c0 = np.linalg.lstsq(An, b, rcond=None)[0]
    g = max(mei.gamma1, mei.gamma2)
    th_end = math.pi - 0.02
    qd = np.linspace(0.0, th_end, 120)
    zero = np.zeros_like(qd)
    D = np.stack([np.ones_like(qd), 3 * qd ** 2, 5 * qd ** 4, 7 * qd ** 6, 9 * qd ** 8, zero, zero], 1) * g / scale
    E = np.array([[th_end, th_end ** 3, th_end ** 5, th_end ** 7, th_end ** 9, 0.0, 0.0]]) * g / scale
    cons = [{"type": "ineq", "fun": lambda c: D @ c - 0.015 * g, "jac": lambda c: D},
            {"type": "ineq", "fun": lambda c: E @ c - corner * g, "jac": lambda c: E}]
    res = minimize(lambda c: 0.5 * c @ Q @ c - q @ c, c0, jac=lambda c: Q @ c - q, constraints=cons,
                   method="SLSQP", options={"maxiter": 300, "ftol": 1e-10})
    c = res.x / scale
    f = float(c[0])
    k = [float(v / f) for v in c[1:5]]
    fx, fy, cx, cy = mei.gamma1 * f, mei.gamma2 * f, float(c[5]), float(c[6])

    def theta_d(t):
        t2 = t * t
        return t * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3]))))

    vals = theta_d(np.linspace(0.0, th_end, 4000))
    if not (np.all(np.diff(vals) > 0) and f * vals[-1] >= corner - 1e-9):
        raise ConvertError(DATASET, "calibration", f"cannot fit an invertible equidistant fisheye to the MEI camera "
                                                   f"(xi={mei.xi:g}, {W}x{H}): {res.message}")
    TH, PH = np.meshgrid(np.linspace(0.0, th_fit, 300), np.linspace(-np.pi, np.pi, 181))
    dirs = dirs_of(TH.ravel(), PH.ravel())
    ref = mei.project(dirs) + 0.5
    r = np.hypot(dirs[:, 0], dirs[:, 1])
    sc = np.where(r > 1e-12, theta_d(np.arctan2(r, dirs[:, 2])) / np.maximum(r, 1e-12), 0.0)
    ours = np.stack([fx * dirs[:, 0] * sc + cx, fy * dirs[:, 1] * sc + cy], -1)
    err = np.linalg.norm(ours - ref, axis=1)
    return FisheyeFit(fx, fy, cx, cy, k, float(err.max()), float(np.sqrt(np.mean(err ** 2))),
                      math.degrees(th_fit))


@dataclass
class Calibration:
    cam_to_pose: dict[str, np.ndarray]          # image_0X -> T_imu_cam (unrectified), (4, 4)
    velo_from_cam0: np.ndarray | None           # T_velo_cam0 (4, 4)
    perspective: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]]  # K, R_rect, (w, h)
    fisheye: dict[str, MeiCalibration]


def _read_calibration(root: Path, cameras: list[str], lidar: bool) -> Calibration:
    rel = "calibration/calib_cam_to_pose.txt"
    kv = _key_values(_read_text(root, rel, "camera-to-pose calibration"))
    cam_to_pose = {}
    for cam in cameras + (["image_00"] if lidar and "image_00" not in cameras else []):
        if cam not in kv:
            raise ConvertError(DATASET, rel, "missing camera", cam)
        cam_to_pose[cam] = _rigid(_floats(kv[cam], rel, cam, 12), rel, cam)
    velo_from_cam0 = None
    if lidar:
        rel_v = "calibration/calib_cam_to_velo.txt"
        velo_from_cam0 = _rigid(_floats(_read_text(root, rel_v, "camera-to-Velodyne calibration"), rel_v,
                                        "3x4 matrix", 12), rel_v, "3x4 matrix")
    perspective = {}
    persp_cams = [c for c in cameras if c in ("image_00", "image_01")]
    if persp_cams:
        rel_p = "calibration/perspective.txt"
        kv = _key_values(_read_text(root, rel_p, "perspective camera calibration"))
        for cam in persp_cams:
            n = cam[-2:]
            for key in (f"P_rect_{n}", f"R_rect_{n}", f"S_rect_{n}"):
                if key not in kv:
                    raise ConvertError(DATASET, rel_p, "missing field", key)
            P = _floats(kv[f"P_rect_{n}"], rel_p, f"P_rect_{n}", 12).reshape(3, 4)
            R = _rotation(_floats(kv[f"R_rect_{n}"], rel_p, f"R_rect_{n}", 9).reshape(3, 3), rel_p, f"R_rect_{n}")
            w, h = _floats(kv[f"S_rect_{n}"], rel_p, f"S_rect_{n}", 2)
            if P[0, 0] <= 0 or P[1, 1] <= 0 or abs(P[2, 2] - 1) > 1e-6 or w < 1 or h < 1:
                raise ConvertError(DATASET, rel_p, "not a rectified camera (fx, fy > 0, P[2, 2] = 1, size > 0)",
                                   f"P_rect_{n}")
            perspective[cam] = (P[:3, :3], R, (int(round(w)), int(round(h))))
    fisheye = {}
    for cam in (c for c in cameras if c in ("image_02", "image_03")):
        rel_y = f"calibration/{cam}.yaml"
        d = _read_opencv_yaml(_read_text(root, rel_y, "fisheye calibration"), rel_y)
        model = d.get("model_type", "MEI")
        if str(model).upper() != "MEI":
            raise ConvertError(DATASET, rel_y, f"model {model!r} is not supported (expected MEI)", "model_type")
        vals = {p: _yaml_number(d, p, rel_y) for p in (
            "image_width", "image_height", "mirror_parameters.xi", "distortion_parameters.k1",
            "distortion_parameters.k2", "distortion_parameters.p1", "distortion_parameters.p2",
            "projection_parameters.gamma1", "projection_parameters.gamma2", "projection_parameters.u0",
            "projection_parameters.v0")}
        mei = MeiCalibration(int(vals["image_width"]), int(vals["image_height"]), *(vals[p] for p in list(vals)[2:]))
        if mei.width < 1 or mei.height < 1 or mei.gamma1 <= 0 or mei.gamma2 <= 0 or mei.xi < 0:
            raise ConvertError(DATASET, rel_y, "image size, gamma1, gamma2 must be > 0 and xi >= 0")
        fisheye[cam] = mei
    return Calibration(cam_to_pose, velo_from_cam0, perspective, fisheye)


# --- poses, LiDAR, boxes ---------------------------------------------------------------

def _read_poses(root: Path, rel: str) -> dict[int, np.ndarray]:
    """``poses.txt``: frame index and a row-major 3x4 T_world_imu per line."""
    poses: dict[int, np.ndarray] = {}
    for n, line in enumerate(_read_text(root, rel, "pose file").splitlines(), 1):
        if not line.strip():
            continue
        vals = _floats(line, rel, f"line {n}", 13)
        frame = int(vals[0])
        if frame != vals[0] or frame < 0:
            raise ConvertError(DATASET, rel, f"frame index {vals[0]:g} is not a non-negative integer", f"line {n}")
        if frame in poses:
            raise ConvertError(DATASET, rel, f"frame {frame} listed twice", f"line {n}")
        poses[frame] = _rigid(vals[1:], rel, f"line {n}")
    if not poses:
        raise ConvertError(DATASET, rel, "no poses")
    return poses


def read_velodyne(path: Path, rel: str) -> np.ndarray:
    """(M, 4) float32 x, y, z, reflectance of a KITTI ``.bin`` scan."""
    size = path.stat().st_size
    if size % 16:
        raise ConvertError(DATASET, rel, f"size {size} bytes is not a whole number of 16-byte points "
                                         f"(float32 x, y, z, reflectance)")
    return np.fromfile(path, dtype="<f4").reshape(-1, 4)


def _valid_returns(xyz: np.ndarray) -> np.ndarray:
    rng = np.linalg.norm(xyz, axis=1)
    return np.isfinite(xyz).all(1) & (rng >= MIN_RANGE) & (rng <= MAX_RANGE)


def _height_by_sharpness(xyz: np.ndarray, grid=np.arange(-0.30, 0.3001, 0.005)) -> float:
    """The beam-origin height (m) on the spin axis that makes the elevation histogram of
    ``xyz`` sharpest (the sum of squared counts of 0.02-degree bins is largest)."""
    if len(xyz) == 0:
        return 0.0
    rho = np.hypot(xyz[:, 0], xyz[:, 1])
    bins = np.arange(-35.0, 15.0, 0.02)
    scores = [np.sum(np.histogram(np.degrees(np.arctan2(xyz[:, 2] - h, rho)), bins)[0].astype(np.float64) ** 2)
              for h in grid]
    return float(grid[int(np.argmax(scores))])


def _gap_clusters(el: np.ndarray, n: int) -> np.ndarray | None:
    """Centres (descending) of ``n`` clusters of elevations (deg) split at the n-1 widest
    gaps between the dense ones (sparse 0.02-degree bins, i.e. noise and stray returns, are
    ignored), or None when there are too few distinct values."""
    if n == 1:
        return np.array([np.median(el)]) if len(el) else None
    bins = np.floor(el / 0.02).astype(np.int64)
    _, inv, counts = np.unique(bins, return_inverse=True, return_counts=True)
    dense = counts[inv] >= max(2, 2e-4 * len(el))
    u = np.unique(np.round(el[dense], 4))
    if len(u) < n:
        return None
    cuts = np.sort(np.argsort(np.diff(u))[-(n - 1):]) + 1
    return np.array([np.median(c) for c in np.split(u, cuts)])[::-1]


def hdl64_blocks(nominal: np.ndarray) -> np.ndarray:
    """Block (0 upper, 1 lower) of each beam of an HDL-64E table: the 32 highest beams are
    the upper block's lasers."""
    block = np.zeros(len(nominal), np.int64)
    block[np.argsort(-np.asarray(nominal))[len(nominal) // 2:]] = 1
    return block


@dataclass
class BeamModel:
    """A spinning LiDAR's beams: elevations (deg, (B,), row order), the block of each beam
    (B,) and the height (m) of each block's origin on the spin axis (K,)."""

    elevations_deg: np.ndarray
    block: np.ndarray
    heights: np.ndarray

    def spacing(self) -> np.ndarray:
        """(B,) the local elevation spacing (deg) at each beam."""
        srt = np.sort(self.elevations_deg)
        gaps = np.diff(srt)
        return np.interp(self.elevations_deg, (srt[1:] + srt[:-1]) / 2, gaps) if len(gaps) else np.ones(1)

    def assign(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(beam (M,), residual (M,)) of points (M, 3) in the Velodyne frame: the nearest beam
        in elevation seen from its block's origin, and the miss in beam spacings."""
        el_table = np.asarray(self.elevations_deg, np.float64)
        spacing = self.spacing()
        beam = np.zeros(len(xyz), np.int64)
        resid = np.full(len(xyz), np.inf)
        for k, h in enumerate(self.heights):
            rows = np.flatnonzero(self.block == k)
            q = xyz - [0.0, 0.0, h]
            b = rows[beams_from_elevation(q, el_table[rows])]
            r = np.abs(elevations_deg(q) - el_table[b]) / spacing[b]
            better = r < resid
            beam[better], resid[better] = b[better], r[better]
        return beam, resid


def fit_beam_model(xyz: np.ndarray, nominal: np.ndarray, block: np.ndarray, iterations: int = 30,
                   max_points: int = 200_000) -> BeamModel:
    """Beam elevations (row order of ``nominal``, top first) and each block's origin height,
    fitted to Velodyne-frame points (M, 3).  Two starts: (a) per block, the height of the
    sharpest elevation histogram and its beams' clusters split at the widest gaps; (b) the
    nominal table shifted and stretched to put the most points near a beam; (c) that, each
    block shifted and stretched on its own.  From each,
    alternate assignment (``BeamModel.assign``) with the least-squares fit of
    z = rho tan(el_b) + h_block, leaving out points that miss their beam by more than 0.4
    spacings (stray returns); the fit with the most points near a beam wins."""
    xyz = np.asarray(xyz, np.float64)
    nominal = np.asarray(nominal, np.float64)
    block = np.asarray(block, np.int64)
    n_blocks = int(block.max()) + 1
    rho = np.hypot(xyz[:, 0], xyz[:, 1])
    xyz, rho = xyz[rho > 0.5], rho[rho > 0.5]
    if len(xyz) > max_points:
        pick = np.random.default_rng(0).choice(len(xyz), max_points, replace=False)
        xyz, rho = xyz[pick], rho[pick]
    table = nominal.copy()
    heights = np.zeros(n_blocks)
    if len(xyz) == 0:
        return BeamModel(table, block, heights)
    # Start (a): per block (its points by elevation, split midway between the blocks' nominal
    # beams) the height of the sharpest histogram and the beams' clusters split at the widest gaps.
    el0 = elevations_deg(xyz)
    gap_table, gap_ok = nominal.copy(), True
    for k in range(n_blocks):
        rows = np.flatnonzero(block == k)
        rows = rows[np.argsort(-nominal[rows])]
        above = nominal[block < k].min() if (block < k).any() else np.inf
        below = nominal[block > k].max() if (block > k).any() else -np.inf
        hi_cut = (nominal[rows].max() + above) / 2 if np.isfinite(above) else np.inf
        lo_cut = (nominal[rows].min() + below) / 2 if np.isfinite(below) else -np.inf
        mine = (el0 < hi_cut) & (el0 >= lo_cut)
        heights[k] = _height_by_sharpness(xyz[mine])
        init = _gap_clusters(np.degrees(np.arctan2(xyz[mine, 2] - heights[k], rho[mine])), len(rows))
        if init is not None and np.all(np.diff(init) < 0):
            gap_table[rows] = init
        else:
            gap_ok = False
    # Start (b): the nominal table moved by the offset and stretch that put most points near a beam.
    probe = xyz if len(xyz) <= 20_000 else xyz[np.random.default_rng(1).choice(len(xyz), 20_000, replace=False)]
    top = nominal.max()
    best, affine = -1.0, nominal
    for off in np.arange(-1.0, 1.0001, 0.05):
        for stretch in np.arange(-0.04, 0.0401, 0.01):
            cand = nominal + off + stretch * (nominal - top)
            score = float(np.mean(BeamModel(cand, block, heights).assign(probe)[1] < 0.25))
            if score > best:
                best, affine = score, cand
    # Start (c): from (b), each block moved and stretched on its own (blocks drift apart).
    per_block = affine.copy()
    for k in range(n_blocks):
        rows = block == k
        top_k = per_block[rows].max()
        best_k, keep = -1.0, per_block[rows].copy()
        for off in np.arange(-0.5, 0.5001, 0.05):
            for stretch in np.arange(-0.03, 0.0301, 0.01):
                cand = per_block.copy()
                cand[rows] = keep + off + stretch * (keep - top_k)
                if np.any(np.diff(cand[np.argsort(-nominal)]) >= 0):
                    continue
                score = float(np.mean(BeamModel(cand, block, heights).assign(probe)[1] < 0.25))
                if score > best_k:
                    best_k, per_block[rows] = score, cand[rows]
    starts = [affine, per_block] + ([gap_table] if gap_ok else [])
    fits = [_refine_beams(BeamModel(t, block, heights.copy()), xyz, rho, nominal, iterations) for t in starts]
    scores = [float(np.mean(m.assign(xyz)[1] < 0.25)) for m in fits]
    return fits[int(np.argmax(scores))]


def _refine_beams(model: BeamModel, xyz: np.ndarray, rho: np.ndarray, nominal: np.ndarray,
                  iterations: int) -> BeamModel:
    """Alternate ``model.assign`` with the trimmed least-squares fit of
    z = rho tan(el_b) + h_block (see ``fit_beam_model``)."""
    block = model.block
    n_blocks = len(model.heights)
    order = np.argsort(-nominal)
    inv_rho_all, slope_all = 1.0 / rho, xyz[:, 2] / rho
    B = len(model.elevations_deg)
    for _ in range(iterations):
        beam, resid = model.assign(xyz)
        near = resid < 0.4
        beam, inv_rho, slope = beam[near], inv_rho_all[near], slope_all[near]
        counts = np.bincount(beam, minlength=B).astype(np.float64)
        used = counts > 0
        lut_s, lut_i = np.zeros(B), np.zeros(B)
        lut_s[used] = np.bincount(beam, slope, B)[used] / counts[used]
        lut_i[used] = np.bincount(beam, inv_rho, B)[used] / counts[used]
        a, c = slope - lut_s[beam], inv_rho - lut_i[beam]
        kb = block[beam]
        new_h = np.array([np.clip(np.sum((a * c)[kb == k]) / (np.sum((c * c)[kb == k]) + 1e-9), -0.5, 0.5)
                          for k in range(n_blocks)])
        tan_el = np.bincount(beam, slope - new_h[kb] * inv_rho, B)
        new = model.elevations_deg.copy()
        new[used] = np.degrees(np.arctan(tan_el[used] / counts[used]))
        if (~used).any():  # beams without points: keep the spacing of the current table to fitted neighbours
            idx = np.flatnonzero(used)
            shift = np.interp(np.arange(B), idx, new[idx] - model.elevations_deg[idx])
            new[~used] = model.elevations_deg[~used] + shift[~used]
        if np.any(np.diff(new[order]) >= 0):  # a degenerate fit: keep the last good model
            break
        done = np.abs(new - model.elevations_deg).max() < 1e-9 and np.abs(new_h - model.heights).max() < 1e-9
        model = BeamModel(new, block, new_h)
        if done:
            break
    return model


@dataclass
class BoxSample:
    key: tuple[int, int]      # (semanticId, instanceId)
    name: str                 # KITTI-360 label name
    frame: int                # -1 static
    start_frame: int
    end_frame: int
    T_world_object: np.ndarray
    size: np.ndarray


def _xml_text(node: ET.Element, key: str, rel: str, where: str) -> str:
    child = node.find(key)
    if child is None or child.text is None or not child.text.strip():
        raise ConvertError(DATASET, rel, "missing field", f"{where}.{key}")
    return child.text.strip()


def _xml_int(node: ET.Element, key: str, rel: str, where: str) -> int:
    text = _xml_text(node, key, rel, where)
    try:
        return int(text)
    except ValueError:
        raise ConvertError(DATASET, rel, f"expected an integer, got {text[:40]!r}", f"{where}.{key}") from None


def _xml_matrix(node: ET.Element, key: str, rel: str, where: str) -> np.ndarray:
    m = node.find(key)
    if m is None:
        raise ConvertError(DATASET, rel, "missing field", f"{where}.{key}")
    rows = _xml_int(m, "rows", rel, f"{where}.{key}")
    cols = _xml_int(m, "cols", rel, f"{where}.{key}")
    data = _floats(_xml_text(m, "data", rel, f"{where}.{key}"), rel, f"{where}.{key}.data", rows * cols)
    return data.reshape(rows, cols)


def box_from_transform(M: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(T_world_object (4, 4), size (3,) = length, width, height, mirrored) of a KITTI-360
    box: ``M`` maps the object's ``vertices`` (8, 3) (a cube, +-0.5) to the world."""
    A, t = M[:3, :3], M[:3, 3]
    scale = np.linalg.norm(A, axis=0)
    if np.any(scale <= 1e-9):
        raise ValueError("degenerate transform (a zero column)")
    R = A / scale
    U, _, Vt = np.linalg.svd(R)
    R = U @ Vt                                # nearest orthogonal matrix (annotation rounding)
    mirrored = bool(np.linalg.det(R) < 0)
    if mirrored:                              # the same box with its y axis flipped
        R[:, 1] = -R[:, 1]
    if R[2, 2] < 0:                           # z down: turn 180 deg about x (same box)
        R[:, 1], R[:, 2] = -R[:, 1], -R[:, 2]
    extent = vertices.max(0) - vertices.min(0)
    centre_local = (vertices.max(0) + vertices.min(0)) / 2
    size = scale * extent
    centre = A @ centre_local + t
    return pose_matrix(R, centre), size, mirrored


def _read_boxes(root: Path, seq: str) -> tuple[str | None, list[BoxSample], dict[str, int]]:
    rel = None
    for split in ("train", "train_full"):
        cand = f"data_3d_bboxes/{split}/{seq}.xml"
        if (root / cand).is_file():
            rel = cand
            break
    if rel is None:
        return None, [], {}
    path = source_file(DATASET, root, rel, "3D box annotation")
    try:
        tree = ET.parse(path)
    except (ET.ParseError, OSError) as exc:
        raise ConvertError(DATASET, rel, f"cannot parse the XML: {exc}") from None
    samples: list[BoxSample] = []
    skipped: dict[str, int] = {}
    n_mirrored = 0
    for n, node in enumerate(tree.getroot()):
        if node.find("transform") is None:  # not a box (the devkit skips these too)
            continue
        where = f"{node.tag}[{n}]"
        if node.find("semanticId") is not None:
            kid = _xml_int(node, "semanticId", rel, where)
            name = KITTI_ID_NAMES.get(kid, f"kitti id {kid}")
        else:
            label = _xml_text(node, "label", rel, where)
            name = LABEL_TEXT_NAMES.get(label, label)
            kid = next((k for k, v in KITTI_ID_NAMES.items() if v == name), -1)
        if name not in CLASS_TABLE:
            skipped[name] = skipped.get(name, 0) + 1
            continue
        instance = _xml_int(node, "instanceId", rel, where)
        frame = _xml_int(node, "timestamp", rel, where)
        start, end = _xml_int(node, "start_frame", rel, where), _xml_int(node, "end_frame", rel, where)
        M = _xml_matrix(node, "transform", rel, where)
        verts = _xml_matrix(node, "vertices", rel, where)
        if M.shape != (4, 4) or verts.shape[1:] != (3,) or len(verts) < 2:
            raise ConvertError(DATASET, rel, f"expected a 4x4 transform and (N, 3) vertices, got {M.shape} and "
                                             f"{verts.shape}", where)
        try:
            T, size, mirrored = box_from_transform(M, verts)
        except ValueError as exc:
            raise ConvertError(DATASET, rel, str(exc), f"{where}.transform") from None
        n_mirrored += mirrored
        samples.append(BoxSample((kid, instance), name, frame, start, end, T, size))
    if n_mirrored:
        logger.warning("%s: %d boxes have a mirrored transform (det < 0); their y axis was flipped", rel, n_mirrored)
    return rel, samples, skipped


# --- the converter ------------------------------------------------------------------------

def _seconds(stamps: list, index: int, origin: np.datetime64) -> float | None:
    if not 0 <= index < len(stamps) or stamps[index] is None:
        return None
    return float((stamps[index] - origin) / np.timedelta64(1, "ns")) * 1e-9


def convert(source, scene: str, out, progress: bool = True) -> Path:
    """Convert KITTI-360 sequence ``scene`` under ``source`` into the log folder ``out``;
    returns ``out`` (see the module docstring for every convention)."""
    root = Path(source)
    if not root.is_dir():
        raise ConvertError(DATASET, str(source), "the dataset folder does not exist")
    seq = str(scene)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", seq) or seq in (".", ".."):
        raise ConvertError(DATASET, seq, "not a sequence name (expected e.g. 2013_05_28_drive_0000_sync)")
    source_dir(DATASET, root, f"data_2d_raw/{seq}", "sequence folder")
    ts_rel = f"data_2d_raw/{seq}/image_00/timestamps.txt"
    stamps = _read_timestamps(root, ts_rel)
    poses_rel = f"data_poses/{seq}/poses.txt"
    poses = _read_poses(root, poses_rel)

    cams = [c for c in CAMERAS if (root / f"data_2d_raw/{seq}/{c[0]}/{c[2]}").is_dir()]
    for c in CAMERAS:
        if c not in cams:
            logger.warning("kitti360: no folder data_2d_raw/%s/%s/%s: camera %s left out", seq, c[0], c[2], c[1])
    velo_dir = f"data_3d_raw/{seq}/velodyne_points/data"
    has_lidar = (root / velo_dir).is_dir()
    if has_lidar:
        source_dir(DATASET, root, velo_dir, "Velodyne folder")
    else:
        logger.warning("kitti360: no folder %s: no LiDAR", velo_dir)
    if not cams and not has_lidar:
        raise ConvertError(DATASET, f"data_2d_raw/{seq}", "no camera folder (image_0X/data_rect, data_rgb) and no "
                                                          f"{velo_dir}: nothing to convert")
    calib = _read_calibration(root, [c[0] for c in cams], has_lidar)

    # Frames: the posed frames, in order, at their image_00 time.
    frame_ids = sorted(poses)
    for f in frame_ids:
        if f >= len(stamps) or stamps[f] is None:
            raise ConvertError(DATASET, ts_rel, f"no timestamp for frame {f} (listed in {poses_rel})",
                               f"line {f + 1}")
    origin = stamps[frame_ids[0]]
    times = np.array([_seconds(stamps, f, origin) for f in frame_ids])
    if np.any(np.diff(times) <= 0):
        bad = int(np.flatnonzero(np.diff(times) <= 0)[0])
        raise ConvertError(DATASET, ts_rel, f"timestamps not increasing at frame {frame_ids[bad + 1]}")
    T_world_ego = np.stack([poses[f] @ F_IMU_EGO for f in frame_ids])
    ego = PoseTrack(times, T_world_ego, name="kitti360 ego")
    # Every image exists inside the source, and the boxes parse, before anything is written.
    image_paths = {(sid, f): source_file(DATASET, root, f"data_2d_raw/{seq}/{cam}/{folder}/{f:010d}.png", "image")
                   for cam, sid, folder, _ in cams for f in frame_ids}
    boxes = _read_boxes(root, seq)
    extra: dict = {"sequence": seq, "time_origin": str(origin).replace("T", " "), "source_frames": frame_ids,
                   "world": "KITTI-360 world (Mercator metres, x east, y north, z up), unchanged"}

    sensors = _camera_sensors(root, seq, cams, calib, poses, extra)   # [(sid, sensor, T_ego_sensor)]
    for cam in (c[0] for c in cams if c[0] != "image_00"):
        _report_offsets(root, f"data_2d_raw/{seq}/{cam}/timestamps.txt", frame_ids, times, origin, "")
    lidar = None
    if has_lidar:
        lidar, beams, T_ego_lidar, vo, lidar_frames = _lidar_sensor(root, velo_dir, frame_ids, calib, extra)
        sensors.append((LIDAR_ID, lidar, T_ego_lidar))
        _report_offsets(root, f"data_3d_raw/{seq}/velodyne_points/timestamps.txt", frame_ids, times, origin,
                        "; the sweep is centred on the image_00 time (devkit model)")

    by_id = {sid: sensor for sid, sensor, _ in sensors}
    with LogWriter(out, name=seq) as writer:
        for sid, sensor, T in sensors:
            writer.add_sensor(sid, sensor, T)
        writer.extra["kitti360"] = extra
        with progress_bar(f"kitti360 {seq}", len(frame_ids), progress) as advance:
            for i, f in enumerate(frame_ids):
                images = {sid: _read_image(image_paths[(sid, f)], f"data_2d_raw/{seq}/{cam}/{folder}/{f:010d}.png",
                                           by_id[sid]) for cam, sid, folder, _ in cams}
                lidar_pts = {}
                if lidar is not None and f in lidar_frames:
                    rel = f"{velo_dir}/{f:010d}.bin"
                    raw = read_velodyne(source_file(DATASET, root, rel, "Velodyne scan"), rel)
                    lidar_pts[LIDAR_ID] = _lidar_frame(raw, times[i], ego, T_ego_lidar, vo, beams, lidar)
                writer.add_frame(times[i], T_world_ego[i], images=images, lidar_points=lidar_pts)
                advance()
        _add_actors(writer, boxes, seq, stamps, origin)
    return Path(out)


def _camera_sensors(root: Path, seq: str, cams: list, calib: Calibration, poses: dict[int, np.ndarray],
                    extra: dict) -> list:
    """[(sensor id, gssim camera, T_ego_cam)] of the cameras present (module docstring:
    perspective cameras rectified, fisheye cameras fitted to their MEI model)."""
    sensors = []
    fit_errors = {}
    for cam, sid, _, model in cams:
        T_imu_cam = calib.cam_to_pose[cam]
        try:
            if model == "perspective":
                K, R_rect, (w, h) = calib.perspective[cam]
                T_imu_cam = T_imu_cam @ pose_matrix(R_rect.T, np.zeros(3))
                sensor = PinholeCamera(w, h, K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5)
            else:
                mei = calib.fisheye[cam]
                fit = fit_mei_fisheye(mei)
                sensor = FisheyeCamera(mei.width, mei.height, fit.fx, fit.fy, fit.cx, fit.cy, fit.distortion)
                fit_errors[sid] = {"max": fit.max_error_px, "rms": fit.rms_error_px,
                                   "theta_max_deg": fit.theta_max_deg}
                logger.info("kitti360: %s (%s) MEI -> equidistant fisheye fit over theta <= %.1f deg: max error "
                            "%.3f px, rms %.3f px", sid, cam, fit.theta_max_deg, fit.max_error_px, fit.rms_error_px)
        except SensorConfigError as exc:
            raise ConvertError(DATASET, "calibration", f"camera {cam}: {exc}") from None
        sensors.append((sid, sensor, F_IMU_EGO @ T_imu_cam))
        if cam == "image_00":
            _check_cam0_to_world(root, seq, poses, T_imu_cam)
    if fit_errors:
        extra["fisheye_fit_max_error_px"] = {k: v["max"] for k, v in fit_errors.items()}
        extra["fisheye_fit"] = fit_errors
    return sensors


def _lidar_sensor(root: Path, velo_dir: str, frame_ids: list[int], calib: Calibration, extra: dict):
    """(SpinningLidar, T_ego_lidar, beam-origin height vo, frames that have a scan): the
    beam table is fitted to up to BEAM_TABLE_SCANS scans spread over the sequence."""
    T_imu_velo = calib.cam_to_pose["image_00"] @ np.linalg.inv(calib.velo_from_cam0)
    lidar_frames = [f for f in frame_ids if (root / f"{velo_dir}/{f:010d}.bin").is_file()]
    missing = len(frame_ids) - len(lidar_frames)
    if missing:
        logger.warning("kitti360: %d of %d posed frames have no Velodyne scan in %s; they have no LiDAR",
                       missing, len(frame_ids), velo_dir)
    nominal = np.array(_load_presets()["hdl-64e"]["elevations_deg"], np.float64)  # top beam first
    n_sample = min(BEAM_TABLE_SCANS, len(lidar_frames))
    sample = [lidar_frames[i] for i in np.unique(np.linspace(0, len(lidar_frames) - 1, n_sample).astype(int))]
    pts = []
    for f in sample:
        rel = f"{velo_dir}/{f:010d}.bin"
        raw = read_velodyne(source_file(DATASET, root, rel, "Velodyne scan"), rel)[:, :3].astype(np.float64)
        pts.append(raw[_valid_returns(raw)])
    xyz = np.concatenate(pts) if pts else np.zeros((0, 3))
    model = fit_beam_model(xyz, nominal, hdl64_blocks(nominal))
    vo = float(model.heights[0])      # our LiDAR origin: the upper block's beam origin
    if len(xyz):
        _, resid = model.assign(xyz)
        logger.info("kitti360: beam table fitted to %d points of %d scans: %.2f..%.2f deg, beam origins %s m above "
                    "the Velodyne origin (upper, lower block); %.2f%% of points farther than 1/3 beam spacing "
                    "from their beam", len(xyz), len(sample), model.elevations_deg.min(),
                    model.elevations_deg.max(), ", ".join(f"{h:.3f}" for h in model.heights),
                    100 * np.mean(resid > 1 / 3))
    lidar = SpinningLidar.preset("hdl-64e", elevations_deg=[float(e) for e in model.elevations_deg],
                                 spin_hz=SPIN_HZ, min_range=MIN_RANGE, max_range=MAX_RANGE, clockwise=True,
                                 azimuth_start_deg=180.0)
    extra["lidar_beam_origin_m"] = vo
    extra["lidar_block_origins_m"] = [float(h) for h in model.heights]
    T_ego_lidar = F_IMU_EGO @ T_imu_velo @ pose_matrix(np.eye(3), [0.0, 0.0, vo])
    return lidar, model, T_ego_lidar, vo, set(lidar_frames)


def _report_offsets(root: Path, rel: str, frame_ids: list[int], times: np.ndarray, origin: np.datetime64,
                    note: str) -> None:
    """Log how far a sensor's timestamps (when its file exists) are from the frame times."""
    if not (root / rel).is_file():
        return
    stamps = _read_timestamps(root, rel)
    d = [abs(s - t) for f, t in zip(frame_ids, times) if (s := _seconds(stamps, f, origin)) is not None]
    if d:
        logger.info("kitti360: %s differs from the image_00 times by up to %.1f ms (median %.1f ms)%s", rel,
                    1e3 * max(d), 1e3 * float(np.median(d)), note)


def _check_cam0_to_world(root: Path, seq: str, poses: dict[int, np.ndarray], T_imu_cam0: np.ndarray) -> None:
    """Compare the rectified camera 0 poses with KITTI-360's own ``cam0_to_world.txt``
    (frame index + row-major 4x4 per line), when present; a mismatch is logged."""
    rel = f"data_poses/{seq}/cam0_to_world.txt"
    if not (root / rel).is_file():
        return
    worst_t = worst_r = 0.0
    n = 0
    for line in _read_text(root, rel, "camera 0 poses").splitlines():
        vals = line.split()
        if len(vals) != 17:
            continue
        try:
            f, M = int(float(vals[0])), np.array([float(v) for v in vals[1:]]).reshape(4, 4)
        except ValueError:
            continue
        if f in poses:
            ours = poses[f] @ T_imu_cam0
            worst_t = max(worst_t, float(np.linalg.norm(ours[:3, 3] - M[:3, 3])))
            worst_r = max(worst_r, float(np.abs(ours[:3, :3] - M[:3, :3]).max()))
            n += 1
    if n and (worst_t > 0.01 or worst_r > 1e-3):
        logger.warning("kitti360: %s differs from poses.txt @ calib_cam_to_pose @ inv(R_rect_00) by up to %.3f m "
                       "and %.2g in rotation (%d frames)", rel, worst_t, worst_r, n)
    elif n:
        logger.info("kitti360: %s agrees with the converted camera 0 poses (%d frames, <= %.2g m)", rel, n, worst_t)


def _read_image(path: Path, rel: str, sensor) -> np.ndarray:
    return read_image(DATASET, path, rel, sensor.width, sensor.height)


def _lidar_frame(raw: np.ndarray, t: float, ego: PoseTrack, T_ego_lidar: np.ndarray, vo: float,
                 beams: BeamModel, lidar: SpinningLidar) -> np.ndarray:
    """The log's (M, 6) points of one raw scan (see "LiDAR" in the module docstring)."""
    xyz = raw[:, :3].astype(np.float64)
    keep = _valid_returns(xyz)
    xyz, refl = xyz[keep], raw[keep, 3].astype(np.float64)
    beam, _ = beams.assign(xyz)               # at the measurement time, in the Velodyne frame
    xyz = xyz - [0.0, 0.0, vo]                # our LiDAR frame: origin at the (upper) beams' origin
    keep = np.linalg.norm(xyz, axis=1) > 1e-6
    xyz, refl, beam = xyz[keep], refl[keep], beam[keep]
    dt = -np.arctan2(xyz[:, 1], xyz[:, 0]) / (2 * np.pi * lidar.spin_hz)
    xyz_c = motion_compensate(xyz, t + dt, t, sensor_track(ego, T_ego_lidar))
    return lidar_points(xyz_c, refl, beam, dt)


def _add_actors(writer: LogWriter, boxes: tuple, seq: str, stamps: list, origin: np.datetime64) -> None:
    rel, samples, skipped = boxes
    if rel is None:
        logger.warning("kitti360: no data_3d_bboxes/train/%s.xml (nor train_full/): no actors", seq)
        return
    groups: dict[tuple[int, int], list[BoxSample]] = {}
    for s in samples:
        groups.setdefault(s.key, []).append(s)
    n_dropped = 0
    for key, group in sorted(groups.items()):
        name = group[0].name
        aid = f"{name.replace(' ', '_')}_{key[1]}"
        cls = map_class(name, CLASS_TABLE)
        static = [s for s in group if s.frame < 0]
        dynamic = sorted((s for s in group if s.frame >= 0), key=lambda s: s.frame)
        if dynamic:
            times, poses, sizes, seen = [], [], [], set()
            for s in dynamic:
                t = _seconds(stamps, s.frame, origin)
                if t is None or s.frame in seen:
                    n_dropped += 1
                    continue
                seen.add(s.frame)
                times.append(t)
                poses.append(s.T_world_object)
                sizes.append(s.size)
            if not times:
                continue
            size = np.median(np.stack(sizes), axis=0)
            writer.add_actor(aid, cls, size, times, np.stack(poses), kitti360={
                "label": name, "semanticId": key[0], "instanceId": key[1], "dynamic": True,
                "frames": sorted(seen)})
        else:
            s = static[0]
            t0 = _seconds(stamps, max(s.start_frame, 0), origin)
            t1 = _seconds(stamps, min(s.end_frame, len(stamps) - 1), origin)
            if t0 is None or t1 is None:
                n_dropped += 1
                continue
            times = [t0] if t1 - t0 < 1e-6 else [t0, t1]
            writer.add_actor(aid, cls, s.size, times, np.stack([s.T_world_object] * len(times)), kitti360={
                "label": name, "semanticId": key[0], "instanceId": key[1], "dynamic": False,
                "frames": [s.start_frame, s.end_frame]})
    if n_dropped:
        logger.warning("kitti360: %s: %d box samples without a frame timestamp (or repeated) were left out", rel,
                       n_dropped)
    logger.info("kitti360: %s: %d actors; scene objects not converted: %s", rel, len(groups),
                ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())) or "none")
