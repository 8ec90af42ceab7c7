"""Argoverse 2 Sensor Dataset -> gssim log (``gssim convert --from argoverse2 ROOT --scene LOG_ID OUT``).

Source layout (one log, ``ROOT/<log_id>/`` or ``ROOT/{train,val,test}/<log_id>/``), read
with pyarrow directly (no ``av2`` package)::

    city_SE3_egovehicle.feather            timestamp_ns int64, qw qx qy qz tx_m ty_m tz_m float64
    calibration/egovehicle_SE3_sensor.feather   sensor_name, qw qx qy qz tx_m ty_m tz_m
    calibration/intrinsics.feather         sensor_name, fx_px fy_px cx_px cy_px k1 k2 k3 float64,
                                           height_px width_px uint16
    annotations.feather                    timestamp_ns, track_uuid, category, length_m width_m
                                           height_m, qw qx qy qz tx_m ty_m tz_m, num_interior_pts
                                           (absent in the unlabeled test split: no actors then)
    sensors/lidar/<timestamp_ns>.feather   x y z float16, intensity uint8, laser_number uint8,
                                           offset_ns int32
    sensors/cameras/<camera>/<timestamp_ns>.jpg
    map/                                   (not read)

Source conventions (av2-api: ``utils/io.py``, ``structures/sweep.py``, ``structures/cuboid.py``,
``geometry/camera/pinhole_camera.py``; user guide "Sensor Dataset") and the mapping:

- Frames.  ``a_SE3_b`` maps points in frame b to frame a, quaternions (qw, qx, qy, qz)
  Hamilton, translations in metres.  Ego (``egovehicle``): x forward, y left, z up, like
  ours.  City frame: z up.  Our world = the city frame shifted by ``world_origin_city_m``
  (the first sweep's ego position rounded to whole metres; no rotation) so that world
  coordinates stay small for float32 rendering: ``T_world_ego = T_world_city @ city_SE3_egovehicle``
  (ego poses interpolated -- slerp and lerp -- at each frame time; AV2 stores a pose at
  every sensor timestamp, so this is an exact look-up in practice).
- Cameras.  ``egovehicle_SE3_sensor`` of a camera is the pose of an OpenCV camera frame
  (x right, y down, z forward: av2 projects ``K @ inverse(ego_SE3_cam) p``), so
  ``T_ego_sensor = egovehicle_SE3_sensor`` unchanged.  av2 pixel coordinates put the
  centre of pixel (row i, column j) at (j, i) (it indexes pixels by ``round(uv)``); ours put
  it at (j + 0.5, i + 0.5), so ``cx = cx_px + 0.5``, ``cy = cy_px + 0.5``.  The released
  images are undistorted ("All camera imagery is provided in an undistorted format"; av2
  projects with K only), so cameras are ``pinhole`` and k1, k2, k3 are kept in the log's
  ``argoverse2.original_distortion``; ``distorted_images=True`` (for raw, distorted imagery)
  maps them to our OpenCV model ``[k1, k2, 0, 0, k3]`` instead.  The cameras are global
  shutter ("The nine global shutter cameras are synchronized to the lidar to have their
  exposure centered on the lidar sweeping through their fields of view"), so
  ``rolling_shutter_s = 0``.
- LiDAR.  Two stacked Velodyne VLP-32C (``up_lidar``: laser_number 0-31, ``down_lidar``
  mounted upside down: laser_number 32-63), 10 Hz, spinning the same way seen from above.
  Sweeps hold both units' returns in the EGO frame, already ego-motion compensated to the
  sweep timestamp (the name of the file), with ``offset_ns`` the time of each return after
  it.  We keep the two units as two sensors, ``T_ego_sensor = egovehicle_SE3_sensor``, and
  write each return in its unit's frame at the frame time: ``p = inverse(T_ego_sensor) p_ego``
  (no further motion compensation: the source did it), time offset ``offset_ns * 1e-9``
  (the frame time IS the sweep timestamp), intensity ``/ 255``.  Beam index: the unit's
  laser (``laser_number mod 32``) re-numbered by descending elevation (beam 0 = +15 deg), see
  ``BEAM_OF_LASER`` (stored in the log as ``argoverse2.beam_of_laser_number``).  AV2's laser
  numbers follow neither elevation nor Velodyne's laser ids; their elevations
  (``LASER_ELEVATIONS_DEG``) were measured on the av2-api sample sweeps of two vehicles
  (median elevation of each laser's returns in its unit's frame: every laser within 0.01 deg
  of a VLP-32C published angle).  Spin direction and start azimuth of each unit are fitted on
  the first sweep's returns taken back to their own ray times (circular mean of
  ``azimuth -+ 2 pi f t``; a sparse sweep falls back to ``DEFAULT_SPIN``); up_lidar spins clockwise about
  its z, down_lidar (z down) counter-clockwise about its own z.  Points nearer than
  ``MIN_RANGE_M``/farther than ``MAX_RANGE_M``, at the origin or non-finite (no returns) and
  points whose offsets lie outside the log's sweep window are dropped.
- Boxes.  ``annotations.feather`` poses are ``egovehicle_SE3_object`` at the annotation
  timestamp (a sweep timestamp); object frame: centre of the cuboid, x along length, y along
  width, z up -- ours.  ``T_world_object = T_world_ego(t) @ egovehicle_SE3_object``.  One
  actor per ``track_uuid``; its size is the median of its rows; class by ``CLASS_MAP``.
- Time.  Log time ``t = (timestamp_ns - time_origin_ns) * 1e-9`` with ``time_origin_ns`` the
  first LiDAR sweep's timestamp (stored in the log as ``argoverse2.time_origin_ns``).
- Frames (``camera_timing``).  "nearest" (default): one frame per sweep at its timestamp;
  each camera contributes its image nearest in time if within half its frame interval (av2's
  own matching tolerance, 25 ms at 20 Hz), else none.  The image is attributed to the sweep
  time: its ego pose is the sweep's, an error of the ego motion over the time difference
  (up to 25 ms; every difference is stored per camera and frame in
  ``argoverse2.camera_time_offset_s``).  "exact": every image of every camera is written, in
  a frame at its own timestamp (sweeps in their own frames), so every pose is exact.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.ipc as pa_ipc
from PIL import Image

from gssim.data.convert.common import (ConvertError, lidar_points, map_class, pose_matrix, progress_bar,
                                       quat_wxyz_to_rotmat, sensor_track, source_dir, source_file)
from gssim.data.limits import LOG_LIMITS
from gssim.data.poses import PoseTrack
from gssim.data.writer import LogWriter
from gssim.sensors import OpenCVCamera, PinholeCamera, SpinningLidar

logger = logging.getLogger(__name__)

DATASET = "argoverse2"
SPLITS = ("train", "val", "test")
RING_CAMERAS = ("ring_front_center", "ring_front_left", "ring_front_right", "ring_side_left", "ring_side_right",
                "ring_rear_left", "ring_rear_right")
STEREO_CAMERAS = ("stereo_front_left", "stereo_front_right")
# The two units, in laser_number order: unit u holds laser_number 32 u .. 32 u + 31.
LIDARS = ("up_lidar", "down_lidar")
LASERS_PER_UNIT = 32
# Elevation (deg, in the unit's own frame) of laser_number mod 32, both units alike.
LASER_ELEVATIONS_DEG = (7.0, -1.667, 1.667, -0.667, 15.0, -0.333, 3.333, 0.667, 1.333, 0.0, 1.0, 2.333, 0.333, -1.0,
                        4.667, 10.333, -6.148, -15.639, -3.0, -2.0, -4.0, -8.843, -4.667, -3.333, -2.667, -5.333,
                        -1.333, -7.254, -3.667, -11.31, -2.333, -25.0)
# Our beam index of laser_number mod 32: rank by descending elevation (beam 0 is the top beam).
BEAM_OF_LASER = np.argsort(np.argsort(-np.asarray(LASER_ELEVATIONS_DEG), kind="stable"), kind="stable")
BEAM_ELEVATIONS_DEG = tuple(sorted(LASER_ELEVATIONS_DEG, reverse=True))
SPIN_HZ = 10.0
AZIMUTH_RESOLUTION_DEG = 0.2    # VLP-32C at 600 rpm: one 32-laser firing cycle per 55.3 us
MIN_RANGE_M = 1.0
MAX_RANGE_M = 250.0             # VLP-32C is rated to 200 m; AV2 sweeps hold returns to ~215 m
# Spin of each unit when a sweep is too sparse to fit it: (clockwise about the unit's own z,
# azimuth at the sweep timestamp in deg), as fitted on the av2-api sample sweeps.
DEFAULT_SPIN = {"up_lidar": (True, 145.0), "down_lidar": (False, 24.0)}
# Pose-table rows closer than this to the previous one are duplicates (AV2 has pairs 5 ns apart).
DUPLICATE_NS = 1000
# Frames closer than this are merged in camera_timing="exact" (the log needs 1 us between frames).
MERGE_NS = 1000

# AV2 category -> our class (av2.datasets.sensor.constants.AnnotationCategories).
CLASS_MAP = {
    "REGULAR_VEHICLE": "car",
    "LARGE_VEHICLE": "truck", "BOX_TRUCK": "truck", "TRUCK": "truck", "TRUCK_CAB": "truck",
    "BUS": "bus", "SCHOOL_BUS": "bus", "ARTICULATED_BUS": "bus",
    "VEHICULAR_TRAILER": "trailer", "MESSAGE_BOARD_TRAILER": "trailer", "TRAFFIC_LIGHT_TRAILER": "trailer",
    "MOTORCYCLE": "motorcycle",
    "BICYCLE": "bicycle",
    "BICYCLIST": "cyclist", "MOTORCYCLIST": "cyclist", "WHEELED_RIDER": "cyclist",
    "PEDESTRIAN": "pedestrian", "OFFICIAL_SIGNALER": "pedestrian", "WHEELCHAIR": "pedestrian",
    "DOG": "animal", "ANIMAL": "animal",
    "CONSTRUCTION_CONE": "traffic_cone", "CONSTRUCTION_BARREL": "traffic_cone",
    "BOLLARD": "barrier",
    "STROLLER": "other", "WHEELED_DEVICE": "other", "SIGN": "other", "STOP_SIGN": "other",
    "MOBILE_PEDESTRIAN_CROSSING_SIGN": "other", "MOBILE_PEDESTRIAN_SIGN": "other", "RAILED_VEHICLE": "other",
}

POSE_COLUMNS = ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
EGO_POSES = "city_SE3_egovehicle.feather"
EXTRINSICS = "calibration/egovehicle_SE3_sensor.feather"
INTRINSICS = "calibration/intrinsics.feather"
ANNOTATIONS = "annotations.feather"
LIDAR_DIR = "sensors/lidar"
CAMERA_DIR = "sensors/cameras"
INTRINSIC_COLUMNS = ("sensor_name", "fx_px", "fy_px", "cx_px", "cy_px", "k1", "k2", "k3", "height_px", "width_px")
ANNOTATION_COLUMNS = ("timestamp_ns", "track_uuid", "category", "length_m", "width_m", "height_m") + POSE_COLUMNS
SWEEP_COLUMNS = ("x", "y", "z", "intensity", "laser_number", "offset_ns")
_STAMPED = re.compile(r"^(\d+)\.(feather|jpg)$")


# --- reading tables ---------------------------------------------------------------------
def read_table(root: Path, rel: str, columns: Sequence[str], what: str = "Feather table") -> dict[str, np.ndarray]:
    """Columns of the Feather file ``rel`` (inside ``root``) as numpy arrays; a ConvertError
    names the file and the column when the file is missing or unreadable, a column is
    absent, has nulls, or holds non-finite numbers."""
    path = source_file(DATASET, root, rel, what)
    try:
        table = feather.read_table(path, memory_map=False)
    except Exception as exc:  # a damaged or foreign file, whatever pyarrow raises
        raise ConvertError(DATASET, rel, f"cannot read Feather table: {type(exc).__name__}: {exc}") from None
    out = {}
    for col in columns:
        if col not in table.column_names:
            raise ConvertError(DATASET, rel, f"missing column (the table has {table.column_names})", col)
        arr = table.column(col)
        if arr.null_count:
            raise ConvertError(DATASET, rel, f"{arr.null_count} null values", col)
        values = arr.to_numpy()
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise ConvertError(DATASET, rel, f"non-finite value in row {int(np.flatnonzero(~np.isfinite(values))[0])}",
                               col)
        out[col] = values
    return out


def table_poses(tab: dict[str, np.ndarray], rel: str) -> np.ndarray:
    """(N, 4, 4) float64 poses of the rows' (qw, qx, qy, qz, tx_m, ty_m, tz_m)."""
    q = np.column_stack([tab[c] for c in POSE_COLUMNS[:4]]).astype(np.float64)
    t = np.column_stack([tab[c] for c in POSE_COLUMNS[4:]]).astype(np.float64)
    norms = np.linalg.norm(q, axis=1)
    if len(q) and norms.min() < 1e-6:
        raise ConvertError(DATASET, rel, f"zero quaternion in row {int(np.argmin(norms))}", "qw, qx, qy, qz")
    return np.stack([pose_matrix(quat_wxyz_to_rotmat(qi), ti) for qi, ti in zip(q, t)]) if len(q) else \
        np.zeros((0, 4, 4))


