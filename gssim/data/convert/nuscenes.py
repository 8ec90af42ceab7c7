"""nuScenes (``gssim convert --from nuscenes ROOT --scene scene-0061 OUT``).

Reads the tables with the official ``nuscenes-devkit`` (``NuScenes(version, dataroot)``)
and writes one scene as a gssim log.

Source layout (``ROOT`` is the devkit's ``dataroot``)::

    v1.0-mini/ | v1.0-trainval/ | v1.0-test/     JSON tables: scene, sample, sample_data,
                                                 ego_pose, calibrated_sensor, sensor,
                                                 sample_annotation, instance, category,
                                                 attribute, visibility, log, map
    samples/<CHANNEL>/<log>__<CHANNEL>__<us>.jpg|.pcd.bin    keyframes (2 Hz)
    sweeps/<CHANNEL>/<log>__<CHANNEL>__<us>.jpg|.pcd.bin     the frames in between
    maps/<token>.png                             the devkit opens these when it loads

The version folder is the one (of v1.0-mini, v1.0-trainval, v1.0-test, other ``v*``)
whose ``scene.json`` holds the scene, named (``scene-0061``) or by token.

Frames and conventions (source -> ours)
---------------------------------------
* World: the nuScenes ``global`` (map) frame, metres, x east, y north, z up, right-handed,
  z up -- kept as our world frame unchanged.  Ego (``ego_pose``): x forward, y left, z up
  -- ours.  Quaternions are (w, x, y, z) in both.
* ``ego_pose`` is given per ``sample_data`` at its timestamp (microseconds).  All ego
  poses of the converted channels form the source ego track (linear translation, slerp);
  each log frame's T_world_ego is that track at the frame time (exact for camera frames,
  interpolated between records ~10 ms apart for LiDAR frames; the first sweep's start, if
  before every record, extrapolated at constant velocity).
* Timestamps: microseconds -> seconds, minus the time of the first frame (the start of
  the first LiDAR sweep or the first image, whichever is earlier), so the log starts at
  t = 0; that origin is stored as ``log.json["source"]["time_origin_us"]``.
* Cameras (CAM_FRONT, CAM_FRONT_LEFT, ...; ids ``cam_front``, ...): ``calibrated_sensor``
  maps the camera frame to ego; the nuScenes camera frame is already OpenCV (x right,
  y down, z forward), so T_ego_sensor = (rotation, translation) unchanged.  The images are
  undistorted: pinhole, fx = K[0][0], fy = K[1][1], and cx = K[0][2] + 0.5,
  cy = K[1][2] + 0.5 (the calibration puts pixel centres at integers, gssim at
  j + 0.5).  Global shutter (rolling_shutter_s = 0): nuScenes gives one exposure time
  per image.
* LIDAR_TOP (Velodyne HDL-32E, 20 Hz, clockwise; id ``lidar_top``): the nuScenes sensor
  frame has x right, y forward, z up.  Ours is x forward, y left, z up: the sensor frame
  is turned about z by the multiple of 90 degrees that brings its x axis nearest the
  ego's x (for nuScenes +90 degrees: p_ours = (y, -x, z)_nus) and T_ego_sensor =
  T_ego_lidar_nus @ R_z(+90).  Elevations and ranges are unchanged by it.
* LiDAR points: ``.pcd.bin`` is float32 rows (x, y, z, intensity 0-255, ring index 0-31),
  in firing order, in the sensor frame at the sample_data timestamp, which is the END of
  the 1/20 s sweep (the devkit's ``LidarPointCloud.from_file`` reads the same rows).
  The log's LiDAR frame time is the sweep START t_s = t_end - 1/20 s (gssim's readout
  runs from the frame time forward), and the points are moved rigidly into the sensor
  frame at t_s: p_s = T_world_sensor(t_s)^-1 T_world_sensor(t_end) p_end, which keeps
  every point's world position T_world_sensor(t_end) p_end exactly (the reader gives
  T_world_sensor(t_s) p_s).  Per-point time offsets (none in nuScenes) come from the
  azimuth: the sweep turns clockwise from a seam azimuth phi_0, so a ray at azimuth phi
  fires at t_s + sweep * ((phi_0 - phi) mod 2 pi) / 2 pi; phi is taken in the sensor
  frame at the ray's own time (two fixed-point iterations from the t_end frame), and a
  point whose azimuth lands it at the other end of the sweep from its place in the file
  is put at that end.  phi_0 (``azimuth_start_deg``) is estimated once per scene from
  the file order: row i of N fires near t_s + sweep * (i + 0.5) / N, so
  phi_0 = circular mean of phi_i + 2 pi (i + 0.5) / N over a few sweeps (180 degrees,
  behind the car, with a warning when the files are not in firing order).
  Beam index = the ring index.  The beam elevation table is estimated from the data
  (``estimate_beam_elevations``: median elevation of each ring's points, at their ray
  times, over up to 8 sweeps of the scene); 1085 azimuth columns per turn (the HDL-32E
  fires every 46.08 us: 0.05 s / 46.08 us = 1085).  Rows at the origin (no return) and
  returns nearer than 1 m (the ego vehicle) or beyond 120 m are dropped.  Intensity is
  divided by 255.
* Frames: every LIDAR_TOP sweep (20 Hz, keyframes and sweeps) and every camera image
  (12 Hz each) gets its own frame at its own time -- the cameras are not synchronised
  with the LiDAR (each is triggered as the LiDAR crosses its field of view), and the log
  has one time and one ego pose per frame, so giving each capture its own frame keeps the
  pose error of a camera at zero instead of the up to ~40 ms x ego speed (0.4 m at 10 m/s)
  of pairing images with the nearest sweep.  Captures less than 2 us apart share a frame.
  ``keyframes_only=True`` converts the 2 Hz keyframes only (also chosen, with a warning,
  when the ``sweeps/`` folder is absent).
* Actors: ``sample_annotation`` boxes (global frame, at the keyframe ``sample`` time)
  grouped by ``instance``: translation = box centre, rotation (w, x, y, z) -> the object
  frame (x forward along the length, y left, z up: the devkit's Box axes, ours), size
  [width, length, height] -> ours [length, width, height] (median over the instance's
  annotations).  Tracks hold the 2 Hz keyframe poses; the reader interpolates in
  between (linear translation, slerp), so between keyframes the pose is an interpolation,
  not a measurement.  Actor id = instance token.  Class by ``CLASS_MAP`` (a bicycle
  annotated ``cycle.with_rider`` in most of its samples is a ``cyclist``).
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gssim.data.convert.common import (ConvertError, estimate_beam_elevations, lidar_points, map_class,
                                       motion_compensate, pose_matrix, progress_bar, quat_wxyz_to_rotmat,
                                       read_image, require, sensor_track, source_dir, source_file)
from gssim.data.poses import PoseTrack
from gssim.data.writer import LogWriter
from gssim.sensors import PinholeCamera, SpinningLidar

logger = logging.getLogger(__name__)

DATASET = "nuScenes"
VERSIONS = ("v1.0-mini", "v1.0-trainval", "v1.0-test")
# The tables NuScenes() loads (it fails without any of them).
TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
          "scene", "sample", "sample_data", "sample_annotation", "map")
# Fields of each table that the devkit or this converter reads.
FIELDS = {
    "category": ("token", "name"),
    "attribute": ("token", "name"),
    "visibility": ("token",),
    "instance": ("token", "category_token"),
    "sensor": ("token", "channel", "modality"),
    "calibrated_sensor": ("token", "sensor_token", "translation", "rotation", "camera_intrinsic"),
    "ego_pose": ("token", "timestamp", "rotation", "translation"),
    "log": ("token",),
    "scene": ("token", "name", "first_sample_token"),
    "sample": ("token", "timestamp", "next"),
    "sample_data": ("token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "filename", "timestamp",
                    "is_key_frame", "width", "height", "prev", "next"),
    "sample_annotation": ("token", "sample_token", "instance_token", "translation", "size", "rotation",
                          "attribute_tokens"),
    "map": ("token", "log_tokens", "filename"),
}
# Foreign keys (table.field -> table), to name a dangling token.
FOREIGN = {("instance", "category_token"): "category", ("calibrated_sensor", "sensor_token"): "sensor",
           ("sample_data", "calibrated_sensor_token"): "calibrated_sensor",
           ("sample_data", "ego_pose_token"): "ego_pose", ("sample_data", "sample_token"): "sample",
           ("sample_annotation", "sample_token"): "sample", ("sample_annotation", "instance_token"): "instance",
           ("scene", "first_sample_token"): "sample", ("map", "log_tokens"): "log"}

LIDAR_CHANNEL = "LIDAR_TOP"
CAMERA_CHANNELS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
# Velodyne HDL-32E as mounted on the nuScenes cars.
SPIN_HZ = 20.0
SWEEP_US = 50000                    # one turn (us); the sample_data timestamp is its end
N_BEAMS = 32
N_COLUMNS = 1085                    # 0.05 s / 46.08 us firing cycle
MIN_RANGE, MAX_RANGE = 1.0, 120.0   # nearer: the ego vehicle; HDL-32E: 100 m nominal
PCD_COLUMNS = 5                     # x, y, z, intensity, ring
SEAM_SAMPLES = 8                    # sweeps used for the seam azimuth and the elevation table
SAME_FRAME_US = 2                   # captures closer than this share a frame

# nuScenes category -> ours (exact name, else the longest matching prefix; see map_class).
CLASS_MAP = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.bus": "bus",                      # bus.bendy, bus.rigid
    "vehicle.trailer": "trailer",
    "vehicle.construction": "construction_vehicle",
    "vehicle.emergency.police": "car",
    "vehicle.emergency.ambulance": "truck",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.bicycle": "bicycle",
    "human.pedestrian": "pedestrian",          # adult, child, construction_worker, police_officer, ...
    "animal": "animal",
    "movable_object.trafficcone": "traffic_cone",
    "movable_object.barrier": "barrier",
    "movable_object": "other",                 # debris, pushable_pullable
    "static_object": "other",                  # bicycle_rack
}


# --- tables ------------------------------------------------------------------------

def _read_json(root: Path, rel: str):
    path = source_file(DATASET, root, rel, "table")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConvertError(DATASET, rel, f"not valid JSON: {exc}") from None


def find_version(root: Path, scene: str) -> tuple[str, dict]:
    """The version folder whose scene.json holds ``scene`` (name or token) and its record."""
    candidates = [v for v in VERSIONS if (root / v).is_dir()]
    candidates += sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v")
                         and p.name not in candidates and (p / "scene.json").is_file())
    if not candidates:
        raise ConvertError(DATASET, VERSIONS[0], f"no version folder ({', '.join(VERSIONS)}) in {root}; is this "
                                                 f"the nuScenes dataroot?")
    names = []
    for version in candidates:
        table = _read_json(root, f"{version}/scene.json")
        if not isinstance(table, list):
            raise ConvertError(DATASET, f"{version}/scene.json", "expected a JSON list of scene records")
        for k, rec in enumerate(table):
            name = require(DATASET, f"{version}/scene.json", rec, "name", f"[{k}].")
            if scene in (name, rec.get("token")):
                return version, rec
            names.append(name)
    shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
    raise ConvertError(DATASET, f"{candidates[0]}/scene.json", f"no scene named {scene!r} (or with that token) in "
                                                              f"{', '.join(candidates)}; scenes: {shown}")


def _diagnose(root: Path, version: str, exc: BaseException) -> ConvertError:
    """A ConvertError naming the table and field behind a devkit failure: a table that is
    not JSON, a missing field, or a token that no record has (KeyError)."""
    key = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
    tables = {}
    for name in TABLES:
        rel = f"{version}/{name}.json"
        try:
            tables[name] = json.loads((root / rel).read_bytes())
        except OSError as err:
            return ConvertError(DATASET, rel, f"cannot read the table: {err}")
        except ValueError as err:
            return ConvertError(DATASET, rel, f"not valid JSON: {err}")
        if not isinstance(tables[name], list) or not all(isinstance(r, dict) for r in tables[name]):
            return ConvertError(DATASET, rel, "expected a JSON list of records (objects)")
    for name in TABLES:
        for k, rec in enumerate(tables[name]):
            for fld in FIELDS[name]:
                if fld not in rec:
                    return ConvertError(DATASET, f"{version}/{name}.json",
                                        f"missing field in record {k} (token {rec.get('token')!r})", fld)
    if isinstance(key, str):
        for (name, fld), target in FOREIGN.items():
            for k, rec in enumerate(tables[name]):
                val = rec.get(fld)
                if val == key or (isinstance(val, list) and key in val):
                    return ConvertError(DATASET, f"{version}/{name}.json",
                                        f"record {k} refers to token {key!r}, which {version}/{target}.json lacks",
                                        fld)
    return ConvertError(DATASET, version, f"nuscenes-devkit cannot load the tables: {type(exc).__name__}: {exc}")


def load_nuscenes(root: Path, version: str):
    """NuScenes(version, root), after checking that every table and map mask exists."""
    bomb_guard = Image.MAX_IMAGE_PIXELS
    from nuscenes.nuscenes import NuScenes
    Image.MAX_IMAGE_PIXELS = bomb_guard  # the devkit lifts PIL's guard for the whole process at import

    for name in TABLES:
        source_file(DATASET, root, f"{version}/{name}.json", "table")
    maps = _read_json(root, f"{version}/map.json")
    if not isinstance(maps, list) or not maps:
        raise ConvertError(DATASET, f"{version}/map.json", "expected a non-empty list of map records")
    for k, rec in enumerate(maps):
        require(DATASET, f"{version}/map.json", rec, "log_tokens", f"[{k}].")
        source_file(DATASET, root, require(DATASET, f"{version}/map.json", rec, "filename", f"[{k}]."), "map mask")
    try:
        return NuScenes(version=version, dataroot=str(root), verbose=False)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:   # ValueError: JSONDecodeError
        raise _diagnose(root, version, exc) from None
    except (AssertionError, OSError) as exc:
        raise ConvertError(DATASET, version, f"nuscenes-devkit cannot load the tables: {exc}") from None


# --- poses ----------------------------------------------------------------------------

def _pose(rec: dict, file: str, where: str) -> np.ndarray:
    """(4, 4) of a record's rotation (w, x, y, z) and translation."""
    q = np.asarray(require(DATASET, file, rec, "rotation", where), np.float64)
    t = np.asarray(require(DATASET, file, rec, "translation", where), np.float64)
    if q.shape != (4,) or t.shape != (3,) or not (np.all(np.isfinite(q)) and np.all(np.isfinite(t))) \
            or np.linalg.norm(q) < 1e-9:
        raise ConvertError(DATASET, file, f"{where.rstrip('.')}: expected rotation (w, x, y, z) and translation "
                                          f"(x, y, z), got {q.tolist()} and {t.tolist()}", "rotation/translation")
    return pose_matrix(quat_wxyz_to_rotmat(q), t)


