"""A miniature KITTI-360 dataset in the real on-disk layout, for the converter tests.

Written from the KITTI-360 documentation and the devkit (autonomousvision/kitti360Scripts):
``calibration/`` (perspective.txt, calib_cam_to_pose.txt, calib_cam_to_velo.txt,
image_02.yaml, image_03.yaml), ``data_2d_raw/SEQ/image_0X/{data_rect,data_rgb}/*.png`` and
``timestamps.txt``, ``data_3d_raw/SEQ/velodyne_points/{data/*.bin,timestamps.txt}``,
``data_poses/SEQ/{poses.txt,cam0_to_world.txt}``, ``data_3d_bboxes/train/SEQ.xml``.

The ground truth is independent of the converter: the ego moves continuously (constant
velocity, constant yaw rate), the Velodyne (spinning clockwise, facing forward at the
frame time) measures a world made of a ground plane and a vertical cylinder from a laser
origin ``VO`` above its frame origin at beam elevations ``BEAMS_DEG``, and every return is
written uncompensated (in the Velodyne frame at its own measurement time), as KITTI stores
them.  ``write_kitti360`` returns the truth (world points, beams, times, poses, boxes).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

SEQ = "2013_05_28_drive_0007_sync"
FRAME_DT = 0.1036
N_FRAMES = 6                      # frames 0..5 have timestamps and images
POSED = (1, 2, 3, 4)              # frames listed in poses.txt
T0 = np.datetime64("2013-05-28T08:46:02.939519704", "ns")
# Ego motion in the world (x east, y north, z up), tau = seconds after frame 0.
P0 = np.array([1209.25, 3521.75, 115.5])
V = np.array([7.5, 2.0, 0.05])
YAW0, OMEGA = 0.35, 0.4
GROUND_Z = P0[2] - 0.95           # world z of the ground plane
CYL_C, CYL_R = P0[:2] + [4.0, -3.0], 26.0
F = np.diag([1.0, -1.0, -1.0, 1.0])  # IMU (x fwd, y right, z down) <-> x fwd, y left, z up
VO = 0.12                         # laser origin above the Velodyne frame origin (m)
NOMINAL = np.array([2.0 - i / 3 for i in range(32)] + [-8.0 - 0.833 - i / 2 for i in range(32)])
BEAMS_DEG = NOMINAL + 0.04 * np.sin(3.0 * np.arange(64))
PER_BEAM = 5                      # returns per beam and scan

# Fisheye MEI calibrations: KITTI-360's published image_02 / image_03 values, scaled
# from 1400 x 1400 to 64 x 64 pixels.
MEI = {
    "image_02": dict(xi=2.2134047507854890, k1=1.6798235660113681e-02, k2=1.6548773243373522,
                     p1=4.2223943394772046e-04, p2=4.2462134260997584e-04, gamma1=1336.3220825849971,
                     gamma2=1335.7883350012958, u0=716.94323510126321, v0=705.76498308221585),
    "image_03": dict(xi=2.5535139132482758, k1=4.9370396274089505e-02, k2=4.5068455478645308,
                     p1=1.3477698472982495e-03, p2=-7.0340482615055284e-04, gamma1=1485.4388981875156,
                     gamma2=1484.9477411748708, u0=698.88316784030962, v0=698.14541887723055),
}
FISH_SIZE = 64
PERSP_SIZE = (64, 48)
K_PERSP = np.array([[25.125, 0.0, 31.25], [0.0, 25.125, 23.375], [0.0, 0.0, 1.0]])
BASELINE = 0.59


def rot(axis: str, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def pose(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def tau_of(frame: int) -> float:
    """Seconds after frame 0 of a frame's image_00 timestamp (slightly uneven)."""
    return frame * FRAME_DT + 0.0007 * math.sin(frame)


def stamp(tau: float) -> str:
    t = T0 + np.timedelta64(int(round(tau * 1e9)), "ns")
    return str(t).replace("T", " ")


def T_world_ego(tau: float) -> np.ndarray:
    """The true ego pose (x forward, y left, z up) at tau."""
    return pose(rot("z", YAW0 + OMEGA * tau), P0 + V * tau)