def stamped_files(root: Path, rel_dir: str, suffix: str) -> list[tuple[int, str]]:
    """(timestamp_ns, relative path) of the ``<timestamp_ns>.<suffix>`` files of a folder,
    by time; other names are ignored."""
    folder = source_dir(DATASET, root, rel_dir)
    found = []
    for p in folder.iterdir():
        m = _STAMPED.match(p.name)
        if m and m.group(2) == suffix:
            rel = f"{rel_dir}/{p.name}"
            source_file(DATASET, root, rel)     # a link out of the dataset is refused before any writing
            found.append((int(m.group(1)), rel))
        else:
            logger.debug("%s: ignoring %s/%s", DATASET, rel_dir, p.name)
    return sorted(found)


def find_log(root: Path, scene: str) -> str:
    """The log folder of ``scene`` relative to ``root``: ``<scene>`` or ``<split>/<scene>``."""
    for rel in (scene, *(f"{s}/{scene}" for s in SPLITS)):
        try:
            source_dir(DATASET, root, rel, "log folder")
            return rel
        except ConvertError as exc:
            if "not a path inside" in exc.detail:
                raise
    raise ConvertError(DATASET, scene, f"no log folder {scene!r} in {root} (nor in {', '.join(SPLITS)}/)")


# --- calibration ------------------------------------------------------------------------
def read_calibration(root: Path, log: str) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """``egovehicle_SE3_sensor`` (4, 4) by sensor name, and the intrinsics rows by camera name."""
    rel = f"{log}/{EXTRINSICS}"
    ext = read_table(root, rel, ("sensor_name",) + POSE_COLUMNS, "extrinsics table")
    poses = table_poses(ext, rel)
    extrinsics = {str(n): T for n, T in zip(ext["sensor_name"], poses)}
    rel = f"{log}/{INTRINSICS}"
    intr = read_table(root, rel, INTRINSIC_COLUMNS, "intrinsics table")
    intrinsics = {str(n): {c: float(intr[c][i]) for c in INTRINSIC_COLUMNS[1:]}
                  for i, n in enumerate(intr["sensor_name"])}
    return extrinsics, intrinsics


