"""Tiny synthetic worlds and logs made in the test (fast on 2 CPU cores)."""
from __future__ import annotations

import copy

import pytest

TINY_PRESET = {
    "name": "tiny",
    "seed": 3,
    "world": {"road_length": 120.0, "moving_cars": 3, "pedestrians": 2, "tree_spacing": 20.0,
              "pole_spacing": 30.0, "parked_car_fraction": 0.3},
    "trajectory": {"frames": 3, "fps": 10.0, "speed": 8.0, "start_x": -10.0},
    "cameras": [
        {"id": "cam_front", "model": "pinhole", "width": 48, "height": 27, "hfov_deg": 90.0},
        {"id": "cam_left", "model": "pinhole", "width": 48, "height": 27, "hfov_deg": 90.0, "yaw_deg": 60.0}
    ],
    "lidar": {"id": "lidar_top", "n_beams": 16, "elevation_min_deg": -20.0, "elevation_max_deg": 5.0,
              "azimuth_resolution_deg": 1.0, "range_noise_std": 0.0},
}


@pytest.fixture
def tiny_preset() -> dict:
    return copy.deepcopy(TINY_PRESET)
