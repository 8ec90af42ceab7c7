"""Image and LiDAR metrics against skimage (when installed) and hand-computed small cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gssim.recon.metrics import (chamfer_distance, gaussian_window, intensity_rmse, lidar_range_errors, psnr,
                                 raydrop_accuracy, ssim)


def noisy_pair(shape=(24, 31, 3), seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=gen, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return a.to(dtype), b.to(dtype)


def test_psnr_hand_computed():
    a = torch.full((4, 5, 3), 0.5)
    assert float(psnr(a, a + 0.1)) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert float(psnr(a * 255, a * 255 + 25.5, data_range=255.0)) == pytest.approx(20.0, abs=1e-4)
    assert math.isinf(float(psnr(a, a)))


def test_ssim_of_identical_images_is_one():
    a, _ = noisy_pair()
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("offset", [0.05, 0.4])
def test_ssim_constant_images_give_the_luminance_term(offset):
    # No variance anywhere: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), the contrast-structure term is 1.
    mu_x, mu_y = 0.3, 0.3 + offset
    c1 = 0.01 ** 2
    x = torch.full((16, 13, 3), mu_x, dtype=torch.float64)
    y = torch.full((16, 13, 3), mu_y, dtype=torch.float64)
    expected = (2 * mu_x * mu_y + c1) / (mu_x ** 2 + mu_y ** 2 + c1)
    assert float(ssim(x, y)) == pytest.approx(expected, abs=1e-10)


def test_ssim_of_stripes_against_a_constant_hand_computed():
    # y constant 0.5 (no variance, no covariance): SSIM = (2 mu_x 0.5 + C1) / (mu_x^2 + 0.25 + C1) * C2 / (var_x + C2).
    stripes = torch.tensor([0.2, 0.8] * 6, dtype=torch.float64)
    x = stripes.expand(11, 12)[..., None]  # (11, 12, 1): the 11x11 window fits at 2 column offsets
    y = torch.full_like(x, 0.5)
    g = gaussian_window(11, 1.5, torch.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = []
    for start in (0, 1):
        mu = float((g * stripes[start:start + 11]).sum())
        var = float((g * stripes[start:start + 11] ** 2).sum()) - mu ** 2
        expected.append((2 * mu * 0.5 + c1) / (mu ** 2 + 0.25 + c1) * c2 / (var + c2))
    assert float(ssim(x, y)) == pytest.approx(sum(expected) / 2, rel=1e-10)


def test_ssim_matches_skimage():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    a, b = noisy_pair()
    ref = skimage_metrics.structural_similarity(a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, data_range=1, channel_axis=-1)
    assert float(ssim(a, b)) == pytest.approx(ref, abs=1e-10)
    assert float(ssim(a.float(), b.float())) == pytest.approx(ref, abs=1e-5)


def test_ssim_batch_is_the_mean_of_images():
    a0, b0 = noisy_pair(seed=1)
    a1, b1 = noisy_pair(seed=2)
    batched = ssim(torch.stack([a0, a1]), torch.stack([b0, b1]))
    assert float(batched) == pytest.approx((float(ssim(a0, b0)) + float(ssim(a1, b1))) / 2, abs=1e-12)


def test_ssim_is_differentiable():
    a, b = noisy_pair(shape=(11, 12, 1))
    a.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: ssim(p, b), (a,), fast_mode=True)


def test_image_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="no larger than the image"):
        ssim(torch.zeros(8, 20, 3), torch.zeros(8, 20, 3))


def test_lidar_range_errors_median():
    pred = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    gt = torch.tensor([[1.5, 2.0, 0.0], [4.0, 3.0, 0.0]])
    valid = gt > 0
    assert lidar_range_errors(pred, gt, valid) == pytest.approx(0.25)  # errors 0.5, 0, 0, 2: median (0 + 0.5) / 2
    valid[1, 1] = False
    assert lidar_range_errors(pred, gt, valid) == pytest.approx(0.0)  # errors 0.5, 0, 0
    with pytest.raises(ValueError, match="no valid rays"):
        lidar_range_errors(pred, gt, torch.zeros_like(valid))
    with pytest.raises(ValueError, match="bool mask"):
        lidar_range_errors(pred, gt, valid.float())


def test_chamfer_distance_hand_computed():
    a = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    b = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    # a->b: 0 and 1 (mean 0.5); b->a: 0 and 3 (mean 1.5).
    assert chamfer_distance(a, b) == pytest.approx(1.0)
    assert chamfer_distance(b, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="points_b must be"):
        chamfer_distance(a, np.zeros((0, 3)))


def test_intensity_rmse_hand_computed():
    pred = torch.tensor([[0.1, 0.5, 0.9, 0.0]])
    gt = torch.tensor([[0.1, 0.2, 0.5, 1.0]])
    valid = torch.tensor([[True, True, True, False]])
    assert intensity_rmse(pred, gt, valid) == pytest.approx(math.sqrt((0.09 + 0.16) / 3))


def test_raydrop_accuracy_hand_computed():
    prob = torch.tensor([[0.9, 0.2], [0.5, 0.7]])
    gt = torch.tensor([[True, False], [True, False]])
    assert raydrop_accuracy(prob, gt) == pytest.approx(0.5)  # predicted drops (> 0.5): T F F T
    assert raydrop_accuracy(prob, gt, threshold=0.4) == pytest.approx(0.75)  # T F T T
    with pytest.raises(ValueError, match="shapes differ"):
        raydrop_accuracy(prob, gt[0])
