"""PandaSet converter against a miniature sequence in PandaSet's real layout (pandaset_fixture)."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from gssim.data.convert import converter
from gssim.data.convert.common import CLASSES, ConvertError, beams_from_elevation, map_class
from gssim.data.convert.pandaset import CLASS_TABLE, convert
from gssim.data.reader import load_log

from . import pandaset_fixture as F


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("pandaset")
    truth = F.write_sequence(root / "src")
    return root / "src", truth


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory):
    src, truth = source
    out = tmp_path_factory.mktemp("pandaset_out") / "log"
    path = convert(src, F.SEQ, out, progress=False)
    assert path == out / "log.json"
    return load_log(out), truth


@pytest.fixture()
def copy(source, tmp_path):
    """A fresh copy of the miniature sequence to damage."""
    src, _ = source
    dst = tmp_path / "src"
    shutil.copytree(src, dst)
    return dst


def _convert_error(root, tmp_path, scene=F.SEQ) -> ConvertError:
    with pytest.raises(ConvertError) as info:
        convert(root, scene, tmp_path / "out", progress=False)
    return info.value


# --- sensors, frames, time ---------------------------------------------------------------
def test_registered_and_log_valid(converted):
    log, _ = converted
    assert converter("pandaset") is convert
    assert sorted(log.camera_ids) == sorted(F.CAMERAS)
    assert log.lidar_ids == ["pandar64"]
    assert len(log.frames) == F.N_FRAMES
    for i in range(F.N_FRAMES):  # every file passes the reader's checks
        log.lidar_points(i, "pandar64")
        for cam in F.CAMERAS:
            assert log.image(i, cam).shape == (F.HEIGHT, F.WIDTH, 3)


def test_images_keep_pandaset_jpeg_bytes(converted):
    log, truth = converted
    for cam in ("front_camera", "back_camera"):
        for i in range(F.N_FRAMES):
            written = (log.root / log.frames[i].cameras[cam]).read_bytes()
            assert written == (truth["seq"] / "camera" / cam / f"{i:02d}.jpg").read_bytes()


def _start(log) -> float:
    """Seconds from a PandaSet LiDAR timestamp to its frame time (the sweep start), as converted."""
    return log.extra["pandaset"]["sweep_start_offset_s"]


def test_timestamps_kept_with_first_frame_at_zero(converted):
    log, truth = converted
    ts = F.frame_times()
    # frames are timed at the start of their sweeps: the timestamps plus one constant
    assert _start(log) == pytest.approx(F.SWEEP_START, abs=2e-4)
    assert log.extra["pandaset"]["time_origin_s"] == pytest.approx(ts[0] + _start(log), abs=1e-6)
    np.testing.assert_allclose(log.times, ts - ts[0], atol=1e-6)
    offsets = log.extra["pandaset"]["camera_time_offsets_s"]
    for cam, (_, off, _) in F.CAMERAS.items():
        np.testing.assert_allclose(offsets[cam], off - _start(log), atol=1e-6)


def test_ego_frame_is_the_lidar_pose_with_forward_x(converted):
    log, _ = converted
    for i, t in enumerate(F.frame_times()):
        # (Unix times in float64 resolve 0.24 us, in which the vehicle moves ~2 um)
        np.testing.assert_allclose(log.frames[i].T_world_ego, F.vehicle_pose(t + _start(log)), atol=1e-5)
    np.testing.assert_allclose(log.sensors["pandar64"].T_ego_sensor, np.eye(4), atol=1e-12)


def test_lidar_sensor_model(converted):
    log, _ = converted
    lidar = log.sensor("pandar64")
    np.testing.assert_allclose(lidar.elevations_deg, F.PANDAR64_ELEV)
    assert lidar.azimuth_resolution_deg == pytest.approx(0.2)
    assert lidar.spin_hz == pytest.approx(F.SPIN_HZ) and lidar.clockwise
    # every return on its beam's elevation, seen from the sensor at the return's own time
    assert log.extra["pandaset"]["beam_elevation_residual_deg"]["p95"] < 1e-6
    # the azimuth the sweep faces at the frame time, fitted from the points
    want = F.AZ0_DEG - 360.0 * F.SPIN_HZ * _start(log)
    assert (lidar.azimuth_start_deg - want + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=1e-3)


# --- cameras -------------------------------------------------------------------------------
def test_camera_intrinsics_and_mounts(converted):
    log, _ = converted
    for cam in F.CAMERAS:
        c = log.sensor(cam)
        K = F.intrinsics(cam)
        assert (c.model, c.width, c.height) == ("pinhole", F.WIDTH, F.HEIGHT)
        assert (c.fx, c.fy) == pytest.approx((K["fx"], K["fy"]))
        # PandaSet (OpenCV) puts pixel centres at integers, gssim at +0.5
        assert (c.cx, c.cy) == pytest.approx((K["cx"] + 0.5, K["cy"] + 0.5))
        assert c.rolling_shutter_s == 0.0
        # (Unix times in float64 resolve 0.24 us, in which the vehicle moves ~2 um)
        np.testing.assert_allclose(log.sensors[cam].T_ego_sensor, F.camera_mount(cam), atol=1e-6)


@pytest.mark.parametrize("cam", list(F.CAMERAS))
def test_world_point_lands_on_its_pixel(converted, cam):
    log, _ = converted
    k = 2
    # a world point 9 m in front of the camera, off its axis
    p = F.camera_pose(cam, k) @ np.array([0.8, -0.5, 9.0, 1.0])
    u_ps = F.pandaset_pixel(cam, k, p[:3])
    offset = log.extra["pandaset"]["camera_time_offsets_s"][cam][k]
    T = log.sensor_pose_at(cam, log.frames[k].t + offset, extrapolate=True)
    pc = np.linalg.inv(T) @ p
    uv, valid = log.sensor(cam).project(torch.tensor(pc[None, :3], dtype=torch.float64))
    assert bool(valid[0])
    np.testing.assert_allclose(uv[0].numpy(), u_ps + 0.5, atol=1e-3)


# --- LiDAR -----------------------------------------------------------------------------------
@pytest.mark.parametrize("k", range(F.N_FRAMES))
def test_lidar_points_return_to_world_with_beams_and_times(converted, k):
    log, truth = converted
    fr = truth["frames"][k]
    pts = log.lidar_points(k, "pandar64")
    # every Pandar64 return kept, in order; PandarGT points and rays without a return dropped
    assert len(pts) == len(fr["xyz"])
    np.testing.assert_allclose(log.lidar_points_world(k, "pandar64"), fr["xyz"], atol=1e-3)
    # stored in the sensor frame at the frame time
    V = F.vehicle_pose(fr["t"] + _start(log))
    np.testing.assert_allclose(pts[:, :3], (fr["xyz"] - V[:3, 3]) @ V[:3, :3], atol=1e-4)
    np.testing.assert_array_equal(pts[:, 4], fr["beam"])
    np.testing.assert_allclose(pts[:, 5], fr["time"] - fr["t"] - _start(log), atol=1e-6)
    np.testing.assert_allclose(pts[:, 3], fr["intensity"] / 255.0, atol=1e-6)
    # the fixture's motion matters: beams from the frame-time positions would be wrong
    assert np.any(beams_from_elevation(pts[:, :3], F.PANDAR64_ELEV) != fr["beam"])


def test_range_image_one_return_per_cell_at_the_cell_time(converted):
    log, truth = converted
    ri = log.range_image(0, "pandar64")
    assert ri.n_collisions == 0
    assert int(ri.valid.sum()) == len(truth["frames"][0]["xyz"])
    rows, _ = np.nonzero(ri.valid)
    np.testing.assert_array_equal(np.sort(rows), np.sort(truth["frames"][0]["beam"]))
    # gssim's sweep model (cell times from the frame time) agrees with when each return was measured
    model = log.sensor("pandar64").cell_times().numpy()
    np.testing.assert_allclose(ri.time_offset[ri.valid], model[ri.valid], atol=2e-4)


# --- actors ------------------------------------------------------------------------------------
def test_actor_classes_and_sizes(converted):
    log, _ = converted
    assert set(log.actors) == set(F.ACTORS)  # the PandarGT sibling of the car is dropped
    assert F.GT_SIBLING not in log.actors
    want = {"5bfb1e0c-car": "car", "0a1f9b3e-bike": "cyclist", "77c0d6aa-cone": "traffic_cone"}
    for aid, a in F.ACTORS.items():
        act = log.actors[aid]
        assert act.cls == want[aid]
        np.testing.assert_allclose(act.size, a["lwh"])  # length, width, height
        assert act.extra["stationary"] == a["stationary"]


# Every cuboid label of PandaSet's annotation instructions.
PANDASET_LABELS = {
    "Car": "car", "Pickup Truck": "car", "Medium-sized Truck": "truck", "Semi-truck": "truck",
    "Towed Object": "trailer", "Motorcycle": "motorcycle", "Other Vehicle - Construction Vehicle":
    "construction_vehicle", "Other Vehicle - Uncommon": "other", "Other Vehicle - Pedicab": "other",
    "Emergency Vehicle": "car", "Bus": "bus", "Personal Mobility Device": "other", "Motorized Scooter": "motorcycle",
    "Bicycle": "bicycle", "Train": "other", "Trolley": "other", "Tram / Subway": "other", "Pedestrian": "pedestrian",
    "Pedestrian with Object": "pedestrian", "Animals - Bird": "animal", "Animals - Other": "animal",
    "Pylons": "traffic_cone", "Road Barriers": "barrier", "Signs": "other", "Cones": "traffic_cone",
    "Construction Signs": "other", "Temporary Construction Barriers": "barrier", "Rolling Containers": "other",
}


def test_class_table():
    for label, cls in PANDASET_LABELS.items():
        assert map_class(label, CLASS_TABLE) == cls, label
    assert set(CLASS_TABLE.values()) <= set(CLASSES)


@pytest.mark.parametrize("aid", list(F.ACTORS))
def test_box_pose_survives_at_its_observation_time(converted, aid):
    log, truth = converted
    ann = truth["annotations"][aid]
    track = log.actors[aid].track
    assert len(track.times) == F.N_FRAMES
    for k, a in enumerate(ann):
        # the time the sweep saw the box (frame time for a stationary one)
        want = log.times[k] if F.ACTORS[aid]["stationary"] else a["t"] - log.extra["pandaset"]["time_origin_s"]
        assert track.times[k] == pytest.approx(want, abs=2e-3)
        box = log.actor_box(aid, track.times[k])
        np.testing.assert_allclose(box.T_world_object[:3, 3], a["T"][:3, 3], atol=1e-9)
        heading = F.ACTORS[aid]["heading"]
        np.testing.assert_allclose(box.T_world_object[:3, 0], [math.cos(heading), math.sin(heading), 0], atol=1e-9)
        np.testing.assert_allclose(box.T_world_object[:3, 2], [0, 0, 1], atol=1e-12)
    if not F.ACTORS[aid]["stationary"]:
        assert np.ptp(track.times - log.times) > 0 or abs(track.times[0] - log.times[0]) > 0.01


def test_box_holds_the_points_that_hit_it(converted):
    log, truth = converted
    aid = "5bfb1e0c-car"
    for k, fr in enumerate(truth["frames"]):
        on = fr["hit"] == aid
        assert on.sum() >= 3
        world = log.lidar_points_world(k, "pandar64")[on]
        box = log.actor_box(aid, log.actors[aid].track.times[k])
        # the car moves ~7 m/s; its points span a few ms of sweep around the observation time
        assert box.contains(world, margin=0.05).all()


# --- errors ------------------------------------------------------------------------------------
def test_missing_lidar_file(copy, tmp_path):
    (copy / F.SEQ / "lidar" / "02.pkl.gz").unlink()
    err = _convert_error(copy, tmp_path)
    assert err.file == "lidar/02.pkl.gz" and "lidar/02.pkl.gz" in str(err)


def test_missing_lidar_column(copy, tmp_path):
    path = copy / F.SEQ / "lidar" / "00.pkl.gz"
    pd.read_pickle(path).drop(columns=["t"]).to_pickle(path, compression="gzip")
    err = _convert_error(copy, tmp_path)
    assert (err.file, err.field) == ("lidar/00.pkl.gz", "t")
    assert "field t" in str(err)


def test_missing_cuboid_column(copy, tmp_path):
    path = copy / F.SEQ / "annotations" / "cuboids" / "01.pkl.gz"
    pd.read_pickle(path).drop(columns=["yaw"]).to_pickle(path, compression="gzip")
    err = _convert_error(copy, tmp_path)
    assert (err.file, err.field) == ("annotations/cuboids/01.pkl.gz", "yaw")


def test_missing_intrinsics_file_and_field(copy, tmp_path):
    path = copy / F.SEQ / "camera" / "left_camera" / "intrinsics.json"
    data = json.loads(path.read_text())
    del data["fy"]
    path.write_text(json.dumps(data))
    err = _convert_error(copy, tmp_path)
    assert (err.file, err.field) == ("camera/left_camera/intrinsics.json", "fy")
    path.unlink()
    err = _convert_error(copy, tmp_path)
    assert err.file == "camera/left_camera/intrinsics.json" and "missing" in str(err)


def test_without_annotations_no_actors(copy, tmp_path):
    shutil.rmtree(copy / F.SEQ / "annotations")
    data = json.loads(convert(copy, F.SEQ, tmp_path / "out", progress=False).read_text())
    assert data["actors"] == [] and len(data["frames"]) == F.N_FRAMES


def test_missing_pose_field(copy, tmp_path):
    path = copy / F.SEQ / "lidar" / "poses.json"
    data = json.loads(path.read_text())
    del data[2]["heading"]
    path.write_text(json.dumps(data))
    err = _convert_error(copy, tmp_path)
    assert (err.file, err.field) == ("lidar/poses.json", "[2].heading")


def test_missing_image(copy, tmp_path):
    (copy / F.SEQ / "camera" / "back_camera" / "03.jpg").unlink()
    err = _convert_error(copy, tmp_path)
    assert err.file == "camera/back_camera/03.jpg"


def test_missing_timestamps(copy, tmp_path):
    (copy / F.SEQ / "lidar" / "timestamps.json").unlink()
    err = _convert_error(copy, tmp_path)
    assert err.file == "lidar/timestamps.json"


def test_scene_must_be_a_sequence_folder(copy, tmp_path):
    assert _convert_error(copy, tmp_path, scene="002").file == "002"
    assert _convert_error(copy, tmp_path, scene="../src").file == "../src"
    assert _convert_error(copy / F.SEQ, tmp_path, scene="..").file == ".."


def test_paths_stay_inside_the_source(copy, tmp_path):
    # a lidar file that is a link to a file outside the dataset folder is refused
    outside = tmp_path / "elsewhere.pkl.gz"
    shutil.move(copy / F.SEQ / "lidar" / "01.pkl.gz", outside)
    (copy / F.SEQ / "lidar" / "01.pkl.gz").symlink_to(outside)
    err = _convert_error(copy, tmp_path)
    assert err.file == "lidar/01.pkl.gz" and "inside" in str(err)