def make_camera(name: str, row: dict[str, float], distorted_images: bool, rel: str):
    """Our camera of an intrinsics row (pixel centres moved from (j, i) to (j + 0.5, i + 0.5))."""
    width, height = int(row["width_px"]), int(row["height_px"])
    args = (width, height, row["fx_px"], row["fy_px"], row["cx_px"] + 0.5, row["cy_px"] + 0.5)
    try:
        if distorted_images:
            return OpenCVCamera(*args, distortion=[row["k1"], row["k2"], 0.0, 0.0, row["k3"]])
        return PinholeCamera(*args)
    except ValueError as exc:
        raise ConvertError(DATASET, rel, f"camera {name!r}: {exc}", "fx_px, fy_px, cx_px, cy_px, width_px, height_px") \
            from None


def fit_spin(xyz: np.ndarray, dt: np.ndarray, spin_hz: float = SPIN_HZ) -> tuple[bool, float, float]:
    """Spin of a unit from its returns (sensor frame xyz (M, 3), time after the sweep
    timestamp dt (M,)): (clockwise, azimuth in deg at dt = 0, concentration in [0, 1]).
    A unit turning at rate w has azimuth a0 -+ w dt, so a0 is the circular mean of
    a +- w dt, and the right sign is the one that concentrates it."""
    az = np.arctan2(xyz[:, 1], xyz[:, 0])
    best = (0.0, True, 0.0)
    for clockwise, sign in ((True, -1.0), (False, 1.0)):
        z = np.mean(np.exp(1j * (az - sign * 2 * math.pi * spin_hz * dt)))
        if abs(z) > best[0]:
            best = (float(abs(z)), clockwise, float(np.degrees(np.angle(z))))
    return best[1], round(best[2], 3), best[0]


