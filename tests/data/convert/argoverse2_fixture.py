"""A miniature Argoverse 2 sensor log in the real on-disk layout, with known geometry.

Layout, table columns and column types follow the av2-api sample logs
(``tests/unit/test_data/sensor/val/<log_id>/``): Feather (Arrow IPC) tables
``city_SE3_egovehicle.feather``, ``calibration/egovehicle_SE3_sensor.feather``,
``calibration/intrinsics.feather`` (height_px, width_px uint16), ``annotations.feather``,
``sensors/lidar/<timestamp_ns>.feather`` (x, y, z float16 in the ego frame, ego-motion
compensated to the sweep timestamp; intensity, laser_number uint8; offset_ns int32),
``sensors/cameras/<camera>/<timestamp_ns>.jpg`` (undistorted, av2 pixel centres at
integer coordinates) and ``map/``.

The world: the ego drives (with a little pitch and roll) through a "room" of a flat ground
and four walls; both LiDAR units are simulated ray by ray (each laser at its elevation,
the unit turning at 10 Hz from a known start azimuth and direction), every hit moved into
the ego frame at the sweep time as AV2 does; bright single-pixel markers hang at known
city points and are drawn where av2's camera model puts them; two boxes move (a car and a
pedestrian) and a bollard stands still.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
from PIL import Image

LOG_ID = "5e1f06b2-0c6d-3c7e-9a4b-7d2f8c1e9a30"
T0_NS = 315966253660357000
# Sweep timestamps: ~10 Hz with the jitter of real logs.
SWEEP_NS = [T0_NS, T0_NS + 100_196_000, T0_NS + 199_729_000, T0_NS + 299_926_000]
CAMERA_PERIOD_NS = 50_000_000
# Each camera fires at this offset from every sweep (and CAMERA_PERIOD_NS later).
CAMERA_PHASE_NS = {"ring_front_center": 0, "ring_front_left": 12_000_000, "ring_front_right": -12_000_000,
                   "ring_side_left": 18_000_000, "ring_side_right": -18_000_000, "ring_rear_left": 22_000_000,
                   "ring_rear_right": -22_000_000, "stereo_front_left": 0, "stereo_front_right": 0}
# An annotated sweep before the first one, whose sweep file is not in the log (a partial copy).
ANNOTATION_BEFORE_NS = T0_NS - 99_533_000
# (camera, sweep index) whose image at sweep + phase is missing from the log (a dropped frame).
DROPPED_IMAGE = ("ring_rear_left", 2)

# egovehicle_SE3_sensor of the av2-api sample log 7fab2350-... (qw, qx, qy, qz, tx, ty, tz).
EXTRINSICS = {
    "ring_front_center": (0.501645, -0.49862, 0.50107, -0.498657, 1.635018, 0.002676, 1.397967),
    "ring_front_left": (0.637044, -0.668888, 0.276862, -0.264784, 1.54578, 0.203698, 1.394255),
    "ring_front_right": (0.264029, -0.277286, 0.670261, -0.635729, 1.55126, -0.19923, 1.397918),
    "ring_rear_left": (0.601889, -0.60346, -0.369956, 0.369727, 1.090193, 0.126106, 1.418716),
    "ring_rear_right": (-0.368356, 0.368223, 0.603709, -0.603541, 1.100521, -0.127168, 1.415009),
    "ring_side_left": (0.687734, -0.72148, -0.059285, 0.054543, 1.305545, 0.275683, 1.407449),
    "ring_side_right": (-0.056086, 0.053602, 0.723359, -0.6861, 1.3055, -0.278796, 1.395995),
    "stereo_front_left": (0.500842, -0.499026, 0.500668, -0.499461, 1.625064, 0.250715, 1.190953),
    "stereo_front_right": (0.503349, -0.49919, 0.498505, -0.498941, 1.630594, -0.247706, 1.190142),
    "up_lidar": (0.999987, 0.0, 0.0, -0.005085, 1.35018, 0.0, 1.64042),
    "down_lidar": (-0.000538, -0.99492, 0.100671, -0.000141, 1.346761, 0.004567, 1.525496),
}
# Radial distortion of the sample log (the released images are undistorted; kept in the table).
DISTORTION = {"ring_front_center": (-0.240732, -0.212243, 0.325902),
              "ring_front_left": (-0.281782, -0.037336, 0.104648),
              "ring_front_right": (-0.281644, -0.033104, 0.099225), "ring_rear_left": (-0.275489, -0.053898, 0.118793),
              "ring_rear_right": (-0.278846, -0.046741, 0.112846), "ring_side_left": (-0.285219, -0.025032, 0.092732),
              "ring_side_right": (-0.283618, -0.032192, 0.099182),
              "stereo_front_left": (-0.284888, -0.027553, 0.094135),
              "stereo_front_right": (-0.282783, -0.03677, 0.104836)}
# Tiny images with the real aspect and field of view: the front-centre camera is portrait.
INTRINSICS = {cam: (37.0, 37.0, 23.6, 31.3, 64, 48) if cam == "ring_front_center" else
              (53.0 + i, 53.0 + i, 31.7 - 0.1 * i, 23.4 + 0.1 * i, 48, 64)
              for i, cam in enumerate(EXTRINSICS) if cam in DISTORTION}  # fx, fy, cx, cy, height, width

# The VLP-32C elevation of each AV2 laser_number mod 32 (deg), as measured on the av2-api
# sample sweeps (median elevation of each laser's returns in its unit's frame).
LASER_ELEVATIONS_DEG = (7.0, -1.667, 1.667, -0.667, 15.0, -0.333, 3.333, 0.667, 1.333, 0.0, 1.0, 2.333, 0.333, -1.0,
                        4.667, 10.333, -6.148, -15.639, -3.0, -2.0, -4.0, -8.843, -4.667, -3.333, -2.667, -5.333,
                        -1.333, -7.254, -3.667, -11.31, -2.333, -25.0)
# Unit spin: (azimuth at the sweep timestamp in deg, +1 counter-clockwise / -1 clockwise about
# the unit's own z, first firing after the sweep timestamp in ns), like the sample sweeps.
SPIN = {"up_lidar": (145.0, -1, 2_654_000), "down_lidar": (24.0, +1, 6_573_000)}
FIRINGS = 30                  # firing cycles per unit per sweep (every 12 degrees)
LASER_GAP_NS = 2_304          # between the lasers of one firing cycle
# The room: ground height and wall positions in the city frame (m).
CITY0 = np.array([5172.668216, 2419.1028, 66.929798])
GROUND_Z = CITY0[2] - 0.02
WALLS_X = (CITY0[0] - 14.0, CITY0[0] + 22.0)
WALLS_Y = (CITY0[1] - 12.0, CITY0[1] + 13.0)
MAX_HIT_M = 30.0              # float16 ego coordinates keep < 1 cm below 32 m
N_ZERO_ROWS = 2               # rows at (0, 0, 0) in the first sweep: no return


def rotmat(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll),
                              math.sin(roll))
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return Rz @ Ry @ Rx


def pose(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def quat_to_rot(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def rot_to_quat(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a rotation matrix, w >= 0."""
    w = math.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)