def calibration() -> dict:
    """Calibration in KITTI-360's conventions (IMU frame x fwd, y right, z down)."""
    # Camera axes (x right, y down, z forward) in the IMU frame, before small mounting turns.
    fwd = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    left = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    right = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    cams = {
        "image_00": pose(fwd @ rot("x", 0.098) @ rot("y", 0.037) @ rot("z", 0.004), [1.5752681, 0.0043914, -0.65]),
        "image_01": pose(fwd @ rot("x", 0.094) @ rot("y", 0.030) @ rot("z", -0.006), [1.5686, 0.5937, -0.6465]),
        "image_02": pose(left @ rot("x", 0.35) @ rot("y", 0.02), [0.7362, -0.2870, -0.9097]),
        "image_03": pose(right @ rot("x", 0.33) @ rot("y", -0.03), [0.7377, 1.3020, -0.9062]),
    }
    r_rect = {"image_00": rot("x", 0.0032) @ rot("y", -0.0001) @ rot("z", 0.0071),
              "image_01": rot("x", -0.0025) @ rot("y", 0.0052) @ rot("z", 0.0013)}
    # Velodyne: x fwd, y left, z up, 0.85 m above the IMU, slightly yawed.
    T_imu_velo = pose(F[:3, :3] @ rot("z", 0.012) @ rot("y", 0.004), [0.77, 0.31, -0.85])
    return {"cam_to_pose": cams, "R_rect": r_rect, "T_imu_velo": T_imu_velo}


def _fmt(vals) -> str:
    return " ".join(f"{v:.12e}" for v in np.ravel(vals))


def _ray_hit(o: np.ndarray, d: np.ndarray) -> float:
    """Distance along the unit ray o + s d to the ground plane or the cylinder wall."""
    hits = []
    if d[2] < -1e-9:
        hits.append((GROUND_Z - o[2]) / d[2])
    q, e = o[:2] - CYL_C, d[:2]
    a, b, c = e @ e, 2 * q @ e, q @ q - CYL_R ** 2
    if a > 1e-12:
        hits.append((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))  # from inside: the far root
    return min(h for h in hits if h > 0)


def scan(frame: int, cal: dict, rng: np.random.Generator) -> dict:
    """One raw Velodyne scan of ``frame``: rows (float32 x, y, z, reflectance) in the
    Velodyne frame at each return's measurement time, and the truth per row."""
    T_ego_velo = F @ cal["T_imu_velo"]
    rows, world, beams, dts, valid = [], [], [], [], []
    for b, el in enumerate(np.radians(BEAMS_DEG)):
        for j in range(PER_BEAM):
            az = -math.pi + 2 * math.pi * (j + 0.15 + 0.7 * rng.random()) / PER_BEAM
            dt = -az / (2 * math.pi * 10.0)              # clockwise, forward at the frame time
            T = T_world_ego(tau_of(frame) + dt) @ T_ego_velo
            d_s = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
            o_w = T[:3, :3] @ [0.0, 0.0, VO] + T[:3, 3]
            d_w = T[:3, :3] @ d_s
            X = o_w + _ray_hit(o_w, d_w) * d_w
            p = T[:3, :3].T @ (X - T[:3, 3])
            rows.append([*p, rng.random()])
            world.append(X)
            beams.append(b)
            dts.append(dt)
            valid.append(True)
    # Rows that are not returns: zeros (no return) and a point nearer than the minimum range.
    for k, row in ((7, [0.0, 0.0, 0.0, 0.0]), (100, [0.3, -0.2, 0.1, 0.5]), (200, [0.0, 0.0, 0.0, 0.0])):
        rows.insert(k, row)
        world.insert(k, [np.nan] * 3)
        beams.insert(k, -1)
        dts.insert(k, np.nan)
        valid.insert(k, False)
    return {"rows": np.array(rows, np.float32), "world": np.array(world), "beam": np.array(beams),
            "dt": np.array(dts), "valid": np.array(valid)}