def decompensate(xyz: np.ndarray, dt: np.ndarray, sensor_pose_at) -> np.ndarray:
    """Returns (M, 3) in the sensor frame at the frame time t = 0 back into the sensor frame
    at their own times dt (M,): inverse(T(dt)) T(0) p (the inverse of motion compensation),
    i.e. along the rays that measured them."""
    uniq, inv = np.unique(dt, return_inverse=True)
    rel = np.linalg.inv(sensor_pose_at(uniq)) @ sensor_pose_at(np.zeros(1))[0]      # (K, 4, 4)
    return np.einsum("mij,mj->mi", rel[inv, :3, :3], xyz) + rel[inv, :3, 3]


# --- LiDAR sweeps -----------------------------------------------------------------------
def check_columns(root: Path, rel: str, columns: Sequence[str]) -> None:
    """Check that the Feather (v2, Arrow IPC) file ``rel`` has ``columns`` by reading its
    schema only; the full read checks again (and also reads Feather v1)."""
    try:
        with pa_ipc.open_file(source_file(DATASET, root, rel)) as reader:
            names = reader.schema.names
    except pa.ArrowInvalid:
        return
    for col in columns:
        if col not in names:
            raise ConvertError(DATASET, rel, f"missing column (the table has {names})", col)


def read_sweep(root: Path, rel: str) -> dict[str, np.ndarray]:
    tab = read_table(root, rel, SWEEP_COLUMNS, "LiDAR sweep")
    lasers = tab["laser_number"].astype(np.int64)
    if len(lasers) and (lasers.min() < 0 or lasers.max() >= LASERS_PER_UNIT * len(LIDARS)):
        raise ConvertError(DATASET, rel, f"laser_number must lie in [0, {LASERS_PER_UNIT * len(LIDARS)}), got "
                                         f"[{lasers.min()}, {lasers.max()}]", "laser_number")
    return tab


