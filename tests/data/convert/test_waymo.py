"""Waymo Open Dataset v2 converter on a miniature segment in the real parquet layout
(``waymo_fixture``): calibration and poses through projection, LiDAR returns back to
their world points, beams and times, boxes, timestamps, and errors naming file and field."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gssim.data.convert import converter
from gssim.data.convert.common import ConvertError
from gssim.data.convert.waymo import convert
from gssim.data.reader import load_log

from . import waymo_fixture as F

CAM_SIDS = {1: "cam_front", 2: "cam_front_left", 3: "cam_front_right", 4: "cam_side_left", 5: "cam_side_right"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("waymo") / "source"
    return F.write_dataset(root)


@pytest.fixture(scope="module")
def log(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("waymo_out") / "log"
    path = convert(dataset.root, F.CONTEXT, out, progress=False, image_format="png")
    assert path == out / "log.json"
    return load_log(out)


def _copy(dataset, tmp_path) -> Path:
    src = tmp_path / "source"
    shutil.copytree(dataset.root, src)
    return src


def _lidar_frames(log) -> list[int]:
    return [i for i, f in enumerate(log.frames) if f.lidars]


def _camera_frame(log, sid: str, n: int) -> int:
    return [i for i, f in enumerate(log.frames) if sid in f.cameras][n]


def test_registry_and_validated_log(log):
    assert converter("waymo") is convert
    assert sorted(log.sensors) == sorted([*CAM_SIDS.values(), "lidar_top"])
    assert len(_lidar_frames(log)) == F.N_FRAMES
    # One frame per TOP sweep and per camera image (each at its own capture time).
    assert len(log.frames) == F.N_FRAMES * (1 + len(F.CAMS))
    assert log.extra["source"]["context_name"] == F.CONTEXT


def test_timestamps_kept(log):
    t0 = log.extra["source"]["time_origin_unix_s"]
    assert t0 == pytest.approx(F.T0_US * 1e-6, abs=1e-6)
    lidar_t = [log.frames[i].t for i in _lidar_frames(log)]
    np.testing.assert_allclose(lidar_t, [i * F.SWEEP for i in range(F.N_FRAMES)], atol=1e-6)
    for code, sid in CAM_SIDS.items():
        for n in range(F.N_FRAMES):
            t_expected, readout = F.expected_camera_frame_time(code, n)
            assert log.frames[_camera_frame(log, sid, n)].t == pytest.approx(t_expected, abs=1e-6), sid
        # Unix seconds as doubles resolve 2.4e-7 s, so the readout is good to about 1e-6 s.
        assert log.sensor(sid).rolling_shutter_s == pytest.approx(readout, abs=1e-6), sid
    # Only the TOP_TO_BOTTOM camera keeps a rolling shutter.
    assert [sid for sid in CAM_SIDS.values() if log.sensor(sid).rolling_shutter_s > 0] == ["cam_front_left"]


def test_world_point_lands_on_waymo_pixel(log):
    """A world point seen by each camera projects, through the converted calibration and
    the log's pose at the frame time, to the pixel Waymo's own camera model gives."""
    for code, sid in CAM_SIDS.items():
        cam = log.sensor(sid)
        assert cam.model == "opencv"
        for n in range(F.N_FRAMES):
            i = _camera_frame(log, sid, n)
            t_true, _ = F.expected_camera_frame_time(code, n)
            T_world_vehicle = F.ego(t_true)
            T_world_waymo_cam = T_world_vehicle @ F.camera_extrinsic(code)
            for dx, dy, dz in [(12.0, 1.5, -0.8), (7.0, -2.0, 1.1), (20.0, 0.0, 0.0)]:
                # Waymo camera frame: x along the optical axis, y left, z up.
                X_world = (T_world_waymo_cam @ np.array([dx, dy, dz, 1.0]))[:3]
                expected = F.project_waymo(code, (np.linalg.inv(T_world_vehicle) @ np.append(X_world, 1.0))[:3])
                assert 0 <= expected[0] < F.IMG_W and 0 <= expected[1] < F.IMG_H
                T = log.frame_sensor_pose(i, sid)
                p_cam = np.linalg.inv(T) @ np.append(X_world, 1.0)
                pix, valid = cam.project(torch.tensor(p_cam[None, :3], dtype=torch.float64))
                assert bool(valid[0])
                np.testing.assert_allclose(pix[0].numpy(), expected, atol=1e-3, err_msg=f"{sid} frame {n}")


def test_lidar_returns_come_back_to_their_world_points(log, dataset):
    """Per-pixel poses (lidar_pose) make the compensation exact: float32 storage only."""
    sweep_dt = None
    for k, i in enumerate(_lidar_frames(log)):
        world = log.lidar_points_world(i, "lidar_top")
        pts = log.lidar_points(i, "lidar_top")
        assert world.shape == dataset.lidar_world[k].shape
        np.testing.assert_allclose(world, dataset.lidar_world[k], atol=1e-3, rtol=0)
        assert np.abs(world - dataset.lidar_world[k]).max() < 2e-4
        np.testing.assert_array_equal(pts[:, 4], dataset.lidar_rows[k])           # beam = range-image row
        sweep_dt = (dataset.lidar_cols[k] + 0.5) / F.W * F.SWEEP
        np.testing.assert_allclose(pts[:, 5], sweep_dt, atol=1e-6)                 # column firing time
        np.testing.assert_allclose(pts[:, 3], np.tanh(dataset.lidar_intensity[k]), atol=1e-6)
        assert pts[:, 3].max() < 1.0 and pts[:, 3].max() > 0.99                    # a retro-reflector, squashed
    assert sweep_dt is not None


def test_lidar_grid_matches_the_range_image(log, dataset):
    """The SpinningLidar grid written for the TOP LiDAR puts every return back into the
    range-image pixel (row, column) it came from (azimuth seam, direction, beam table)."""
    lidar = log.sensor("lidar_top")
    assert lidar.rows == F.H and lidar.cols == F.W
    np.testing.assert_allclose(lidar.elevations_deg, F.INCL_DEG[::-1], atol=1e-9)
    for k, i in enumerate(_lidar_frames(log)):
        ri = log.range_image(i, "lidar_top")
        rows, cols = np.nonzero(ri.valid)
        assert ri.n_collisions == 0
        got = set(zip(rows.tolist(), cols.tolist()))
        assert got == set(zip(dataset.lidar_rows[k].tolist(), dataset.lidar_cols[k].tolist()))


def test_lidar_without_pixel_poses(dataset, tmp_path):
    """Without lidar_pose, frame poses (at mid-sweep) interpolated in time compensate the
    motion; exact here because the fixture's ego moves at constant velocity and yaw rate."""
    src = _copy(dataset, tmp_path)
    shutil.rmtree(src / "lidar_pose")
    out = tmp_path / "log"
    convert(src, F.CONTEXT, out, progress=False)
    log = load_log(out)
    for k, i in enumerate(_lidar_frames(log)):
        np.testing.assert_allclose(log.lidar_points_world(i, "lidar_top"), dataset.lidar_world[k], atol=1e-3)
    assert log.extra["source"]["lidar_motion_compensation"] == "frame poses interpolated in time"


