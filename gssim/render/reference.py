"""Torch reference rasterizer: the rendering maths, dense over rays x footprint records.

This is the oracle every native op is tested against (values and gradients, by
autograd).  It follows the native code decision for decision: same cut-offs
(``ALPHA_MIN``, ``ALPHA_MAX``, ``T_MIN``), same ordering (records sorted by their
surfel's depth key, ties by record index), same low-pass filter and branch choice.
"""
from __future__ import annotations

import torch

from gssim.sensors.base import ALPHA_MIN, FILTER_INV_SQUARE

Tensor = torch.Tensor

ALPHA_MAX = 0.99     # opacity clamp of one surfel on one ray
T_MIN = 1e-4         # a ray stops before the surfel that would bring transmittance to <= T_MIN
EPS_DN = 1e-6        # |n . d| below this: the ray is parallel to the plane (filter only)
MEDIAN_T = 0.5       # median depth: last surfel entered while transmittance > MEDIAN_T


def rasterize_reference(rays_o: Tensor, rays_d: Tensor, rows: int, cols: int,
                        means: Tensor, axis_u: Tensor, axis_v: Tensor, normals: Tensor,
                        opacities: Tensor, features: Tensor, means2d: Tensor, depth_keys: Tensor,
                        records: Tensor, t_min: float, t_max: float) -> tuple[Tensor, ...]:
    """Composite surfels along every ray of a grid (dense, differentiable).

    rays_o, rays_d: (R, 3) world-frame origins and unit directions, R = rows * cols,
        row-major; ray r is cell (r // cols, r % cols), centred at (col + 0.5, row + 0.5).
    means: (N, 3); axis_u, axis_v: (N, 3) tangent axes divided by their scales
        (t_u / s_u, t_v / s_v); normals: (N, 3) unit; opacities: (N,); features: (N, C);
    means2d: (N, 2) projected centres (col, row) in cells (far away when not valid);
    depth_keys: (N,) sort keys (distance to the sensor).
    records: (F, 6) int32 footprints (surfel, r0, r1, c0, c1, column shift).
    Returns color_acc (R, C) = sum w f, alpha (R,) = 1 - T_final, t_acc (R,) = sum w t,
    normal_acc (R, 3) = sum w n (n facing the ray), median_t (R,).
    """
    R = rays_o.shape[0]
    C = features.shape[1]
    dev = rays_o.device
    if records.shape[0] == 0 or R == 0:
        z = rays_o.new_zeros
        return z(R, C), z(R), z(R), z(R, 3), z(R)
    rec = records.long()
    order = torch.sort(depth_keys.detach()[rec[:, 0]], stable=True).indices
    rec = rec[order]
    s = rec[:, 0]
    mu, a, b, n = means[s], axis_u[s], axis_v[s], normals[s]
    opac, feat = opacities[s], features[s]
    m2 = means2d[s] + torch.stack([rec[:, 5].to(means2d.dtype), torch.zeros_like(means2d[:, 0][s])], -1)

    ray_row = torch.arange(R, device=dev) // cols
    ray_col = torch.arange(R, device=dev) % cols
    in_box = ((ray_row[:, None] >= rec[None, :, 1]) & (ray_row[:, None] <= rec[None, :, 2]) &
              (ray_col[:, None] >= rec[None, :, 3]) & (ray_col[:, None] <= rec[None, :, 4]))

    d = rays_d[:, None, :]
    q = mu[None] - rays_o[:, None, :]                           # (R, F, 3)
    dn = (n[None] * d).sum(-1)
    qn = (n[None] * q).sum(-1)
    par = dn.abs() > EPS_DN
    t = qn / torch.where(par, dn, torch.ones_like(dn))          # ray-plane intersection (2DGS eq. 8)
    u = t * (a[None] * d).sum(-1) - (a[None] * q).sum(-1)       # local surfel coordinates
    v = t * (b[None] * d).sum(-1) - (b[None] * q).sum(-1)
    rho3d = u * u + v * v
    valid3d = par & (t > t_min) & (t < t_max)
    tc = (q * d).sum(-1)                                        # centre's distance along the ray
    px = ray_col.to(means.dtype)[:, None] + 0.5
    py = ray_row.to(means.dtype)[:, None] + 0.5
    rho2d = FILTER_INV_SQUARE * ((px - m2[None, :, 0]) ** 2 + (py - m2[None, :, 1]) ** 2)
    valid2d = (tc > t_min) & (tc < t_max)
    use3d = valid3d & (~valid2d | (rho3d <= rho2d))
    rho = torch.where(use3d, rho3d, torch.where(valid2d, rho2d, torch.zeros_like(rho2d)))
    alpha = torch.clamp(opac[None] * torch.exp(-0.5 * rho), max=ALPHA_MAX)
    contrib = in_box & (valid3d | valid2d) & (alpha >= ALPHA_MIN)
    alpha = torch.where(contrib, alpha, torch.zeros_like(alpha))
    t_hit = torch.where(use3d, t, tc)

    one_minus = 1 - alpha
    T_excl = torch.cat([torch.ones_like(alpha[:, :1]), torch.cumprod(one_minus, 1)[:, :-1]], 1)
    stop = contrib & (T_excl * one_minus <= T_MIN)
    stopped = torch.cumsum(stop.int(), 1) > 0
    included = contrib & ~stopped
    w = torch.where(included, alpha * T_excl, torch.zeros_like(alpha))

    sign = torch.where(dn > 0, -1.0, 1.0)
    color_acc = w @ feat
    t_acc = (w * t_hit).sum(1)
    normal_acc = (w * sign)[..., None].mul(n[None]).sum(1)
    T_final = torch.where(included, one_minus, torch.ones_like(one_minus)).prod(1)
    med_mask = included & (T_excl > MEDIAN_T)
    idx = torch.arange(alpha.shape[1], device=dev).expand_as(alpha)
    last = torch.where(med_mask, idx, torch.full_like(idx, -1)).amax(1)
    has = last >= 0
    median_t = torch.where(has, t_hit.gather(1, last.clamp(min=0)[:, None])[:, 0], torch.zeros_like(t_acc))
    return color_acc, 1 - T_final, t_acc, normal_acc, median_t