def unit_returns(tab: dict[str, np.ndarray], unit: int, T_ego_sensor: np.ndarray, max_dt: float) -> np.ndarray:
    """The log's (M, 6) returns of one unit in its own frame: x, y, z, intensity in [0, 1],
    our beam index, time after the sweep timestamp (s); returns order kept."""
    lasers = tab["laser_number"].astype(np.int64)
    sel = lasers // LASERS_PER_UNIT == unit
    xyz_ego = np.column_stack([tab[c][sel].astype(np.float64) for c in "xyz"])
    R, t = T_ego_sensor[:3, :3], T_ego_sensor[:3, 3]
    xyz = (xyz_ego - t) @ R                                   # inverse(T_ego_sensor) p
    dt = tab["offset_ns"][sel].astype(np.float64) * 1e-9
    beam = BEAM_OF_LASER[lasers[sel] % LASERS_PER_UNIT]
    intensity = tab["intensity"][sel].astype(np.float64) / 255.0
    rng = np.linalg.norm(xyz, axis=1)
    # A row at the ego origin is a placeholder, not a return (its sensor-frame copy is not at
    # the sensor origin, so lidar_points would keep it).
    no_return = ~np.isfinite(xyz_ego).all(axis=1) | (xyz_ego == 0).all(axis=1)
    keep = ~no_return & (dt >= 0) & (dt <= max_dt) & ~(rng > MAX_RANGE_M)   # offsets count from the sweep start
    if not keep.all():
        logger.debug("%s: dropped %d rows: no return, beyond %g m or outside the sweep window", DATASET,
                     int((~keep).sum()), MAX_RANGE_M)
    return lidar_points(xyz[keep], intensity[keep], beam[keep], dt[keep], min_range=MIN_RANGE_M)


