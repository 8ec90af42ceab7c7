"""Quality metrics on held-out frames: PSNR and SSIM for cameras; range error, Chamfer
distance, intensity RMSE and ray-drop accuracy for LiDAR.

The image metrics are differentiable torch functions (SSIM also serves as the D-SSIM
training loss, ``1 - ssim``) and return 0-dim tensors.  The LiDAR metrics evaluate a
frame and return Python floats.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

Tensor = torch.Tensor

SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError("shapes differ: " + ", ".join(f"{n} {s}" for n, s in shapes.items()))


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)`` over all elements.

    pred, target: images of one shape, (H, W, 3) or (B, H, W, 3), values in [0, data_range].
    Returns a 0-dim tensor (inf for identical images).
    """
    _check_same_shape(pred=pred, target=target)
    mse = torch.mean((pred - target) ** 2)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def gaussian_window(window: int, sigma: float, dtype: torch.dtype = torch.float32) -> Tensor:
    """The normalised 1D Gaussian ``exp(-x^2 / (2 sigma^2))`` at x = -(window-1)/2 .. (window-1)/2; (window,)."""
    x = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (g / g.sum()).to(dtype)


def banded_filter(size: int, window: int, sigma: float, like: Tensor) -> Tensor:
    """(size - window + 1, size) matrix whose rows apply the Gaussian window ('valid')."""
    g = gaussian_window(window, sigma, like.dtype).to(like.device)
    out = size - window + 1
    m = torch.zeros(out, size, dtype=like.dtype, device=like.device)
    idx = torch.arange(out, device=like.device)[:, None] + torch.arange(window, device=like.device)
    m.scatter_(1, idx, g.expand(out, window).contiguous())
    return m


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 1.0) -> Tensor:
    """Mean structural similarity (Wang et al. 2004, eq. 13) with a Gaussian window.

    pred, target: (H, W, C) or (B, H, W, C), values in [0, data_range]; H, W >= window.
    Local means, variances and covariance are Gaussian-weighted averages (a separable
    ``window`` x ``window`` kernel of std ``sigma``, population statistics), with
    C1 = (0.01 data_range)^2 and C2 = (0.03 data_range)^2.  The convolution is 'valid':
    the mean is over the (H - window + 1) x (W - window + 1) positions where the window
    lies inside the image, and over channels and images.  This is what
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)`` reports.  Differentiable; returns a 0-dim tensor.
    """
    _check_same_shape(pred=pred, target=target)
    if pred.ndim not in (3, 4):
        raise ValueError(f"expected images (H, W, C) or (B, H, W, C), got shape {tuple(pred.shape)}")
    H, W, C = pred.shape[-3:]
    if window % 2 != 1 or H < window or W < window:
        raise ValueError(f"need an odd window no larger than the image, got window {window} for {H}x{W}")
    # (B, H, W, C) -> (B*C, 1, H, W): every channel of every image filtered alike.
    x = pred.reshape(-1, H, W, C).permute(0, 3, 1, 2).reshape(-1, 1, H, W)
    y = target.reshape(-1, H, W, C).permute(0, 3, 1, 2).reshape(-1, 1, H, W)
    n = x.shape[0]
    maps = torch.cat([x, y, x * x, y * y, x * y])[:, 0]                  # (5n, H, W)
    # The separable 'valid' filter as two banded matrix products (same sums as conv2d,
    # several times faster than a convolution's backward on the CPU).
    maps = banded_filter(H, window, sigma, x) @ maps @ banded_filter(W, window, sigma, x).T
    mu_x, mu_y, e_xx, e_yy, e_xy = maps.split(n)
    var_x = e_xx - mu_x ** 2
    var_y = e_yy - mu_y ** 2
    cov_xy = e_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.mean()


def _valid_values(valid: Tensor, **tensors: Tensor) -> list[Tensor]:
    """The entries of each tensor where ``valid`` (bool, same shape) is true."""
    _check_same_shape(valid=valid, **tensors)
    if valid.dtype != torch.bool:
        raise ValueError(f"valid must be a bool mask, got {valid.dtype}")
    if not bool(valid.any()):
        raise ValueError("no valid rays")
    return [t.detach()[valid].double() for t in tensors.values()]


def lidar_range_errors(pred_range: Tensor, gt_range: Tensor, valid: Tensor) -> float:
    """Median absolute range error (m) over the rays where the ground truth has a return.

    pred_range, gt_range: (B, A) ranges along the rays (m); valid: (B, A) bool, True
    where the ground truth has a return.  The median of an even count is the mean of the
    two middle values.
    """
    pred, gt = _valid_values(valid, pred_range=pred_range, gt_range=gt_range)
    err = (pred - gt).abs().sort().values
    n = err.numel()
    return float((err[(n - 1) // 2] + err[n // 2]) / 2)


def chamfer_distance(points_a, points_b) -> float:
    """Symmetric Chamfer distance (m): ``(mean_a->b + mean_b->a) / 2``.

    points_a: (N, 3), points_b: (M, 3), torch tensors or arrays, same frame, metres.
    ``mean_a->b`` is the mean over the points of a of the Euclidean distance to the
    nearest point of b (not squared).
    """
    a = np.asarray(torch.as_tensor(points_a).detach().cpu(), dtype=np.float64)
    b = np.asarray(torch.as_tensor(points_b).detach().cpu(), dtype=np.float64)
    for name, p in (("points_a", a), ("points_b", b)):
        if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
            raise ValueError(f"{name} must be (N, 3) with N > 0, got {p.shape}")
    a_to_b = cKDTree(b).query(a)[0].mean()
    b_to_a = cKDTree(a).query(b)[0].mean()
    return float((a_to_b + b_to_a) / 2)


def intensity_rmse(pred: Tensor, gt: Tensor, valid: Tensor) -> float:
    """Root-mean-square intensity error over the rays where ``valid`` (ground-truth returns).

    pred, gt: (B, A) intensities in [0, 1]; valid: (B, A) bool.
    """
    pred, gt = _valid_values(valid, pred=pred, gt=gt)
    return math.sqrt(float(((pred - gt) ** 2).mean()))


def raydrop_accuracy(pred_drop_prob: Tensor, gt_drop_mask: Tensor, threshold: float = 0.5) -> float:
    """Fraction of rays whose predicted drop (``prob > threshold``) matches the ground truth.

    pred_drop_prob: (B, A) probability that the ray returns nothing; gt_drop_mask: (B, A)
    bool, True where the ground truth has no return.
    """
    _check_same_shape(pred_drop_prob=pred_drop_prob, gt_drop_mask=gt_drop_mask)
    if gt_drop_mask.dtype != torch.bool:
        raise ValueError(f"gt_drop_mask must be bool, got {gt_drop_mask.dtype}")
    if gt_drop_mask.numel() == 0:
        raise ValueError("no rays")
    return float(((pred_drop_prob.detach() > threshold) == gt_drop_mask).double().mean())