def test_boxes_become_actor_tracks(log):
    assert len(log.actors) == len(F.BOXES)
    classes = {"ZyK_iICxQsEYdJLxMFTw7w": "car", "dNW3S4yA8s8GmltmAPV8LQ": "pedestrian", "sign-0": "other"}
    for box in F.BOXES:
        actor = log.actors[box.oid]
        assert actor.cls == classes[box.oid]
        np.testing.assert_allclose(actor.size, np.median(np.array(box.size), axis=0))
        np.testing.assert_allclose(actor.track.times, [f * F.SWEEP for f in box.frames], atol=1e-6)
        for f in box.frames:
            T = log.actor_box(box.oid, f * F.SWEEP).T_world_object
            np.testing.assert_allclose(T, F.box_vehicle_pose(box, f), atol=1e-9)
            c_w, h_w = box.world(f * F.SWEEP)
            np.testing.assert_allclose(T[:3, 3], c_w, atol=1e-9)                  # box centre in the world
            assert math.atan2(T[1, 0], T[0, 0]) == pytest.approx(h_w, abs=1e-3)    # heading (tilt: pitch/roll)
    car = log.actors["ZyK_iICxQsEYdJLxMFTw7w"]
    assert car.extra["waymo_type"] == "TYPE_VEHICLE"
    np.testing.assert_allclose(car.size, [4.5, 1.9, 1.6])


def test_images_are_the_source_images(log, dataset):
    for code, sid in CAM_SIDS.items():
        for n in range(F.N_FRAMES):
            np.testing.assert_array_equal(log.image(_camera_frame(log, sid, n), sid), dataset.images[(n, code)])


def test_missing_component_file_is_named(dataset, tmp_path):
    src = _copy(dataset, tmp_path)
    (src / "lidar_calibration" / f"{F.CONTEXT}.parquet").unlink()
    with pytest.raises(ConvertError, match=rf"lidar_calibration/{F.CONTEXT}\.parquet: missing"):
        convert(src, F.CONTEXT, tmp_path / "log", progress=False)