# --- conversion -------------------------------------------------------------------------
def convert(source: str | Path, scene: str, out: str | Path, progress: bool = True,
            cameras: Sequence[str] = RING_CAMERAS, camera_timing: str = "nearest", distorted_images: bool = False,
            image_format: str = "jpg") -> Path:
    """Convert the AV2 sensor log ``scene`` (its log id) under ``source`` to a gssim log in
    ``out``; returns the path of its ``log.json``.  See the module docstring for the frame,
    time and sensor conventions.

    cameras: the cameras to convert (default the 7 ring cameras; the stereo pair may be added).
    camera_timing: "nearest" (frames at sweeps, nearest image per camera) or "exact" (every
        image in a frame at its own timestamp).
    distorted_images: the images are raw (distorted): write OpenCV cameras with k1, k2, k3.
    image_format: "jpg" (re-encoded at quality 95) or "png" (lossless, large).
    """
    if camera_timing not in ("nearest", "exact"):
        raise ValueError(f"camera_timing must be 'nearest' or 'exact', got {camera_timing!r}")
    root = Path(source)
    if not root.is_dir():
        raise ConvertError(DATASET, str(source), "the dataset folder does not exist")
    log = find_log(root, str(scene))

    # Everything the frames need is read and checked before the first file is written.
    extrinsics, intrinsics = read_calibration(root, log)
    for table, rows, wanted in ((EXTRINSICS, extrinsics, (*cameras, *LIDARS)), (INTRINSICS, intrinsics, cameras)):
        for sid in wanted:
            if sid not in rows:
                raise ConvertError(DATASET, f"{log}/{table}", f"no row for sensor {sid!r} (rows: {sorted(rows)})",
                                   "sensor_name")

    rel = f"{log}/{EGO_POSES}"
    ego_tab = read_table(root, rel, ("timestamp_ns",) + POSE_COLUMNS, "ego pose table")
    ego_ns = ego_tab["timestamp_ns"].astype(np.int64)
    if not len(ego_ns):
        raise ConvertError(DATASET, rel, "no ego poses", "timestamp_ns")
    ego_poses = table_poses(ego_tab, rel)
    order = np.argsort(ego_ns, kind="stable")
    ego_ns, ego_poses = ego_ns[order], ego_poses[order]
    keep = np.concatenate([[True], np.diff(ego_ns) >= DUPLICATE_NS])
    ego_ns, ego_poses = ego_ns[keep], ego_poses[keep]

    all_sweeps = stamped_files(root, f"{log}/{LIDAR_DIR}", "feather")
    sweeps = [(ts, r) for ts, r in all_sweeps if ego_ns[0] <= ts <= ego_ns[-1]]
    if len(sweeps) < len(all_sweeps):
        logger.warning("%s: %d of %d sweeps lie outside the ego poses of %s; left out", DATASET,
                       len(all_sweeps) - len(sweeps), len(all_sweeps), EGO_POSES)
    if not sweeps:
        raise ConvertError(DATASET, f"{log}/{LIDAR_DIR}", "no LiDAR sweep <timestamp_ns>.feather within the ego "
                                                          f"poses of {EGO_POSES}")
    for _, r in sweeps:
        check_columns(root, r, SWEEP_COLUMNS)
    images = {cam: [(ts, r) for ts, r in stamped_files(root, f"{log}/{CAMERA_DIR}/{cam}", "jpg")
                    if ego_ns[0] <= ts <= ego_ns[-1]] for cam in cameras}

    t0_ns = sweeps[0][0]

    def rel_s(ns) -> np.ndarray:
        return (np.asarray(ns, np.int64) - t0_ns).astype(np.float64) * 1e-9

    T_city_ego = PoseTrack(rel_s(ego_ns), ego_poses, name=f"{rel}")
    origin = np.round(T_city_ego.at(0.0)[:3, 3])
    T_world_city = pose_matrix(np.eye(3), -origin)

    def world_ego(ns) -> np.ndarray:
        return T_world_city @ T_city_ego.at(rel_s(ns))

    # Sensors.  The spin of each unit is fitted on the first sweep.
    cams = {cam: make_camera(cam, intrinsics[cam], distorted_images, f"{log}/{INTRINSICS}") for cam in cameras}
    max_dt = (1.0 / SPIN_HZ) * (1 + LOG_LIMITS.lidar_time_slack) + LOG_LIMITS.lidar_time_slack_s
    first = read_sweep(root, sweeps[0][1])
    lidars = {}
    for unit, sid in enumerate(LIDARS):
        pts = unit_returns(first, unit, extrinsics[sid], max_dt)
        dt = pts[:, 5].astype(np.float64)
        xyz = decompensate(pts[:, :3].astype(np.float64), dt, sensor_track(T_city_ego, extrinsics[sid]))
        clockwise, start, conc = fit_spin(xyz, dt)
        if len(pts) < 100 or conc < 0.5:
            logger.warning("%s: %s: cannot fit the spin on %d returns (concentration %.2f); using %s", DATASET, sid,
                           len(pts), conc, DEFAULT_SPIN[sid])
            clockwise, start = DEFAULT_SPIN[sid]
        lidars[sid] = SpinningLidar(BEAM_ELEVATIONS_DEG, AZIMUTH_RESOLUTION_DEG, MIN_RANGE_M, MAX_RANGE_M, SPIN_HZ,
                                    clockwise=clockwise, azimuth_start_deg=start)

    plan, offsets = frame_plan(sweeps, images, camera_timing)
    actors = read_actors(root, log, world_ego, rel_s, (sweeps[0][0], sweeps[-1][0]))

    writer = LogWriter(out, name=str(scene), image_format=image_format)
    for cam in cameras:
        writer.add_sensor(cam, cams[cam], extrinsics[cam])
    for sid in LIDARS:
        writer.add_sensor(sid, lidars[sid], extrinsics[sid])
    with progress_bar(f"{DATASET} {scene}", len(plan), progress) as advance:
        for ts, sweep_rel, cam_files in plan:
            frame_images = {cam: read_image(root, r, cams[cam]) for cam, r in cam_files.items()}
            points = {}
            if sweep_rel is not None:
                tab = first if sweep_rel == sweeps[0][1] else read_sweep(root, sweep_rel)
                points = {sid: unit_returns(tab, unit, extrinsics[sid], max_dt) for unit, sid in enumerate(LIDARS)}
            writer.add_frame(float(rel_s(ts)), world_ego(ts), images=frame_images, lidar_points=points)
            advance()
    for aid, entry in actors.items():
        writer.add_actor(aid, entry["class"], entry["size"], entry["times"], entry["poses"],
                         source_category=entry["category"])
    writer.extra[DATASET] = {
        "log_id": str(scene), "time_origin_ns": int(t0_ns), "world_origin_city_m": [float(v) for v in origin],
        "camera_timing": camera_timing, "camera_time_offset_s": offsets,
        "beam_of_laser_number": {sid: {str(LASERS_PER_UNIT * u + k): int(BEAM_OF_LASER[k])
                                       for k in range(LASERS_PER_UNIT)} for u, sid in enumerate(LIDARS)},
        "original_distortion": {cam: {k: intrinsics[cam][k] for k in ("k1", "k2", "k3")} for cam in cameras},
        "distortion_applied": bool(distorted_images),
    }
    path = writer.finish()
    logger.info("%s: converted log %s: %d frames, %d actors", DATASET, scene, len(plan), len(actors))
    return path


