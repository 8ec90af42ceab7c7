"""Sensor constructors: wrong types and impossible values are named errors, and grids
over ``gssim.sensors.LIMITS`` are refused before anything is allocated."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import torch

import gssim
from gssim.sensors import (LIMITS, SensorConfigError, SensorTypeError, SolidStateLidar, SpinningLidar,
                           camera_from_dict, lidar_from_dict, sensor_limits)

CAM = dict(width=64, height=48, fx=50.0, fy=50.0, cx=32.0, cy=24.0)
SPIN = dict(elevations_deg=[2.0, 0.0, -2.0, -4.0], azimuth_resolution_deg=2.0)
SOLID = dict(horizontal_fov_deg=60.0, vertical_fov_deg=20.0, horizontal_resolution_deg=1.0,
             vertical_resolution_deg=1.0)


def pinhole(**kw):
    return gssim.PinholeCamera(**{**CAM, **kw})


def opencv(**kw):
    return gssim.OpenCVCamera(**{**CAM, "distortion": [0.0] * 5, **kw})


def fisheye(**kw):
    return gssim.FisheyeCamera(**{**CAM, "fx": 20.0, "fy": 20.0, **kw})


def spinning(**kw):
    return SpinningLidar(**{**SPIN, **kw})


def solid(**kw):
    return SolidStateLidar(**{**SOLID, **kw})


# (id, build, error type, parameter named, message substring)
WRONG_TYPES = [
    ("pinhole-bool-size", lambda: gssim.PinholeCamera(True, True, 10.0, 10.0, 0.5, 0.5), SensorTypeError, "width",
     "got bool"),
    ("pinhole-string-width", lambda: pinhole(width="640"), SensorTypeError, "width", "got str '640'"),
    ("pinhole-bool-fx", lambda: pinhole(fx=True), SensorTypeError, "fx", "got bool"),
    ("pinhole-string-cx", lambda: pinhole(cx="32"), SensorTypeError, "cx", "got str"),
    ("pinhole-none-fy", lambda: pinhole(fy=None), SensorTypeError, "fy", "got NoneType"),
    ("pinhole-list-fx", lambda: pinhole(fx=[50.0]), SensorTypeError, "fx", "got list"),
    ("pinhole-array-fx", lambda: pinhole(fx=np.array([50.0, 1.0])), SensorTypeError, "fx", "shape (2,)"),
    ("pinhole-meta-fx", lambda: pinhole(fx=torch.tensor(50.0, device="meta")), SensorTypeError, "fx", "meta"),
    ("pinhole-numpy-bool-width", lambda: pinhole(width=np.bool_(True)), SensorTypeError, "width", "got bool"),
    ("pinhole-string-rolling-shutter", lambda: pinhole(rolling_shutter_s="0.01"), SensorTypeError,
     "rolling_shutter_s", "got str"),
    ("opencv-string-distortion", lambda: opencv(distortion="0 0 0 0 0"), SensorTypeError, "distortion",
     "must be a list of numbers"),
    ("opencv-bool-coefficient", lambda: opencv(distortion=[0.0, True, 0.0, 0.0, 0.0]), SensorTypeError,
     "distortion[1]", "got bool"),
    ("spinning-string-clockwise", lambda: spinning(clockwise="false"), SensorTypeError, "clockwise",
     "must be True or False, got str 'false'"),
    ("spinning-int-clockwise", lambda: spinning(clockwise=0), SensorTypeError, "clockwise", "got int"),
    ("spinning-string-elevations", lambda: spinning(elevations_deg="0,1,2"), SensorTypeError, "elevations_deg",
     "must be a list"),
    ("spinning-bool-elevation", lambda: spinning(elevations_deg=[0.0, False]), SensorTypeError,
     "elevations_deg[1]", "got bool"),
    ("spinning-2d-elevations", lambda: spinning(elevations_deg=np.zeros((2, 2))), SensorTypeError,
     "elevations_deg", "1-D"),
    ("spinning-bool-resolution", lambda: spinning(azimuth_resolution_deg=True), SensorTypeError,
     "azimuth_resolution_deg", "got bool"),
    ("spinning-string-spin-hz", lambda: spinning(spin_hz="10"), SensorTypeError, "spin_hz", "got str"),
    ("solid-list-scan", lambda: solid(scan=["rows"]), SensorConfigError, "scan", "scan must be one of"),
    ("solid-string-fov", lambda: solid(horizontal_fov_deg="60"), SensorTypeError, "horizontal_fov_deg", "got str"),
    ("dict-unknown-model-type", lambda: camera_from_dict({**CAM, "model": ["pinhole"]}), SensorConfigError, "model",
     "unknown"),
    ("dict-lidar-model-dict", lambda: lidar_from_dict({"model": {}}), SensorConfigError, "model", "unknown"),
]

IMPOSSIBLE = [
    ("pinhole-fx-1e-300", lambda: pinhole(fx=1e-300), SensorConfigError, "fx", "field of view"),
    ("pinhole-fx-1e30", lambda: pinhole(fx=1e30), SensorConfigError, "fx", "LIMITS.max_focal_px"),
    ("pinhole-fx-10**400", lambda: pinhole(fx=10 ** 400), SensorConfigError, "fx", "too large"),
    ("pinhole-fx-nan", lambda: pinhole(fx=math.nan), SensorConfigError, "fx", "finite"),
    ("pinhole-cx-1e300", lambda: pinhole(cx=1e300), SensorConfigError, "cx", "field of view"),
    ("pinhole-width-fraction", lambda: pinhole(width=64.5), SensorConfigError, "width", "whole number"),
    ("pinhole-rolling-shutter-1e300", lambda: pinhole(rolling_shutter_s=1e300), SensorConfigError,
     "rolling_shutter_s", "must lie in [0, 1]"),
    ("pinhole-near-after-far", lambda: pinhole(near=5.0, far=1.0), SensorConfigError, "far", "near < far"),
    ("pinhole-near-zero", lambda: pinhole(near=0.0), SensorConfigError, "near", "(0, inf]"),
    ("fisheye-fx-1e-300", lambda: fisheye(fx=1e-300), SensorConfigError, "fx", "field of view"),
    ("opencv-distortion-overflow", lambda: opencv(distortion=[1e300, 0.0, 0.0, 0.0, 0.0]), SensorConfigError,
     "distortion", "not invertible"),
    ("spinning-spin-hz-1e-300", lambda: spinning(spin_hz=1e-300), SensorConfigError, "spin_hz", "[0.01, 1000]"),
    ("spinning-azimuth-start-1e300", lambda: spinning(azimuth_start_deg=1e300), SensorConfigError,
     "azimuth_start_deg", "[-360, 360]"),
    ("spinning-min-range-inf", lambda: spinning(min_range=math.inf), SensorConfigError, "min_range", "finite"),
    ("solid-frame-hz-1e300", lambda: solid(frame_hz=1e300), SensorConfigError, "frame_hz", "[0.01, 1000]"),
]

HOSTILE_SIZES = [
    ("pinhole-100000x100000", lambda: pinhole(width=100000, height=100000), "width", "LIMITS.max_side"),
    ("pinhole-60000x60000", lambda: pinhole(width=60000, height=60000, cx=30000.0, cy=30000.0), "width",
     "LIMITS.max_cells"),
    ("pinhole-width-10**30", lambda: pinhole(width=10 ** 30), "width", "<= 65536"),
    ("fisheye-60000x60000", lambda: fisheye(width=60000, height=60000), "width", "LIMITS.max_cells"),
    ("spinning-resolution-1e-6", lambda: spinning(azimuth_resolution_deg=1e-6), "azimuth_resolution_deg",
     "3.6e+08 columns"),
    ("spinning-resolution-5e-324", lambda: spinning(azimuth_resolution_deg=5e-324), "azimuth_resolution_deg",
     "over the limit"),
    ("spinning-100000-beams", lambda: spinning(elevations_deg=np.linspace(-80, 80, 100000)), "elevations_deg",
     "over the limit of 1024"),
    ("spinning-1000-beams-60000-columns", lambda: spinning(elevations_deg=np.linspace(-80, 80, 1000),
                                                           azimuth_resolution_deg=360 / 60000),
     "azimuth_resolution_deg", "LIMITS.max_cells"),
    ("solid-resolution-1e-6", lambda: solid(horizontal_resolution_deg=1e-6), "horizontal_resolution_deg",
     "over the limit of 65536"),
    ("solid-60000x60000-cells", lambda: solid(horizontal_fov_deg=179.0, vertical_fov_deg=179.0,
                                              horizontal_resolution_deg=179 / 60000,
                                              vertical_resolution_deg=179 / 60000),
     "horizontal_resolution_deg", "LIMITS.max_cells"),
    ("preset-override-resolution", lambda: SpinningLidar.preset("vls-128", azimuth_resolution_deg=1e-5),
     "azimuth_resolution_deg", "over the limit"),
]


def _check(build, error, param, match):
    with pytest.raises(error) as info:
        build()
    err = info.value
    assert isinstance(err, SensorConfigError) and isinstance(err, ValueError)
    assert err.param == param, str(err)
    assert match in str(err), str(err)
    assert type(err).__name__ != "RuntimeError"
    return err


@pytest.mark.parametrize("build, error, param, match", [r[1:] for r in WRONG_TYPES], ids=[r[0] for r in WRONG_TYPES])
def test_wrong_types_are_refused(build, error, param, match):
    err = _check(build, error, param, match)
    assert isinstance(err, TypeError)
    assert err.owner in str(err)


@pytest.mark.parametrize("build, error, param, match", [r[1:] for r in IMPOSSIBLE], ids=[r[0] for r in IMPOSSIBLE])
def test_impossible_values_are_refused(build, error, param, match):
    _check(build, error, param, match)


@pytest.mark.parametrize("build, param, match", [r[1:] for r in HOSTILE_SIZES], ids=[r[0] for r in HOSTILE_SIZES])
def test_hostile_sizes_are_refused_before_allocating(build, param, match):
    tracemalloc.start()
    try:
        _check(build, SensorConfigError, param, match)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20, f"peak traced allocation {peak / 2 ** 20:.0f} MiB"


def test_numbers_of_other_kinds_are_accepted():
    cam = gssim.PinholeCamera(np.int64(64), torch.tensor(48), np.float32(50.0), torch.tensor(50.0, dtype=torch.float64),
                              32, 24.0, rolling_shutter_s=np.float64(0.01))
    assert (cam.width, cam.height, cam.fx, cam.rolling_shutter_s) == (64, 48, 50.0, 0.01)
    assert pinhole(width=64.0).width == 64
    lidar = spinning(elevations_deg=torch.tensor([1.0, -1.0]), clockwise=np.bool_(False))
    assert lidar.rows == 2 and lidar.clockwise is False


def test_limits_are_overridable_for_a_block_and_restored():
    default = LIMITS.max_cells
    with sensor_limits(max_cells=100):
        with pytest.raises(SensorConfigError, match="limit of 100"):
            pinhole(width=11, height=10, cx=5.5, cy=5.0)
        assert pinhole(width=10, height=10, cx=5.0, cy=5.0).shape == (10, 10)
    assert LIMITS.max_cells == default
    assert pinhole(width=11, height=10, cx=5.5, cy=5.0).shape == (10, 11)
    with sensor_limits(max_side=2 ** 17, max_beams=4):
        with pytest.raises(SensorConfigError, match="over the limit of 4"):
            spinning(elevations_deg=[3.0, 2.0, 1.0, 0.0, -1.0])
    with pytest.raises(TypeError, match="unknown limits"):
        with sensor_limits(max_pixels=5):
            pass


def test_limits_apply_to_log_sensor_entries():
    with sensor_limits(max_focal_px=100.0):
        with pytest.raises(SensorConfigError, match="max_focal_px"):
            camera_from_dict({**CAM, "model": "pinhole", "fx": 500.0})