def _box_xml_object(n: int, semantic_id: int, instance_id: int, label: str, timestamp: int, start: int, end: int,
                    transform: np.ndarray, dynamic: int) -> str:
    # Vertex order of the KITTI-360 XML (a unit cube at +-0.5).
    verts = np.array([[0.5, 0.5, 0.5], [0.5, 0.5, -0.5], [0.5, -0.5, 0.5], [0.5, -0.5, -0.5],
                      [-0.5, 0.5, -0.5], [-0.5, 0.5, 0.5], [-0.5, -0.5, -0.5], [-0.5, -0.5, 0.5]])
    faces = np.array([[0, 2, 1], [1, 2, 3], [4, 6, 5], [5, 6, 7], [0, 1, 5], [5, 1, 4], [2, 7, 3], [3, 7, 6],
                      [0, 5, 2], [2, 5, 7], [1, 3, 4], [4, 3, 6]])

    def mat(tag, m, dt):
        data = " ".join(f"{v:.10e}" if dt != "u" else str(int(v)) for v in np.ravel(m))
        return (f"  <{tag} type_id=\"opencv-matrix\">\n    <rows>{m.shape[0]}</rows>\n    <cols>{m.shape[1]}</cols>\n"
                f"    <dt>{dt}</dt>\n    <data>\n      {data}</data></{tag}>\n")

    return (f"<object{n}>\n  <index>{n}</index>\n  <label>{label}</label>\n  <category>vehicle</category>\n"
            f"  <semanticId_orig>{semantic_id}</semanticId_orig>\n  <semanticId>{semantic_id}</semanticId>\n"
            f"  <instanceId>{instance_id}</instanceId>\n  <timestamp>{timestamp}</timestamp>\n"
            f"  <dynamic>{dynamic}</dynamic>\n  <start_frame>{start}</start_frame>\n  <end_frame>{end}</end_frame>\n"
            + mat("transform", transform, "d") + mat("vertices", verts, "f") + mat("faces", faces, "u")
            + f"</object{n}>\n")


def boxes() -> list[dict]:
    """Box truth: centre, heading (rad about world z), size (l, w, h), frames."""
    out = []
    for k, f in enumerate((1, 2, 3)):          # a moving car, annotated per frame
        out.append(dict(semantic_id=13, instance_id=4, label="car", frame=f, start=1, end=3, dynamic=1,
                        centre=P0 + [12.0 + 1.2 * k, 2.5 + 0.3 * k, 0.0], yaw=0.6 + 0.05 * k,
                        size=np.array([4.2, 1.8, 1.5]), mirrored=False))
    out.append(dict(semantic_id=13, instance_id=7, label="car", frame=-1, start=0, end=5, dynamic=0,
                    centre=P0 + [6.0, -4.0, -0.2], yaw=-1.1, size=np.array([4.6, 1.9, 1.6]), mirrored=True))
    out.append(dict(semantic_id=19, instance_id=2, label="person", frame=2, start=2, end=2, dynamic=1,
                    centre=P0 + [9.0, 5.0, 0.1], yaw=2.0, size=np.array([0.6, 0.7, 1.8]), mirrored=False))
    out.append(dict(semantic_id=11, instance_id=1, label="building", frame=-1, start=0, end=5, dynamic=0,
                    centre=P0 + [30.0, 10.0, 5.0], yaw=0.2, size=np.array([20.0, 12.0, 10.0]), mirrored=False))
    return out


