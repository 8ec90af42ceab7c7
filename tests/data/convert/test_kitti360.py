"""KITTI-360 converter: a miniature dataset in the real layout (kitti360_fixture) converted
and checked against the fixture's independent ground truth."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from gssim import cli
from gssim.data.convert import converter
from gssim.data.convert.common import ConvertError
from gssim.data.convert.common import beams_from_elevation
from gssim.data.convert.kitti360 import (MeiCalibration, _check_cam0_to_world, box_from_transform, convert,
                                         fit_beam_model, fit_mei_fisheye, hdl64_blocks)
from gssim.data.reader import load_log
from tests.data.convert import kitti360_fixture as fx


NO_SCAN = fx.POSED[-1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti360")
    truth = fx.write_kitti360(root)
    # A posed frame without its scan (KITTI-360 has such gaps): that frame gets no LiDAR.
    (root / f"data_3d_raw/{fx.SEQ}/velodyne_points/data/{NO_SCAN:010d}.bin").unlink()
    out = root.parent / "kitti360_log"
    with pytest.raises(SystemExit) as done:  # the `gssim convert` command
        cli.main(["convert", "--from", "kitti360", str(root), "--scene", fx.SEQ, str(out), "--no-progress"])
    assert done.value.code == 0
    return root, truth, load_log(out)


def _frame_times():
    return np.array([fx.tau_of(f) - fx.tau_of(fx.POSED[0]) for f in fx.POSED])


def _to_sensor(log, i, sid, X):
    T = log.frame_sensor_pose(i, sid)
    return (np.asarray(X, np.float64) - T[:3, 3]) @ T[:3, :3]


def _project(log, sid, p_cam):
    uv, valid = log.sensor(sid).project(torch.as_tensor(np.atleast_2d(p_cam), dtype=torch.float64))
    return uv.numpy(), valid.numpy()


def test_registered_and_log_valid(dataset):
    _, _, log = dataset
    assert converter("kitti360") is convert
    assert sorted(log.sensors) == ["cam_fisheye_left", "cam_fisheye_right", "cam_front_left", "cam_front_right",
                                   "lidar_top"]
    models = {sid: e.entry["model"] for sid, e in log.sensors.items()}
    assert models == {"cam_front_left": "pinhole", "cam_front_right": "pinhole", "cam_fisheye_left": "fisheye",
                      "cam_fisheye_right": "fisheye", "lidar_top": "spinning"}
    assert all(log.sensor(s).rolling_shutter_s == 0.0 for s in log.camera_ids)


def test_frames_times_and_ego_poses(dataset):
    _, _, log = dataset
    # Frames 0 and 5 have images and scans but no pose: skipped.
    assert log.extra["kitti360"]["source_frames"] == list(fx.POSED)
    np.testing.assert_allclose(log.times, _frame_times(), atol=1e-9)
    assert log.extra["kitti360"]["time_origin"] == fx.stamp(fx.tau_of(fx.POSED[0]))
    for i, f in enumerate(fx.POSED):
        # ego = IMU turned to x forward, y left, z up: the fixture's true ego pose.
        np.testing.assert_allclose(log.frames[i].T_world_ego, fx.T_world_ego(fx.tau_of(f)), atol=1e-9)


def test_perspective_cameras_project_like_the_devkit(dataset):
    _, truth, log = dataset
    cal = truth["cal"]
    i, f = 1, fx.POSED[1]
    T_world_imu = truth["T_world_imu"][f]
    for cam, sid in (("image_00", "cam_front_left"), ("image_01", "cam_front_right")):
        T_world_cam = T_world_imu @ cal["cam_to_pose"][cam]
        # Points in front of the camera at a few depths and off-axis positions.
        local = np.array([[0.5, -0.3, 8.0], [-2.0, 0.9, 15.0], [3.1, 1.2, 6.0]])
        X = local @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
        # The devkit: rectify (R_rect), then P_rect[:3, :3]; its pixel (0, 0) is our (0.5, 0.5).
        p = (cal["R_rect"][cam] @ (np.linalg.inv(T_world_cam) @ np.c_[X, np.ones(3)].T)[:3]).T
        expected = (p @ fx.K_PERSP.T)[:, :2] / p[:, 2:3] + 0.5
        uv, valid = _project(log, sid, _to_sensor(log, i, sid, X))
        assert valid.all()
        np.testing.assert_allclose(uv, expected, atol=1e-6)
    # The rectified camera 0 pose is KITTI-360's own cam0_to_world.txt.
    root = dataset[0]
    rows = np.loadtxt(root / "data_poses" / fx.SEQ / "cam0_to_world.txt")
    for i, row in enumerate(rows):
        np.testing.assert_allclose(log.frame_sensor_pose(i, "cam_front_left"), row[1:].reshape(4, 4), atol=1e-9)


def test_fisheye_fit_lands_within_the_stated_error(dataset):
    _, truth, log = dataset
    cal = truth["cal"]
    stated = log.extra["kitti360"]["fisheye_fit_max_error_px"]
    i, f = 2, fx.POSED[2]
    s = fx.FISH_SIZE / 1400.0
    for cam, sid in (("image_02", "cam_fisheye_left"), ("image_03", "cam_fisheye_right")):
        m = dict(fx.MEI[cam])
        mei = MeiCalibration(fx.FISH_SIZE, fx.FISH_SIZE, m["xi"], m["k1"], m["k2"], m["p1"], m["p2"],
                             m["gamma1"] * s, m["gamma2"] * s, m["u0"] * s, m["v0"] * s)
        # 64 px scale: the 1.2-1.6 px error of the full-size cameras shrinks ~22-fold.
        assert 0 < stated[sid] < 0.1
        T_world_cam = truth["T_world_imu"][f] @ cal["cam_to_pose"][cam]
        dirs = []
        for theta in np.radians([0.0, 25.0, 55.0, 80.0, 95.0]):
            for phi in np.radians([10.0, 100.0, 200.0, 300.0]):
                dirs.append([math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)])
        local = np.array(dirs) * 7.0
        X = local @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
        expected = mei.project(local) + 0.5           # the full MEI model, tangential terms included
        uv, valid = _project(log, sid, _to_sensor(log, i, sid, X))
        assert valid.all()
        err = np.linalg.norm(uv - expected, axis=1)
        assert err.max() <= stated[sid] + 1e-9


@pytest.mark.parametrize("cam, bound", [("image_02", 1.3), ("image_03", 1.7)])
def test_fisheye_fit_at_full_kitti360_size(cam, bound):
    m = fx.MEI[cam]
    fit = fit_mei_fisheye(MeiCalibration(1400, 1400, **m))
    assert fit.max_error_px < bound and fit.rms_error_px < 0.4
    assert 99 < fit.theta_max_deg < 104
    # Our model's theta_d grows to the corners (invertible at every pixel).
    t = np.linspace(0, math.pi - 0.02, 2000)
    k = fit.distortion
    td = t * (1 + t ** 2 * (k[0] + t ** 2 * (k[1] + t ** 2 * (k[2] + t ** 2 * k[3]))))
    assert np.all(np.diff(td) > 0) and fit.fx * td[-1] > math.hypot(700, 700)


def test_images_are_the_source_images(dataset):
    _, truth, log = dataset
    for i, f in enumerate(fx.POSED):
        for cam, sid in (("image_00", "cam_front_left"), ("image_01", "cam_front_right"),
                         ("image_02", "cam_fisheye_left"), ("image_03", "cam_fisheye_right")):
            np.testing.assert_array_equal(log.image(i, sid), truth["images"][(cam, f)])


def test_lidar_points_return_to_the_world(dataset):
    _, truth, log = dataset
    for i, f in enumerate(fx.POSED[:-1]):
        sc = truth["scans"][f]
        pts = log.lidar_points(i, "lidar_top")
        # The zero rows and the 0.37 m point are not returns.
        assert len(pts) == sc["valid"].sum() == 64 * fx.PER_BEAM
        # Motion-compensated to the frame time: back in the world where the fixture's rays hit
        # (exact up to float32 storage of sensor-frame coordinates, < 0.1 mm at 30 m).
        np.testing.assert_allclose(log.lidar_points_world(i, "lidar_top"), sc["world"][sc["valid"]], atol=1e-4)
        np.testing.assert_array_equal(pts[:, 4], sc["beam"][sc["valid"]])
        np.testing.assert_allclose(pts[:, 5], sc["dt"][sc["valid"]], atol=1e-7)
        np.testing.assert_allclose(pts[:, 3], sc["rows"][sc["valid"], 3], atol=1e-7)
        ri = log.range_image(i, "lidar_top")
        assert ri.valid.sum() == len(pts) and ri.n_collisions == 0


def test_beam_table_and_origin_recovered(dataset):
    _, _, log = dataset
    lidar = log.sensor("lidar_top")
    # Exact up to the float32 coordinates of the .bin (one origin height for both blocks here).
    np.testing.assert_allclose(lidar.elevations_deg, fx.BEAMS_DEG, atol=1e-4)
    assert log.extra["kitti360"]["lidar_beam_origin_m"] == pytest.approx(fx.VO, abs=1e-5)
    np.testing.assert_allclose(log.extra["kitti360"]["lidar_block_origins_m"], [fx.VO, fx.VO], atol=1e-5)
    assert lidar.clockwise and lidar.azimuth_start_deg == 180.0 and lidar.spin_hz == 10.0


def test_boxes_become_actor_tracks(dataset):
    _, truth, log = dataset
    t_of = {f: fx.tau_of(f) - fx.tau_of(fx.POSED[0]) for f in range(fx.N_FRAMES)}
    assert sorted(log.actors) == ["car_4", "car_7", "person_2"]  # the building is scene, not an actor
    moving = [b for b in truth["boxes"] if b["instance_id"] == 4]
    car = log.actors["car_4"]
    assert car.cls == "car"
    np.testing.assert_allclose(car.size, [4.2, 1.8, 1.5], atol=1e-9)
    np.testing.assert_allclose(car.track.times, [t_of[b["frame"]] for b in moving], atol=1e-9)
    for b in moving:
        box = log.actor_box("car_4", t_of[b["frame"]])
        np.testing.assert_allclose(box.T_world_object[:3, 3], b["centre"], atol=1e-7)
        heading = math.atan2(box.T_world_object[1, 0], box.T_world_object[0, 0])
        assert heading == pytest.approx(b["yaw"], abs=1e-9)
        np.testing.assert_allclose(box.T_world_object[:3, 2], [0, 0, 1], atol=1e-9)  # z up
    parked = log.actors["car_7"]  # static (timestamp -1), mirrored transform in the XML
    b = next(b for b in truth["boxes"] if b["instance_id"] == 7)
    np.testing.assert_allclose(parked.track.times, [t_of[0], t_of[5]], atol=1e-9)
    np.testing.assert_allclose(parked.size, b["size"], atol=1e-9)
    for T in parked.track.poses:
        np.testing.assert_allclose(T[:3, :3], fx.rot("z", b["yaw"]), atol=1e-9)
        np.testing.assert_allclose(T[:3, 3], b["centre"], atol=1e-7)
    walker = log.actors["person_2"]
    assert walker.cls == "pedestrian" and len(walker.track.times) == 1
    assert walker.track.times[0] == pytest.approx(t_of[2], abs=1e-9)


def _copy(dataset, tmp_path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(dataset[0], root, symlinks=True)
    return root


@pytest.mark.parametrize("rel", ["calibration/perspective.txt", "calibration/calib_cam_to_pose.txt",
                                 "calibration/image_03.yaml", f"data_poses/{fx.SEQ}/poses.txt",
                                 f"data_2d_raw/{fx.SEQ}/image_00/timestamps.txt",
                                 f"data_2d_raw/{fx.SEQ}/image_02/data_rgb/0000000003.png"])
def test_missing_file_is_named(dataset, tmp_path, rel):
    root = _copy(dataset, tmp_path)
    (root / rel).unlink()
    with pytest.raises(ConvertError) as err:
        convert(root, fx.SEQ, tmp_path / "out", progress=False)
    assert rel in str(err.value)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_missing_fields_are_named(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    persp = root / "calibration/perspective.txt"
    lines = [ln for ln in persp.read_text().splitlines() if not ln.startswith("P_rect_01")]
    persp.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConvertError, match=r"calibration/perspective.txt, field P_rect_01"):
        convert(root, fx.SEQ, tmp_path / "out1", progress=False)

    root = _copy(dataset, tmp_path / "b")
    _edit(root / "calibration/image_02.yaml", "   xi:", "   chi:")
    with pytest.raises(ConvertError, match=r"image_02.yaml, field mirror_parameters.xi"):
        convert(root, fx.SEQ, tmp_path / "out2", progress=False)

    root = _copy(dataset, tmp_path / "c")
    _edit(root / f"data_3d_bboxes/train/{fx.SEQ}.xml", "<instanceId>7</instanceId>", "")
    with pytest.raises(ConvertError, match=r"train/2013_05_28_drive_0007_sync.xml, field object4\[3\].instanceId"):
        convert(root, fx.SEQ, tmp_path / "out3", progress=False)

    root = _copy(dataset, tmp_path / "d")
    _edit(root / "calibration/calib_cam_to_pose.txt", "image_01:", "image_11:")
    with pytest.raises(ConvertError, match=r"calib_cam_to_pose.txt, field image_01"):
        convert(root, fx.SEQ, tmp_path / "out4", progress=False)

    root = _copy(dataset, tmp_path / "e")
    scan = root / f"data_3d_raw/{fx.SEQ}/velodyne_points/data/0000000002.bin"
    scan.write_bytes(scan.read_bytes()[:-6])  # a truncated scan
    with pytest.raises(ConvertError, match=r"velodyne_points/data/0000000002.bin: size \d+ bytes is not a whole"):
        convert(root, fx.SEQ, tmp_path / "out5", progress=False)


def test_a_missing_scan_leaves_the_frame_without_lidar(dataset):
    _, _, log = dataset
    assert [sorted(fr.lidars) for fr in log.frames] == [[] if f == NO_SCAN else ["lidar_top"] for f in fx.POSED]
    assert all(sorted(fr.cameras) == sorted(log.camera_ids) for fr in log.frames)


def test_paths_stay_inside_the_source(dataset, tmp_path):
    root = _copy(dataset, tmp_path)
    outside = tmp_path / "elsewhere.png"
    png = root / f"data_2d_raw/{fx.SEQ}/image_00/data_rect/0000000002.png"
    shutil.copy(png, outside)
    png.unlink()
    png.symlink_to(outside)
    with pytest.raises(ConvertError, match="not a path inside the dataset folder"):
        convert(root, fx.SEQ, tmp_path / "out", progress=False)
    with pytest.raises(ConvertError, match="not a sequence name"):
        convert(root, "../" + fx.SEQ, tmp_path / "out2", progress=False)


def test_beam_table_fit_is_robust_to_noise_strays_and_offsets():
    """Per-block laser heights (0.20 / 0.15 m), a table drifting to 0.55 deg off the nominal
    one at the bottom plus 0.03 deg irregularity, elevation (0.02 deg) and range (2 cm)
    noise and 0.5 % stray points: every return keeps its beam."""
    rng = np.random.default_rng(3)
    nominal = fx.NOMINAL
    true = nominal + np.linspace(0.0, -0.55, 64) + rng.normal(0.0, 0.03, 64)
    n = 150
    beam = np.repeat(np.arange(64), n)
    el = np.radians(true[beam] + rng.normal(0.0, 0.02, len(beam)))
    vo = np.where(beam < 32, 0.20, 0.15)
    az = rng.uniform(-np.pi, np.pi, len(beam))
    ground = np.where(el < 0, (1.73 + vo) / np.maximum(np.sin(-el), 1e-6), np.inf)
    r = np.minimum(ground, rng.uniform(6.0, 40.0, len(beam)) / np.cos(el)) + rng.normal(0.0, 0.02, len(beam))
    xyz = np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el) + vo], 1)
    stray = rng.choice(len(xyz), len(xyz) // 200, replace=False)
    xyz[stray] = rng.uniform(-30.0, 30.0, (len(stray), 3))
    model = fit_beam_model(xyz, nominal, hdl64_blocks(nominal))
    np.testing.assert_allclose(model.heights, [0.20, 0.15], atol=0.01)
    np.testing.assert_allclose(model.elevations_deg, true, atol=0.08)
    good = np.setdiff1d(np.arange(len(xyz)), stray)
    found, resid = model.assign(xyz[good])
    assert np.mean(found == beam[good]) > 0.999 and np.median(resid) < 0.1


def test_box_axes_are_normalised():
    verts = np.array([[sx, sy, sz] for sx in (0.5, -0.5) for sy in (0.5, -0.5) for sz in (0.5, -0.5)])
    size = np.array([4.0, 2.0, 1.5])
    for flip, mirrored in ((np.eye(3), False), (np.diag([1.0, -1.0, -1.0]), False), (np.diag([1.0, -1.0, 1.0]), True)):
        M = fx.pose(fx.rot("z", 0.7) @ flip @ np.diag(size), [10.0, -3.0, 1.0])
        T, s, was_mirrored = box_from_transform(M, verts)
        np.testing.assert_allclose(T[:3, :3], fx.rot("z", 0.7), atol=1e-12)  # x forward kept, z up
        np.testing.assert_allclose(T[:3, 3], [10.0, -3.0, 1.0])
        np.testing.assert_allclose(s, size)
        assert was_mirrored == mirrored


def test_cam0_to_world_mismatch_is_reported(dataset, tmp_path, caplog):
    root, truth, _ = dataset
    cal = truth["cal"]
    T_imu_cam = cal["cam_to_pose"]["image_00"] @ fx.pose(cal["R_rect"]["image_00"].T, np.zeros(3))
    poses = truth["T_world_imu"]
    with caplog.at_level("INFO"):
        _check_cam0_to_world(root, fx.SEQ, poses, T_imu_cam)
    assert "agrees" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"):  # without the rectification the poses differ
        _check_cam0_to_world(root, fx.SEQ, poses, cal["cam_to_pose"]["image_00"])
    assert "differs from poses.txt" in caplog.text
