"""PandaSet (Hesai / Scale AI) to a gssim log: ``gssim convert --from pandaset ROOT --scene 001 OUT``.

Source layout (one folder per sequence, ``ROOT/<seq>/``; as read by scaleapi/pandaset-devkit)::

    camera/<name>/NN.jpg            six cameras: front_camera, front_left_camera, front_right_camera,
    camera/<name>/intrinsics.json       left_camera, right_camera, back_camera; {"fx","fy","cx","cy"}
    camera/<name>/poses.json        per frame {"position": {x,y,z}, "heading": {w,x,y,z}}
    camera/<name>/timestamps.json   per frame, Unix seconds
    lidar/NN.pkl.gz                 gzip-pickled pandas DataFrame, columns x, y, z (WORLD frame, m),
                                        i (intensity 0..255), t (Unix s, per point), d (0 = Pandar64
                                        spinning, 1 = PandarGT forward-facing solid state)
    lidar/poses.json, lidar/timestamps.json      one pose / time per frame
    annotations/cuboids/NN.pkl.gz   DataFrame: uuid, label, yaw, stationary, position.{x,y,z},
                                        dimensions.{x,y,z}, cuboids.sensor_id, cuboids.sibling_id, ...
    meta/gps.json, meta/timestamps.json           (not needed here)

The pickles are unpickled, which runs code from the file: convert only a PandaSet copy you
trust (pickle is PandaSet's own format; there is no safe reader for it).

Frames and conventions (source -> ours)
    World: PandaSet's world frame (metres, z up) is kept as our world frame.
    Time: gssim's spinning LiDAR starts its sweep at the frame time (cell fraction 0), so a
        frame is timed at the start of its Pandar64 sweep: frame k's time is
        ``lidar/timestamps.json[k] + s``, one constant ``s`` per sequence (frame 0's earliest
        point time, stray outliers aside, minus its timestamp, minus half a column period so
        the first firing lands in the middle of column 0 as in gssim's grid).  Every time in
        the log (frames, actor tracks, LiDAR offsets, camera offsets) is then shifted by one
        constant so that frame 0 is at t = 0: the log's frame times are exactly the
        differences of PandaSet's LiDAR timestamps.  ``log.json`` stores the constants as
        ``pandaset.time_origin_s`` (Unix time of t = 0) and ``pandaset.sweep_start_offset_s``
        (``s``).  The ego pose of a frame is the source track (lidar/poses.json at the
        timestamps) interpolated at the sweep start.
    Ego: PandaSet has no vehicle frame.  ``lidar/poses.json`` gives the pose (position +
        unit quaternion heading w,x,y,z, sensor-to-world) of the Pandar64 in PandaSet's "ego"
        axes: x right, y forward, z up (pandaset-devkit ``geometry.lidar_points_to_ego``;
        OpenPCDet's PandaSet loader documents the same axes).  Our ego frame is that frame
        with its axes renamed: origin at the Pandar64, x forward = PandaSet +y, y left =
        PandaSet -x, z up = z:  ``T_world_ego = T_world_lidarpose @ R``,
        ``R = [[0,-1,0],[1,0,0],[0,0,1]]`` (a +90 deg turn about z).  The LiDAR is mounted at
        ``T_ego_lidar = I``.
    Cameras: ``camera/<name>/poses.json`` are camera-to-world poses whose camera axes are
        OpenCV's (x right, y down, z forward): the devkit's ``geometry.projection`` maps a
        world point by the inverse pose, keeps z > 0 and applies K = [[fx,0,cx],[0,fy,cy]].
        Our log holds one fixed mount per camera, ``T_ego_cam``: the mean (rotation
        projected onto SO(3), translation averaged) over frames of
        ``inv(T_world_ego(t_cam)) @ T_world_cam``, with the ego pose interpolated at the
        camera's own timestamp.  Each camera's time offsets from the frame times are
        stored as ``pandaset.camera_time_offsets_s`` (the log format has one time per
        frame), and how far the per-frame poses stray from the fixed mount as
        ``pandaset.camera_mount_residual``.
    Intrinsics: PandaSet's images are used as pinhole images (intrinsics.json has no
        distortion, and the devkit projects with K alone); ``PinholeCamera``, no rolling
        shutter (PandaSet gives no readout time).  PandaSet's pixel coordinates put pixel
        centres at integers (OpenCV); ours at +0.5, so cx, cy gain 0.5.
    LiDAR: only the Pandar64 (d == 0) is converted; the PandarGT (d == 1) points are
        dropped (a forward-facing MEMS unit, no spinning model).  Pandar64: 64 beams with
        the elevation table of the Pandar64 user manual (pandaset-devkit
        ``tutorials/raw_depth_projection/pandar64_channel_distribution.csv``), beam index =
        channel - 1 (0 = top beam, +14.87 deg), 0.2 deg azimuth steps, 10 Hz, clockwise, range
        0.3..200 m.  The points are world-frame positions, each at its own time ``t``
        (PandaSet already removed the motion).  A point goes into the log in the sensor
        frame at the frame time: ``inv(T_world_lidar(t_frame)) @ p``; its time offset is
        ``t - t_frame``.  Its beam is recovered from its elevation in the sensor frame AT
        ITS OWN TIME, ``inv(T_world_lidar(t)) @ p`` (the ray that measured it; the sensor
        pose interpolated on the ego track), nearest entry of the table; its range in that
        frame must lie in [0.3, 200] m or the point is dropped (not a return).  The sweep's
        starting azimuth (``azimuth_start_deg``, the azimuth at time offset 0) is fitted to
        the points' azimuths and times.
    Cuboids: ``yaw`` turns the box about world z; yaw = 0 points the box's length side at
        world +y and pi/2 at -x (devkit ``Cuboids`` docs; ``geometry.center_box_to_corners``
        spans dimensions.x along the yaw-turned x axis, dimensions.y along the turned y
        axis).  dimensions.x is the width, dimensions.y the length, dimensions.z the
        height; position is the box centre in the world frame.  Our object frame (x along
        the length, z up, origin at the centre) is therefore ``Rz(yaw + pi/2)`` at the
        centre, and ``size = [dimensions.y, dimensions.x, dimensions.z]`` (median over the
        track).  Cuboids with ``cuboids.sensor_id == 1`` (the PandarGT copy of a moving
        object in the overlap region) are dropped, keeping the Pandar64 one.  A moving
        cuboid was fitted to points swept at their own times, so its track sample is
        placed at the median time of the Pandar64 points inside the box (0.2 m margin; the
        frame time when fewer than 3 points are inside, for stationary cuboids, or when
        the times would not increase along the track).
    Images: PandaSet's JPEG files are copied byte for byte into the log (no re-encoding).

Approximations (see also ``pandaset.*`` in the written log.json)
    - One fixed mount per camera: a camera's image is tied to the frame time in the log,
      while PandaSet's cameras fire up to ~50 ms away from the sweep start; the offsets are
      kept in ``camera_time_offsets_s`` for consumers that can use them.
    - Beams come from the manual's elevation table; the Pandar64's per-channel azimuth
      offsets (up to +-5.2 deg, ~1.4 ms of sweep) are not modelled, and the quality of
      the beam assignment rests on lidar/poses.json (NeuRAD found those poses imprecise and
      rebuilt them from the front camera; ``beam_elevation_residual_deg`` reports the fit).
    - Images are taken as undistorted pinhole images; no rolling shutter.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from gssim.data.convert.common import (ConvertError, beams_from_elevation, elevations_deg, lidar_points, map_class,
                                       pose_matrix, progress_bar, quat_wxyz_to_rotmat, require, source_dir,
                                       source_file, yaw_pose)
from gssim.data.limits import LOG_LIMITS
from gssim.data.poses import PoseTrack
from gssim.data.safe_files import UnsafePathError, check_name
from gssim.data.writer import LogWriter
from gssim.sensors import PinholeCamera, SpinningLidar

logger = logging.getLogger(__name__)

DATASET = "pandaset"

CAMERAS = ("front_camera", "front_left_camera", "front_right_camera", "left_camera", "right_camera", "back_camera")
LIDAR_ID = "pandar64"

# Pandar64 beam elevations (deg), channel 1..64 = beam 0..63, from the Pandar64 user manual as
# published in pandaset-devkit tutorials/raw_depth_projection/pandar64_channel_distribution.csv.
PANDAR64_ELEVATIONS_DEG = (
    14.87, 11.02, 8.047, 5.045, 3.028, 2.016, 1.848, 1.676, 1.51, 1.339, 1.172, 1.001, 0.834, 0.663, 0.496, 0.325,
    0.157, -0.012, -0.181, -0.349, -0.52, -0.687, -0.857, -1.025, -1.196, -1.363, -1.534, -1.7, -1.872, -2.04,
    -2.21, -2.377, -2.548, -2.712, -2.885, -3.052, -3.222, -3.387, -3.56, -3.724, -3.896, -4.062, -4.233, -4.397,
    -4.57, -4.732, -4.904, -5.069, -5.241, -5.403, -5.577, -5.738, -5.91, -6.073, -7.075, -8.071, -9.072, -9.897,
    -11.044, -12.018, -12.986, -13.942, -18.901, -24.909)
PANDAR64_AZIMUTH_RES_DEG = 0.2
PANDAR64_SPIN_HZ = 10.0
PANDAR64_MIN_RANGE_M = 0.3
PANDAR64_MAX_RANGE_M = 200.0
PANDAR64_DEVICE = 0

# Our ego axes in PandaSet's LiDAR-pose axes (columns: ego x = forward = PandaSet +y, ego y =
# left = PandaSet -x, ego z = up): T_lidarpose_ego.
T_LIDARPOSE_EGO = np.array([[0.0, -1.0, 0.0, 0.0],
                            [1.0, 0.0, 0.0, 0.0],
                            [0.0, 0.0, 1.0, 0.0],
                            [0.0, 0.0, 0.0, 1.0]])

# PandaSet cuboid labels -> our classes (exact names, then prefixes: "Animals - Bird" -> animal).
CLASS_TABLE = {
    "Car": "car", "Pickup Truck": "car", "Emergency Vehicle": "car",
    "Medium-sized Truck": "truck", "Semi-truck": "truck",
    "Towed Object": "trailer",
    "Bus": "bus",
    "Other Vehicle - Construction Vehicle": "construction_vehicle",
    "Other Vehicle": "other",              # "- Uncommon", "- Pedicab"
    "Motorcycle": "motorcycle", "Motorized Scooter": "motorcycle",
    "Bicycle": "bicycle",                   # "cyclist" when attributes.rider_status says "With Rider"
    "Personal Mobility Device": "other",
    "Train": "other", "Trolley": "other", "Tram / Subway": "other",
    "Pedestrian": "pedestrian",             # and "Pedestrian with Object"
    "Animals": "animal",
    "Pylons": "traffic_cone", "Cones": "traffic_cone",
    "Road Barriers": "barrier", "Temporary Construction Barriers": "barrier",
    "Signs": "other", "Construction Signs": "other", "Rolling Containers": "other",
}

LIDAR_COLUMNS = ("x", "y", "z", "i", "t", "d")
CUBOID_COLUMNS = ("uuid", "label", "yaw", "position.x", "position.y", "position.z",
                  "dimensions.x", "dimensions.y", "dimensions.z")
BOX_MARGIN_M = 0.2          # points this close to a cuboid count as inside it (observation time)
MIN_BOX_POINTS = 3
# Time offsets accepted around the frame time (the log's rule for a 10 Hz sweep).
REACH_S = (1.0 / PANDAR64_SPIN_HZ) * (1 + LOG_LIMITS.lidar_time_slack) + LOG_LIMITS.lidar_time_slack_s


# --- reading the source -----------------------------------------------------------------
def _json(root: Path, rel: str):
    path = source_file(DATASET, root, rel)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConvertError(DATASET, rel, f"not readable JSON: {exc}") from None


def _number_list(root: Path, rel: str, n_min: int = 1) -> np.ndarray:
    data = _json(root, rel)
    if not isinstance(data, list) or len(data) < n_min:
        got = f"a list of {len(data)}" if isinstance(data, list) else type(data).__name__
        raise ConvertError(DATASET, rel, f"expected a list of at least {n_min} timestamps, got {got}")
    try:
        out = np.array([float(v) for v in data], np.float64)
    except (TypeError, ValueError):
        raise ConvertError(DATASET, rel, "timestamps must be numbers") from None
    if not np.all(np.isfinite(out)):
        raise ConvertError(DATASET, rel, "timestamps must be finite")
    return out


def _poses(root: Path, rel: str, n: int) -> np.ndarray:
    """(n, 4, 4) sensor-to-world poses of a PandaSet poses.json (first n entries)."""
    data = _json(root, rel)
    if not isinstance(data, list):
        raise ConvertError(DATASET, rel, f"expected a list of poses, got {type(data).__name__}")
    if len(data) < n:
        raise ConvertError(DATASET, rel, f"has {len(data)} poses, the sequence has {n} frames")
    out = np.empty((n, 4, 4))
    for k in range(n):
        pos = require(DATASET, rel, data[k], "position", f"[{k}].")
        head = require(DATASET, rel, data[k], "heading", f"[{k}].")
        values = [require(DATASET, rel, pos, a, f"[{k}].position.") for a in "xyz"]
        values += [require(DATASET, rel, head, a, f"[{k}].heading.") for a in "wxyz"]
        try:
            p, q = [float(v) for v in values[:3]], [float(v) for v in values[3:]]
        except (TypeError, ValueError):
            raise ConvertError(DATASET, rel, "pose values must be numbers", f"[{k}]") from None
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))) or np.linalg.norm(q) < 1e-6:
            raise ConvertError(DATASET, rel, "pose must be finite with a non-zero quaternion", f"[{k}]")
        out[k] = pose_matrix(quat_wxyz_to_rotmat(q), p)
    return out


def _frame(root: Path, rel: str, columns: tuple[str, ...]):
    """A pickled DataFrame with the given columns (a ConvertError names a missing one)."""
    import pandas as pd

    path = source_file(DATASET, root, rel)
    try:
        df = pd.read_pickle(path, compression="gzip")
    except Exception as exc:  # noqa: BLE001 -- unpickling raises anything; name the file
        raise ConvertError(DATASET, rel, f"not a readable gzip-pickled DataFrame ({type(exc).__name__}: {exc})"
                           ) from None
    if not isinstance(df, pd.DataFrame):
        raise ConvertError(DATASET, rel, f"expected a pandas DataFrame, got {type(df).__name__}")
    for col in columns:
        if col not in df.columns:
            raise ConvertError(DATASET, rel, f"missing column (has {list(map(str, df.columns))})", col)
    return df


def _numeric(df, rel: str, col: str) -> np.ndarray:
    try:
        return df[col].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ConvertError(DATASET, rel, "column must be numeric", col) from None


# --- geometry ---------------------------------------------------------------------------
def _mean_pose(poses: np.ndarray) -> np.ndarray:
    """Mean of rigid poses (K, 4, 4): rotations summed and projected onto SO(3), translations averaged."""
    U, _, Vt = np.linalg.svd(poses[:, :3, :3].sum(0))
    R = U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt
    return pose_matrix(R, poses[:, :3, 3].mean(0))


def _rotation_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def _to_frame(T_world_frame: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """World points (M, 3) in the frame of pose T (4, 4)."""
    return (xyz - T_world_frame[:3, 3]) @ T_world_frame[:3, :3]


def _to_own_frames(T_world_frames: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """World points (M, 3) each in the frame of its own pose (M, 4, 4)."""
    return np.einsum("mji,mj->mi", T_world_frames[:, :3, :3], xyz - T_world_frames[:, :3, 3])


def _poses_at(track: PoseTrack, times: np.ndarray) -> np.ndarray:
    """(M, 4, 4) poses at times (M,), each distinct time interpolated once."""
    uniq, inv = np.unique(times, return_inverse=True)
    return track.at(uniq, extrapolate=True).reshape(-1, 4, 4)[inv]


def _time_window(dt: np.ndarray, reach: float) -> np.ndarray:
    """Mask of the points kept so the time offsets lie in [-reach, reach] and span at most
    ``reach`` (the log's rule): the ``reach``-long window holding the most points."""
    keep = np.abs(dt) <= reach
    if not keep.any() or dt[keep].max() - dt[keep].min() <= reach:
        return keep
    srt = np.sort(dt[keep])
    ends = np.searchsorted(srt, srt + reach, side="right")
    best = int(np.argmax(ends - np.arange(len(srt))))
    return keep & (dt >= srt[best]) & (dt <= srt[best] + reach)


def _in_box(xyz: np.ndarray, center: np.ndarray, yaw_ours: float, size_lwh: np.ndarray, margin: float) -> np.ndarray:
    c, s = math.cos(yaw_ours), math.sin(yaw_ours)
    d = xyz - center
    local = np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]])
    return np.all(np.abs(local) <= size_lwh / 2 + margin, axis=1)