@pytest.mark.parametrize("tag,column", [
    ("camera_calibration", "[CameraCalibrationComponent].intrinsic.f_u"),
    ("lidar", "[LiDARComponent].range_image_return1.shape"),
    ("vehicle_pose", "[VehiclePoseComponent].world_from_vehicle.transform"),
    ("camera_image", "[CameraImageComponent].rolling_shutter_params.camera_trigger_time"),
    ("lidar_box", "[LiDARBoxComponent].box.heading"),
])
def test_missing_column_is_named(dataset, tmp_path, tag, column):
    src = _copy(dataset, tmp_path)
    F.drop_column(src, tag, column)
    with pytest.raises(ConvertError) as err:
        convert(src, F.CONTEXT, tmp_path / "log", progress=False)
    assert err.value.file == f"{tag}/{F.CONTEXT}.parquet"
    assert err.value.field == column
    assert column in str(err.value)


def test_no_top_lidar_rows(dataset, tmp_path):
    src = _copy(dataset, tmp_path)
    path = src / "lidar" / f"{F.CONTEXT}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.filter(np.array(table.column("key.laser_name").to_pylist()) != 1), path)
    with pytest.raises(ConvertError, match=r"lidar/.*key\.laser_name.*no rows with key\.laser_name = 1 \(TOP\)"):
        convert(src, F.CONTEXT, tmp_path / "log", progress=False)


def test_scene_must_name_a_segment_inside_the_source(dataset, tmp_path):
    src = _copy(dataset, tmp_path)
    with pytest.raises(ConvertError, match="vehicle_pose/nope.parquet: missing"):
        convert(src, "nope", tmp_path / "log", progress=False)
    # A context name that climbs out of the source folder, onto a real file there.
    outside = tmp_path / "vehicle_pose"
    outside.mkdir()
    shutil.copy(src / "vehicle_pose" / f"{F.CONTEXT}.parquet", outside / "x.parquet")
    assert (src / "vehicle_pose" / "../../vehicle_pose/x.parquet").is_file()
    with pytest.raises(ConvertError, match="not a path inside the dataset folder"):
        convert(src, "../../vehicle_pose/x", tmp_path / "log", progress=False)


def test_enum_keys_stored_as_names(dataset, log, tmp_path):
    """Some v2 files store enum keys as names ("FRONT", "TOP"), as the Waymo repository's own
    test data does; they convert to the same log."""
    src = _copy(dataset, tmp_path)
    names = {"key.camera_name": {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"},
             "key.laser_name": {1: "TOP", 2: "FRONT"}}
    for tag in ("camera_calibration", "camera_image", "lidar", "lidar_calibration", "lidar_pose"):
        path = src / tag / f"{F.CONTEXT}.parquet"
        table = pq.read_table(path)
        for key, table_names in names.items():
            if key in table.column_names:
                col = pa.array([table_names[v] for v in table.column(key).to_pylist()], pa.string())
                table = table.set_column(table.column_names.index(key), key, col)
        pq.write_table(table, path)
    out = tmp_path / "log"
    convert(src, F.CONTEXT, out, progress=False)
    again = load_log(out)
    assert [f.t for f in again.frames] == [f.t for f in log.frames]
    for i in _lidar_frames(log):
        np.testing.assert_array_equal(again.lidar_points(i, "lidar_top"), log.lidar_points(i, "lidar_top"))
    for sid in CAM_SIDS.values():
        np.testing.assert_allclose(again.sensors[sid].T_ego_sensor, log.sensors[sid].T_ego_sensor)


def test_pixel_poses_against_the_column_timing_warn(dataset, tmp_path, caplog):
    """The per-point time model (column order = firing order) is checked against the pixel
    poses: consistent here, and a warning when the poses run against the columns."""
    src = _copy(dataset, tmp_path)
    with caplog.at_level("WARNING", logger="gssim.data.convert.waymo"):
        convert(src, F.CONTEXT, tmp_path / "ok", progress=False)
    assert "pixel poses move" not in caplog.text
    path = src / "lidar_pose" / f"{F.CONTEXT}.parquet"
    table = pq.read_table(path)
    col = "[LiDARPoseComponent].range_image_return1.values"
    flipped = [np.asarray(v, np.float32).reshape(F.H, F.W, 6)[:, ::-1].reshape(-1).tolist()
               for v in table.column(col).to_pylist()]
    table = table.set_column(table.column_names.index(col), col, pa.array(flipped, pa.list_(pa.float32())))
    pq.write_table(table, path)
    caplog.clear()
    with caplog.at_level("WARNING", logger="gssim.data.convert.waymo"):
        convert(src, F.CONTEXT, tmp_path / "flipped", progress=False)
    assert "pixel poses move -1.00 times as fast" in caplog.text
