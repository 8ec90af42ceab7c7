"""Every validation error of the log reader names the file, the field and the frame."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gssim.data import LogFormatError, load_log


def edit_json(root, fn) -> None:
    path = root / "log.json"
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def expect_error(root, file, field, frame, match, call=None) -> LogFormatError:
    with pytest.raises(LogFormatError) as info:
        if call is None:
            load_log(root)
        else:
            call(load_log(root))
    err = info.value
    assert (err.file, err.field, err.frame) == (file, field, frame)
    msg = str(err)
    assert file in msg and match in msg
    if field is not None:
        assert field in msg
    if frame is not None:
        assert f"frame {frame}" in msg
    return err


def test_missing_log_json(tiny_log):
    root, _ = tiny_log
    (root / "log.json").unlink()
    expect_error(root, "log.json", None, None, "missing file")


def test_invalid_json(tiny_log):
    root, _ = tiny_log
    (root / "log.json").write_text('{"format": "gssim-log",\n "version": 1,,}')
    expect_error(root, "log.json", None, None, "invalid JSON at line 2")


def test_wrong_format_and_version(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d.update(version=2))
    expect_error(root, "log.json", "version", None, "unsupported version 2")


def test_missing_field(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["frames"][1].pop("t"))
    expect_error(root, "log.json", "frames[1].t", 1, "missing")


def test_missing_image_file(tiny_log):
    root, _ = tiny_log
    (root / "cameras/cam_front/000001.png").unlink()
    expect_error(root, "cameras/cam_front/000001.png", "frames[1].cameras.cam_front", 1, "missing file")


def test_missing_lidar_file(tiny_log):
    root, _ = tiny_log
    (root / "lidar/lidar_top/000002.npy").unlink()
    expect_error(root, "lidar/lidar_top/000002.npy", "frames[2].lidars.lidar_top", 2, "missing file")


def test_wrong_matrix_shape(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["frames"][1].update(T_world_ego=d["frames"][1]["T_world_ego"][:3]))
    expect_error(root, "log.json", "frames[1].T_world_ego", 1, "expected a 4x4 matrix, got shape (3, 4)")


def test_non_rigid_frame_pose(tiny_log):
    root, _ = tiny_log

    def scale(d):
        d["frames"][2]["T_world_ego"][0][0] = 2.0
    edit_json(root, scale)
    expect_error(root, "log.json", "frames[2].T_world_ego", 2, "not a rigid transform")


def test_non_rigid_sensor_mount(tiny_log):
    root, _ = tiny_log

    def shear(d):
        d["sensors"]["cam_front"]["T_ego_sensor"][0][1] = 0.3
    edit_json(root, shear)
    expect_error(root, "log.json", "sensors.cam_front.T_ego_sensor", None, "not a rigid transform")


def test_unknown_sensor_in_frame(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["frames"][1]["cameras"].update(cam_back="cameras/cam_back/000001.png"))
    expect_error(root, "log.json", "frames[1].cameras.cam_back", 1, "unknown sensor 'cam_back'")


def test_sensor_under_wrong_kind(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["frames"][0]["cameras"].update(lidar_top="lidar/lidar_top/000000.npy"))
    expect_error(root, "log.json", "frames[0].cameras.lidar_top", 0, "is a lidar, listed under cameras")


def test_unknown_sensor_type(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["sensors"]["cam_front"].update(type="radar"))
    expect_error(root, "log.json", "sensors.cam_front.type", None, "unknown sensor type 'radar'")


def test_timestamps_out_of_order(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["frames"][2].update(t=0.05))
    expect_error(root, "log.json", "frames[2].t", 2, "timestamps out of order")


def test_actor_track_out_of_order(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["actors"][0]["track"][1].update(t=-1.0))
    expect_error(root, "log.json", "actors[0].track[1].t", None, "timestamps out of order")


def test_image_of_wrong_size(tiny_log):
    root, _ = tiny_log
    Image.fromarray(np.zeros((12, 15, 3), np.uint8)).save(root / "cameras/cam_front/000002.png")
    err = expect_error(root, "cameras/cam_front/000002.png", "sensors.cam_front.width/height", 2,
                       "image is 15x12, but sensors.cam_front is 16x12")
    assert err.detail.startswith("image is 15x12")


def test_lidar_array_of_wrong_shape(tiny_log):
    root, _ = tiny_log
    np.save(root / "lidar/lidar_top/000001.npy", np.zeros((10, 5), np.float32))
    expect_error(root, "lidar/lidar_top/000001.npy", "array shape", 1, "got shape (10, 5)")


def test_lidar_beam_index_out_of_range(tiny_log):
    root, w = tiny_log
    pts = w["points"][0].copy()
    pts[3, 4] = 7
    np.save(root / "lidar/lidar_top/000000.npy", pts)
    expect_error(root, "lidar/lidar_top/000000.npy", "column 4 (beam index)", 0,
                 "beam index must be an integer in [0, 4)", call=lambda log: log.lidar_points(0, "lidar_top"))


def test_lidar_intensity_out_of_range(tiny_log):
    root, w = tiny_log
    pts = w["points"][1].copy()
    pts[0, 3] = 1.5
    np.save(root / "lidar/lidar_top/000001.npy", pts)
    expect_error(root, "lidar/lidar_top/000001.npy", "column 3 (intensity)", 1,
                 "intensity must lie in [0, 1]", call=lambda log: log.range_image(1, "lidar_top"))


def test_invalid_camera_intrinsics(tiny_log):
    root, _ = tiny_log
    edit_json(root, lambda d: d["sensors"]["cam_front"].update(fx=-3.0))
    expect_error(root, "log.json", "sensors.cam_front.fx", None, "must be > 0")