def _actor_id(uuid: str) -> str:
    """The uuid as an actor id (it names no file, but ids follow the log's name rules)."""
    try:
        return check_name(uuid, "actor id")
    except UnsafePathError:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in uuid)[:100] or "actor"


# --- conversion -------------------------------------------------------------------------
def convert(source: str | Path, scene: str, out: str | Path, progress: bool = True) -> Path:
    """Convert PandaSet sequence ``scene`` (e.g. "001") under ``source`` into a log at ``out``.

    Returns the path of the written ``log.json``.  Raises ConvertError naming the file (and
    field or column) of anything missing or malformed in the source.
    """
    root = Path(source)
    scene = str(scene)
    if not scene or any(c in scene for c in "/\\") or scene in (".", ".."):
        raise ConvertError(DATASET, scene, "the scene must be a sequence folder name such as '001'")
    seq = source_dir(DATASET, root, scene, "sequence folder")

    # Frames: one per LiDAR sweep (lidar/timestamps.json, lidar/poses.json: the source track).
    lidar_ts = _number_list(seq, "lidar/timestamps.json")
    n = len(lidar_ts)
    if np.any(np.diff(lidar_ts) <= 0):
        raise ConvertError(DATASET, "lidar/timestamps.json", "timestamps must increase strictly")
    src = PoseTrack(lidar_ts - lidar_ts[0], _poses(seq, "lidar/poses.json", n) @ T_LIDARPOSE_EGO,
                    name="PandaSet ego (lidar/poses.json)")
    # gssim's spinning LiDAR starts its sweep at the frame time: every frame is timed where the
    # sweeps start, one constant after their PandaSet timestamps (measured on frame 0's points).
    start = _sweep_start_offset(seq, float(lidar_ts[0]))
    origin = float(lidar_ts[0]) + start
    times = lidar_ts - lidar_ts[0]                      # = lidar_ts + start - origin
    T_world_ego = src.at(times + start, extrapolate=True).reshape(n, 4, 4)
    ego = PoseTrack(times, T_world_ego, name="PandaSet ego at the sweep starts")

    # Cameras: intrinsics, image size, fixed mount from the per-frame poses at the camera times.
    cams: dict[str, dict] = {}
    for name in CAMERAS:
        if not (seq / "camera" / name).is_dir():
            logger.warning("pandaset %s: no camera/%s folder; that camera is left out", scene, name)
            continue
        base = f"camera/{name}"
        intr = _json(seq, f"{base}/intrinsics.json")
        values = [require(DATASET, f"{base}/intrinsics.json", intr, k) for k in ("fx", "fy", "cx", "cy")]
        try:
            fx, fy, cx, cy = (float(v) for v in values)
        except (TypeError, ValueError):
            raise ConvertError(DATASET, f"{base}/intrinsics.json", "intrinsics must be numbers") from None
        cam_ts = _number_list(seq, f"{base}/timestamps.json", n)[:n] - origin
        T_world_cam = _poses(seq, f"{base}/poses.json", n)
        first = source_file(DATASET, seq, f"{base}/00.jpg")
        try:
            with Image.open(first) as im:
                width, height = im.size
        except OSError as exc:
            raise ConvertError(DATASET, f"{base}/00.jpg", f"not a readable image: {exc}") from None
        mounts = np.linalg.inv(ego.at(cam_ts, extrapolate=True).reshape(-1, 4, 4)) @ T_world_cam
        mount = _mean_pose(mounts)
        dev_t = float(np.linalg.norm(mounts[:, :3, 3] - mount[:3, 3], axis=1).max())
        dev_r = max(_rotation_deg(mount[:3, :3].T @ M[:3, :3]) for M in mounts)
        if dev_t > 0.05 or dev_r > 0.5:
            logger.warning("pandaset %s: %s poses stray from one fixed mount on the ego by up to %.3f m / %.2f deg",
                           scene, name, dev_t, dev_r)
        camera = PinholeCamera(width, height, fx, fy, cx + 0.5, cy + 0.5)
        cams[name] = {"camera": camera, "mount": mount, "offsets": cam_ts - times,
                      "residual": {"max_translation_m": dev_t, "max_rotation_deg": dev_r}}
    if not cams:
        raise ConvertError(DATASET, "camera/front_camera", "missing folder: the sequence has none of the cameras "
                                                           f"{list(CAMERAS)}")
    front = cams.get("front_camera")
    if front is not None and front["mount"][0, 2] <= 0:  # optical axis along ego x
        logger.warning("pandaset %s: the front camera looks along ego %s, not forward; lidar/poses.json may not use "
                       "PandaSet's x-right, y-forward axes", scene, np.round(front["mount"][:3, 2], 3).tolist())

    # Every per-frame file present before anything is written.  A sequence without any cuboid
    # annotations (no annotations/cuboids folder) converts without actors.
    annotated = (seq / "annotations" / "cuboids").is_dir()
    if not annotated:
        logger.warning("pandaset %s: no annotations/cuboids folder; the log will have no actors", scene)
    for k in range(n):
        for rel in [f"lidar/{k:02d}.pkl.gz", *([f"annotations/cuboids/{k:02d}.pkl.gz"] if annotated else []),
                    *(f"camera/{name}/{k:02d}.jpg" for name in cams)]:
            source_file(DATASET, seq, rel)

    # The sweep's starting azimuth, fitted on frame 0; then every frame in one pass.
    stats = {"points": 0, "kept": 0, "pandar_gt": 0, "out_of_range": 0, "out_of_time": 0}
    first_sweep = _lidar_frame(seq, 0, origin + times[0], times[0], ego, stats)
    lidar = SpinningLidar(list(PANDAR64_ELEVATIONS_DEG), PANDAR64_AZIMUTH_RES_DEG, PANDAR64_MIN_RANGE_M,
                          PANDAR64_MAX_RANGE_M, spin_hz=PANDAR64_SPIN_HZ, clockwise=True,
                          azimuth_start_deg=_sweep_start_deg(first_sweep))

    writer = LogWriter(out, name=f"pandaset-{scene}", image_format="jpg")
    writer.add_sensor(LIDAR_ID, lidar, np.eye(4))
    for name, c in cams.items():
        writer.add_sensor(name, c["camera"], c["mount"])
    observations: dict[str, list[dict]] = {}
    with progress_bar(f"PandaSet {scene}", n, progress) as advance:
        for k in range(n):
            sweep = first_sweep if k == 0 else _lidar_frame(seq, k, origin + times[k], times[k], ego, stats)
            pts = lidar_points(_to_frame(T_world_ego[k], sweep["world"]), sweep["intensity"], sweep["beam"],
                               sweep["dt"])
            stats["kept"] += len(pts)
            if annotated:
                _read_cuboids(seq, k, times[k], sweep["world"], times[k] + sweep["dt"], observations)
            images, sources = {}, {}
            for name, c in cams.items():
                rel = f"camera/{name}/{k:02d}.jpg"
                path = source_file(DATASET, seq, rel)
                try:
                    with Image.open(path) as im:
                        images[name] = np.asarray(im.convert("RGB"))
                        plain = im.format == "JPEG" and im.mode == "RGB"
                except OSError as exc:
                    raise ConvertError(DATASET, rel, f"not a readable image: {exc}") from None
                cam = c["camera"]
                if images[name].shape[:2] != (cam.height, cam.width):
                    raise ConvertError(DATASET, rel, f"image is {images[name].shape[1]}x{images[name].shape[0]}, "
                                                     f"frame 00 of the camera is {cam.width}x{cam.height}")
                if plain:
                    sources[name] = path
            index = writer.add_frame(float(times[k]), T_world_ego[k], images=images, lidar_points={LIDAR_ID: pts})
            # Keep PandaSet's (RGB) JPEG bytes rather than a second lossy encoding of them.
            for name, path in sources.items():
                shutil.copyfile(path, writer.root / writer.frames[index]["cameras"][name])
            advance()
    if stats["pandar_gt"] or stats["out_of_range"] or stats["out_of_time"]:
        logger.info("pandaset %s: kept %d of %d LiDAR points (%d PandarGT, %d outside %.1f..%.0f m, %d outside the "
                    "sweep's time window)", scene, stats["kept"], stats["points"], stats["pandar_gt"],
                    stats["out_of_range"], PANDAR64_MIN_RANGE_M, PANDAR64_MAX_RANGE_M, stats["out_of_time"])

    residuals = np.concatenate(stats.pop("_residuals", []) or [np.zeros(0)])
    fit = ({"median": float(np.median(residuals)), "p95": float(np.quantile(residuals, 0.95))} if len(residuals)
           else {"median": None, "p95": None})
    logger.info("pandaset %s: returns lie %s deg (median) / %s deg (95 %%) from their beam's elevation", scene,
                fit["median"], fit["p95"])
    for uuid, obs in observations.items():
        _add_actor(writer, uuid, obs)
    writer.extra["pandaset"] = {
        "sequence": scene, "time_origin_s": origin, "sweep_start_offset_s": start,
        "frame_times": "lidar/timestamps.json + sweep_start_offset_s - time_origin_s",
        "ego": "lidar/poses.json with axes renamed: x = PandaSet +y (forward), y = PandaSet -x (left), z up",
        "camera_time_offsets_s": {name: [float(v) for v in c["offsets"]] for name, c in cams.items()},
        "camera_mount_residual": {name: c["residual"] for name, c in cams.items()},
        "lidar_points": stats, "beam_elevation_residual_deg": fit,
    }
    return writer.finish()


