"""Waymo Open Dataset v2 (parquet components) to a gssim log (``gssim convert --from waymo``).

Source layout (one folder per component, one file per run segment)::

    SOURCE/<component>/<context_name>.parquet

read with pyarrow (no TensorFlow, no Waymo package).  ``--scene`` is the context name
(``10023947602400723454_1120_000_1140_000``).  Components read, with the columns used
(names as the v2 dataclasses flatten them, ``key.*`` columns shared by all components):

- ``vehicle_pose``: ``key.frame_timestamp_micros``,
  ``[VehiclePoseComponent].world_from_vehicle.transform`` (16 numbers, row-major).
- ``camera_calibration``: ``key.camera_name`` (int8, 1 FRONT .. 5 SIDE_RIGHT),
  ``[CameraCalibrationComponent].intrinsic.{f_u,f_v,c_u,c_v,k1,k2,p1,p2,k3}``,
  ``.extrinsic.transform`` (camera to vehicle), ``.width``, ``.height``,
  ``.rolling_shutter_direction``.
- ``camera_image``: ``key.frame_timestamp_micros``, ``key.camera_name``,
  ``[CameraImageComponent].image`` (JPEG), ``.pose.transform`` (world_from_vehicle at
  ``.pose_timestamp``), ``.velocity.linear_velocity.{x,y,z}``,
  ``.velocity.angular_velocity.{x,y,z}``, ``.pose_timestamp``,
  ``.rolling_shutter_params.{shutter,camera_trigger_time,camera_readout_done_time}``.
- ``lidar_calibration``: ``key.laser_name`` (1 TOP), ``[LiDARCalibrationComponent]
  .extrinsic.transform`` (LiDAR to vehicle), ``.beam_inclination.{min,max,values}``.
- ``lidar``: ``key.frame_timestamp_micros``, ``key.laser_name``,
  ``[LiDARComponent].range_image_return1.{values,shape}`` ([H, W, 4]: range,
  intensity, elongation, no-label-zone flag).
- ``lidar_pose`` (optional): ``[LiDARPoseComponent].range_image_return1.{values,shape}``
  ([H, W, 6]: roll, pitch, yaw, x, y, z of world_from_vehicle per pixel, TOP only).
- ``lidar_box`` (optional): ``key.laser_object_id``, ``[LiDARBoxComponent].box.center.{x,y,z}``,
  ``.box.size.{x,y,z}``, ``.box.heading``, ``.type`` (0 unknown, 1 vehicle,
  2 pedestrian, 3 sign, 4 cyclist).

Required: vehicle_pose, camera_calibration, camera_image, lidar_calibration, lidar.
Optional: lidar_pose (else approximate LiDAR motion compensation, see below) and
lidar_box (else no actors).  Key columns may hold the enum's integer (as the v2 schema
declares) or its name (``"FRONT"``, ``"TOP"``, as in the Waymo repository's own test
data); both are accepted.  Tables are streamed in batches of rows and cut to the
context (and, for LiDAR tables, the TOP rows) as they are read.

Frames and conventions (source -> ours):

- World (Waymo global frame, z up) and vehicle frame (x forward, y left, z up) are
  already ours: ``T_world_ego`` = ``world_from_vehicle``.  Rotations read from the files
  (stored as float32 in some releases) are re-orthonormalised (SVD) before use.
- Cameras: Waymo's camera frame is x forward (optical axis), y left, z up, and it
  projects ``u = -y/x, v = -z/x``, then OpenCV's radial-tangential distortion with
  ``[k1, k2, p1, p2, k3]``, then ``u_d * f_u + c_u``, pixel 0 spanning [0, 1).  So
  ``T_ego_cam = extrinsic @ C`` with ``C`` (OpenCV camera -> Waymo camera) =
  ``[[0, 0, 1], [-1, 0, 0], [0, -1, 0]]``, and the camera is ``OpenCVCamera(width, height,
  f_u, f_v, c_u, c_v, [k1, k2, p1, p2, k3])`` unchanged (our pixel centres are j + 0.5 on
  the same axis).
- Camera timing: Waymo times a pixel at ``trigger + shutter / 2 + readout * position``,
  ``readout = readout_done - trigger - shutter`` (``camera_model.cc``).  TOP_TO_BOTTOM:
  the frame time is ``trigger + shutter / 2`` (row 0) and ``rolling_shutter_s = readout``,
  which is exactly our row timing (one readout per camera: the median over its images).
  Our cameras read rows top to bottom only, so LEFT_TO_RIGHT, RIGHT_TO_LEFT and
  BOTTOM_TO_TOP (Waymo's cameras have a horizontal rolling shutter) are written as
  global-shutter cameras (``rolling_shutter_s = 0``)
  timed at the principal point's readout time -- the time Waymo anchors the image pose
  to; pixels away from it are off by up to half the readout in time.  GLOBAL_SHUTTER and
  UNKNOWN: ``pose_timestamp``.
- Every camera image is a frame of its own at its capture time (frames hold any subset
  of sensors), with ``T_world_ego`` the image's own vehicle pose moved from
  ``pose_timestamp`` to the frame time with the image's velocity (linear: world frame;
  angular: vehicle frame, as Waymo's camera model uses it).  Images closer than 10 us to
  another frame share it.
- LiDAR: the TOP LiDAR's first return.  Row r has inclination
  ``beam_inclination.values[H - 1 - r]`` (the values ascend; row 0 is the top beam; with
  no values, ``min + (k + 0.5) / H * (max - min)`` for k = H - 1 - r), column c the
  sensor-frame azimuth ``pi - (c + 0.5) * 2 pi / W - yaw(extrinsic)``; the point is
  ``range * (cos az cos incl, sin az cos incl, sin incl)`` in the LiDAR frame (x forward,
  y left, z up, ours), ``T_ego_lidar = extrinsic``.  Our ``SpinningLidar`` reproduces the
  grid: ``elevations_deg`` = the row inclinations (top first), ``azimuth_resolution_deg =
  360 / W``, ``clockwise``, ``azimuth_start_deg = 180 - yaw``; beam index = row.
  Pixels with range <= 0 are not returns and are dropped.  ``min_range``/``max_range``
  span the ranges found in the segment.
- LiDAR timing: the frame time is ``key.frame_timestamp_micros`` (Waymo: the time of the
  first TOP LiDAR scan of the frame).  Waymo gives no per-point time; column c is taken
  to fire at ``(c + 0.5) / W`` of the sweep (clockwise from the rear seam, the range
  image's own column order), the sweep lasting the median frame interval (0.1 s).  This
  is the time offset stored per point.
- LiDAR motion compensation: with ``lidar_pose`` each return is exact -- world point
  ``P_pixel @ extrinsic @ p`` with its own pixel pose (``R = Rz(yaw) Ry(pitch) Rx(roll)``),
  expressed in the LiDAR frame at the frame time: ``inv(T_ref @ extrinsic) @ world``, where
  ``T_ref`` (the frame's ``T_world_ego``) is the pixel-pose track of the sweep (a
  sample of its columns) carried to the frame time.  Pixels whose pose is all zeros take
  that track's pose at their column time.  Without ``lidar_pose``, the frame vehicle
  pose is taken at mid-sweep (Waymo: "roughly the middle of the frame"), poses are
  interpolated between frames, and ``common.motion_compensate`` moves each column.
- Intensity: Waymo's is unbounded (mostly 0..1, retro-reflectors far above);
  ours is ``tanh(max(intensity, 0))``.  Elongation and the no-label-zone flag are dropped.
- Boxes: ``lidar_box`` rows are in the frame's vehicle-pose frame; ``T_world_object =
  world_from_vehicle @ [Rz(heading) | center]`` (centre of the box, x along the heading,
  z up), sampled at the frame time (Waymo's boxes live at the frame start).  Size =
  (size.x, size.y, size.z) = (length, width, height), the median over the track.  Classes:
  vehicle -> car, pedestrian -> pedestrian, cyclist -> cyclist, sign/unknown -> other;
  the Waymo type and object id are kept in the actor entry.
- Time: ``t = source time (s) - t0``, t0 = the earliest frame of the log (Unix seconds,
  stored as ``source.time_origin_unix_s`` in log.json), so the first frame is at t = 0.
"""
from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from gssim.data.convert.common import (ConvertError, lidar_points, map_class, motion_compensate, progress_bar,
                                       sensor_track, source_dir, source_file)