def ego_pose(ns: int) -> np.ndarray:
    """city_SE3_egovehicle at a timestamp: ~8 m/s, turning, pitching and rolling a little."""
    s = (ns - T0_NS) * 1e-9
    t = CITY0 + np.array([8.0 * s, 1.5 * s * s, 0.05 * s])
    return pose(rotmat(0.4 + 0.3 * s, 0.02 * math.sin(3 * s), -0.01 + 0.01 * s), t)


def sensor_pose(name: str) -> np.ndarray:
    """egovehicle_SE3_sensor of the calibration table."""
    q = EXTRINSICS[name]
    return pose(quat_to_rot(q[:4]), q[4:])


def box_pose(track: str, ns: int) -> np.ndarray:
    """City pose of a box (centre, x forward, z up) at a timestamp."""
    s = (ns - T0_NS) * 1e-9
    if track == "car":
        return pose(rotmat(1.2 + 0.2 * s), CITY0 + np.array([9.0 + 5.0 * s, 4.0 + 2.0 * s, 0.8]))
    if track == "pedestrian":
        return pose(rotmat(-2.0), CITY0 + np.array([-4.0 - 1.2 * s * math.cos(2.0), -6.0 - 1.2 * s * math.sin(2.0),
                                                    0.9]))
    return pose(np.eye(3), CITY0 + np.array([3.0, -7.0, 0.45]))          # the bollard


