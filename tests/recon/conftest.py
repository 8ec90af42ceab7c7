"""A tiny synthetic drive (made once per test session) and tiny training settings."""
from __future__ import annotations

import pytest

from gssim.data import load_log
from gssim.recon.config import TrainConfig
from gssim.synth.config import config_from_dict
from gssim.synth.generate import generate_log

TINY_DRIVE = {
    "name": "tiny-drive",
    "seed": 5,
    "world": {"road_length": 80.0, "moving_cars": 1, "pedestrians": 1, "tree_spacing": 20.0,
              "pole_spacing": 30.0, "parked_car_fraction": 0.3, "building_height": [5.0, 9.0]},
    "trajectory": {"frames": 8, "fps": 10.0, "speed": 6.0, "start_x": -6.0},
    "cameras": [{"id": "cam_front", "model": "pinhole", "width": 64, "height": 36, "hfov_deg": 90.0}],
    "lidar": {"id": "lidar_top", "n_beams": 12, "elevation_min_deg": -24.0, "elevation_max_deg": 8.0,
              "azimuth_resolution_deg": 3.0, "max_range": 30.0, "range_noise_std": 0.0},
}


def tiny_config(**overrides) -> TrainConfig:
    """Settings that train the tiny drive in seconds: coarse voxels, few steps."""
    base = dict(steps=200, voxel=0.6, actor_voxel=0.25, n_offsets=2, feature_dim=8, hidden=16, lidar_every=4,
                holdout_every=4, densify_from=60, densify_every=40, normal_from_step=100, checkpoint_minutes=60.0)
    base.update(overrides)
    return TrainConfig.from_dict(base)


@pytest.fixture(scope="session")
def tiny_drive(tmp_path_factory):
    """Path of the tiny synthetic log (8 frames, one 64x36 camera, a 12-beam LiDAR)."""
    out = tmp_path_factory.mktemp("recon") / "tiny"
    generate_log(config_from_dict(TINY_DRIVE), out, previews=False, show_progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_log(tiny_drive):
    return load_log(tiny_drive)
