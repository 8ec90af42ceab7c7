"""A miniature PandaSet sequence in the real on-disk layout (pandaset-devkit), with known truth.

``write_sequence(root)`` writes ``root/001/`` as PandaSet ships it:

    camera/<6 cameras>/NN.jpg, intrinsics.json, poses.json, timestamps.json
    lidar/NN.pkl.gz (gzip-pickled DataFrame x, y, z, i, t, d), lidar/poses.json, lidar/timestamps.json
    annotations/cuboids/NN.pkl.gz (DataFrame with PandaSet's cuboid columns)
    meta/gps.json, meta/timestamps.json

and returns the truth it was built from.  Everything follows PandaSet's conventions as the
devkit documents them, written here independently of the converter:

- the vehicle moves with constant velocity and constant yaw rate (translation and heading
  linear in time, so pose interpolation between samples is exact);
- lidar/poses.json is the Pandar64 pose in PandaSet's LiDAR axes: x right, y forward, z up;
- camera poses are camera-to-world with OpenCV axes, each taken at the camera's own
  timestamp; pixel coordinates are u = fx x / z + cx (pixel centres at integers);
- LiDAR points are world positions measured along Pandar64 beams (the manual's elevation
  table) from the sensor pose at each point's own time, clockwise at 10 Hz, hitting a
  ground plane z = 0, a round wall and the actors' boxes (moving while the sensor sweeps);
- cuboids: yaw = 0 points the length side at world +y (pi/2 at -x), dimensions.x = width,
  dimensions.y = length; a moving box is annotated where the sweep saw it, i.e. at the
  median time of the points that hit it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from pyquaternion import Quaternion

SEQ = "001"
N_FRAMES = 4
T0 = 1557539960.25
FRAME_JITTER = (0.0, 0.0003, -0.0002, 0.0001)
SPIN_HZ = 10.0
AZ0_DEG = 90.0                      # azimuth (sensor frame, deg) the sweep faces at the LiDAR timestamp
SWEEP_START = -0.05                 # the sweep runs from 50 ms before the LiDAR timestamp to 50 ms after
N_RAYS = 900                        # Pandar64 rays per sweep
WIDTH, HEIGHT = 64, 48
GROUND_Z = 0.0
LIDAR_HEIGHT = 1.9
WALL_CENTER = np.array([15.0, 5.0])
WALL_RADIUS = 45.0

# Pandar64 channel 1..64 vertical angles (deg), from the Pandar64 user manual table.
PANDAR64_ELEV = [
    14.87, 11.02, 8.047, 5.045, 3.028, 2.016, 1.848, 1.676, 1.51, 1.339, 1.172, 1.001, 0.834, 0.663, 0.496, 0.325,
    0.157, -0.012, -0.181, -0.349, -0.52, -0.687, -0.857, -1.025, -1.196, -1.363, -1.534, -1.7, -1.872, -2.04,
    -2.21, -2.377, -2.548, -2.712, -2.885, -3.052, -3.222, -3.387, -3.56, -3.724, -3.896, -4.062, -4.233, -4.397,
    -4.57, -4.732, -4.904, -5.069, -5.241, -5.403, -5.577, -5.738, -5.91, -6.073, -7.075, -8.071, -9.072, -9.897,
    -11.044, -12.018, -12.986, -13.942, -18.901, -24.909]

# name: (look direction in the vehicle, deg left of forward; time offset from the LiDAR timestamp, s; focal px)
CAMERAS = {
    "front_camera": (0.0, 0.0, 52.0),
    "front_left_camera": (60.0, -0.0167, 41.0),
    "front_right_camera": (-60.0, 0.0167, 42.0),
    "left_camera": (90.0, -0.025, 40.0),
    "right_camera": (-90.0, 0.025, 40.5),
    "back_camera": (180.0, 0.05, 43.0),
}
CX, CY = 31.3, 23.6


def frame_times() -> np.ndarray:
    return T0 + 0.1 * np.arange(N_FRAMES) + np.array(FRAME_JITTER[:N_FRAMES])


def vehicle_pose(t: float) -> np.ndarray:
    """T_world_vehicle (x forward, y left, z up; origin at the Pandar64) at Unix time t."""
    s = t - T0
    heading = 0.45 + 0.3 * s
    p = np.array([3.0, -2.0, GROUND_Z + LIDAR_HEIGHT]) + np.array([6.0, 3.0, 0.0]) * s
    c, si = math.cos(heading), math.sin(heading)
    T = np.eye(4)
    T[:3, :3] = [[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = p
    return T


def pandaset_lidar_pose(t: float) -> np.ndarray:
    """The Pandar64 pose as lidar/poses.json stores it: axes x right, y forward, z up."""
    V = vehicle_pose(t)
    fwd, left, up = V[:3, 0], V[:3, 1], V[:3, 2]
    T = np.eye(4)
    T[:3, :3] = np.column_stack([-left, fwd, up])
    T[:3, 3] = V[:3, 3]
    return T


def camera_mount(name: str) -> np.ndarray:
    """T_vehicle_camera (OpenCV axes) of a camera: looking ``angle`` left of forward, 3 deg down."""
    ang, _, _ = CAMERAS[name]
    a, p = math.radians(ang), math.radians(3.0)
    z = np.array([math.cos(a) * math.cos(p), math.sin(a) * math.cos(p), -math.sin(p)])
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.column_stack([x, y, z])
    T[:3, 3] = [0.9 * math.cos(a), 0.5 * math.sin(a), -0.35]
    return T


def camera_pose(name: str, k: int) -> np.ndarray:
    """T_world_camera of camera ``name`` in frame k, at the camera's own timestamp."""
    return vehicle_pose(camera_time(name, k)) @ camera_mount(name)


