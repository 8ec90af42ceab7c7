"""A miniature nuScenes dataset in the real on-disk layout (nuscenes-devkit schema, v1.0).

``write_nuscenes(root)`` writes ``root/v1.0-mini/*.json`` (the 13 tables the devkit
loads, with the real fields), ``samples/`` and ``sweeps/`` (``<log>__<CHANNEL>__<us>``
``.jpg`` images and ``.pcd.bin`` float32 rows x, y, z, intensity 0-255, ring), and
``maps/<token>.png``; it returns the ground truth it was built from.

One scene, ``scene-0061``: the ego drives an arc (8 m/s, yaw rate 0.2 rad/s) in the
global frame near (600, 1600); LIDAR_TOP sweeps every 50 ms (a keyframe every 10th),
six 64x48 cameras at 12 Hz at their own phase.  The LiDAR is the HDL-32E model of the
converter's docstring: 32 rings at -30.67 + 1.33 k degrees (ring k), turning clockwise
from a seam at SEAM_DEG (in x-forward axes) over the 50 ms before the sweep timestamp,
12 firing columns per sweep (32 rows each, in firing order); each ray hits the ground
z = 0 or a vertical cylinder around the start, from the sensor pose at its firing time,
and is stored as nuScenes does: in the sensor frame (x right, y forward) at the sweep
timestamp.  Some rows are empty (all zero) and some hit the ego roof (0.6 m).  Each
image shows a white 3x3 marker where a landmark projects (nuScenes convention: pixel
centres at integer coordinates).  Three annotated instances: a car, a pedestrian and a
bicycle with a rider.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

VERSION = "v1.0-mini"
SCENE = "scene-0061"
LOGFILE = "n015-2018-07-24-11-22-45+0800"
T_BASE_US = 1532402927600000
SWEEP_US = 50000
N_COLS = 12
ELEV_DEG = -30.67 + 1.33 * np.arange(32)
SEAM_DEG = 172.0
CAMERAS = {  # channel: yaw of the optical axis in the ego frame (deg), fx
    "CAM_FRONT": (0.0, 40.0), "CAM_FRONT_RIGHT": (-55.0, 38.0), "CAM_BACK_RIGHT": (-110.0, 38.0),
    "CAM_BACK": (180.0, 30.0), "CAM_BACK_LEFT": (110.0, 38.0), "CAM_FRONT_LEFT": (55.0, 38.0)}
W, H = 64, 48
CX, CY = 31.7, 23.2          # nuScenes convention: pixel centres at integers
CAM_PERIOD_US = 83333        # 12 Hz
CYL_CENTER = np.array([600.0, 1600.0])
CYL_RADIUS = 40.0


def token(*parts) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def quat_wxyz(R: np.ndarray) -> list[float]:
    """Unit quaternion (w, x, y, z) of a rotation matrix (w >= 0)."""
    m = R
    w = math.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = math.sqrt(max(0.0, 1 + m[0, 0] - m[1, 1] - m[2, 2])) / 2
    y = math.sqrt(max(0.0, 1 - m[0, 0] + m[1, 1] - m[2, 2])) / 2
    z = math.sqrt(max(0.0, 1 - m[0, 0] - m[1, 1] + m[2, 2])) / 2
    x = math.copysign(x, m[2, 1] - m[1, 2])
    y = math.copysign(y, m[0, 2] - m[2, 0])
    z = math.copysign(z, m[1, 0] - m[0, 1])
    q = np.array([w, x, y, z])
    return (q / np.linalg.norm(q)).tolist()


def rotmat(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def pose(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def ego_pose_at(t_us: float) -> np.ndarray:
    """T_world_ego (4, 4) at a timestamp: an arc at 8 m/s, yaw rate 0.2 rad/s, small roll."""
    t = (t_us - T_BASE_US) * 1e-6
    v, om, psi0 = 8.0, 0.2, 0.3
    psi = psi0 + om * t
    x = 580.0 + v / om * (math.sin(psi) - math.sin(psi0))
    y = 1590.0 - v / om * (math.cos(psi) - math.cos(psi0))
    return pose(rot_z(psi) @ rot_x(0.01), [x, y, 0.05 + 0.02 * t])


# Sensor mounts (sensor -> ego), as calibrated_sensor stores them.
T_EGO_LIDAR = pose(rot_z(-math.pi / 2) @ rot_x(0.005), [0.943713, 0.0, 1.84023])
# nuScenes LIDAR_TOP axes (x right, y forward) from x-forward axes: d_nus = R_z(90) d_fwd.
R_NUS_FWD = rot_z(math.pi / 2)


def t_ego_cam(yaw_deg: float) -> np.ndarray:
    a = math.radians(yaw_deg)
    fwd = np.array([math.cos(a), math.sin(a), 0.0])
    right = np.array([math.sin(a), -math.cos(a), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    R = np.column_stack([right, down, fwd])
    return pose(R, [1.0 + 0.5 * math.cos(a), 0.5 * math.sin(a), 1.5])


def intrinsic(fx: float) -> list[list[float]]:
    return [[fx, 0.0, CX], [0.0, fx * 1.01, CY], [0.0, 0.0, 1.0]]


@dataclass
class Truth:
    root: Path
    scene_token: str
    lidar: list[dict] = field(default_factory=list)      # per sweep: token, timestamp, world, fire_us, ring, ...
    images: list[dict] = field(default_factory=list)     # per image: channel, timestamp, marks [(world, u, v)]
    boxes: dict[str, list[dict]] = field(default_factory=dict)  # instance token -> [{timestamp, center, yaw, wlh}]
    classes: dict[str, str] = field(default_factory=dict)       # instance token -> nuScenes category
    landmarks: list[np.ndarray] = field(default_factory=list)


def _ray_hit(o: np.ndarray, d: np.ndarray) -> float:
    """Distance along a unit world ray to the ground z = 0 or the cylinder wall."""
    hits = []
    if d[2] < -1e-6:
        hits.append(-o[2] / d[2])
    oc, dd = o[:2] - CYL_CENTER, d[:2]
    a, b, c = dd @ dd, 2 * oc @ dd, oc @ oc - CYL_RADIUS ** 2
    disc = b * b - 4 * a * c
    if a > 1e-12 and disc >= 0:
        hits.append((-b + math.sqrt(disc)) / (2 * a))
    return min(h for h in hits if h > 0)


def _lidar_sweep(t_end_us: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Rows (N, 5) float32 in firing order, and their truth."""
    rows, world, fire, rings = [], [], [], []
    T_end_inv = np.linalg.inv(ego_pose_at(t_end_us) @ T_EGO_LIDAR)
    for j in range(N_COLS):
        frac = (j + 0.5) / N_COLS
        t_fire = t_end_us - SWEEP_US + frac * SWEEP_US
        S = ego_pose_at(t_fire) @ T_EGO_LIDAR
        az = math.radians(SEAM_DEG) - 2 * math.pi * frac
        for b in range(32):
            if (j * 32 + b) % 7 == 3:                       # no return
                rows.append([0, 0, 0, 0, b])
                continue
            el = math.radians(ELEV_DEG[b])
            d_fwd = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            d_nus = R_NUS_FWD @ d_fwd
            d_w = S[:3, :3] @ d_nus
            r = 0.6 if (j + b) % 11 == 0 else _ray_hit(S[:3, 3], d_w)  # 0.6 m: the ego roof
            p_w = S[:3, 3] + r * d_w
            p_end = T_end_inv[:3, :3] @ p_w + T_end_inv[:3, 3]
            inten = float(rng.integers(0, 256))
            rows.append([*p_end, inten, b])
            if r >= 1.0:
                world.append(p_w)
                fire.append(t_fire)
                rings.append(b)
    pts = np.array(rows, np.float32)
    keep = np.linalg.norm(pts[:, :3].astype(np.float64), axis=1) >= 1.0
    return pts, {"world": np.array(world), "fire_us": np.array(fire), "ring": np.array(rings),
                 "intensity": pts[keep, 3] / 255.0}