from gssim.data.poses import PoseTrack
from gssim.data.writer import LogWriter
from gssim.sensors import OpenCVCamera, SpinningLidar

logger = logging.getLogger(__name__)

DATASET = "waymo"

KEY_SEGMENT = "key.segment_context_name"
KEY_TIME = "key.frame_timestamp_micros"
KEY_CAMERA = "key.camera_name"
KEY_LASER = "key.laser_name"
KEY_OBJECT = "key.laser_object_id"

CAMERA_NAMES = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"}
LASER_NAMES = {1: "TOP", 2: "FRONT", 3: "SIDE_LEFT", 4: "SIDE_RIGHT", 5: "REAR"}
TOP = 1
BOX_TYPES = {0: "TYPE_UNKNOWN", 1: "TYPE_VEHICLE", 2: "TYPE_PEDESTRIAN", 3: "TYPE_SIGN", 4: "TYPE_CYCLIST"}
CLASS_TABLE = {"TYPE_VEHICLE": "car", "TYPE_PEDESTRIAN": "pedestrian", "TYPE_CYCLIST": "cyclist",
               "TYPE_SIGN": "other", "TYPE_UNKNOWN": "other"}
# CameraCalibration.RollingShutterReadOutDirection
UNKNOWN, TOP_TO_BOTTOM, LEFT_TO_RIGHT, BOTTOM_TO_TOP, RIGHT_TO_LEFT, GLOBAL_SHUTTER = range(6)

