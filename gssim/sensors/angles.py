"""Angular bounds of surfel supports seen from a sensor: azimuth around the z axis,
elevation from the xy plane (a spinning LiDAR's angles; a fisheye uses them about its
optical axis).  Shared by the sensors' footprint code."""
from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

# Angular slack (rad) added to the angular intervals so float rounding of the rays cannot
# put a touched cell outside its record.
ANGLE_EPS = 1e-5


def spherical_cap(centre: Tensor, radius: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Angular bounds of bounding spheres seen from the origin (float64).

    centre: (N, 3), radius: (N,).  Returns dist (N,), azimuth (N,) and elevation (N,) of
    the centre direction, the cap half-angle beta (N,), the azimuth half-width dphi (N,)
    of the cap, ``inside`` (N,) (origin inside the sphere: every direction) and
    ``around_pole`` (N,) (the cap holds a pole: every azimuth).
    """
    c = centre.double()
    r = radius.double()
    dist = c.norm(dim=-1)
    inside = dist <= r * 1.0001 + 1e-9
    beta = torch.asin((r / dist.clamp(min=1e-12)).clamp(max=1.0)) + ANGLE_EPS
    az = torch.atan2(c[:, 1], c[:, 0])
    el = torch.asin((c[:, 2] / dist.clamp(min=1e-12)).clamp(-1.0, 1.0))
    cos_el = torch.cos(el)
    # Largest azimuth deviation on a cap of half-angle beta centred at elevation el.
    ratio = torch.sin(beta) / cos_el.clamp(min=1e-12)
    around_pole = inside | (el.abs() + beta >= math.pi / 2) | (ratio >= 1.0)
    dphi = torch.asin(ratio.clamp(max=1.0)) + ANGLE_EPS
    return dist, az, el, beta, dphi, around_pole


def wrap_pi(a: Tensor) -> Tensor:
    """Angles wrapped into [-pi, pi)."""
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def angular_bounds(corners: Tensor, centre: Tensor, radius: Tensor) -> dict[str, Tensor]:
    """Azimuth and elevation intervals of support rectangles seen from the origin (float64).

    corners: (N, 4, 3) rectangle corners in cycle order; centre (N, 3) (a point of the
    rectangle); radius (N,) of a bounding sphere about ``centre``.  The rectangle's
    directions form a spherically convex region (edges are great-circle arcs), so its
    azimuth extremes are corners (unless the z axis crosses it: every azimuth) and its
    elevation extremes are corners, the highest/lowest point of an edge's great circle
    when that lies on the edge, or a pole the region contains.  The result is
    intersected with the bounding sphere's cap and widened by ``ANGLE_EPS``.
    Returns dist, az_c (centre azimuth), az_lo, az_hi (unwrapped around az_c), el_lo,
    el_hi, whole_turn (every azimuth), inside (origin in the bounding sphere: every cell).
    """
    dist, az_c, el_c, beta, dphi, cap_pole = spherical_cap(centre, radius)
    inside = dist <= radius.double() * 1.0001 + 1e-9
    P = corners.double()
    Q = torch.roll(P, -1, dims=1)
    # Does the z axis cross the rectangle?  (Its xy shadow contains the origin.)
    cross_xy = P[..., 0] * Q[..., 1] - P[..., 1] * Q[..., 0]
    on_axis = (cross_xy >= 0).all(-1) | (cross_xy <= 0).all(-1)
    nrm = torch.linalg.cross(P[:, 1] - P[:, 0], P[:, 3] - P[:, 0])
    nz = nrm[:, 2]
    flat = nz.abs() <= 1e-12 * nrm.norm(dim=-1).clamp(min=1e-300)
    z0 = (nrm * P[:, 0]).sum(-1) / torch.where(flat, torch.ones_like(nz), nz)
    up = on_axis & (flat | (z0 >= 0))
    down = on_axis & (flat | (z0 <= 0))
    # Corners.
    U = P / P.norm(dim=-1, keepdim=True).clamp(min=1e-300)
    off = wrap_pi(torch.atan2(P[..., 1], P[..., 0]) - az_c[:, None])
    el_k = torch.asin(U[..., 2].clamp(-1.0, 1.0))
    # Interior extremes of the edges' great-circle arcs p -> q: z rises into the arc from
    # both ends (tangents t_p = q - (p.q) p, t_q = p - (p.q) q) iff the arc holds its great
    # circle's highest point, of height sqrt(1 - n_z^2) with n = p x q / |p x q|.
    V = torch.roll(U, -1, dims=1)
    px, py, pz = U.unbind(-1)
    qx, qy, qz = V.unbind(-1)
    c = px * qx + py * qy + pz * qz
    tp, tq = qz - c * pz, pz - c * qz
    mz = px * qy - py * qx
    sin2 = (1 - c * c).clamp(min=1e-300)
    z_top = torch.sqrt((1 - mz * mz / sin2).clamp(0.0, 1.0))
    el_top = torch.asin(z_top)
    arc = sin2 > 1e-20
    top = torch.where(arc & (tp > 0) & (tq > 0), el_top, torch.full_like(el_k, -math.inf))
    bot = torch.where(arc & (tp < 0) & (tq < 0), -el_top, torch.full_like(el_k, math.inf))
    el_hi = torch.maximum(el_k.amax(-1), top.amax(-1))
    el_lo = torch.minimum(el_k.amin(-1), bot.amin(-1))
    el_hi = torch.where(up, torch.full_like(el_hi, math.pi / 2), el_hi)
    el_lo = torch.where(down, torch.full_like(el_lo, -math.pi / 2), el_lo)
    # Intersect with the cap (both are conservative).
    el_lo = torch.maximum(el_lo, el_c - beta) - ANGLE_EPS
    el_hi = torch.minimum(el_hi, el_c + beta) + ANGLE_EPS
    # A cap holding a pole bounds no azimuth (its dphi is meaningless there).
    dphi = torch.where(cap_pole, torch.full_like(dphi, math.inf), dphi)
    az_lo = torch.where(on_axis, az_c - dphi, torch.maximum(az_c + off.amin(-1), az_c - dphi)) - ANGLE_EPS
    az_hi = torch.where(on_axis, az_c + dphi, torch.minimum(az_c + off.amax(-1), az_c + dphi)) + ANGLE_EPS
    whole_turn = inside | (on_axis & cap_pole)
    el_lo = torch.where(inside, torch.full_like(el_lo, -math.pi), el_lo)
    el_hi = torch.where(inside, torch.full_like(el_hi, math.pi), el_hi)
    return {"dist": dist, "az_c": az_c, "az_lo": az_lo, "az_hi": az_hi, "el_lo": el_lo, "el_hi": el_hi,
            "whole_turn": whole_turn, "inside": inside}


def moving_cap_bounds(centre: Tensor, radius: Tensor, translation: Tensor, rotation: Tensor) -> dict[str, Tensor]:
    """Angular bounds of bounding spheres over a sensor motion (float64), as ``angular_bounds``.

    The sensor moves by at most ``translation`` metres and turns by at most ``rotation``
    radians ((N,) tensors or floats) from the pose the inputs are expressed in.  Seen from any pose of the motion,
    the sphere lies in the sphere of radius ``radius + translation`` about the rotated
    centre, whose directions lie in the cap of half-angle asin(r' / d) + rotation about the
    centre's direction here.
    """
    r = radius.double() + torch.as_tensor(translation, dtype=torch.float64)
    dist, az_c, el_c, beta, dphi, pole = spherical_cap(centre, r)
    beta = beta + torch.as_tensor(rotation, dtype=torch.float64)
    inside = dist <= r * 1.0001 + 1e-9
    ratio = torch.sin(beta.clamp(max=math.pi / 2)) / torch.cos(el_c).clamp(min=1e-12)
    whole_turn = inside | (el_c.abs() + beta >= math.pi / 2) | (ratio >= 1.0)
    dphi = torch.asin(ratio.clamp(max=1.0)) + ANGLE_EPS
    el_lo = torch.where(inside, torch.full_like(el_c, -math.pi), el_c - beta)
    el_hi = torch.where(inside, torch.full_like(el_c, math.pi), el_c + beta)
    return {"dist": dist, "az_c": az_c, "az_lo": az_c - dphi, "az_hi": az_c + dphi, "el_lo": el_lo,
            "el_hi": el_hi, "whole_turn": whole_turn, "inside": inside, "radius": r}
