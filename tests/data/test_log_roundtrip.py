"""Write -> read round trip of the log format, pose and actor interpolation, range images."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gssim.data import Log, LogWriter, load_log
from tests.data.conftest import N_FRAMES, pose

def test_round_trip_sensors_frames_files(tiny_log):
    root, w = tiny_log
    log = load_log(root)
    assert log.name == "tiny"
    assert log.camera_ids == ["cam_front"] and log.lidar_ids == ["lidar_top"]
    cam = log.sensor("cam_front")
    assert (cam.width, cam.height, cam.fx, cam.cx) == (16, 12, 10.0, 8.0)
    np.testing.assert_array_equal(log.sensors["cam_front"].T_ego_sensor, w["T_cam"])
    lidar = log.sensor("lidar_top")
    assert lidar.elevations_deg == w["lidar"].elevations_deg and lidar.cols == 36
    assert len(log.frames) == N_FRAMES
    np.testing.assert_allclose(log.times, w["times"])
    for i in range(N_FRAMES):
        assert log.frames[i].T_world_ego.dtype == np.float64
        np.testing.assert_array_equal(log.frames[i].T_world_ego, w["poses"][i])
        np.testing.assert_array_equal(log.image(i, "cam_front"), w["images"][i])
        f = log.image(i, "cam_front", dtype=np.float32)
        assert f.dtype == np.float32 and f.shape == (12, 16, 3)
        np.testing.assert_allclose(f, w["images"][i] / 255.0, atol=1e-6)
        pts = log.lidar_points(i, "lidar_top")
        assert pts.dtype == np.float32 and pts.shape[1] == 6
        np.testing.assert_array_equal(pts, w["points"][i])
    raw = json.loads((root / "log.json").read_text())
    assert raw["format"] == "gssim-log" and raw["version"] == 1
    assert raw["frames"][1]["cameras"]["cam_front"] == "cameras/cam_front/000001.png"
    assert raw["frames"][2]["lidars"]["lidar_top"] == "lidar/lidar_top/000002.npy"


def test_range_image_rebins_every_return(tiny_log):
    root, w = tiny_log
    log = load_log(root)
    lidar = w["lidar"]
    dirs = lidar.ray_directions().numpy()
    for i in range(N_FRAMES):
        ri = log.range_image(i, "lidar_top", undo_motion=False)  # points made as if at rest
        B, A = dirs.shape[:2]
        rows, cols = np.meshgrid(np.arange(B), np.arange(A), indexing="ij")
        expect = ((rows * A + cols + i) % 3) == 0
        np.testing.assert_array_equal(ri.valid, expect)          # returns where written, drops elsewhere
        assert ri.n_collisions == 0
        pts = w["points"][i]
        np.testing.assert_allclose(ri.range[expect], np.linalg.norm(pts[:, :3], axis=1), rtol=1e-5)
        np.testing.assert_allclose(ri.intensity[expect], pts[:, 3])
        assert np.all(ri.range[~expect] == 0)
        # Each return points along the ray of its cell.
        unit = ri.points[expect] / ri.range[expect][:, None]
        np.testing.assert_allclose(unit, dirs[expect], atol=1e-5)


def test_range_image_undoes_motion_compensation(tmp_path):
    """Points stored in the frame-time sensor frame of a moving sensor land in the cell of
    the ray that measured them (the ray pose at t + dt)."""
    from gssim.sensors import SpinningLidar
    lidar = SpinningLidar([0.0, -5.0], 5.0, spin_hz=10.0)
    dirs = lidar.ray_directions().numpy().astype(np.float64)
    A = dirs.shape[1]
    speed = 20.0  # m/s along x: the sensor moves 2 m over a sweep
    with LogWriter(tmp_path / "m", "moving") as w:
        w.add_sensor("lidar", lidar, np.eye(4))
        for k in range(3):
            t = 0.1 * k
            rows, cols = np.meshgrid(np.arange(2), np.arange(A), indexing="ij")
            dt = (cols.ravel() + 0.5) / A * 0.1
            ray_origin = np.column_stack([speed * (t + dt), np.zeros_like(dt), np.zeros_like(dt)])
            hit_world = ray_origin + dirs.reshape(-1, 3) * 6.0
            local = hit_world - np.array([speed * t, 0, 0])       # frame-time sensor frame
            pts = np.column_stack([local, np.full(len(dt), 0.5), rows.ravel(), dt])
            w.add_frame(t, pose(speed * t), lidar_points={"lidar": pts})
    ri = load_log(tmp_path / "m").range_image(1, "lidar")
    assert ri.valid.all() and ri.n_collisions == 0
    np.testing.assert_allclose(ri.range, 6.0, atol=1e-4)
    # Without undoing the motion, cells collide (shows the correction matters).
    assert load_log(tmp_path / "m").range_image(1, "lidar", undo_motion=False).n_collisions > 0


def test_pose_interpolation(tiny_log):
    root, w = tiny_log
    log = load_log(root)
    T = log.pose_at(0.05)
    np.testing.assert_allclose(T[:3, 3], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], pose(yaw=0.05)[:3, :3], atol=1e-9)
    Ts = log.pose_at(np.array([0.0, 0.15, 0.2]))
    assert Ts.shape == (3, 4, 4)
    np.testing.assert_allclose(Ts[0], w["poses"][0], atol=1e-12)
    np.testing.assert_allclose(Ts[1][:3, 3], [3.0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(Ts[2], w["poses"][2], atol=1e-12)
    with pytest.raises(ValueError, match="outside the track"):
        log.pose_at(0.5)
    Te = log.pose_at(0.3, extrapolate=True)
    np.testing.assert_allclose(Te[:3, 3], [6.0, 0, 0], atol=1e-9)
    S = log.sensor_pose_at("cam_front", 0.1)
    np.testing.assert_allclose(S, w["poses"][1] @ w["T_cam"], atol=1e-12)


def test_actor_boxes_at(tiny_log):
    root, _ = tiny_log
    log = load_log(root)
    boxes = {b.id: b for b in log.actor_boxes_at(0.1)}
    assert set(boxes) == {"car_0", "ped_0"}
    car = boxes["car_0"]
    assert car.cls == "car"
    np.testing.assert_allclose(car.size, [4.5, 1.9, 1.6])
    np.testing.assert_allclose(car.T_world_object[:3, 3], [11.0, 3.0, 0.8], atol=1e-12)
    np.testing.assert_allclose(car.T_world_object[:3, :3], pose(yaw=0.1)[:3, :3], atol=1e-9)
    assert car.contains(np.array([[11.0, 3.0, 0.8], [11.0, 5.0, 0.8]])).tolist() == [True, False]
    assert {b.id for b in log.actor_boxes_at(0.15)} == {"car_0"}  # ped has one sample at t=0.1
    assert log.actor_boxes_at(0.3) == []


def test_writer_rejects_bad_input(tmp_path):
    from gssim.sensors import PinholeCamera
    cam = PinholeCamera(8, 6, 5, 5, 4, 3)
    w = LogWriter(tmp_path / "w", "w")
    w.add_sensor("cam", cam, np.eye(4))
    with pytest.raises(ValueError, match=r"frame 0, camera cam: image shape \(6, 7, 3\)"):
        w.add_frame(0.0, np.eye(4), images={"cam": np.zeros((6, 7, 3), np.uint8)})
    with pytest.raises(ValueError, match="unknown sensor 'nope'"):
        w.add_frame(0.0, np.eye(4), images={"nope": np.zeros((6, 8, 3), np.uint8)})
    w.add_frame(0.0, np.eye(4), images={"cam": np.full((6, 8, 3), 0.5)})
    with pytest.raises(ValueError, match="timestamps out of order"):
        w.add_frame(0.0, np.eye(4))
    w.finish()
    assert Log.open(tmp_path / "w").image(0, "cam")[0, 0, 0] == 128
    with pytest.raises(FileExistsError):
        LogWriter(tmp_path / "w", "w")