VP = "[VehiclePoseComponent]"
CC = "[CameraCalibrationComponent]"
CI = "[CameraImageComponent]"
LC = "[LiDARCalibrationComponent]"
LI = "[LiDARComponent]"
LP = "[LiDARPoseComponent]"
LB = "[LiDARBoxComponent]"
INTRINSICS = ("f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3")
CAMERA_TIMING = ("pose_timestamp", "rolling_shutter_params.shutter", "rolling_shutter_params.camera_trigger_time",
                 "rolling_shutter_params.camera_readout_done_time")
VELOCITY = tuple(f"velocity.{k}_velocity.{a}" for k in ("linear", "angular") for a in "xyz")

# OpenCV camera axes (x right, y down, z forward) in Waymo's camera frame (x forward, y left, z up).
T_WAYMO_CAM_OPENCV = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0],
                               [0.0, 0.0, 0.0, 1.0]])
MERGE_S = 1e-5              # events closer than this share one frame
DEFAULT_SWEEP_S = 0.1       # the TOP LiDAR spins at 10 Hz
POSE_SAMPLES = 64           # pixel-pose columns sampled per sweep for the frame-time pose
BATCH_ROWS = 32             # parquet rows decoded at a time


def _rel(tag: str, scene: str) -> str:
    return f"{tag}/{scene}.parquet"


def orthonormal(T: np.ndarray) -> np.ndarray:
    """(4, 4) pose with its rotation projected onto SO(3) (files may store float32).
    Raises ValueError when the 3x3 block is not close to a rotation."""
    T = np.array(T, dtype=np.float64)
    R = T[:3, :3]
    if not np.all(np.isfinite(T)) or np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise ValueError("the 3x3 block is not a rotation")
    u, _, vt = np.linalg.svd(R)
    T[:3, :3] = u @ vt
    T[3] = (0.0, 0.0, 0.0, 1.0)
    return T


def euler_pose(rpyxyz: np.ndarray) -> np.ndarray:
    """(M, 4, 4) poses of Waymo pose range-image pixels (M, 6) = roll, pitch, yaw, x, y, z:
    R = Rz(yaw) Ry(pitch) Rx(roll) (3-2-1 Euler)."""
    v = np.asarray(rpyxyz, np.float64).reshape(-1, 6)
    cr, sr = np.cos(v[:, 0]), np.sin(v[:, 0])
    cp, sp = np.cos(v[:, 1]), np.sin(v[:, 1])
    cy, sy = np.cos(v[:, 2]), np.sin(v[:, 2])
    T = np.zeros((len(v), 4, 4))
    T[:, 0, 0], T[:, 0, 1], T[:, 0, 2] = cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr
    T[:, 1, 0], T[:, 1, 1], T[:, 1, 2] = sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr
    T[:, 2, 0], T[:, 2, 1], T[:, 2, 2] = -sp, cp * sr, cp * cr
    T[:, :3, 3] = v[:, 3:]
    T[:, 3, 3] = 1.0
    return T


def _rotvec(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (3,) (Rodrigues)."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-15:
        return np.eye(3)
    k = w / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def extrapolate_pose(T: np.ndarray, v_world: np.ndarray, w_vehicle: np.ndarray, dt: float) -> np.ndarray:
    """Vehicle pose ``dt`` seconds after T at constant velocity: r + v dt, exp([R w]x dt) R."""
    out = T.copy()
    out[:3, :3] = _rotvec(T[:3, :3] @ w_vehicle * dt) @ T[:3, :3]
    out[:3, 3] = T[:3, 3] + v_world * dt
    return out


def camera_timing(direction: int, shutter: float, trigger: float, done: float, pose_ts: float,
                  width: int, height: int, c_u: float, c_v: float) -> tuple[float, float]:
    """(frame time in source seconds, rolling_shutter_s) of a camera image (see the module docstring)."""
    readout = done - trigger - shutter
    timed = all(math.isfinite(x) for x in (shutter, trigger, done)) and 0.0 <= readout < 1.0
    if timed:
        base = trigger + 0.5 * shutter
        if direction == TOP_TO_BOTTOM:
            return base, readout
        at = {LEFT_TO_RIGHT: c_u / width, RIGHT_TO_LEFT: (width - c_u) / width,
              BOTTOM_TO_TOP: (height - c_v) / height}.get(direction)
        if at is not None:
            return base + readout * at, 0.0
    if not math.isfinite(pose_ts):
        raise ValueError("no finite pose_timestamp")
    return pose_ts, 0.0


def _enum_code(value, names: dict[int, str]) -> int | None:
    """Integer code of a key value stored as the enum's integer or its name."""
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        if value.strip().lstrip("-").isdigit():
            return int(value)
        for code, name in names.items():
            if value.upper() == name:
                return code
    return None


# --- reading components ------------------------------------------------------------------


class _Source:
    """The dataset folder and the context: reads components, naming file and column on error."""

    def __init__(self, root: str | Path, scene: str) -> None:
        self.root = Path(root)
        self.scene = scene
        source_dir(DATASET, self.root, ".", "dataset folder")

    def has(self, tag: str) -> bool:
        try:
            return (self.root / tag / f"{self.scene}.parquet").is_file()
        except (OSError, ValueError):
            return False

    def read(self, tag: str, columns: list[str], key_filter: tuple[str, dict[int, str], set[int]] | None = None
             ) -> pa.Table:
        """The rows of this context in component ``tag`` with ``columns`` (all required).
        ``key_filter`` = (key column, enum names, codes): keep only rows whose key is one
        of the codes (filtered while reading, so large tables stay small)."""
        rel = _rel(tag, self.scene)
        path = source_file(DATASET, self.root, rel, f"{tag} component")
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            raise ConvertError(DATASET, rel, f"not a readable parquet file ({exc})") from None
        wanted = [KEY_SEGMENT] + [c for c in columns if c != KEY_SEGMENT]
        for col in wanted:
            if col not in schema.names:
                raise ConvertError(DATASET, rel, f"missing column (the file has {len(schema.names)} columns)", col)
        # Streamed in batches, each cut to this context's rows (and the wanted key values)
        # before the next is read: a segment's lidar table holds every LiDAR's range images.
        kept, seen_keys = [], set()
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=wanted):
                keep = np.array([s == self.scene for s in batch.column(KEY_SEGMENT).to_pylist()], dtype=bool)
                if key_filter is not None:
                    key, names, codes = key_filter
                    values = batch.column(key).to_pylist()
                    seen_keys.update(v for v, k in zip(values, keep) if k)
                    keep &= np.array([_enum_code(v, names) in codes for v in values], dtype=bool)
                if keep.any():
                    kept.append(batch.filter(pa.array(keep)))
        except (pa.ArrowException, OSError) as exc:
            raise ConvertError(DATASET, rel, f"cannot read the table ({exc})") from None
        if not kept:
            if key_filter is not None and seen_keys:
                key, names, codes = key_filter
                want = ", ".join(f"{c} ({names.get(c, '?')})" for c in sorted(codes))
                raise ConvertError(DATASET, rel, f"no rows with {key} = {want} (found {sorted(seen_keys, key=str)})",
                                   key)
            raise ConvertError(DATASET, rel, f"no rows for context {self.scene!r}", KEY_SEGMENT)
        return pa.Table.from_batches(kept)