def camera_time(name: str, k: int) -> float:
    return float(frame_times()[k] + CAMERAS[name][1])


def intrinsics(name: str) -> dict:
    f = CAMERAS[name][2]
    return {"fx": f, "fy": f * 1.01, "cx": CX, "cy": CY}


def pandaset_pixel(name: str, k: int, p_world: np.ndarray) -> np.ndarray:
    """(u, v) of a world point as pandaset-devkit's geometry.projection computes it."""
    T = np.linalg.inv(camera_pose(name, k))
    pc = T[:3, :3] @ p_world + T[:3, 3]
    K = intrinsics(name)
    return np.array([K["fx"] * pc[0] / pc[2] + K["cx"], K["fy"] * pc[1] / pc[2] + K["cy"]])


# --- actors: centre path, heading (rad, from world x), length, width, height -------------------
ACTORS = {
    "5bfb1e0c-car": {"label": "Car", "c0": (12.0, 7.0, 0.8), "v": (6.5, 3.5, 0.0), "heading": 0.55,
                     "lwh": (4.5, 1.9, 1.6), "stationary": False, "rider": None},
    "0a1f9b3e-bike": {"label": "Bicycle", "c0": (3.0, -10.0, 0.85), "v": (1.0, 4.0, 0.0), "heading": 1.33,
                      "lwh": (1.8, 0.6, 1.7), "stationary": False, "rider": "With Rider"},
    "77c0d6aa-cone": {"label": "Cones", "c0": (10.0, -3.0, 0.35), "v": (0.0, 0.0, 0.0), "heading": -0.3,
                      "lwh": (0.45, 0.4, 0.7), "stationary": True, "rider": None},
}
GT_SIBLING = "e9d2c4f1-car-gt"


def actor_pose(aid: str, t: float) -> np.ndarray:
    a = ACTORS[aid]
    c, s = math.cos(a["heading"]), math.sin(a["heading"])
    T = np.eye(4)
    T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = np.array(a["c0"]) + np.array(a["v"]) * (t - T0)
    return T


def pandaset_yaw(heading: float) -> float:
    """PandaSet yaw of a box whose length side points along world heading (rad from +x):
    the yaw-turned (0, 1) = (-sin yaw, cos yaw) must equal (cos h, sin h)."""
    return math.atan2(-math.cos(heading), math.sin(heading))