def _sweep_start_offset(seq: Path, ts0: float) -> float:
    """Seconds from frame 0's PandaSet timestamp to the start of its Pandar64 sweep: half a
    column period before the earliest of its points' times no more than 1 ms before their
    0.1 % quantile (a few stray early times do not move it); 0 without points within half a
    second of the timestamp."""
    rel = "lidar/00.pkl.gz"
    df = _frame(seq, rel, LIDAR_COLUMNS)
    dt = _numeric(df, rel, "t")[_numeric(df, rel, "d") == PANDAR64_DEVICE] - ts0
    dt = dt[np.abs(dt) <= 0.5]
    if not len(dt):
        return 0.0
    q = float(np.quantile(dt, 0.001))
    # gssim fires column 0 half a column after the sweep's start (cell fraction 0.5 / A)
    half_column = 0.5 * PANDAR64_AZIMUTH_RES_DEG / (360.0 * PANDAR64_SPIN_HZ)
    return float(dt[dt >= q - 1e-3].min()) - half_column


def _lidar_frame(seq: Path, k: int, t_unix: float, t_log: float, ego: PoseTrack, stats: dict) -> dict:
    """Pandar64 returns of frame k (its time ``t_unix`` in Unix seconds, ``t_log`` in the log):
    world xyz (M, 3), intensity in [0, 1], time offset from the frame time, beam (from the
    elevation in the sensor frame at the point's own time) and that sensor-frame position
    ``ray``; points that are not returns are dropped (counted in stats)."""
    rel = f"lidar/{k:02d}.pkl.gz"
    df = _frame(seq, rel, LIDAR_COLUMNS)
    d = _numeric(df, rel, "d")
    sel = d == PANDAR64_DEVICE
    xyz = np.column_stack([_numeric(df, rel, c)[sel] for c in "xyz"])
    inten = _numeric(df, rel, "i")[sel] / 255.0
    dt = _numeric(df, rel, "t")[sel] - t_unix
    ok = np.all(np.isfinite(xyz), axis=1) & np.isfinite(inten) & np.isfinite(dt)
    in_time = _time_window(np.where(ok, dt, np.inf), REACH_S) & ok
    xyz, inten, dt = xyz[in_time], inten[in_time], dt[in_time]
    ray = _to_own_frames(_poses_at(ego, t_log + dt), xyz)
    rng = np.linalg.norm(ray, axis=1)
    good = (rng >= PANDAR64_MIN_RANGE_M) & (rng <= PANDAR64_MAX_RANGE_M)
    stats["points"] += len(d)
    stats["pandar_gt"] += int((~sel).sum())
    stats["out_of_time"] += int((ok & ~in_time).sum())
    stats["out_of_range"] += int((~good).sum())
    ray = ray[good]
    beam = beams_from_elevation(ray, PANDAR64_ELEVATIONS_DEG)
    # How far the returns lie from their beams' elevations (a check on the poses and the table).
    residual = np.abs(elevations_deg(ray[::10]) - np.asarray(PANDAR64_ELEVATIONS_DEG)[beam[::10]])
    stats.setdefault("_residuals", []).append(residual)
    return {"world": xyz[good], "intensity": np.clip(inten[good], 0.0, 1.0), "dt": dt[good], "ray": ray,
            "beam": beam}