def _numbers(table: pa.Table, col: str, rel: str, allow_null: bool = False) -> np.ndarray:
    arr = table.column(col)
    if arr.null_count and not allow_null:
        raise ConvertError(DATASET, rel, f"{arr.null_count} null values", col)
    return np.array([np.nan if v is None else v for v in arr.to_pylist()], dtype=np.float64)


def _ints(table: pa.Table, col: str, rel: str) -> np.ndarray:
    arr = table.column(col)
    if arr.null_count:
        raise ConvertError(DATASET, rel, f"{arr.null_count} null values", col)
    return np.array(arr.to_pylist(), dtype=np.int64)


def _codes(table: pa.Table, col: str, rel: str, names: dict[int, str]) -> np.ndarray:
    out = []
    for v in table.column(col).to_pylist():
        code = _enum_code(v, names)
        if code is None:
            raise ConvertError(DATASET, rel, f"unknown value {v!r} (expected one of {names})", col)
        out.append(code)
    return np.array(out, dtype=np.int64)


def _matrices(table: pa.Table, col: str, rel: str) -> np.ndarray:
    """(N, 4, 4) float64 of a column of 16-number row-major transforms."""
    out = []
    for i, v in enumerate(table.column(col).to_pylist()):
        if v is None or len(v) != 16 or any(x is None for x in v):
            raise ConvertError(DATASET, rel, f"row {i}: expected 16 numbers (a row-major 4x4 transform)", col)
        M = np.array(v, np.float64).reshape(4, 4)
        try:
            if not np.allclose(M[3], (0, 0, 0, 1), atol=1e-6):
                raise ValueError("the last row is not (0, 0, 0, 1)")
            out.append(orthonormal(M))
        except ValueError as exc:
            raise ConvertError(DATASET, rel, f"row {i}: not a rigid 4x4 transform ({exc})", col) from None
    return np.array(out).reshape(-1, 4, 4)


def _range_image(table: pa.Table, prefix: str, i: int, rel: str, channels: int) -> np.ndarray:
    """Row i's range image (H, W, C) float32 from ``<prefix>.values`` / ``<prefix>.shape``."""
    vcol, scol = f"{prefix}.values", f"{prefix}.shape"
    shape = table.column(scol)[i].as_py()
    values = table.column(vcol)[i]
    if shape is None or not values.is_valid:
        raise ConvertError(DATASET, rel, f"row {i}: empty range image", vcol if shape is not None else scol)
    if len(shape) != 3 or shape[2] != channels or min(shape) <= 0:
        raise ConvertError(DATASET, rel, f"row {i}: shape {shape}, expected [H, W, {channels}]", scol)
    flat = values.values.to_numpy(zero_copy_only=False)
    if flat.size != shape[0] * shape[1] * shape[2]:
        raise ConvertError(DATASET, rel, f"row {i}: {flat.size} values for shape {shape}", vcol)
    return np.asarray(flat, np.float32).reshape(shape)


# --- the converter -------------------------------------------------------------------------