# --- ray casting (all rays of a sweep at once) ---------------------------------------------
def _hit_boxes(o: np.ndarray, d: np.ndarray, T: np.ndarray, lwh) -> np.ndarray:
    """Ray parameter (M,) of the first hit of rays o + s d (M, 3) on boxes T (M, 4, 4), inf on a miss."""
    R, c = T[:, :3, :3], T[:, :3, 3]
    lo = np.einsum("mji,mj->mi", R, o - c)
    ld = np.einsum("mji,mj->mi", R, d)
    half = np.array(lwh) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - lo) / ld, (half - lo) / ld
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    return np.where((tmax >= tmin) & (tmin > 0), tmin, np.inf)


def _hit_world(o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Ray parameter (M,) of the first hit on the ground plane or the round wall."""
    with np.errstate(divide="ignore"):
        ground = np.where(d[:, 2] < 0, (GROUND_Z - o[:, 2]) / d[:, 2], np.inf)
    oc = o[:, :2] - WALL_CENTER
    a = (d[:, :2] ** 2).sum(1)
    b = 2 * (oc * d[:, :2]).sum(1)
    c = (oc ** 2).sum(1) - WALL_RADIUS ** 2
    wall = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    return np.minimum(ground, wall)


def sweep(k: int, rng: np.random.Generator) -> dict:
    """Frame k's Pandar64 returns: world xyz, time (Unix s), beam, what they hit."""
    t_frame = frame_times()[k]
    dt = SWEEP_START + (np.arange(N_RAYS) + 0.5) / (N_RAYS * SPIN_HZ)
    t = t_frame + dt
    az = np.radians(AZ0_DEG - 360.0 * SPIN_HZ * dt)          # clockwise
    beam = rng.integers(0, 64, N_RAYS)
    el = np.radians(np.array(PANDAR64_ELEV)[beam])
    V = np.stack([vehicle_pose(ti) for ti in t])
    o = V[:, :3, 3]
    d = np.einsum("mij,mj->mi", V[:, :3, :3],
                  np.column_stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]))
    s = _hit_world(o, d)
    hit = np.full(N_RAYS, "world", dtype=object)
    for aid, a in ACTORS.items():
        sb = _hit_boxes(o, d, np.stack([actor_pose(aid, ti) for ti in t]), a["lwh"])
        closer = sb < s
        s = np.where(closer, sb, s)
        hit[closer] = aid
    return {"xyz": o + s[:, None] * d, "t": t, "beam": beam, "hit": hit}


def _pose_json(T: np.ndarray) -> dict:
    q = Quaternion(matrix=T[:3, :3], atol=1e-9)
    return {"position": {"x": float(T[0, 3]), "y": float(T[1, 3]), "z": float(T[2, 3])},
            "heading": {"w": float(q.w), "x": float(q.x), "y": float(q.y), "z": float(q.z)}}