BOXES = {  # track uuid -> (name, AV2 category, length, width, height)
    "7d3c6f0e-51a4-4b8e-9d6c-2f0a1b3c4d5e": ("car", "REGULAR_VEHICLE", 4.52, 1.91, 1.62),
    "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d": ("pedestrian", "PEDESTRIAN", 0.71, 0.64, 1.78),
    "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9": ("bollard", "BOLLARD", 0.25, 0.33, 0.94),
}
# Bright points (city frame) drawn into the images.
MARKERS = np.array([CITY0 + [10 * math.cos(a), 10 * math.sin(a), 1.2 + 0.3 * math.sin(3 * a)]
                    for a in np.radians(np.arange(0, 360, 20))])


def camera_times(cam: str) -> list[int]:
    """Image timestamps of a camera: each sweep + phase, + phase + half a sweep, and one
    before the first sweep; without the dropped image."""
    phase = CAMERA_PHASE_NS[cam]
    times = [SWEEP_NS[0] + phase - CAMERA_PERIOD_NS]
    for k, s in enumerate(SWEEP_NS):
        if (cam, k) != DROPPED_IMAGE:
            times.append(s + phase)
        times.append(s + phase + CAMERA_PERIOD_NS)
    return sorted(times)


def av2_project(cam: str, ns: int, p_city: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """av2's projection (pinhole_camera.py): uv = K inverse(ego_SE3_cam) inverse(city_SE3_ego) p;
    returns uv (N, 2) and depth (N,)."""
    fx, fy, cx, cy, _, _ = INTRINSICS[cam]
    T = np.linalg.inv(ego_pose(ns) @ sensor_pose(cam))
    pc = p_city @ T[:3, :3].T + T[:3, 3]
    return np.column_stack([fx * pc[:, 0] / pc[:, 2] + cx, fy * pc[:, 1] / pc[:, 2] + cy]), pc[:, 2]


def marker_pixels(cam: str, ns: int) -> list[tuple[int, int, np.ndarray]]:
    """(row, column, city point) of every marker av2 puts inside the image (pixel = round(uv))."""
    _, _, _, _, h, w = INTRINSICS[cam]
    uv, z = av2_project(cam, ns, MARKERS)
    out = []
    for (u, v), d, p in zip(uv, z, MARKERS):
        if d > 0.5 and 1 <= round(u) < w - 1 and 1 <= round(v) < h - 1:
            out.append((int(round(v)), int(round(u)), p))
    return out


def ray_hit(o: np.ndarray, d: np.ndarray) -> float | None:
    """Distance along the city ray o + r d to the room (ground or a wall), or None."""
    best = None
    for axis, values in ((2, (GROUND_Z,)), (0, WALLS_X), (1, WALLS_Y)):
        for v in values:
            if abs(d[axis]) > 1e-9:
                r = (v - o[axis]) / d[axis]
                if r > 0 and (best is None or r < best):
                    best = r
    return best if best is not None and 1.0 < best < MAX_HIT_M else None


@dataclass
class SweepTruth:
    """What a sweep file holds, row by row, and where each return really is."""

    ns: int
    city: np.ndarray           # (M, 3) true hit points (city frame), NaN for the zero rows
    ego16: np.ndarray          # (M, 3) float16 as written (ego frame at the sweep time)
    laser: np.ndarray          # (M,) laser_number
    offset_ns: np.ndarray      # (M,)
    intensity: np.ndarray      # (M,) uint8


@dataclass
class Truth:
    root: Path
    log_dir: Path
    sweeps: list[SweepTruth] = field(default_factory=list)
    images: dict[str, list[int]] = field(default_factory=dict)


def simulate_sweep(ns: int, rng: np.random.Generator, zero_rows: int) -> SweepTruth:
    rows = []
    T_ego_inv = np.linalg.inv(ego_pose(ns))
    for unit, name in enumerate(("up_lidar", "down_lidar")):
        a0, sign, first_ns = SPIN[name]
        for f in range(FIRINGS):
            for laser in range(32):
                off = first_ns + f * 3_333_333 + laser * LASER_GAP_NS
                t = ns + off
                az = math.radians(a0) + sign * 2 * math.pi * 10.0 * off * 1e-9
                el = math.radians(LASER_ELEVATIONS_DEG[laser])
                d_s = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
                T = ego_pose(t) @ sensor_pose(name)
                o, d = T[:3, 3], T[:3, :3] @ d_s
                r = ray_hit(o, d)
                if r is None:
                    continue
                p = o + r * d
                rows.append((p, 32 * unit + laser, off))
    city = np.array([p for p, _, _ in rows])
    ego = city @ T_ego_inv[:3, :3].T + T_ego_inv[:3, 3]
    laser = np.array([lz for _, lz, _ in rows], np.uint8)
    offset = np.array([o for _, _, o in rows], np.int32)
    if zero_rows:
        at = np.array([5, 40])[:zero_rows]
        city = np.insert(city, at, np.nan, axis=0)
        ego = np.insert(ego, at, 0.0, axis=0)
        laser = np.insert(laser, at, np.array([3, 40], np.uint8)[:zero_rows])
        offset = np.insert(offset, at, np.array([2_700_000, 7_000_000], np.int32)[:zero_rows])
    intensity = rng.integers(0, 256, len(laser)).astype(np.uint8)
    return SweepTruth(ns, city, ego.astype(np.float16), laser, offset, intensity)


def write_ego_poses(path: Path, stamps: list[int], poses: list[np.ndarray]) -> None:
    cols = {"timestamp_ns": pa.array(stamps, pa.int64())}
    q = np.array([rot_to_quat(T[:3, :3]) for T in poses])
    for i, c in enumerate(("qw", "qx", "qy", "qz")):
        cols[c] = pa.array(q[:, i], pa.float64())
    for i, c in enumerate(("tx_m", "ty_m", "tz_m")):
        cols[c] = pa.array([T[i, 3] for T in poses], pa.float64())
    feather.write_feather(pa.table(cols), path)


def write_log(root: str | Path, split: str | None = None, seed: int = 0) -> Truth:
    """Write the miniature log under ``root`` (``root/<split>/<log_id>`` with a split)."""
    root = Path(root)
    log_dir = root / split / LOG_ID if split else root / LOG_ID
    (log_dir / "calibration").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    truth = Truth(root, log_dir)

    # Calibration.  (Rows in the real tables' order.)
    names = list(EXTRINSICS)
    q = np.array([EXTRINSICS[n] for n in names])
    ext = {"sensor_name": pa.array(names, pa.string())}
    for i, c in enumerate(("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")):
        ext[c] = pa.array(q[:, i], pa.float64())
    feather.write_feather(pa.table(ext), log_dir / "calibration/egovehicle_SE3_sensor.feather")
    cams = list(INTRINSICS)
    intr = {"sensor_name": pa.array(cams, pa.string())}
    for i, c in enumerate(("fx_px", "fy_px", "cx_px", "cy_px")):
        intr[c] = pa.array([INTRINSICS[k][i] for k in cams], pa.float64())
    for i, c in enumerate(("k1", "k2", "k3")):
        intr[c] = pa.array([DISTORTION[k][i] for k in cams], pa.float64())
    intr["height_px"] = pa.array([INTRINSICS[k][4] for k in cams], pa.uint16())
    intr["width_px"] = pa.array([INTRINSICS[k][5] for k in cams], pa.uint16())
    feather.write_feather(pa.table(intr), log_dir / "calibration/intrinsics.feather")

    # Images (20 Hz, per-camera phase), black with the markers drawn where av2 projects them.
    for cam in cams:
        _, _, _, _, h, w = INTRINSICS[cam]
        folder = log_dir / "sensors/cameras" / cam
        folder.mkdir(parents=True)
        truth.images[cam] = camera_times(cam)
        for ns in truth.images[cam]:
            img = np.full((h, w, 3), 20, np.uint8)
            for row, col, _ in marker_pixels(cam, ns):
                img[row, col] = 255
            Image.fromarray(img).save(folder / f"{ns}.jpg", quality=100, subsampling=0)

    # Ego poses: every 10 ms and at every sensor timestamp (as AV2), one duplicate 5 ns later.
    stamps = set(range(SWEEP_NS[0] - 80_000_000, SWEEP_NS[-1] + 160_000_000, 10_000_000))
    stamps |= set(SWEEP_NS) | {ns for lst in truth.images.values() for ns in lst}
    stamps = sorted(stamps)
    stamps.insert(5, stamps[4] + 5)
    write_ego_poses(log_dir / "city_SE3_egovehicle.feather", stamps,
                    [ego_pose(s if i != 5 else stamps[4]) for i, s in enumerate(stamps)])

    # LiDAR sweeps.
    (log_dir / "sensors/lidar").mkdir(parents=True)
    for k, ns in enumerate(SWEEP_NS):
        sw = simulate_sweep(ns, rng, N_ZERO_ROWS if k == 0 else 0)
        truth.sweeps.append(sw)
        feather.write_feather(pa.table({
            "x": pa.array(sw.ego16[:, 0], pa.float16()), "y": pa.array(sw.ego16[:, 1], pa.float16()),
            "z": pa.array(sw.ego16[:, 2], pa.float16()), "intensity": pa.array(sw.intensity, pa.uint8()),
            "laser_number": pa.array(sw.laser, pa.uint8()), "offset_ns": pa.array(sw.offset_ns, pa.int32())}),
            log_dir / "sensors/lidar" / f"{ns}.feather")

    # Annotations: one row per box and sweep, the pose in the ego frame at the sweep time.
    rows = []
    for ns in [ANNOTATION_BEFORE_NS] + SWEEP_NS:
        T_ego_inv = np.linalg.inv(ego_pose(ns))
        for uuid, (name, category, length, width, height) in BOXES.items():
            T = T_ego_inv @ box_pose(name, ns)
            rows.append((ns, uuid, category, length, width, height, *rot_to_quat(T[:3, :3]), *T[:3, 3], 42))
    cols = ("timestamp_ns", "track_uuid", "category", "length_m", "width_m", "height_m", "qw", "qx", "qy", "qz",
            "tx_m", "ty_m", "tz_m", "num_interior_pts")
    types = (pa.int64(), pa.string(), pa.string()) + (pa.float64(),) * 10 + (pa.int64(),)
    table = pa.table({c: pa.array([r[i] for r in rows], ty) for i, (c, ty) in enumerate(zip(cols, types))})
    feather.write_feather(table, log_dir / "annotations.feather")

    # The map folder (not read by the converter).
    (log_dir / "map").mkdir()
    (log_dir / "map" / f"{LOG_ID}___img_Sim2_city.json").write_text(json.dumps({"R": [1.0, 0.0, 0.0, 1.0],
                                                                                  "t": [0.0, 0.0], "s": 3.33}))
    (log_dir / "map" / f"log_map_archive_{LOG_ID}____PIT_city_00000.json").write_text(
        json.dumps({"pedestrian_crossings": {}, "lane_segments": {}, "drivable_areas": {}}))
    return truth