def frame_plan(sweeps: list[tuple[int, str]], images: dict[str, list[tuple[int, str]]], timing: str
               ) -> tuple[list[tuple[int, str | None, dict[str, str]]], dict[str, list]]:
    """Frames to write, by time: (timestamp_ns, sweep file or None, {camera: image file}),
    and per camera the image time minus the frame time (s) of each frame (None: no image)."""
    if timing == "exact":
        events = [(ts, "", r) for ts, r in sweeps] + [(ts, cam, r) for cam, lst in images.items() for ts, r in lst]
        events.sort(key=lambda e: e[0])
        plan: list[tuple[int, str | None, dict[str, str]]] = []
        for ts, cam, r in events:
            if not plan or ts - plan[-1][0] >= MERGE_NS or (cam and cam in plan[-1][2]) or \
                    (not cam and plan[-1][1] is not None):
                plan.append((ts, None, {}))
            if cam:
                plan[-1][2][cam] = r
            else:
                plan[-1] = (plan[-1][0], r, plan[-1][2])
        # Image time - frame time: 0, or under a microsecond for merged events.
        offsets = {cam: [(int(Path(c[cam]).stem) - ts) * 1e-9 if cam in c else None for ts, _, c in plan]
                   for cam in images}
        return plan, offsets
    plan = [(ts, r, {}) for ts, r in sweeps]
    offsets = {}
    for cam, lst in images.items():
        offsets[cam] = [None] * len(plan)
        if not lst:
            logger.warning("%s: camera %s has no images", DATASET, cam)
            continue
        stamps = np.array([ts for ts, _ in lst], np.int64)
        tol = int(np.median(np.diff(stamps)) // 2) if len(stamps) > 1 else 25_000_000
        missing = 0
        for k, (ts, _, files) in enumerate(plan):
            j = int(np.searchsorted(stamps, ts))
            cand = [i for i in (j - 1, j) if 0 <= i < len(stamps)]
            i = min(cand, key=lambda i: abs(int(stamps[i]) - ts))
            if abs(int(stamps[i]) - ts) <= tol:
                files[cam] = lst[i][1]
                offsets[cam][k] = (int(stamps[i]) - ts) * 1e-9
            else:
                missing += 1
        if missing:
            logger.warning("%s: camera %s: no image within %.1f ms of %d of %d sweeps; those frames lack it", DATASET,
                           cam, tol * 1e-6, missing, len(plan))
    return plan, offsets


def read_image(root: Path, rel: str, cam) -> np.ndarray:
    """(H, W, 3) uint8 of a camera image, checked against the camera's size."""
    path = source_file(DATASET, root, rel, "camera image")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as exc:  # a damaged or foreign file, whatever PIL raises
        raise ConvertError(DATASET, rel, f"cannot read image: {type(exc).__name__}: {exc}") from None
    if arr.shape[:2] != (cam.height, cam.width):
        raise ConvertError(DATASET, rel, f"image is {arr.shape[1]}x{arr.shape[0]}, but {INTRINSICS} gives "
                                         f"{cam.width}x{cam.height}", "width_px, height_px")
    return arr


def read_actors(root: Path, log: str, world_ego, rel_s, span_ns: tuple[int, int]) -> dict[str, dict]:
    """Actor tracks by track_uuid: class, source category, size (median l, w, h), times (s)
    and T_world_object (K, 4, 4), from the annotations within ``span_ns`` (the converted
    sweeps).  No annotations file (the test split): no actors."""
    rel = f"{log}/{ANNOTATIONS}"
    try:
        source_file(DATASET, root, rel, "annotations table")
    except ConvertError as exc:
        if "not a path inside" in exc.detail:
            raise
        logger.warning("%s: no %s (unlabeled log): the log has no actors", DATASET, rel)
        return {}
    tab = read_table(root, rel, ANNOTATION_COLUMNS, "annotations table")
    ts = tab["timestamp_ns"].astype(np.int64)
    T_ego_obj = table_poses(tab, rel)
    size = np.column_stack([tab["length_m"], tab["width_m"], tab["height_m"]]).astype(np.float64)
    if len(size) and size.min() <= 0:
        raise ConvertError(DATASET, rel, f"box size must be > 0 (row {int(np.argmin(size.min(axis=1)))})",
                           "length_m, width_m, height_m")
    uuids = np.asarray(tab["track_uuid"]).astype(str)
    categories = np.asarray(tab["category"]).astype(str)
    actors: dict[str, dict] = {}
    inside = (ts >= span_ns[0]) & (ts <= span_ns[1])
    for aid in np.unique(uuids[inside]):
        rows = np.flatnonzero((uuids == aid) & inside)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        rows = rows[np.concatenate([[True], np.diff(ts[rows]) >= MERGE_NS])]
        poses = world_ego(ts[rows]) @ T_ego_obj[rows]   # the sweeps, hence these times, lie within the ego poses
        category = str(categories[rows[0]])
        actors[str(aid)] = {"class": map_class(category, CLASS_MAP), "category": category,
                            "size": np.median(size[rows], axis=0), "times": rel_s(ts[rows]), "poses": poses}
    return actors

