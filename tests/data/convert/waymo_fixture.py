"""A miniature Waymo Open Dataset v2 run segment in the real on-disk layout.

``SOURCE/<component>/<context_name>.parquet`` with the column names and Arrow types of
the v2 components (``waymo_open_dataset/v2/perception/*.py``, as listed by the v2
tutorial's "List columns in all components"): int8 enum keys, row-major transforms as
``fixed_size_list<double>[16]``, range images as ``list<float>`` values plus a
``fixed_size_list<int32>[3]`` shape, JPEG images as binary.

The world is known: the vehicle moves at a constant world velocity while yawing at a
constant rate (small constant pitch and roll), so every pose is exact at any time.  The
TOP LiDAR's range image is ray-cast from the sensor pose at each column's firing time
(column c at (c + 0.5) / W of the 0.1 s sweep from the frame timestamp) onto a ground
plane z = 0 and a wall; ``lidar_pose`` holds each pixel's vehicle pose.  Cameras follow
Waymo's timing (trigger, shutter, readout) with the image pose at the principal point's
time.  Boxes are written in each frame's vehicle-pose frame from known world tracks.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

CONTEXT = "10023947602400723454_1120_000_1140_000"
T0_US = 1552440195362591            # first frame timestamp (us since the Unix epoch)
N_FRAMES = 3
FRAME_US = 100_000
SWEEP = FRAME_US * 1e-6
# Ego motion: p(t) = P0 + V t, R(t) = Rz(YAW0 + YAW_RATE t) Ry(PITCH) Rx(ROLL), t from T0.
P0 = np.array([1200.0, -350.0, 0.0])
V = np.array([7.0, 2.0, 0.1])
YAW0, YAW_RATE, PITCH, ROLL = 0.4, 0.3, 0.02, -0.01
# TOP LiDAR.
H, W = 6, 60
INCL_DEG = [-17.0, -12.0, -8.0, -5.0, -2.5, 1.5]     # ascending, as Waymo stores them
LIDAR_XYZ, LIDAR_YAW, LIDAR_PITCH = (1.43, 0.0, 2.18), 0.05, 0.01
WALL_X = 1235.0                                       # world plane x = WALL_X
MAX_RANGE = 75.0
# Cameras: name code -> (yaw, pitch, rolling shutter direction, trigger offset from the frame start).
IMG_W, IMG_H = 64, 48
CAMS = {1: (0.0, 0.03, 2, 0.045), 2: (0.8, 0.0, 1, 0.030), 3: (-0.8, 0.0, 4, 0.060),
        4: (1.6, 0.0, 5, 0.015), 5: (-1.6, -0.02, 3, 0.075)}
INTRINSIC = dict(f_u=40.0, f_v=41.0, c_u=32.3, c_v=23.9, k1=-0.05, k2=0.01, p1=0.001, p2=-0.0005, k3=0.002)
SHUTTER, READOUT = 0.004, 0.020
TYPE_VEHICLE, TYPE_PEDESTRIAN, TYPE_SIGN = 1, 2, 3


def rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def pose(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def ego(t: float) -> np.ndarray:
    """world_from_vehicle at t seconds after T0."""
    return pose(rz(YAW0 + YAW_RATE * t) @ ry(PITCH) @ rx(ROLL), P0 + V * t)


def ego_rpyxyz(t: float) -> list[float]:
    return [ROLL, PITCH, YAW0 + YAW_RATE * t, *(P0 + V * t)]


LIDAR_EXTRINSIC = pose(rz(LIDAR_YAW) @ ry(LIDAR_PITCH), LIDAR_XYZ)


def camera_extrinsic(code: int) -> np.ndarray:
    yaw, pitch, _, _ = CAMS[code]
    return pose(rz(yaw) @ ry(pitch), (1.5 + 0.1 * code, 0.2 * (code - 3), 2.0))


def camera_times(code: int, frame: int) -> dict[str, float]:
    """Trigger, readout-done and pose times (s since T0) of a camera image; the image
    pose is at the principal point's time (Waymo's camera_model.cc timing)."""
    _, _, direction, offset = CAMS[code]
    trigger = frame * SWEEP + offset
    base = trigger + 0.5 * SHUTTER
    at = {1: INTRINSIC["c_v"] / IMG_H, 2: INTRINSIC["c_u"] / IMG_W, 3: (IMG_H - INTRINSIC["c_v"]) / IMG_H,
          4: (IMG_W - INTRINSIC["c_u"]) / IMG_W, 5: 0.0}[direction]
    return {"trigger": trigger, "done": trigger + SHUTTER + READOUT, "pose": base + READOUT * at}


def expected_camera_frame_time(code: int, frame: int) -> tuple[float, float]:
    """What the converter must produce: (frame time since T0, rolling_shutter_s)."""
    _, _, direction, _ = CAMS[code]
    ts = camera_times(code, frame)
    if direction == 1:
        return ts["trigger"] + 0.5 * SHUTTER, READOUT
    return ts["pose"], 0.0


def project_waymo(code: int, p_vehicle: np.ndarray) -> np.ndarray:
    """Pixel (u, v) of a vehicle-frame point by Waymo's own camera model (camera frame x
    forward, y left, z up; u = -y/x, v = -z/x; OpenCV distortion; pixel 0 spans [0, 1))."""
    p = np.linalg.inv(camera_extrinsic(code)) @ np.append(p_vehicle, 1.0)
    u, v = -p[1] / p[0], -p[2] / p[0]
    k = INTRINSIC
    r2 = u * u + v * v
    rd = 1 + k["k1"] * r2 + k["k2"] * r2 * r2 + k["k3"] * r2 ** 3
    ud = u * rd + 2 * k["p1"] * u * v + k["p2"] * (r2 + 2 * u * u)
    vd = v * rd + k["p1"] * (r2 + 2 * v * v) + 2 * k["p2"] * u * v
    return np.array([ud * k["f_u"] + k["c_u"], vd * k["f_v"] + k["c_v"]])


@dataclass
class Box:
    oid: str
    type: int
    frames: list[int]
    size: list[tuple[float, float, float]]
    center0: tuple[float, float, float]
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)
    heading0: float = 0.0
    heading_rate: float = 0.0

    def world(self, t: float) -> tuple[np.ndarray, float]:
        return np.array(self.center0) + np.array(self.velocity) * t, self.heading0 + self.heading_rate * t


BOXES = [Box("ZyK_iICxQsEYdJLxMFTw7w", TYPE_VEHICLE, [0, 1, 2], [(4.5, 1.9, 1.6), (4.6, 1.95, 1.6), (4.5, 1.9, 1.62)],
             (1220.0, -340.0, 0.8), (5.0, -1.0, 0.0), 0.2, 0.1),
         Box("dNW3S4yA8s8GmltmAPV8LQ", TYPE_PEDESTRIAN, [1, 2], [(0.8, 0.7, 1.8)] * 2, (1210.0, -355.0, 0.9)),
         Box("sign-0", TYPE_SIGN, [0], [(0.1, 0.6, 0.6)], (1225.0, -352.0, 2.5))]


@dataclass
class Truth:
    """What the fixture wrote: per frame the valid pixels (row-major) and their world points."""

    root: Path
    lidar_rows: list[np.ndarray] = field(default_factory=list)
    lidar_cols: list[np.ndarray] = field(default_factory=list)
    lidar_world: list[np.ndarray] = field(default_factory=list)
    lidar_intensity: list[np.ndarray] = field(default_factory=list)
    images: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)


# --- schemas (exact v2 column names and Arrow types) ---------------------------------------

def _f64(name):
    return pa.field(name, pa.float64())


KEYS_FRAME = [pa.field("key.segment_context_name", pa.string()), pa.field("key.frame_timestamp_micros", pa.int64())]
T16 = pa.list_(pa.float64(), 16)
SHAPE3 = pa.list_(pa.int32(), 3)

VEHICLE_POSE = pa.schema(KEYS_FRAME + [pa.field("[VehiclePoseComponent].world_from_vehicle.transform", T16)])
CAMERA_CALIBRATION = pa.schema(
    [pa.field("key.segment_context_name", pa.string()), pa.field("key.camera_name", pa.int8())]
    + [_f64(f"[CameraCalibrationComponent].intrinsic.{k}") for k in INTRINSIC]
    + [pa.field("[CameraCalibrationComponent].extrinsic.transform", T16),
       pa.field("[CameraCalibrationComponent].width", pa.int32()),
       pa.field("[CameraCalibrationComponent].height", pa.int32()),
       pa.field("[CameraCalibrationComponent].rolling_shutter_direction", pa.int8())])
CAMERA_IMAGE = pa.schema(
    KEYS_FRAME + [pa.field("key.camera_name", pa.int8()), pa.field("[CameraImageComponent].image", pa.binary()),
                  pa.field("[CameraImageComponent].pose.transform", T16)]
    + [pa.field(f"[CameraImageComponent].velocity.linear_velocity.{a}", pa.float32()) for a in "xyz"]
    + [_f64(f"[CameraImageComponent].velocity.angular_velocity.{a}") for a in "xyz"]
    + [_f64("[CameraImageComponent].pose_timestamp")]
    + [_f64(f"[CameraImageComponent].rolling_shutter_params.{k}")
       for k in ("shutter", "camera_trigger_time", "camera_readout_done_time")])
LIDAR_CALIBRATION = pa.schema(
    [pa.field("key.segment_context_name", pa.string()), pa.field("key.laser_name", pa.int8()),
     pa.field("[LiDARCalibrationComponent].extrinsic.transform", T16),
     _f64("[LiDARCalibrationComponent].beam_inclination.min"), _f64("[LiDARCalibrationComponent].beam_inclination.max"),
     pa.field("[LiDARCalibrationComponent].beam_inclination.values", pa.list_(pa.float64()))])


def _range_image_fields(component: str, returns=(1, 2)) -> list[pa.Field]:
    out = []
    for r in returns:
        out += [pa.field(f"[{component}].range_image_return{r}.values", pa.list_(pa.float32())),
                pa.field(f"[{component}].range_image_return{r}.shape", SHAPE3)]
    return out


LIDAR = pa.schema(KEYS_FRAME + [pa.field("key.laser_name", pa.int8())] + _range_image_fields("LiDARComponent"))
LIDAR_POSE = pa.schema(KEYS_FRAME + [pa.field("key.laser_name", pa.int8())]
                       + _range_image_fields("LiDARPoseComponent", (1,)))
LIDAR_BOX = pa.schema(
    KEYS_FRAME + [pa.field("key.laser_object_id", pa.string())]
    + [_f64(f"[LiDARBoxComponent].box.center.{a}") for a in "xyz"]
    + [_f64(f"[LiDARBoxComponent].box.size.{a}") for a in "xyz"]
    + [_f64("[LiDARBoxComponent].box.heading"), pa.field("[LiDARBoxComponent].type", pa.int8())]
    + [_f64(f"[LiDARBoxComponent].{k}.{a}") for k in ("speed", "acceleration") for a in "xyz"]
    + [pa.field("[LiDARBoxComponent].num_lidar_points_in_box", pa.int64()),
       pa.field("[LiDARBoxComponent].num_top_lidar_points_in_box", pa.int64()),
       pa.field("[LiDARBoxComponent].difficulty_level.detection", pa.int8()),
       pa.field("[LiDARBoxComponent].difficulty_level.tracking", pa.int8())])


def _write(root: Path, tag: str, schema: pa.Schema, rows: list[dict]) -> None:
    path = root / tag / f"{CONTEXT}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)


def _flat(T: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(T).reshape(-1)]


# --- the LiDAR ------------------------------------------------------------------------------

def _cast(origin: np.ndarray, d: np.ndarray) -> float:
    """Range along unit ray d from origin to the ground z = 0 or the wall x = WALL_X
    (nearest hit in front within MAX_RANGE), or -1 (no return)."""
    hits = []
    if d[2] < -1e-9:
        hits.append(-origin[2] / d[2])
    if d[0] > 1e-9:
        hits.append((WALL_X - origin[0]) / d[0])
    hits = [h for h in hits if 0.5 < h < MAX_RANGE]
    return min(hits) if hits else -1.0


def write_dataset(root: str | Path) -> Truth:
    """Write the segment under ``root``; returns what the tests compare against."""
    root = Path(root)
    truth = Truth(root)
    frame_t = [i * SWEEP for i in range(N_FRAMES)]
    _write(root, "vehicle_pose", VEHICLE_POSE, [
        {"key.segment_context_name": CONTEXT, "key.frame_timestamp_micros": T0_US + i * FRAME_US,
         "[VehiclePoseComponent].world_from_vehicle.transform": _flat(ego(frame_t[i] + 0.5 * SWEEP))}
        for i in range(N_FRAMES)])

    # LiDAR calibration of the TOP LiDAR and a FRONT LiDAR (a second laser row to skip).
    incl = np.radians(INCL_DEG)
    _write(root, "lidar_calibration", LIDAR_CALIBRATION, [
        {"key.segment_context_name": CONTEXT, "key.laser_name": 2,
         "[LiDARCalibrationComponent].extrinsic.transform": _flat(pose(np.eye(3), (4.0, 0.0, 0.5))),
         "[LiDARCalibrationComponent].beam_inclination.min": -1.5,
         "[LiDARCalibrationComponent].beam_inclination.max": 0.5,
         "[LiDARCalibrationComponent].beam_inclination.values": None},
        {"key.segment_context_name": CONTEXT, "key.laser_name": 1,
         "[LiDARCalibrationComponent].extrinsic.transform": _flat(LIDAR_EXTRINSIC),
         "[LiDARCalibrationComponent].beam_inclination.min": float(incl[0]) - 0.001,
         "[LiDARCalibrationComponent].beam_inclination.max": float(incl[-1]) + 0.001,
         "[LiDARCalibrationComponent].beam_inclination.values": [float(v) for v in incl]}])

    incl_rows = incl[::-1]
    az_cols = math.pi - (np.arange(W) + 0.5) * 2 * math.pi / W - LIDAR_YAW
    lidar_rows, pose_rows = [], []
    for i in range(N_FRAMES):
        ri = np.zeros((H, W, 4), np.float32)
        pose_ri = np.zeros((H, W, 6), np.float32)
        world = []
        for c in range(W):
            t_c = frame_t[i] + (c + 0.5) / W * SWEEP
            S = ego(t_c) @ LIDAR_EXTRINSIC
            for r in range(H):
                d_s = np.array([math.cos(az_cols[c]) * math.cos(incl_rows[r]),
                                math.sin(az_cols[c]) * math.cos(incl_rows[r]), math.sin(incl_rows[r])])
                d = S[:3, :3] @ d_s
                rng = _cast(S[:3, 3], d)
                if rng < 0:
                    ri[r, c] = (-1.0, 0.0, 0.0, 0.0)
                    continue
                rng32 = float(np.float32(rng))
                intensity = 0.05 + 0.01 * r + (3.0 if (r + c) % 17 == 0 else 0.0)   # some retro-reflectors
                ri[r, c] = (rng32, intensity, 0.01, float(c % 2))
                pose_ri[r, c] = ego_rpyxyz(t_c)
                world.append((r, c, S[:3, 3] + rng32 * d, intensity))
        # Like real files: one valid pixel whose pose is all zeros (the converter falls back).
        rr, cc = next((r, c) for r, c, _, _ in world if c > 3)
        pose_ri[rr, cc] = 0.0
        world.sort(key=lambda w: (w[0], w[1]))       # row-major, as a range image is read
        truth.lidar_rows.append(np.array([w[0] for w in world]))
        truth.lidar_cols.append(np.array([w[1] for w in world]))
        truth.lidar_world.append(np.array([w[2] for w in world]))
        truth.lidar_intensity.append(np.array([w[3] for w in world], np.float32))
        key = {"key.segment_context_name": CONTEXT, "key.frame_timestamp_micros": T0_US + i * FRAME_US}
        lidar_rows.append({**key, "key.laser_name": 1,
                           "[LiDARComponent].range_image_return1.values": ri.reshape(-1).tolist(),
                           "[LiDARComponent].range_image_return1.shape": [H, W, 4],
                           "[LiDARComponent].range_image_return2.values": np.zeros(H * W * 4).tolist(),
                           "[LiDARComponent].range_image_return2.shape": [H, W, 4]})
        front = np.full((4, 5, 4), -1.0, np.float32)  # a FRONT LiDAR image, to be ignored
        lidar_rows.append({**key, "key.laser_name": 2,
                           "[LiDARComponent].range_image_return1.values": front.reshape(-1).tolist(),
                           "[LiDARComponent].range_image_return1.shape": [4, 5, 4],
                           "[LiDARComponent].range_image_return2.values": front.reshape(-1).tolist(),
                           "[LiDARComponent].range_image_return2.shape": [4, 5, 4]})
        pose_rows.append({**key, "key.laser_name": 1,
                          "[LiDARPoseComponent].range_image_return1.values": pose_ri.reshape(-1).tolist(),
                          "[LiDARPoseComponent].range_image_return1.shape": [H, W, 6]})
    _write(root, "lidar", LIDAR, lidar_rows)
    _write(root, "lidar_pose", LIDAR_POSE, pose_rows)

    # Cameras.
    _write(root, "camera_calibration", CAMERA_CALIBRATION, [
        {"key.segment_context_name": CONTEXT, "key.camera_name": code,
         **{f"[CameraCalibrationComponent].intrinsic.{k}": v for k, v in INTRINSIC.items()},
         "[CameraCalibrationComponent].extrinsic.transform": _flat(camera_extrinsic(code)),
         "[CameraCalibrationComponent].width": IMG_W, "[CameraCalibrationComponent].height": IMG_H,
         "[CameraCalibrationComponent].rolling_shutter_direction": CAMS[code][2]} for code in CAMS])
    rng = np.random.default_rng(7)
    image_rows = []
    for i in range(N_FRAMES):
        for code in CAMS:
            ts = camera_times(code, i)
            T = ego(ts["pose"])
            w_vehicle = T[:3, :3].T @ np.array([0.0, 0.0, YAW_RATE])
            img = (rng.integers(0, 255, (IMG_H // 8, IMG_W // 8, 3))).astype(np.uint8).repeat(8, 0).repeat(8, 1)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="JPEG", quality=90)
            truth.images[(i, code)] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            base = T0_US * 1e-6
            image_rows.append({
                "key.segment_context_name": CONTEXT, "key.frame_timestamp_micros": T0_US + i * FRAME_US,
                "key.camera_name": code, "[CameraImageComponent].image": buf.getvalue(),
                "[CameraImageComponent].pose.transform": _flat(T),
                **{f"[CameraImageComponent].velocity.linear_velocity.{a}": float(V[k]) for k, a in enumerate("xyz")},
                **{f"[CameraImageComponent].velocity.angular_velocity.{a}": float(w_vehicle[k])
                   for k, a in enumerate("xyz")},
                "[CameraImageComponent].pose_timestamp": base + ts["pose"],
                "[CameraImageComponent].rolling_shutter_params.shutter": SHUTTER,
                "[CameraImageComponent].rolling_shutter_params.camera_trigger_time": base + ts["trigger"],
                "[CameraImageComponent].rolling_shutter_params.camera_readout_done_time": base + ts["done"]})
    _write(root, "camera_image", CAMERA_IMAGE, image_rows)

    # Boxes, in each frame's vehicle-pose frame.
    box_rows = []
    for box in BOXES:
        for k, i in enumerate(box.frames):
            VP = ego(frame_t[i] + 0.5 * SWEEP)
            c_w, h_w = box.world(frame_t[i])
            c_v = (np.linalg.inv(VP) @ np.append(c_w, 1.0))[:3]
            h_v = h_w - (YAW0 + YAW_RATE * (frame_t[i] + 0.5 * SWEEP))
            box_rows.append({
                "key.segment_context_name": CONTEXT, "key.frame_timestamp_micros": T0_US + i * FRAME_US,
                "key.laser_object_id": box.oid,
                **{f"[LiDARBoxComponent].box.center.{a}": float(c_v[j]) for j, a in enumerate("xyz")},
                **{f"[LiDARBoxComponent].box.size.{a}": float(box.size[k][j]) for j, a in enumerate("xyz")},
                "[LiDARBoxComponent].box.heading": float(h_v), "[LiDARBoxComponent].type": box.type,
                **{f"[LiDARBoxComponent].{q}.{a}": 0.0 for q in ("speed", "acceleration") for a in "xyz"},
                "[LiDARBoxComponent].num_lidar_points_in_box": 10, "[LiDARBoxComponent].num_top_lidar_points_in_box": 8,
                "[LiDARBoxComponent].difficulty_level.detection": 1,
                "[LiDARBoxComponent].difficulty_level.tracking": 1})
    _write(root, "lidar_box", LIDAR_BOX, box_rows)
    return truth


def box_vehicle_pose(box: Box, frame: int) -> np.ndarray:
    """T_world_object the converter must produce: vehicle pose @ [Rz(heading) | centre] of the written box."""
    VP = ego(frame * SWEEP + 0.5 * SWEEP)
    c_w, h_w = box.world(frame * SWEEP)
    c_v = (np.linalg.inv(VP) @ np.append(c_w, 1.0))[:3]
    h_v = h_w - (YAW0 + YAW_RATE * (frame * SWEEP + 0.5 * SWEEP))
    return VP @ pose(rz(h_v), c_v)


def drop_column(root: str | Path, tag: str, column: str) -> None:
    """Rewrite a component without one column (for the missing-field tests)."""
    path = Path(root) / tag / f"{CONTEXT}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([column]), path)