def _dump(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def write_sequence(root: Path, seed: int = 0) -> dict:
    """Write ``root/001`` and return the truth: per frame the Pandar64 returns (world xyz, time,
    beam, intensity 0..255) in file order, the annotated actors (time, pose) and the origin."""
    rng = np.random.default_rng(seed)
    seq = Path(root) / SEQ
    ts = frame_times()
    truth = {"seq": seq, "frames": [], "annotations": {aid: [] for aid in ACTORS}}

    for name in CAMERAS:
        cam_dir = seq / "camera" / name
        cam_dir.mkdir(parents=True, exist_ok=True)
        for k in range(N_FRAMES):
            img = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            Image.fromarray(img).save(cam_dir / f"{k:02d}.jpg", quality=90)
        _dump(cam_dir / "intrinsics.json", intrinsics(name))
        _dump(cam_dir / "poses.json", [_pose_json(camera_pose(name, k)) for k in range(N_FRAMES)])
        _dump(cam_dir / "timestamps.json", [camera_time(name, k) for k in range(N_FRAMES)])

    _dump(seq / "lidar" / "poses.json", [_pose_json(pandaset_lidar_pose(t)) for t in ts])
    _dump(seq / "lidar" / "timestamps.json", [float(t) for t in ts])
    _dump(seq / "meta" / "timestamps.json", [float(t) for t in ts])
    _dump(seq / "meta" / "gps.json", [{"lat": 37.7761 + 1e-6 * k, "long": -122.3993, "height": 2.95,
                                        "xvel": 6.0, "yvel": 3.0} for k in range(N_FRAMES)])

    for k in range(N_FRAMES):
        sw = sweep(k, rng)
        inten = rng.integers(0, 256, len(sw["t"])).astype(np.float64)
        # Two rays without a return, written at the sensor origin, and PandarGT points ahead.
        dud_t = ts[k] + np.array([-0.01, 0.02])
        dud = np.array([vehicle_pose(t)[:3, 3] for t in dud_t])
        gt_xyz = vehicle_pose(ts[k])[:3, 3] + rng.uniform([5, -3, -1.5], [30, 3, 1.0], (25, 3))
        gt_t = ts[k] + rng.uniform(-0.05, 0.05, 25)
        df = pd.DataFrame({
            "x": np.concatenate([sw["xyz"][:, 0], dud[:, 0], gt_xyz[:, 0]]),
            "y": np.concatenate([sw["xyz"][:, 1], dud[:, 1], gt_xyz[:, 1]]),
            "z": np.concatenate([sw["xyz"][:, 2], dud[:, 2], gt_xyz[:, 2]]),
            "i": np.concatenate([inten, [0.0, 0.0], rng.integers(0, 256, 25).astype(np.float64)]),
            "t": np.concatenate([sw["t"], dud_t, gt_t]),
            "d": np.concatenate([np.zeros(len(sw["t"]) + 2, np.int64), np.ones(25, np.int64)]),
        })
        df.index.name = "index"
        (seq / "lidar").mkdir(parents=True, exist_ok=True)
        df.to_pickle(seq / "lidar" / f"{k:02d}.pkl.gz", compression="gzip")
        truth["frames"].append({"t": float(ts[k]), "xyz": sw["xyz"], "time": sw["t"], "beam": sw["beam"],
                                "intensity": inten, "hit": sw["hit"]})

        rows = []
        for aid, a in ACTORS.items():
            on = sw["hit"] == aid
            t_obs = float(np.median(sw["t"][on])) if (not a["stationary"] and on.sum() >= 3) else float(ts[k])
            T = actor_pose(aid, t_obs)
            truth["annotations"][aid].append({"t": t_obs, "T": T, "hits": int(on.sum())})
            rows.append(_cuboid_row(aid, a, T, sensor_id=0 if aid.endswith("car") else -1,
                                    sibling=GT_SIBLING if aid.endswith("car") else "-"))
            if aid.endswith("car"):  # the PandarGT's copy of the moving car, a little off
                T_gt = T.copy()
                T_gt[:3, 3] += [0.3, -0.2, 0.0]
                rows.append(_cuboid_row(GT_SIBLING, a, T_gt, sensor_id=1, sibling=aid))
        cub = pd.DataFrame(rows)
        (seq / "annotations" / "cuboids").mkdir(parents=True, exist_ok=True)
        cub.to_pickle(seq / "annotations" / "cuboids" / f"{k:02d}.pkl.gz", compression="gzip")
    truth["t0"] = float(ts[0])
    return truth


def _cuboid_row(uuid: str, a: dict, T: np.ndarray, sensor_id: int, sibling: str) -> dict:
    heading = math.atan2(T[1, 0], T[0, 0])
    length, width, height = a["lwh"]
    return {
        "uuid": uuid, "label": a["label"], "yaw": pandaset_yaw(heading), "stationary": a["stationary"],
        "camera_used": 0, "position.x": T[0, 3], "position.y": T[1, 3], "position.z": T[2, 3],
        "dimensions.x": width, "dimensions.y": length, "dimensions.z": height,
        "attributes.object_motion": "Parked" if a["stationary"] else "Moving",
        "cuboids.sibling_id": sibling, "cuboids.sensor_id": sensor_id,
        "attributes.pedestrian_behavior": None, "attributes.pedestrian_age": None,
        "attributes.rider_status": a["rider"],
    }