def lidar_axes(R_ego_lidar: np.ndarray) -> np.ndarray:
    """R_z(-k 90 deg) (3, 3) turning the LiDAR frame's x axis to the ego's forward
    (k: the multiple of 90 degrees nearest the yaw of the source x axis)."""
    yaw = math.atan2(R_ego_lidar[1, 0], R_ego_lidar[0, 0])
    a = -round(yaw / (math.pi / 2)) * (math.pi / 2)
    c, s = round(math.cos(a)), round(math.sin(a))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# --- LiDAR ----------------------------------------------------------------------------

def read_pcd_bin(root: Path, rel: str) -> np.ndarray:
    """(N, 5) float64 rows x, y, z, intensity, ring of a ``.pcd.bin`` file."""
    path = source_file(DATASET, root, rel, "LiDAR sweep")
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % PCD_COLUMNS:
        raise ConvertError(DATASET, rel, f"{raw.size * 4} bytes is not a whole number of rows of {PCD_COLUMNS} "
                                         f"float32 (x, y, z, intensity, ring index)")
    pts = raw.reshape(-1, PCD_COLUMNS).astype(np.float64)
    ring = pts[:, 4]
    bad = ~np.isfinite(ring) | (ring != np.round(ring)) | (ring < 0) | (ring >= N_BEAMS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConvertError(DATASET, rel, f"row {i}: ring index {ring[i]:g} is not an integer in [0, {N_BEAMS})",
                           "column 4 (ring index)")
    return pts


def sweep_fraction(xyz: np.ndarray, seam: float) -> np.ndarray:
    """Sweep fraction in [0, 1) of rays at the azimuths of sensor-frame points (clockwise from ``seam``)."""
    az = np.arctan2(xyz[:, 1], xyz[:, 0])
    return np.mod(seam - az, 2 * np.pi) / (2 * np.pi)


@dataclass
class SweepTiming:
    """Sensor poses of one sweep (start t_s, end t_e) and the ray time of its points."""

    sensor_at: Callable[[np.ndarray], np.ndarray]   # times (K,) -> (K, 4, 4) T_world_sensor
    t_s: float
    t_e: float
    bins: int = 512              # ray poses at sweep / bins steps (98 us; affects times only, < 2 us)

    def to_ray_frame(self, xyz_end: np.ndarray, frac: np.ndarray) -> np.ndarray:
        """Points in the sensor frame at t_e -> the sensor frame at t_s + frac * sweep."""
        k = np.clip(np.floor(frac * self.bins), 0, self.bins - 1).astype(np.int64)
        uniq, inv = np.unique(k, return_inverse=True)
        times = self.t_s + (uniq + 0.5) / self.bins * (self.t_e - self.t_s)
        T_end = self.sensor_at(np.array([self.t_e]))[0]
        T = self.sensor_at(times)                                     # (K, 4, 4)
        Rt = np.swapaxes(T[:, :3, :3], 1, 2)                          # rigid inverse: R^T, -R^T t
        R = Rt @ T_end[:3, :3]
        t = np.einsum("kij,kj->ki", Rt, T_end[:3, 3] - T[:, :3, 3])
        return np.einsum("mij,mj->mi", R[inv], xyz_end) + t[inv]

    def ray_fractions(self, xyz_end: np.ndarray, seam: float, order_frac: np.ndarray | None = None,
                      iterations: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Sweep fraction (M,) of each point from its azimuth at its own ray time, and the
        points (M, 3) in the sensor frame at that time.  ``order_frac``: the fraction by
        file order, to put a point that the azimuth sends across the seam back at its end."""
        frac = sweep_fraction(xyz_end, seam)
        ray = xyz_end
        for _ in range(iterations):
            ray = self.to_ray_frame(xyz_end, frac)
            frac = sweep_fraction(ray, seam)
            if order_frac is not None:
                frac = np.where(frac - order_frac > 0.5, 0.0, frac)
                frac = np.where(order_frac - frac > 0.5, np.nextafter(1.0, 0.0), frac)
        return frac, ray


def estimate_seam(samples: list[tuple[np.ndarray, SweepTiming]]) -> tuple[float, bool]:
    """Seam azimuth (rad) from files in firing order: row i of N fires near fraction
    (i + 0.5) / N, so phi_0 = phi_i + 2 pi (i + 0.5) / N.  Returns (phi_0, ordered)."""
    phasors, weights = [], []
    for pts, timing in samples:
        n = len(pts)
        xyz = pts[:, :3]
        rng = np.linalg.norm(xyz, axis=1)
        i = np.flatnonzero(np.isfinite(rng) & (rng > 2.0))
        if len(i) < 8:
            continue
        f = (i + 0.5) / n
        ray = timing.to_ray_frame(xyz[i], f)
        phi0 = np.arctan2(ray[:, 1], ray[:, 0]) + 2 * np.pi * f
        z = np.exp(1j * phi0).mean()
        phasors.append(z)
        weights.append(len(i))
    if not phasors:
        return math.pi, False
    z = np.average(np.array(phasors), weights=weights)
    ordered = bool(np.min(np.abs(phasors)) > 0.8)
    return (float(np.angle(z)) if ordered else math.pi), ordered


# --- the converter ----------------------------------------------------------------------

@dataclass
class Capture:
    """One sample_data to write: channel, its record, and the frame time (us)."""

    t_us: int
    channel: str
    sd: dict


def _chain(nusc, first_token: str, file: str) -> list[dict]:
    """The whole prev/next chain (one channel of one scene) through ``first_token``."""
    rec = _get(nusc, "sample_data", first_token, file, "token")
    seen = {rec["token"]}
    while require(DATASET, file, rec, "prev", f"token {rec['token']}: "):
        rec = _get(nusc, "sample_data", rec["prev"], file, "prev")
        if rec["token"] in seen:
            raise ConvertError(DATASET, file, f"the prev chain loops at token {rec['token']}", "prev")
        seen.add(rec["token"])
    out, seen = [rec], {rec["token"]}
    while require(DATASET, file, rec, "next", f"token {rec['token']}: "):
        rec = _get(nusc, "sample_data", rec["next"], file, "next")
        if rec["token"] in seen:
            raise ConvertError(DATASET, file, f"the next chain loops at token {rec['token']}", "next")
        seen.add(rec["token"])
        out.append(rec)
    return out


def _get(nusc, table: str, token: str, file: str, fld: str) -> dict:
    try:
        return nusc.get(table, token)
    except KeyError:
        raise ConvertError(DATASET, file, f"refers to token {token!r}, which {table}.json lacks", fld) from None


def convert(source, scene: str, out, progress: bool = True, keyframes_only: bool = False,
            image_format: str = "jpg", jpeg_quality: int = 95) -> Path:
    """Convert nuScenes scene ``scene`` (name or token) under the dataroot ``source`` to
    the log folder ``out``; returns ``out``.  ``keyframes_only``: the 2 Hz keyframes only.
    Images are re-encoded as ``image_format`` ("jpg": quality ``jpeg_quality``, or "png")."""
    root = source_dir(DATASET, Path(source), ".", "dataset folder")
    out = Path(out)
    version, scene_rec = find_version(root, scene)
    nusc = load_nuscenes(root, version)
    tf = lambda name: f"{version}/{name}.json"  # noqa: E731
    scene_rec = _get(nusc, "scene", require(DATASET, tf("scene"), scene_rec, "token"), tf("scene"), "token")
    scene_name = scene_rec["name"]

    # Keyframe samples of the scene, in time order.
    samples = []
    tok = require(DATASET, tf("scene"), scene_rec, "first_sample_token", f"{scene_name}: ")
    while tok:
        s = _get(nusc, "sample", tok, tf("scene"), "first_sample_token" if not samples else "next")
        require(DATASET, tf("sample"), s, "timestamp", f"token {s['token']}: ")
        samples.append(s)
        tok = require(DATASET, tf("sample"), s, "next", f"token {s['token']}: ")
        if len(samples) > len(nusc.sample):
            raise ConvertError(DATASET, tf("sample"), "the next chain does not end", "next")
    if not samples:
        raise ConvertError(DATASET, tf("scene"), f"scene {scene_name} has no samples", "first_sample_token")
    first_data = samples[0]["data"]
    if LIDAR_CHANNEL not in first_data:
        raise ConvertError(DATASET, tf("sample_data"), f"the first sample of {scene_name} has no {LIDAR_CHANNEL} "
                                                       f"keyframe", "channel")
    channels = [LIDAR_CHANNEL] + [c for c in CAMERA_CHANNELS if c in first_data]
    channels += sorted(c for c in first_data if c.startswith("CAM_") and c not in channels)
    chains = {c: _chain(nusc, first_data[c], tf("sample_data")) for c in channels}

    if not keyframes_only and not (root / "sweeps").is_dir():
        logger.warning("%s: no sweeps/ folder in %s: converting the 2 Hz keyframes only", DATASET, root)
        keyframes_only = True

    # Source ego track: the ego pose of every sample_data of the converted channels.
    ego_t, ego_T = {}, {}
    for c, chain in chains.items():
        for sd in chain:
            ts = int(require(DATASET, tf("sample_data"), sd, "timestamp", f"token {sd['token']}: "))
            if ts not in ego_t:
                ep = _get(nusc, "ego_pose", require(DATASET, tf("sample_data"), sd, "ego_pose_token",
                                                    f"token {sd['token']}: "), tf("sample_data"), "ego_pose_token")
                ego_t[ts] = ts
                ego_T[ts] = _pose(ep, tf("ego_pose"), f"token {ep['token']}: ")

    # Captures -> frames.
    captures = []
    for c, chain in chains.items():
        for sd in chain:
            if keyframes_only and not require(DATASET, tf("sample_data"), sd, "is_key_frame",
                                              f"token {sd['token']}: "):
                continue
            ts = int(sd["timestamp"])
            captures.append(Capture(ts - SWEEP_US if c == LIDAR_CHANNEL else ts, c, sd))
    captures.sort(key=lambda cp: (cp.t_us, cp.channel))
    t0_us = captures[0].t_us
    keys = sorted(ego_t)
    ego = PoseTrack(np.array([(k - t0_us) * 1e-6 for k in keys]), np.stack([ego_T[k] for k in keys]),
                    name=f"{DATASET} ego poses of {scene_name}")
    groups: list[list[Capture]] = []
    for cp in captures:
        if groups and cp.t_us - groups[-1][0].t_us < SAME_FRAME_US and cp.channel not in \
                {g.channel for g in groups[-1]}:
            groups[-1].append(cp)
        else:
            groups.append([cp])

    # Sensors.
    sensors, T_ego_sensor, sids = {}, {}, {}
    for c in channels:
        sd0 = chains[c][0]
        cs = _get(nusc, "calibrated_sensor", sd0["calibrated_sensor_token"], tf("sample_data"),
                  "calibrated_sensor_token")
        T = _pose(cs, tf("calibrated_sensor"), f"token {cs['token']}: ")
        for sd in chains[c][1:]:
            if sd["calibrated_sensor_token"] != sd0["calibrated_sensor_token"]:
                T2 = _pose(nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]), tf("calibrated_sensor"), "")
                if np.abs(T2 - T).max() > 1e-4:
                    logger.warning("%s: %s calibration changes within %s; using the first", DATASET, c, scene_name)
                break
        sid = c.lower()
        sids[c] = sid
        if c == LIDAR_CHANNEL:
            M = lidar_axes(T[:3, :3])  # our LiDAR axes in the source LiDAR frame
            T_ego_sensor[sid] = T @ pose_matrix(M, np.zeros(3))
        else:
            K = np.asarray(require(DATASET, tf("calibrated_sensor"), cs, "camera_intrinsic",
                                   f"token {cs['token']}: "), np.float64)
            if K.shape != (3, 3) or not np.all(np.isfinite(K)):
                raise ConvertError(DATASET, tf("calibrated_sensor"), f"token {cs['token']} ({c}): expected a 3x3 "
                                                                     f"camera_intrinsic, got {K.tolist()}",
                                   "camera_intrinsic")
            if abs(K[0, 1]) > 1e-6 * K[0, 0]:
                logger.warning("%s: %s intrinsic skew %g ignored", DATASET, c, K[0, 1])
            w = int(require(DATASET, tf("sample_data"), sd0, "width", f"token {sd0['token']}: "))
            h = int(require(DATASET, tf("sample_data"), sd0, "height", f"token {sd0['token']}: "))
            sensors[sid] = PinholeCamera(w, h, K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5, rolling_shutter_s=0.0)
            T_ego_sensor[sid] = T
    lidar_sid = sids[LIDAR_CHANNEL]
    lidar_at = sensor_track(ego, T_ego_sensor[lidar_sid])

    def timing(sd: dict) -> SweepTiming:
        ts = int(sd["timestamp"])
        return SweepTiming(lidar_at, (ts - SWEEP_US - t0_us) * 1e-6, (ts - t0_us) * 1e-6)

    def load_sweep(sd: dict) -> np.ndarray:
        rel = require(DATASET, tf("sample_data"), sd, "filename", f"token {sd['token']}: ")
        pts = read_pcd_bin(root, rel)
        pts[:, :3] = pts[:, :3] @ M  # p_ours = M^T p_nus (row vectors)
        return pts

    # Actors (checked before anything is written).
    tracks: dict[str, list] = {}
    for s in samples:
        for atok in s["anns"]:
            ann = nusc.get("sample_annotation", atok)
            tracks.setdefault(ann["instance_token"], []).append((int(s["timestamp"]), ann))
    actors = [_actor(nusc, tf("sample_annotation"), inst, anns, t0_us) for inst, anns in tracks.items()]

    # Every file of the frames, before the slow part.
    for cp in captures:
        rel = require(DATASET, tf("sample_data"), cp.sd, "filename", f"token {cp.sd['token']}: ")
        source_file(DATASET, root, rel, "LiDAR sweep" if cp.channel == LIDAR_CHANNEL else "camera image")

    # LiDAR model: seam azimuth and beam elevations from a few sweeps.
    lidar_caps = [cp for cp in captures if cp.channel == LIDAR_CHANNEL]
    pick = np.unique(np.linspace(0, len(lidar_caps) - 1, min(SEAM_SAMPLES, len(lidar_caps))).round().astype(int))
    probe = [(load_sweep(lidar_caps[k].sd), timing(lidar_caps[k].sd)) for k in pick]
    seam, ordered = estimate_seam(probe)
    if not ordered:
        logger.warning("%s: %s rows are not in firing order; sweep seam assumed at 180 deg (behind)", DATASET,
                       LIDAR_CHANNEL)
    xyz_all, ring_all = [], []
    for pts, tm in probe:
        valid = np.linalg.norm(pts[:, :3], axis=1) > MIN_RANGE
        order = (np.arange(len(pts)) + 0.5) / len(pts)
        _, ray = tm.ray_fractions(pts[valid, :3], seam, order[valid] if ordered else None)
        xyz_all.append(ray)
        ring_all.append(pts[valid, 4])
    try:
        elev = estimate_beam_elevations(np.concatenate(xyz_all), np.concatenate(ring_all).astype(np.int64), N_BEAMS)
    except ValueError as exc:
        raise ConvertError(DATASET, chains[LIDAR_CHANNEL][0]["filename"], str(exc)) from None
    sensors[lidar_sid] = SpinningLidar(elev.tolist(), 360.0 / N_COLUMNS, MIN_RANGE, MAX_RANGE, spin_hz=SPIN_HZ,
                                       clockwise=True, azimuth_start_deg=math.degrees(seam))

    writer = LogWriter(out, name=scene_name, image_format=image_format, jpeg_quality=jpeg_quality)
    writer.extra["source"] = {"dataset": "nuscenes", "version": version, "scene": scene_name,
                              "scene_token": scene_rec["token"], "time_origin_us": t0_us,
                              "keyframes_only": bool(keyframes_only), "world": "nuScenes global (map) frame"}
    for c in channels:
        writer.add_sensor(sids[c], sensors[sids[c]], T_ego_sensor[sids[c]])

    with progress_bar(f"{DATASET} {scene_name}", len(groups), progress) as advance:
        for group in groups:
            lead = next((cp for cp in group if cp.channel == LIDAR_CHANNEL), group[0])
            t = (lead.t_us - t0_us) * 1e-6
            images, lidars = {}, {}
            for cp in group:
                rel = require(DATASET, tf("sample_data"), cp.sd, "filename", f"token {cp.sd['token']}: ")
                if cp.channel == LIDAR_CHANNEL:
                    lidars[lidar_sid] = _lidar_frame(load_sweep(cp.sd), timing(cp.sd), seam, ordered, t)
                else:
                    images[sids[cp.channel]] = _image(root, rel, sensors[sids[cp.channel]])
            writer.add_frame(t, ego.at(t, extrapolate=True), images=images, lidar_points=lidars)
            advance()

    for aid, cls, size, times, poses, extra in actors:
        writer.add_actor(aid, cls, size, times, poses, **extra)
    writer.finish()
    return out


def _actor(nusc, file: str, inst_token: str, anns: list, t0_us: int) -> tuple:
    """(id, class, size (l, w, h), times, poses, extra) of one instance's annotations
    [(sample timestamp us, sample_annotation record)]."""
    anns = sorted(anns, key=lambda a: a[0])
    inst = nusc.get("instance", inst_token)
    category = nusc.get("category", inst["category_token"])["name"]
    where = lambda a: f"token {a['token']}: "  # noqa: E731
    times = [(ts - t0_us) * 1e-6 for ts, _ in anns]
    poses = np.stack([_pose(a, file, where(a)) for _, a in anns])
    sizes = np.array([require(DATASET, file, a, "size", where(a)) for _, a in anns], np.float64)
    if sizes.ndim != 2 or sizes.shape[1] != 3 or not np.all(np.isfinite(sizes)) or not np.all(sizes > 0):
        raise ConvertError(DATASET, file, f"instance {inst_token}: sizes must be positive [width, length, height]",
                           "size")
    w, l, h = np.median(sizes, axis=0)
    attrs = [[nusc.get("attribute", at)["name"] for at in require(DATASET, file, a, "attribute_tokens", where(a))]
             for _, a in anns]
    cls = map_class(category, CLASS_MAP)
    if cls == "bicycle" and sum("cycle.with_rider" in a for a in attrs) * 2 > len(attrs):
        cls = "cyclist"
    return inst_token, cls, [l, w, h], times, poses, {"category": category}


def _lidar_frame(pts: np.ndarray, tm: SweepTiming, seam: float, ordered: bool, t: float) -> np.ndarray:
    """The log's (M, 6) points of one sweep (rows (N, 5) in our sensor axes at t_e), in
    the sensor frame at the sweep start ``tm.t_s`` (= the frame time ``t``)."""
    xyz = pts[:, :3]
    rng = np.linalg.norm(xyz, axis=1)
    keep = np.isfinite(rng) & (rng > 1e-6)
    order = (np.arange(len(pts)) + 0.5) / max(len(pts), 1)
    pts, order = pts[keep], order[keep]
    frac, _ = tm.ray_fractions(pts[:, :3], seam, order if ordered else None)
    xyz_s = motion_compensate(pts[:, :3], np.full(len(pts), tm.t_e), tm.t_s, tm.sensor_at)
    out = lidar_points(xyz_s, pts[:, 3] / 255.0, pts[:, 4], frac * (tm.t_e - tm.t_s), min_range=MIN_RANGE)
    return out[np.linalg.norm(out[:, :3].astype(np.float64), axis=1) <= MAX_RANGE]


def _image(root: Path, rel: str, cam: PinholeCamera) -> np.ndarray:
    return read_image(DATASET, source_file(DATASET, root, rel, "camera image"), rel, cam.width, cam.height,
                      "sample_data", "width/height")