def write_kitti360(root: Path, seed: int = 0) -> dict:
    """Write the miniature dataset under ``root``; returns the truth."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    cal = calibration()
    cdir = root / "calibration"
    cdir.mkdir(parents=True)
    (cdir / "calib_cam_to_pose.txt").write_text(
        "".join(f"{cam}: {_fmt(T[:3])}\n" for cam, T in cal["cam_to_pose"].items()))
    T_velo_cam0 = np.linalg.inv(cal["T_imu_velo"]) @ cal["cam_to_pose"]["image_00"]
    (cdir / "calib_cam_to_velo.txt").write_text(_fmt(T_velo_cam0[:3]) + "\n")
    (cdir / "calib_sick_to_velo.txt").write_text(_fmt(np.eye(4)[:3]) + "\n")
    w, h = PERSP_SIZE
    lines = ["calib_time: 09-Jan-2012 14:00:00", "corner_dist: 9.950000e-02"]
    for n, cam in enumerate(("image_00", "image_01")):
        P = np.hstack([K_PERSP, [[-K_PERSP[0, 0] * BASELINE * n], [0.0], [0.0]]])
        lines += [f"S_{n:02d}: 1.392000e+03 5.120000e+02",
                  f"K_{n:02d}: 7.880000e+02 0.000000e+00 6.870000e+02 0.000000e+00 7.860000e+02 3.170000e+02 "
                  f"0.000000e+00 0.000000e+00 1.000000e+00",
                  f"D_{n:02d}: -3.442000e-01 1.426000e-01 5.000000e-04 -8.000000e-04 -2.910000e-02",
                  f"R_{n:02d}: {_fmt(np.eye(3))}", f"T_{n:02d}: {_fmt(np.zeros(3))}",
                  f"S_rect_{n:02d}: {w:.6e} {h:.6e}", f"R_rect_{n:02d}: {_fmt(cal['R_rect'][cam])}",
                  f"P_rect_{n:02d}: {_fmt(P)}"]
    (cdir / "perspective.txt").write_text("\n".join(lines) + "\n")
    s = FISH_SIZE / 1400.0
    for cam, m in MEI.items():
        (cdir / f"{cam}.yaml").write_text(
            "%YAML:1.0\n---\nmodel_type: MEI\ncamera_name: " + cam + f"\nimage_width: {FISH_SIZE}\n"
            f"image_height: {FISH_SIZE}\nmirror_parameters:\n   xi: {m['xi']:.16e}\ndistortion_parameters:\n"
            f"   k1: {m['k1']:.16e}\n   k2: {m['k2']:.16e}\n   p1: {m['p1']:.16e}\n   p2: {m['p2']:.16e}\n"
            f"projection_parameters:\n   gamma1: {m['gamma1'] * s:.16e}\n   gamma2: {m['gamma2'] * s:.16e}\n"
            f"   u0: {m['u0'] * s:.16e}\n   v0: {m['v0'] * s:.16e}\n")

    seq_2d = root / "data_2d_raw" / SEQ
    images = {}
    for cam, folder, size in (("image_00", "data_rect", PERSP_SIZE), ("image_01", "data_rect", PERSP_SIZE),
                              ("image_02", "data_rgb", (FISH_SIZE, FISH_SIZE)),
                              ("image_03", "data_rgb", (FISH_SIZE, FISH_SIZE))):
        (seq_2d / cam / folder).mkdir(parents=True)
        # Other cameras fire within a fraction of a millisecond of image_00.
        skew = 0.0 if cam == "image_00" else 0.0003
        (seq_2d / cam / "timestamps.txt").write_text("".join(stamp(tau_of(f) + skew) + "\n" for f in range(N_FRAMES)))
        for f in range(N_FRAMES):
            img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(img).save(seq_2d / cam / folder / f"{f:010d}.png")
            images[(cam, f)] = img

    velo = root / "data_3d_raw" / SEQ / "velodyne_points"
    (velo / "data").mkdir(parents=True)
    (velo / "timestamps.txt").write_text("".join(stamp(tau_of(f) - 0.0002) + "\n" for f in range(N_FRAMES)))
    scans = {}
    for f in range(N_FRAMES):
        scans[f] = scan(f, cal, rng)
        scans[f]["rows"].astype("<f4").tofile(velo / "data" / f"{f:010d}.bin")

    pdir = root / "data_poses" / SEQ
    pdir.mkdir(parents=True)
    T_imu = {f: T_world_ego(tau_of(f)) @ F for f in POSED}
    (pdir / "poses.txt").write_text("".join(f"{f} {_fmt(T_imu[f][:3])}\n" for f in POSED))
    R_rect0 = pose(cal["R_rect"]["image_00"], np.zeros(3))
    (pdir / "cam0_to_world.txt").write_text("".join(
        f"{f} {_fmt(T_imu[f] @ cal['cam_to_pose']['image_00'] @ np.linalg.inv(R_rect0))}\n" for f in POSED))

    bdir = root / "data_3d_bboxes" / "train"
    bdir.mkdir(parents=True)
    truth_boxes = boxes()
    xml = ["<?xml version=\"1.0\"?>\n<opencv_storage>\n"]
    for n, b in enumerate(truth_boxes):
        R = rot("z", b["yaw"])
        S = np.diag(b["size"] * ([1, -1, 1] if b["mirrored"] else [1, 1, 1]))
        M = pose(R @ S, b["centre"])
        xml.append(_box_xml_object(n + 1, b["semantic_id"], b["instance_id"], b["label"], b["frame"], b["start"],
                                   b["end"], M, b["dynamic"]))
    xml.append("</opencv_storage>\n")
    (bdir / f"{SEQ}.xml").write_text("".join(xml))
    return {"cal": cal, "images": images, "scans": scans, "T_world_imu": T_imu, "boxes": truth_boxes}
