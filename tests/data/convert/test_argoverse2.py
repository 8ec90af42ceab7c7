"""Argoverse 2 converter: a miniature log in the real layout (argoverse2_fixture) converted
and checked against the geometry it was made from."""
from __future__ import annotations

import math
import os
import shutil

import numpy as np
import pyarrow.feather as feather
import pytest
import torch

from gssim.data.convert import converter
from gssim.data.convert.argoverse2 import convert
from gssim.data.convert.common import ConvertError
from gssim.data.reader import load_log
from tests.data.convert import argoverse2_fixture as fx

RING = ("ring_front_center", "ring_front_left", "ring_front_right", "ring_side_left", "ring_side_right",
        "ring_rear_left", "ring_rear_right")
# Our beam of each laser (mod 32): rank by descending elevation, recomputed from the fixture's table.
BEAM = {laser: sorted(fx.LASER_ELEVATIONS_DEG, reverse=True).index(e) for laser, e in
        enumerate(fx.LASER_ELEVATIONS_DEG)}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("av2")
    return fx.write_log(root / "src")


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("av2_out") / "log"
    convert(source.root, fx.LOG_ID, out, progress=False)
    return load_log(out)


@pytest.fixture(scope="module")
def converted_exact(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("av2_exact") / "log"
    convert(source.root, fx.LOG_ID, out, progress=False, camera_timing="exact")
    return load_log(out)


@pytest.fixture
def copy(source, tmp_path):
    """A private copy of the miniature dataset to damage."""
    dst = tmp_path / "src"
    shutil.copytree(source.root, dst, symlinks=True)
    return dst, dst / fx.LOG_ID


def world_origin(log) -> np.ndarray:
    return np.asarray(log.extra["argoverse2"]["world_origin_city_m"])


def city_to_world(log, T_city: np.ndarray) -> np.ndarray:
    T = T_city.copy()
    T[:3, 3] -= world_origin(log)
    return T


def project(log, i: int, cam: str, p_city: np.ndarray) -> np.ndarray:
    """Pixel coordinates (u, v) of a city point through the converted pose and camera."""
    T = np.linalg.inv(log.frame_sensor_pose(i, cam))
    p = T[:3, :3] @ (p_city - world_origin(log)) + T[:3, 3]
    uv, valid = log.sensor(cam).project(torch.tensor(p[None], dtype=torch.float64))
    assert bool(valid[0])
    return uv[0].numpy()


# --- sensors, frames, time ------------------------------------------------------------------
def test_sensors_frames_and_time(converted):
    log = converted
    assert set(log.sensors) == set(RING) | {"up_lidar", "down_lidar"}
    for cam in RING:
        e = log.sensors[cam].entry
        fx_, fy_, cx, cy, h, w = fx.INTRINSICS[cam]
        assert (e["model"], e["width"], e["height"]) == ("pinhole", w, h)
        assert e["rolling_shutter_s"] == 0.0
        assert (e["fx"], e["fy"]) == (fx_, fy_)
        assert e["cx"] == pytest.approx(cx + 0.5) and e["cy"] == pytest.approx(cy + 0.5)
        np.testing.assert_allclose(log.sensors[cam].T_ego_sensor, fx.sensor_pose(cam), atol=1e-12)
        assert log.extra["argoverse2"]["original_distortion"][cam] == dict(zip(("k1", "k2", "k3"), fx.DISTORTION[cam]))
    assert len(log.frames) == len(fx.SWEEP_NS)
    assert log.extra["argoverse2"]["time_origin_ns"] == fx.SWEEP_NS[0]
    np.testing.assert_array_equal(world_origin(log), np.round(fx.CITY0))
    for fr, ns in zip(log.frames, fx.SWEEP_NS):
        assert fr.t == pytest.approx((ns - fx.SWEEP_NS[0]) * 1e-9, abs=1e-12)
        np.testing.assert_allclose(fr.T_world_ego, city_to_world(log, fx.ego_pose(ns)), atol=1e-9)
        assert set(fr.lidars) == {"up_lidar", "down_lidar"}


# --- cameras ----------------------------------------------------------------------------
def check_markers(log, i: int, cam: str, image_ns: int, exact: bool) -> int:
    """The markers drawn in the source image taken at image_ns are the bright pixels of the
    converted image; with exact timing they also project there through the log."""
    img = log.image(i, cam)
    marks = fx.marker_pixels(cam, image_ns)
    bright = {tuple(rc) for rc in np.argwhere(img.max(axis=2) > 128)}
    assert bright == {(r, c) for r, c, _ in marks}
    if exact:
        uv_av2, _ = fx.av2_project(cam, image_ns, np.array([p for _, _, p in marks]).reshape(-1, 3))
        for (row, col, p), (u0, v0) in zip(marks, uv_av2):
            u, v = project(log, i, cam, p)
            assert abs(u - (u0 + 0.5)) < 1e-3 and abs(v - (v0 + 0.5)) < 1e-3
            assert (math.floor(v), math.floor(u)) == (row, col)
    return len(marks)


def test_known_points_land_on_their_pixels(converted):
    """Nearest timing: ring_front_center fires at the sweep times, so its images and poses
    agree exactly; every other camera's image is the one nearest the sweep (its markers
    are those of that image time) with the time difference recorded."""
    log = converted
    offsets = log.extra["argoverse2"]["camera_time_offset_s"]
    seen = 0
    for i, ns in enumerate(fx.SWEEP_NS):
        for cam in RING:
            phase = fx.CAMERA_PHASE_NS[cam]
            if (cam, i) == fx.DROPPED_IMAGE:  # the nearest left is 28 ms away: over half the 50 ms period
                assert cam not in log.frames[i].cameras and offsets[cam][i] is None
                continue
            assert offsets[cam][i] == pytest.approx(phase * 1e-9, abs=1e-12)
            seen += check_markers(log, i, cam, ns + phase, exact=phase == 0)
    assert seen > 20


def test_exact_timing_every_image_at_its_own_pose(converted_exact, source):
    log = converted_exact
    written = {cam: [] for cam in RING}
    seen = 0
    t0 = log.extra["argoverse2"]["time_origin_ns"]
    for i, fr in enumerate(log.frames):
        for cam in fr.cameras:
            ns = t0 + round(fr.t * 1e9)
            written[cam].append(ns)
            seen += check_markers(log, i, cam, ns, exact=True)
        if fr.lidars:
            assert round(fr.t * 1e9) + t0 in fx.SWEEP_NS
    assert written == {cam: source.images[cam] for cam in RING}
    assert seen > 50


# --- LiDAR ------------------------------------------------------------------------------
@pytest.mark.parametrize("unit, sid", [(0, "up_lidar"), (1, "down_lidar")])
def test_lidar_returns_beams_and_times(converted, source, unit, sid):
    log = converted
    lidar = log.sensor(sid)
    a0, sign, _ = fx.SPIN[sid]
    assert lidar.clockwise == (sign < 0)
    assert abs((lidar.azimuth_start_deg - a0 + 180) % 360 - 180) < 0.2
    assert lidar.elevations_deg == sorted(fx.LASER_ELEVATIONS_DEG, reverse=True)
    for i, sw in enumerate(source.sweeps):
        rows = (sw.laser // 32 == unit) & np.isfinite(sw.city[:, 0])   # the zero rows are no returns
        pts = log.lidar_points(i, sid)
        assert len(pts) == rows.sum()
        world = log.lidar_points_world(i, sid)
        # Exactly where the file puts them (float16 ego coordinates at the sweep time) ...
        T = city_to_world(log, fx.ego_pose(sw.ns))
        written = sw.ego16[rows].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        np.testing.assert_allclose(world, written, atol=1e-3)
        # ... which is the true hit point up to float16 rounding (< 1 cm below 32 m).
        np.testing.assert_allclose(world, sw.city[rows] - world_origin(log), atol=0.012)
        np.testing.assert_array_equal(pts[:, 4], [BEAM[int(n) % 32] for n in sw.laser[rows]])
        np.testing.assert_allclose(pts[:, 5], sw.offset_ns[rows] * 1e-9, atol=1e-8)
        np.testing.assert_allclose(pts[:, 3], sw.intensity[rows] / 255.0, atol=1e-6)
        # Each return lies on its beam's cone: elevation along the ray that measured it.
        t = log.frames[i].t + pts[:, 5].astype(np.float64)
        T_ray = log.sensor_pose_at(sid, t, extrapolate=True)
        d = world - T_ray[:, :3, 3]
        local = np.einsum("mji,mj->mi", T_ray[:, :3, :3], d)
        elev = np.degrees(np.arctan2(local[:, 2], np.hypot(local[:, 0], local[:, 1])))
        np.testing.assert_allclose(elev, np.asarray(lidar.elevations_deg)[pts[:, 4].astype(int)], atol=0.15)


# --- boxes ------------------------------------------------------------------------------
def test_box_tracks(converted):
    log = converted
    expected_class = {"car": "car", "pedestrian": "pedestrian", "bollard": "barrier"}
    assert set(log.actors) == set(fx.BOXES)
    for uuid, (name, category, length, width, height) in fx.BOXES.items():
        actor = log.actors[uuid]
        assert actor.cls == expected_class[name] and actor.extra["source_category"] == category
        np.testing.assert_allclose(actor.size, [length, width, height])
        # Only the annotations of the converted sweeps (not the one before the first sweep).
        np.testing.assert_allclose(actor.track.times, (np.array(fx.SWEEP_NS) - fx.SWEEP_NS[0]) * 1e-9, atol=1e-12)
        for ns in fx.SWEEP_NS:
            t = (ns - fx.SWEEP_NS[0]) * 1e-9
            box = log.actor_box(uuid, t)
            truth = city_to_world(log, fx.box_pose(name, ns))
            np.testing.assert_allclose(box.T_world_object[:3, 3], truth[:3, 3], atol=1e-6)
            heading = math.atan2(box.T_world_object[1, 0], box.T_world_object[0, 0])
            assert abs(math.remainder(heading - math.atan2(truth[1, 0], truth[0, 0]), 2 * math.pi)) < 1e-6
            np.testing.assert_allclose(box.T_world_object, truth, atol=1e-6)


# --- layout variants --------------------------------------------------------------------
def test_split_folder_unlabeled_raw_images(tmp_path):
    """A log under <root>/test/ (the unlabeled split: no annotations.feather) converts
    through the registry, without actors; a chosen camera list; raw (distorted) imagery
    gets OpenCV cameras with [k1, k2, 0, 0, k3]."""
    truth = fx.write_log(tmp_path / "src", split="test")
    (truth.log_dir / "annotations.feather").unlink()
    out = converter("argoverse2")(tmp_path / "src", fx.LOG_ID, tmp_path / "log", progress=False,
                                  cameras=("ring_front_left", "stereo_front_left"), distorted_images=True)
    log = load_log(out.parent)
    assert len(log.frames) == len(fx.SWEEP_NS) and not log.actors
    assert set(log.camera_ids) == {"ring_front_left", "stereo_front_left"}
    k1, k2, k3 = fx.DISTORTION["ring_front_left"]
    e = log.sensors["ring_front_left"].entry
    assert e["model"] == "opencv" and e["distortion"] == [k1, k2, 0.0, 0.0, k3]


# --- errors -----------------------------------------------------------------------------
def drop_column(path, column):
    table = feather.read_table(path)
    feather.write_feather(table.drop_columns([column]), path)


def drop_row(path, sensor):
    table = feather.read_table(path)
    keep = [i for i, n in enumerate(table.column("sensor_name").to_pylist()) if n != sensor]
    feather.write_feather(table.take(keep), path)


@pytest.mark.parametrize("damage, names", [
    (lambda log: (log / "calibration/intrinsics.feather").unlink(), ["calibration/intrinsics.feather", "missing"]),
    (lambda log: (log / "city_SE3_egovehicle.feather").unlink(), ["city_SE3_egovehicle.feather", "missing"]),
    (lambda log: drop_column(log / "city_SE3_egovehicle.feather", "tz_m"), ["city_SE3_egovehicle.feather", "tz_m"]),
    (lambda log: drop_column(log / f"sensors/lidar/{fx.SWEEP_NS[0]}.feather", "offset_ns"),
     [f"sensors/lidar/{fx.SWEEP_NS[0]}.feather", "offset_ns"]),
    (lambda log: drop_column(log / f"sensors/lidar/{fx.SWEEP_NS[-1]}.feather", "laser_number"),
     [f"sensors/lidar/{fx.SWEEP_NS[-1]}.feather", "laser_number"]),
    (lambda log: drop_column(log / "annotations.feather", "track_uuid"), ["annotations.feather", "track_uuid"]),
    (lambda log: drop_column(log / "calibration/egovehicle_SE3_sensor.feather", "qw"),
     ["egovehicle_SE3_sensor.feather", "qw"]),
    (lambda log: drop_row(log / "calibration/intrinsics.feather", "ring_side_left"),
     ["calibration/intrinsics.feather", "ring_side_left", "sensor_name"]),
    (lambda log: drop_row(log / "calibration/egovehicle_SE3_sensor.feather", "down_lidar"),
     ["egovehicle_SE3_sensor.feather", "down_lidar"]),
    (lambda log: shutil.rmtree(log / "sensors/cameras/ring_rear_right"), ["sensors/cameras/ring_rear_right"]),
], ids=["no-intrinsics", "no-ego-poses", "ego-pose-column", "sweep-column", "last-sweep-column", "annotation-column",
        "extrinsics-column", "intrinsics-row", "extrinsics-row", "camera-folder"])
def test_missing_file_or_field_is_named(copy, tmp_path, damage, names):
    root, log = copy
    damage(log)
    with pytest.raises(ConvertError) as err:
        convert(root, fx.LOG_ID, tmp_path / "out", progress=False)
    for name in names:
        assert name in str(err.value)
    assert not (tmp_path / "out").exists()   # found before anything is written


def test_unknown_log_and_escaping_paths(copy, tmp_path):
    root, log = copy
    with pytest.raises(ConvertError, match="no-such-log"):
        convert(root, "no-such-log", tmp_path / "out", progress=False)
    with pytest.raises(ConvertError, match="not a path inside"):
        convert(root, "../src", tmp_path / "out", progress=False)
    # A sweep that is a link to a file outside the dataset folder is refused.
    outside = tmp_path / "elsewhere.feather"
    sweep = log / f"sensors/lidar/{fx.SWEEP_NS[1]}.feather"
    shutil.move(sweep, outside)
    os.symlink(outside, sweep)
    with pytest.raises(ConvertError, match=f"{fx.SWEEP_NS[1]}.feather.*not a path inside"):
        convert(root, fx.LOG_ID, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_spin_fit_and_fallback():
    """fit_spin recovers direction and start azimuth of a turning unit; scattered azimuths
    give a low concentration (the converter then uses DEFAULT_SPIN)."""
    from gssim.data.convert.argoverse2 import fit_spin
    rng = np.random.default_rng(1)
    dt = np.sort(rng.uniform(0.003, 0.103, 500))
    el = rng.uniform(-0.3, 0.2, 500)
    for clockwise, a0 in ((True, 145.0), (False, -170.0)):
        az = np.radians(a0) + (-1 if clockwise else 1) * 2 * np.pi * 10.0 * dt + rng.normal(0, 0.002, 500)
        xyz = np.column_stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)]) * 20
        cw, start, conc = fit_spin(xyz, dt)
        assert cw == clockwise and abs(math.remainder(start - a0, 360)) < 0.05 and conc > 0.99
    _, _, conc = fit_spin(rng.normal(size=(500, 3)), dt)
    assert conc < 0.5