def _sweep_start_deg(sweep: dict) -> float:
    """Azimuth (deg) the sensor faces at time offset 0: the circular mean over the returns of
    ``azimuth + 360 * spin_hz * dt`` (a clockwise sweep turns to smaller azimuths)."""
    ray, dt = sweep["ray"], sweep["dt"]
    if not len(ray):
        return 180.0
    phase = np.arctan2(ray[:, 1], ray[:, 0]) + 2 * math.pi * PANDAR64_SPIN_HZ * dt
    return round(math.degrees(math.atan2(np.sin(phase).sum(), np.cos(phase).sum())), 4)


def _read_cuboids(seq: Path, k: int, t_frame: float, xyz_world: np.ndarray, t_points: np.ndarray,
                  observations: dict[str, list[dict]]) -> None:
    """Collect frame k's cuboids (Pandar64 ones) into ``observations[uuid]``."""
    rel = f"annotations/cuboids/{k:02d}.pkl.gz"
    df = _frame(seq, rel, CUBOID_COLUMNS)
    cols = {c: _numeric(df, rel, c) for c in CUBOID_COLUMNS if c not in ("uuid", "label")}
    uuids = [str(u) for u in df["uuid"].to_numpy()]
    labels = [str(v) for v in df["label"].to_numpy()]
    sensor = _numeric(df, rel, "cuboids.sensor_id") if "cuboids.sensor_id" in df.columns else np.full(len(df), -1.0)
    stationary = (df["stationary"].fillna(False).to_numpy(dtype=bool) if "stationary" in df.columns
                  else np.zeros(len(df), bool))
    rider = (df["attributes.rider_status"].astype(object).to_numpy() if "attributes.rider_status" in df.columns
             else np.full(len(df), None, object))
    for r in range(len(df)):
        if sensor[r] == 1:  # the PandarGT's copy of a moving object
            continue
        center = np.array([cols["position.x"][r], cols["position.y"][r], cols["position.z"][r]])
        size = np.array([cols["dimensions.y"][r], cols["dimensions.x"][r], cols["dimensions.z"][r]])
        yaw = cols["yaw"][r]
        if not (np.all(np.isfinite(center)) and np.all(np.isfinite(size)) and np.all(size > 0) and np.isfinite(yaw)):
            logger.warning("pandaset: %s row %d (%s) has a non-finite or empty box; skipped", rel, r, uuids[r])
            continue
        heading = yaw + math.pi / 2  # our x axis (the length) is PandaSet's yaw-turned +y
        t_obs = t_frame
        if not stationary[r] and len(xyz_world):
            inside = _in_box(xyz_world, center, heading, size, BOX_MARGIN_M)
            if inside.sum() >= MIN_BOX_POINTS:
                t_obs = float(np.median(t_points[inside]))
        observations.setdefault(uuids[r], []).append(
            {"t": t_obs, "t_frame": t_frame, "pose": yaw_pose(center, heading), "size": size, "label": labels[r],
             "rider": rider[r] == "With Rider", "stationary": bool(stationary[r])})


def _add_actor(writer: LogWriter, uuid: str, obs: list[dict]) -> None:
    obs = sorted(obs, key=lambda o: o["t_frame"])
    frame_times = np.array([o["t_frame"] for o in obs])
    keep = np.concatenate([[True], np.diff(frame_times) > 0])  # one sample per frame
    obs = [o for o, kp in zip(obs, keep) if kp]
    times = np.array([o["t"] for o in obs])
    if len(times) > 1 and np.any(np.diff(times) < 1e-3):
        times = np.array([o["t_frame"] for o in obs])
    label = obs[0]["label"]
    cls = map_class(label, CLASS_TABLE)
    if cls == "bicycle" and any(o["rider"] for o in obs):
        cls = "cyclist"
    size = np.median(np.stack([o["size"] for o in obs]), axis=0)
    writer.add_actor(_actor_id(uuid), cls, size, times, np.stack([o["pose"] for o in obs]),
                     source_label=label, stationary=all(o["stationary"] for o in obs))
