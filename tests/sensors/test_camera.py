"""Camera ray grids: rays and projections agree, distortion inverts, footprints bound."""
import math

import pytest
import torch

import gssim
from gssim.sensors import camera_from_dict

MODELS = {
    "pinhole": lambda: gssim.PinholeCamera(48, 32, 40, 42, 23.0, 17.0),
    "opencv": lambda: gssim.OpenCVCamera(48, 32, 40, 42, 23.0, 17.0, distortion=[-0.25, 0.06, 0.002, -0.001, 0.01]),
    "fisheye": lambda: gssim.FisheyeCamera(48, 32, 12, 12, 24.0, 16.0, distortion=[0.05, -0.01, 0.002, 0.0]),
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_rays_project_back_to_their_pixel_centres(model):
    cam = MODELS[model]()
    dirs = cam.ray_directions().double()
    assert dirs.shape == (32, 48, 3)
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(32, 48, dtype=torch.float64))
    uv, ok = cam.project((dirs * 5.0).reshape(-1, 3).float())
    assert ok.all()
    j, i = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(32) + 0.5, indexing="xy")
    torch.testing.assert_close(uv.reshape(32, 48, 2), torch.stack([j, i], -1).float(), atol=2e-4, rtol=0)


def test_pinhole_ray_of_principal_point_is_the_optical_axis():
    cam = gssim.PinholeCamera(31, 21, 10, 10, 15.5, 10.5)
    torch.testing.assert_close(cam.ray_directions()[10, 15], torch.tensor([0.0, 0.0, 1.0]))
    # pixel (row 10, col 25): x = (25.5 - 15.5) / 10 = 1 -> 45 degrees to the right
    torch.testing.assert_close(cam.ray_directions()[10, 25], torch.tensor([math.sqrt(0.5), 0.0, math.sqrt(0.5)]))


def test_fisheye_sees_beyond_180_degrees():
    cam = gssim.FisheyeCamera(64, 64, 16, 16, 32, 32)  # equidistant: theta = r / f, corners ~ 162 degrees
    dirs = cam.ray_directions()
    assert dirs[..., 2].min() < -0.5  # rays pointing backwards
    theta = torch.atan2(dirs[32, 63, :2].norm(), dirs[32, 63, 2])
    assert theta.item() == pytest.approx(math.hypot(63.5 - 32, 32.5 - 32) / 16, abs=1e-5)


def test_bad_distortion_and_parameters_are_rejected():
    with pytest.raises(ValueError, match="distortion coefficients"):
        gssim.OpenCVCamera(8, 8, 10, 10, 4, 4, distortion=[0.1, 0.2])
    with pytest.raises(ValueError, match="not invertible"):
        gssim.OpenCVCamera(200, 200, 50, 50, 100, 100, distortion=[-2.0, 0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="focal"):
        gssim.PinholeCamera(8, 8, -1, 10, 4, 4)
    with pytest.raises(ValueError, match="rolling_shutter_s"):
        gssim.PinholeCamera(8, 8, 10, 10, 4, 4, rolling_shutter_s=-0.1)
    with pytest.raises(ValueError, match="camera model"):
        camera_from_dict({"model": "orthographic", "width": 8})


def test_rolling_shutter_fractions_run_top_to_bottom():
    cam = gssim.PinholeCamera(4, 10, 10, 10, 2, 5, rolling_shutter_s=0.03)
    fr = cam.cell_fractions()
    torch.testing.assert_close(fr[:, 0], (torch.arange(10) + 0.5) / 10)
    assert (fr == fr[:, :1]).all() and not cam.is_instant
    assert (gssim.PinholeCamera(4, 10, 10, 10, 2, 5).cell_fractions() == 0).all()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_dict_round_trip(model):
    cam = MODELS[model]()
    again = camera_from_dict(cam.to_dict())
    torch.testing.assert_close(again.ray_directions(), cam.ray_directions())