@dataclass
class _Event:
    """One frame-to-be: a LiDAR sweep start or a camera image, at source time ``t`` (s)."""

    t: float
    kind: int                     # 0 lidar (first among equal times), 1 camera
    row: int                      # row in its table
    sid: str
    T_world_ego: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def _box_tracks(src: _Source, times_us: dict[int, float], vehicle: dict[int, np.ndarray], t0: float,
                writer: LogWriter) -> int:
    """Add the lidar_box objects as actors; returns how many."""
    rel = _rel("lidar_box", src.scene)
    cols = [KEY_TIME, KEY_OBJECT, f"{LB}.type", f"{LB}.box.heading"] + \
        [f"{LB}.box.{p}.{a}" for p in ("center", "size") for a in "xyz"]
    table = src.read("lidar_box", cols)
    ts = _ints(table, KEY_TIME, rel)
    ids = table.column(KEY_OBJECT).to_pylist()
    types = _ints(table, f"{LB}.type", rel)
    heading = _numbers(table, f"{LB}.box.heading", rel)
    center = np.stack([_numbers(table, f"{LB}.box.center.{a}", rel) for a in "xyz"], 1)
    size = np.stack([_numbers(table, f"{LB}.box.size.{a}", rel) for a in "xyz"], 1)
    tracks: dict[str, list[int]] = {}
    skipped = 0
    for i, oid in enumerate(ids):
        if oid is None:
            raise ConvertError(DATASET, rel, f"row {i}: null object id", KEY_OBJECT)
        if int(ts[i]) not in vehicle:
            skipped += 1
            continue
        tracks.setdefault(str(oid), []).append(i)
    if skipped:
        logger.warning("%s: %d boxes at timestamps without a vehicle pose were skipped", rel, skipped)
    used: set[str] = set()
    for oid, rows in tracks.items():
        rows = sorted(rows, key=lambda r: ts[r])
        rows = [r for k, r in enumerate(rows) if k == 0 or ts[r] != ts[rows[k - 1]]]  # one box per frame
        poses, times = [], []
        for r in rows:
            c, s = math.cos(heading[r]), math.sin(heading[r])
            T_vehicle_box = np.eye(4)
            T_vehicle_box[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
            T_vehicle_box[:3, 3] = center[r]
            poses.append(vehicle[int(ts[r])] @ T_vehicle_box)
            times.append(times_us[int(ts[r])] - t0)
        dims = np.median(size[rows], axis=0)
        if not np.all(np.isfinite(dims)) or np.any(dims <= 0):
            logger.warning("%s: object %s has no positive box size; skipped", rel, oid)
            continue
        type_name = BOX_TYPES.get(int(types[rows[0]]), "TYPE_UNKNOWN")
        aid = re.sub(r"[^A-Za-z0-9_.-]", "_", oid)
        if not aid.strip("."):
            aid = f"object{aid}"
        while aid in used:
            aid += "_"
        used.add(aid)
        writer.add_actor(aid, map_class(type_name, CLASS_TABLE), dims, times, poses, waymo_type=type_name,
                         waymo_object_id=oid)
    return len(used)


def convert(source: str | Path, scene: str, out: str | Path, progress: bool = True,
            image_format: str = "jpg", overwrite: bool = False) -> Path:
    """Convert the Waymo v2 run segment ``scene`` (context name) under ``source`` to a log
    folder ``out``; returns the path of its log.json.  ``image_format``: "jpg" (quality
    95; the source images are JPEG) or "png"."""
    src = _Source(source, scene)

    # Vehicle poses: one per frame, the frame list of the segment.
    rel_vp = _rel("vehicle_pose", scene)
    vp = src.read("vehicle_pose", [KEY_TIME, f"{VP}.world_from_vehicle.transform"])
    vehicle = dict(zip(_ints(vp, KEY_TIME, rel_vp).tolist(),
                       _matrices(vp, f"{VP}.world_from_vehicle.transform", rel_vp)))
    frame_us = np.array(sorted(vehicle), dtype=np.int64)
    steps = np.diff(frame_us) * 1e-6
    sweep = float(np.median(steps)) if len(steps) else DEFAULT_SWEEP_S
    if not 0.02 <= sweep <= 1.0:
        sweep = DEFAULT_SWEEP_S

    # LiDAR calibration and sweeps (TOP, first return).
    rel_lc = _rel("lidar_calibration", scene)
    lcal = src.read("lidar_calibration", [KEY_LASER, f"{LC}.extrinsic.transform", f"{LC}.beam_inclination.min",
                                          f"{LC}.beam_inclination.max", f"{LC}.beam_inclination.values"],
                    key_filter=(KEY_LASER, LASER_NAMES, {TOP}))
    X = _matrices(lcal, f"{LC}.extrinsic.transform", rel_lc)[0]
    incl_values = lcal.column(f"{LC}.beam_inclination.values")[0].as_py()
    rel_li = _rel("lidar", scene)
    ri_prefix = f"{LI}.range_image_return1"
    lidar = src.read("lidar", [KEY_TIME, KEY_LASER, f"{ri_prefix}.values", f"{ri_prefix}.shape"],
                     key_filter=(KEY_LASER, LASER_NAMES, {TOP}))
    lidar_us = _ints(lidar, KEY_TIME, rel_li)
    shapes = {tuple(s) for s in lidar.column(f"{ri_prefix}.shape").to_pylist() if s is not None}
    if len(shapes) != 1:
        raise ConvertError(DATASET, rel_li, f"TOP range images of different shapes {sorted(shapes)}",
                           f"{ri_prefix}.shape")
    H, W, _ = shapes.pop()
    if incl_values:
        if len(incl_values) != H:
            raise ConvertError(DATASET, rel_lc, f"{len(incl_values)} beam inclinations for {H} range-image rows",
                               f"{LC}.beam_inclination.values")
        incl = np.asarray(incl_values, np.float64)
    else:
        lo = _numbers(lcal, f"{LC}.beam_inclination.min", rel_lc)[0]
        hi = _numbers(lcal, f"{LC}.beam_inclination.max", rel_lc)[0]
        incl = lo + (np.arange(H) + 0.5) / H * (hi - lo)
    incl_rows = incl[::-1].copy()                       # row 0 = the last (highest) value
    yaw = math.atan2(X[1, 0], X[0, 0])
    az_cols = math.pi - (np.arange(W) + 0.5) * 2.0 * math.pi / W - yaw
    col_dt = (np.arange(W) + 0.5) / W * sweep

    # Ranges of the segment (the sensor's min/max range must hold every return).
    r_lo, r_hi = math.inf, 0.0
    for i in range(lidar.num_rows):
        r = _range_image(lidar, ri_prefix, i, rel_li, 4)[..., 0]
        r = r[r > 0]
        if r.size:
            r_lo, r_hi = min(r_lo, float(r.min())), max(r_hi, float(r.max()))
    if not r_hi > 0:
        raise ConvertError(DATASET, rel_li, "no TOP LiDAR returns (every range <= 0)", f"{ri_prefix}.values")
    try:
        top = SpinningLidar(np.degrees(incl_rows).tolist(), 360.0 / W, min_range=max(1e-3, 0.9 * r_lo),
                            max_range=math.ceil(r_hi * 1.01 + 1.0), spin_hz=1.0 / sweep, clockwise=True,
                            azimuth_start_deg=180.0 - math.degrees(yaw))
    except ValueError as exc:
        raise ConvertError(DATASET, rel_lc, f"cannot build the TOP LiDAR grid: {exc}",
                           f"{LC}.beam_inclination") from None

    pose_rows: dict[int, int] = {}
    rel_lp = _rel("lidar_pose", scene)
    lp_prefix = f"{LP}.range_image_return1"
    lpose = None
    if src.has("lidar_pose"):
        lpose = src.read("lidar_pose", [KEY_TIME, KEY_LASER, f"{lp_prefix}.values", f"{lp_prefix}.shape"],
                         key_filter=(KEY_LASER, LASER_NAMES, {TOP}))
        pose_rows = {int(t): i for i, t in enumerate(_ints(lpose, KEY_TIME, rel_lp))}
    else:
        logger.warning("%s missing: TOP LiDAR motion compensated from frame poses interpolated in time "
                       "(exact per-pixel poses need the lidar_pose component)", rel_lp)
    # Fallback ego track: frame vehicle poses at mid-sweep.
    ego_mid = PoseTrack((frame_us - frame_us[0]) * 1e-6 + 0.5 * sweep, np.stack([vehicle[int(t)] for t in frame_us]),
                        name="vehicle poses")

    # Cameras.
    rel_cc = _rel("camera_calibration", scene)
    ccal = src.read("camera_calibration", [KEY_CAMERA, f"{CC}.extrinsic.transform", f"{CC}.width", f"{CC}.height",
                                           f"{CC}.rolling_shutter_direction"]
                    + [f"{CC}.intrinsic.{k}" for k in INTRINSICS])
    cam_codes = _codes(ccal, KEY_CAMERA, rel_cc, CAMERA_NAMES)
    cam_ext = _matrices(ccal, f"{CC}.extrinsic.transform", rel_cc)
    intr = {k: _numbers(ccal, f"{CC}.intrinsic.{k}", rel_cc) for k in INTRINSICS}
    widths, heights = _ints(ccal, f"{CC}.width", rel_cc), _ints(ccal, f"{CC}.height", rel_cc)
    directions = _ints(ccal, f"{CC}.rolling_shutter_direction", rel_cc)
    cameras: dict[int, dict] = {}
    for k, code in enumerate(cam_codes):
        if code not in CAMERA_NAMES or code in cameras:
            continue
        cameras[int(code)] = {"sid": f"cam_{CAMERA_NAMES[code].lower()}", "k": k, "T": cam_ext[k] @ T_WAYMO_CAM_OPENCV}

    rel_ci = _rel("camera_image", scene)
    ci = src.read("camera_image", [KEY_TIME, KEY_CAMERA, f"{CI}.image", f"{CI}.pose.transform"]
                  + [f"{CI}.{c}" for c in CAMERA_TIMING + VELOCITY])
    ci_cam = _codes(ci, KEY_CAMERA, rel_ci, CAMERA_NAMES)
    ci_pose = _matrices(ci, f"{CI}.pose.transform", rel_ci)
    timing = {c: _numbers(ci, f"{CI}.{c}", rel_ci, allow_null=True) for c in CAMERA_TIMING + VELOCITY}

    # Every frame-to-be, in time order; times relative to the first frame's timestamp
    # (integer microseconds subtracted exactly; camera times are Unix seconds as doubles).
    base_us = int(frame_us[0])
    events: list[_Event] = []
    seen_us: set[int] = set()
    for i, t_us in enumerate(lidar_us):
        if int(t_us) in seen_us:
            logger.warning("%s: a second TOP sweep at %d us; the first is kept", rel_li, t_us)
            continue
        seen_us.add(int(t_us))
        if int(t_us) not in vehicle:
            logger.warning("%s: TOP sweep at %d us has no vehicle pose; skipped", rel_li, t_us)
            continue
        events.append(_Event((int(t_us) - base_us) * 1e-6, 0, i, "lidar_top", extra={"us": int(t_us)}))
    missing_cal = sorted({CAMERA_NAMES.get(int(c), str(c)) for c in ci_cam if int(c) not in cameras})
    if missing_cal:
        raise ConvertError(DATASET, rel_cc, f"no calibration for camera(s) {missing_cal} of camera_image", KEY_CAMERA)
    for i, code in enumerate(ci_cam):
        cam = cameras[int(code)]
        k = cam["k"]
        try:
            t_img, readout = camera_timing(int(directions[k]), *(float(timing[c][i]) for c in CAMERA_TIMING[1:]),
                                           float(timing["pose_timestamp"][i]), int(widths[k]), int(heights[k]),
                                           float(intr["c_u"][k]), float(intr["c_v"][k]))
        except ValueError:
            raise ConvertError(DATASET, rel_ci, f"row {i}: no usable capture time", f"{CI}.pose_timestamp") from None
        cam.setdefault("readout", []).append(readout)
        pose_ts = float(timing["pose_timestamp"][i])
        v = np.array([timing[c][i] for c in VELOCITY[:3]])
        w = np.array([timing[c][i] for c in VELOCITY[3:]])
        T = ci_pose[i]
        if math.isfinite(pose_ts) and np.all(np.isfinite(v)) and np.all(np.isfinite(w)):
            T = extrapolate_pose(T, v, w, t_img - pose_ts)
        events.append(_Event(t_img - base_us * 1e-6, 1, i, cam["sid"], T_world_ego=T))
    if not events:
        raise ConvertError(DATASET, rel_li, "no TOP LiDAR sweep or camera image to convert", KEY_TIME)
    events.sort(key=lambda e: (e.t, e.kind, e.sid))
    groups: list[list[_Event]] = []
    for e in events:
        if groups and e.t - groups[-1][0].t < MERGE_S and e.sid not in {g.sid for g in groups[-1]}:
            groups[-1].append(e)
        else:
            groups.append([e])
    t0 = groups[0][0].t

    writer = LogWriter(out, name=scene, image_format=image_format, overwrite=overwrite)
    for code in sorted(cameras):
        cam = cameras[code]
        k = cam["k"]
        if "readout" not in cam:
            logger.warning("%s: camera %s has no images; left out", rel_ci, CAMERA_NAMES[code])
            continue
        try:
            model = OpenCVCamera(int(widths[k]), int(heights[k]), intr["f_u"][k], intr["f_v"][k], intr["c_u"][k],
                                 intr["c_v"][k], distortion=[intr[c][k] for c in ("k1", "k2", "p1", "p2", "k3")],
                                 rolling_shutter_s=float(np.median(cam["readout"])))
        except ValueError as exc:
            raise ConvertError(DATASET, rel_cc, f"camera {CAMERA_NAMES[code]}: {exc}", f"{CC}.intrinsic") from None
        writer.add_sensor(cam["sid"], model, cam["T"])
    writer.add_sensor("lidar_top", top, X)
    writer.extra["source"] = {"dataset": "waymo_open_dataset_v2", "context_name": scene,
                              "time_origin_unix_s": base_us * 1e-6 + t0,
                              "lidar": "TOP, first return", "intensity": "tanh(max(intensity, 0))",
                              "lidar_motion_compensation": "per-pixel lidar_pose" if lpose is not None
                              else "frame poses interpolated in time"}

    timing_warned = []

    def check_column_timing(track: PoseTrack, t_start: float) -> None:
        """Warn (once) when the pixel poses contradict the column timing model: while the
        vehicle moves, the poses must advance along its motion at its speed across the sweep."""
        if timing_warned or track.times.shape[0] < 2:
            return
        a, b = ego_mid.at(np.array([t_start, t_start + sweep]), extrapolate=True)[:, :3, 3]
        speed = float(np.linalg.norm(b - a)) / sweep
        if speed < 2.0:
            return
        moved = track.poses[-1, :3, 3] - track.poses[0, :3, 3]
        implied = float(moved @ (b - a)) / (speed * sweep) / (speed * (track.times[-1] - track.times[0]))
        if not 0.7 < implied < 1.4:
            timing_warned.append(True)
            logger.warning("%s: at %.3f s the TOP pixel poses move %.2f times as fast as the vehicle over the "
                           "columns; the per-point times (column c at (c + 0.5) / W of the sweep) may not match "
                           "this segment", rel_lp, t_start, implied)

    def lidar_frame(e: _Event) -> tuple[np.ndarray, np.ndarray]:
        """(T_world_ego at the sweep start, (M, 6) points) of a TOP sweep."""
        ri = _range_image(lidar, ri_prefix, e.row, rel_li, 4)
        if ri.shape[:2] != (H, W):
            raise ConvertError(DATASET, rel_li, f"row {e.row}: shape {ri.shape}", f"{ri_prefix}.shape")
        rows, cols = np.nonzero(ri[..., 0] > 0)
        r = ri[rows, cols, 0].astype(np.float64)
        ce = np.cos(incl_rows[rows])
        xyz = r[:, None] * np.stack([np.cos(az_cols[cols]) * ce, np.sin(az_cols[cols]) * ce,
                                     np.sin(incl_rows[rows])], 1)
        dt = col_dt[cols]
        t_start = e.t
        prow = pose_rows.get(e.extra["us"])
        if prow is not None:
            pri = _range_image(lpose, lp_prefix, prow, rel_lp, 6)
            if pri.shape[:2] != (H, W):
                raise ConvertError(DATASET, rel_lp, f"row {prow}: pose image {pri.shape[:2]} for range image "
                                   f"{(H, W)}", f"{lp_prefix}.shape")
            good = np.any(pri != 0, axis=-1) & np.all(np.isfinite(pri), axis=-1)
            # Pose track of the sweep: one pixel per sampled column that has a pose.
            gcols = np.flatnonzero(good.any(axis=0))
            if len(gcols) == 0:
                prow = None
            else:
                pick = gcols[np.unique(np.linspace(0, len(gcols) - 1, min(POSE_SAMPLES, len(gcols))).round()
                                       .astype(int))]
                prow_of = np.argmax(good[:, pick], axis=0)
                track = PoseTrack(t_start + col_dt[pick], euler_pose(pri[prow_of, pick]), name="pixel poses")
                T_ref = track.at(t_start, extrapolate=True)
                check_column_timing(track, t_start)
                P = np.empty((len(r), 4, 4))
                ok = good[rows, cols]
                P[ok] = euler_pose(pri[rows[ok], cols[ok]])
                if not ok.all():
                    P[~ok] = track.at(t_start + dt[~ok], extrapolate=True).reshape(-1, 4, 4)
                M = np.linalg.inv(T_ref @ X) @ P @ X         # (M, 4, 4): sensor at t -> sensor at frame time
                xyz = np.einsum("mij,mj->mi", M[:, :3, :3], xyz) + M[:, :3, 3]
        if prow is None:
            T_ref = ego_mid.at(t_start, extrapolate=True)
            xyz = motion_compensate(xyz, t_start + dt, t_start, sensor_track(ego_mid, X))
        inten = np.tanh(np.maximum(ri[rows, cols, 1].astype(np.float64), 0.0))
        return T_ref, lidar_points(xyz, inten, rows, dt)

    def image(e: _Event) -> np.ndarray:
        data = ci.column(f"{CI}.image")[e.row].as_py()
        if not data:
            raise ConvertError(DATASET, rel_ci, f"row {e.row}: empty image", f"{CI}.image")
        try:
            img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        except (OSError, ValueError) as exc:
            raise ConvertError(DATASET, rel_ci, f"row {e.row}: cannot decode the image ({exc})", f"{CI}.image") \
                from None
        k = cameras[int(ci_cam[e.row])]["k"]
        if img.shape[:2] != (heights[k], widths[k]):
            raise ConvertError(DATASET, rel_ci, f"row {e.row}: image {img.shape[1]}x{img.shape[0]}, calibration says "
                               f"{widths[k]}x{heights[k]}", f"{CI}.image")
        return img

    with progress_bar(f"waymo {scene}", len(groups), enabled=progress) as advance:
        for group in groups:
            T_world_ego, images, points = None, {}, {}
            for e in group:
                if e.kind == 0:
                    T_world_ego, points[e.sid] = lidar_frame(e)
                else:
                    images[e.sid] = image(e)
                    if T_world_ego is None:
                        T_world_ego = e.T_world_ego
            t = next((e.t for e in group if e.kind == 0), group[0].t)   # a sweep's points are timed from its start
            writer.add_frame(t - t0, T_world_ego, images=images, lidar_points=points)
            advance()

    n_actors = 0
    if src.has("lidar_box"):
        n_actors = _box_tracks(src, {int(t): (int(t) - base_us) * 1e-6 for t in frame_us}, vehicle, t0, writer)
    else:
        logger.warning("%s missing: no actor tracks", _rel("lidar_box", scene))
    path = writer.finish()
    logger.info("waymo %s: %d frames (%d sweeps, %d images), %d actors", scene, len(groups),
                sum(e.kind == 0 for e in events), sum(e.kind == 1 for e in events), n_actors)
    return path