def write_nuscenes(root, n_keyframes: int = 3, seed: int = 0) -> Truth:
    root = Path(root)
    rng = np.random.default_rng(seed)
    tables: dict[str, list] = {k: [] for k in ("category", "attribute", "visibility", "instance", "sensor",
                                               "calibrated_sensor", "ego_pose", "log", "scene", "sample",
                                               "sample_data", "sample_annotation", "map")}
    log_tok, scene_tok = token("log"), token("scene")
    truth = Truth(root, scene_tok)
    tables["log"].append({"token": log_tok, "logfile": LOGFILE, "vehicle": "n015", "date_captured": "2018-07-24",
                          "location": "singapore-onenorth"})
    map_tok = token("map")
    tables["map"].append({"category": "semantic_prior", "token": map_tok, "filename": f"maps/{map_tok}.png",
                          "log_tokens": [log_tok]})
    (root / "maps").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(root / "maps" / f"{map_tok}.png")
    for i, lvl in enumerate(("v0-40", "v40-60", "v60-80", "v80-100")):
        tables["visibility"].append({"description": f"visibility of whole object is {lvl}", "token": str(i + 1),
                                     "level": lvl})
    cats = ("vehicle.car", "human.pedestrian.adult", "vehicle.bicycle")
    for c in cats:
        tables["category"].append({"token": token("cat", c), "name": c, "description": c})
    for a in ("vehicle.moving", "pedestrian.moving", "cycle.with_rider"):
        tables["attribute"].append({"token": token("attr", a), "name": a, "description": a})

    # Sensors and calibration.
    calib = {}
    for ch, mod in [("LIDAR_TOP", "lidar")] + [(c, "camera") for c in CAMERAS]:
        st = token("sensor", ch)
        tables["sensor"].append({"token": st, "channel": ch, "modality": mod})
        T = T_EGO_LIDAR if ch == "LIDAR_TOP" else t_ego_cam(CAMERAS[ch][0])
        K = [] if ch == "LIDAR_TOP" else intrinsic(CAMERAS[ch][1])
        ct = token("calib", ch)
        tables["calibrated_sensor"].append({"token": ct, "sensor_token": st, "translation": T[:3, 3].tolist(),
                                            "rotation": quat_wxyz(T[:3, :3]), "camera_intrinsic": K})
        calib[ch] = (ct, pose(rotmat(quat_wxyz(T[:3, :3])), T[:3, 3]), np.array(K) if K else None)

    # Samples (keyframes) at the keyframe LiDAR timestamps.
    n_sweeps = 10 * (n_keyframes - 1) + 1
    lidar_ts = [T_BASE_US + SWEEP_US * (k + 1) + (7 * k) % 5 for k in range(n_sweeps)]
    key_ts = lidar_ts[::10]
    sample_toks = [token("sample", k) for k in range(n_keyframes)]
    for k, ts in enumerate(key_ts):
        tables["sample"].append({"token": sample_toks[k], "timestamp": ts, "prev": sample_toks[k - 1] if k else "",
                                 "next": sample_toks[k + 1] if k + 1 < n_keyframes else "", "scene_token": scene_tok})
    tables["scene"].append({"token": scene_tok, "log_token": log_tok, "nbr_samples": n_keyframes,
                            "first_sample_token": sample_toks[0], "last_sample_token": sample_toks[-1],
                            "name": SCENE, "description": "miniature test scene, arc, car, pedestrian, cyclist"})

    def nearest_sample(ts: int) -> int:
        return int(np.argmin([abs(ts - k) for k in key_ts]))

    def add_sd(ch: str, ts: int, key: bool, ext: str, fmt: str, w: int, h: int) -> dict:
        ep = ego_pose_at(ts)
        et = token("ego", ch, ts)
        tables["ego_pose"].append({"token": et, "timestamp": ts, "rotation": quat_wxyz(ep[:3, :3]),
                                   "translation": ep[:3, 3].tolist()})
        rec = {"token": token("sd", ch, ts), "sample_token": sample_toks[nearest_sample(ts)], "ego_pose_token": et,
               "calibrated_sensor_token": calib[ch][0], "timestamp": ts, "fileformat": fmt, "is_key_frame": key,
               "height": h, "width": w,
               "filename": f"{'samples' if key else 'sweeps'}/{ch}/{LOGFILE}__{ch}__{ts}.{ext}",
               "prev": "", "next": ""}
        tables["sample_data"].append(rec)
        return rec

    def link(recs: list[dict]) -> None:
        for a, b in zip(recs[:-1], recs[1:]):
            a["next"], b["prev"] = b["token"], a["token"]

    # LiDAR sweeps.
    recs = []
    for k, ts in enumerate(lidar_ts):
        rec = add_sd("LIDAR_TOP", ts, k % 10 == 0, "pcd.bin", "pcd", 0, 0)
        pts, info = _lidar_sweep(ts, rng)
        path = root / rec["filename"]
        path.parent.mkdir(parents=True, exist_ok=True)
        pts.astype("<f4").tofile(path)
        truth.lidar.append({"token": rec["token"], "timestamp": ts, "key": k % 10 == 0,
                            "filename": rec["filename"], **info})
        recs.append(rec)
    link(recs)

    # Landmarks: 22 m from the start, in each camera's direction, 1 m up.
    E0 = ego_pose_at(T_BASE_US)
    truth.landmarks = [E0[:3, :3] @ np.array([22 * math.cos(math.radians(a)), 22 * math.sin(math.radians(a)), 1.0])
                       + E0[:3, 3] for a, _ in CAMERAS.values()]
    # Cameras, each at its own phase (triggered as the LiDAR passes it).
    t_end = lidar_ts[-1]
    for c_i, ch in enumerate(CAMERAS):
        recs = []
        ts = T_BASE_US + 3000 + 7919 * c_i
        cam_ts = []
        while ts <= t_end:
            cam_ts.append(ts)
            ts += CAM_PERIOD_US
        key_idx = {int(np.argmin([abs(t - k) for t in cam_ts])) for k in key_ts}
        for k, ts in enumerate(cam_ts):
            rec = add_sd(ch, ts, k in key_idx, "jpg", "jpg", W, H)
            _, T_ec, K = calib[ch]
            T_wc = ego_pose_at(ts) @ T_ec
            img = np.full((H, W, 3), 40, np.uint8)
            marks = []
            for lm in truth.landmarks:
                p = np.linalg.inv(T_wc) @ np.append(lm, 1.0)
                if p[2] <= 0.5:
                    continue
                u, v = (K @ (p[:3] / p[2]))[:2]
                if 2 <= u <= W - 3 and 2 <= v <= H - 3:
                    r, c = int(round(v)), int(round(u))
                    img[r - 1:r + 2, c - 1:c + 2] = 255
                    marks.append((lm, float(u), float(v)))
            path = root / rec["filename"]
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path, quality=95)
            truth.images.append({"channel": ch, "timestamp": ts, "key": k in key_idx, "filename": rec["filename"],
                                 "marks": marks})
            recs.append(rec)
        link(recs)

    # Annotations (global frame, at the keyframe times).
    movers = {  # instance: (category, attributes, centre at t=0 (relative to the start), velocity, yaw, w, l, h)
        "car": ("vehicle.car", ["vehicle.moving"], np.array([14.0, 4.0, 0.8]), np.array([6.0, 1.0, 0.0]), 0.25,
                (1.9, 4.6, 1.6)),
        "ped": ("human.pedestrian.adult", ["pedestrian.moving"], np.array([10.0, -6.0, 0.9]),
                np.array([0.0, 1.2, 0.0]), 1.5, (0.6, 0.7, 1.75)),
        "bike": ("vehicle.bicycle", ["cycle.with_rider"], np.array([-8.0, 5.0, 0.8]), np.array([4.0, 0.0, 0.0]),
                 -0.1, (0.6, 1.8, 1.4)),
    }
    for name, (cat, attrs, c0, vel, yaw, wlh) in movers.items():
        it = token("instance", name)
        ann_toks = [token("ann", name, k) for k in range(n_keyframes)]
        tables["instance"].append({"token": it, "category_token": token("cat", cat), "nbr_annotations": n_keyframes,
                                   "first_annotation_token": ann_toks[0], "last_annotation_token": ann_toks[-1]})
        truth.boxes[it], truth.classes[it] = [], cat
        for k, ts in enumerate(key_ts):
            t = (ts - T_BASE_US) * 1e-6
            centre = E0[:3, 3] + c0 + vel * t
            heading = yaw + 0.05 * t
            q = [math.cos(heading / 2), 0.0, 0.0, math.sin(heading / 2)]
            tables["sample_annotation"].append({
                "token": ann_toks[k], "sample_token": sample_toks[k], "instance_token": it,
                "visibility_token": "4", "attribute_tokens": [token("attr", a) for a in attrs],
                "translation": centre.tolist(), "size": list(wlh), "rotation": q,
                "prev": ann_toks[k - 1] if k else "", "next": ann_toks[k + 1] if k + 1 < n_keyframes else "",
                "num_lidar_pts": 10, "num_radar_pts": 1})
            truth.boxes[it].append({"timestamp": ts, "center": centre, "yaw": heading, "wlh": wlh})

    (root / VERSION).mkdir(parents=True, exist_ok=True)
    for name, recs in tables.items():
        (root / VERSION / f"{name}.json").write_text(json.dumps(recs, indent=0))
    return truth
