"""A synthetic street scene of surfels, spread like a reconstructed driving scene:
road and sidewalks, building facades on both sides, parked cars, poles and trees."""
from __future__ import annotations

import math

import torch

from gssim.core.surfels import Surfels
from gssim.core.transforms import rotmat_to_quat

Tensor = torch.Tensor

# World: x along the street (ego drives from x = 0 towards +x), y left, z up.
STREET_LENGTH = 140.0
STREET_START = -20.0
ROAD_HALF_WIDTH = 7.0
FACADE_Y = 12.0


def _frame_quats(normals: Tensor, gen: torch.Generator) -> Tensor:
    """Quaternions whose third axis is ``normals`` (N, 3), with a random in-plane angle."""
    n = normals / normals.norm(dim=-1, keepdim=True)
    helper = torch.where(n[:, 2:3].abs() < 0.9, torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
    t_u = torch.linalg.cross(helper.expand_as(n), n)
    t_u = t_u / t_u.norm(dim=-1, keepdim=True)
    t_v = torch.linalg.cross(n, t_u)
    ang = torch.rand(n.shape[0], generator=gen) * 2 * math.pi
    c, s = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
    u2, v2 = c * t_u + s * t_v, -s * t_u + c * t_v
    return rotmat_to_quat(torch.stack([u2, v2, n], -1))


def street_surfels(n: int = 100_000, seed: int = 0, channels: int = 3) -> Surfels:
    """N surfels of a street scene (deterministic for a seed); features are colours in
    [0, 1] for the first three channels, random in [0, 1] for extra ones."""
    if n < 1:
        raise ValueError(f"street_surfels: n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    counts = {"road": int(0.40 * n), "facade": int(0.30 * n), "car": int(0.15 * n)}
    counts["tree"] = n - sum(counts.values())
    means, normals, colors, sizes = [], [], [], []

    k = counts["road"]  # road and sidewalks: horizontal
    y = (rand(k) * 2 - 1) * FACADE_Y
    x = STREET_START + rand(k) * STREET_LENGTH
    curb = y.abs() > ROAD_HALF_WIDTH
    z = torch.where(curb, torch.full_like(y, 0.15), torch.zeros_like(y))
    means.append(torch.stack([x, y, z], -1))
    normals.append(torch.tensor([0.0, 0.0, 1.0]).expand(k, 3))
    grey = torch.where(curb, 0.6, 0.25)[:, None] + 0.05 * rand(k, 1)
    marking = (~curb) & ((y.abs() < 0.12) & (torch.remainder(x, 6.0) < 3.0))
    colors.append(torch.where(marking[:, None], torch.tensor([0.95, 0.95, 0.9]), grey.expand(k, 3)))
    sizes.append(torch.full((k,), math.sqrt(2 * FACADE_Y * STREET_LENGTH / k)))

    k = counts["facade"]  # vertical facades facing the street
    side = torch.where(rand(k) < 0.5, -1.0, 1.0)
    x = STREET_START + rand(k) * STREET_LENGTH
    z = rand(k) * 15.0
    means.append(torch.stack([x, side * FACADE_Y, z], -1))
    normals.append(torch.stack([torch.zeros(k), -side, torch.zeros(k)], -1))
    block = torch.floor(x / 15.0)
    base = torch.stack([0.5 + 0.3 * torch.sin(block), 0.45 + 0.2 * torch.cos(1.7 * block), 0.4 + 0.1 * side], -1)
    window = (torch.remainder(x, 3.0) < 1.5) & (torch.remainder(z, 3.0) > 1.0)
    colors.append(torch.where(window[:, None], torch.tensor([0.15, 0.2, 0.3]), base.clamp(0, 1)))
    sizes.append(torch.full((k,), math.sqrt(2 * 15.0 * STREET_LENGTH / k)))

    k = counts["car"]  # parked cars: points on the sides and tops of boxes along the curbs
    n_cars = 24
    car = torch.randint(0, n_cars, (k,), generator=gen)
    cx = STREET_START + 10.0 + car.float() * (STREET_LENGTH - 20.0) / n_cars
    cy = torch.where(car % 2 == 0, 1.0, -1.0) * (ROAD_HALF_WIDTH - 1.2)
    face = torch.randint(0, 5, (k,), generator=gen)
    half = torch.tensor([2.2, 0.9, 0.75])
    local = (rand(k, 3) * 2 - 1) * half
    axes = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0]])
    nrm = axes[face]
    local = torch.where(nrm != 0, nrm * half, local)
    means.append(local + torch.stack([cx, cy, torch.full_like(cx, 0.75)], -1))
    normals.append(nrm)
    palette = torch.tensor([[0.7, 0.1, 0.1], [0.1, 0.2, 0.6], [0.8, 0.8, 0.8], [0.1, 0.1, 0.1], [0.6, 0.6, 0.2]])
    colors.append(palette[car % len(palette)])
    sizes.append(torch.full((k,), 0.12))

    k = counts["tree"]  # trees: random surfels in spheres above the sidewalks
    n_trees = 16
    tree = torch.randint(0, n_trees, (k,), generator=gen)
    tx = STREET_START + 5.0 + tree.float() * (STREET_LENGTH - 10.0) / n_trees
    ty = torch.where(tree % 2 == 0, 1.0, -1.0) * (FACADE_Y - 2.5)
    d = torch.randn(k, 3, generator=gen)
    d = d / d.norm(dim=-1, keepdim=True)
    means.append(torch.stack([tx, ty, torch.full_like(tx, 4.5)], -1) + d * 2.0 * rand(k, 1).pow(1 / 3))
    normals.append(torch.randn(k, 3, generator=gen))
    colors.append(torch.tensor([0.15, 0.45, 0.12]) + 0.1 * rand(k, 3))
    sizes.append(torch.full((k,), 0.15))

    means_t = torch.cat(means)
    quats = _frame_quats(torch.cat(normals), gen)
    size = torch.cat(sizes)[:, None]
    scales = size * (0.5 + 0.5 * rand(n, 2))
    opacities = 0.6 + 0.4 * rand(n)
    feats = torch.cat(colors).clamp(0, 1)
    if channels != 3:
        extra = rand(n, max(channels - 3, 0))
        feats = torch.cat([feats, extra], 1)[:, :channels]
    return Surfels(means_t.float().contiguous(), quats.float().contiguous(), scales.float().contiguous(),
                   opacities.float().contiguous(), feats.float().contiguous())


def street_camera_pose(x: float = 0.0, height: float = 1.6) -> Tensor:
    """(4, 4) float64 pose of a forward-looking camera (OpenCV frame) on the street."""
    T = torch.eye(4, dtype=torch.float64)
    # camera x = world -y, camera y = world -z, camera z = world x
    T[:3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    T[:3, 3] = torch.tensor([x, 0.0, height], dtype=torch.float64)
    return T


def long_street(copies: int, n_per_copy: int = 100_000, seed: int = 0, channels: int = 3) -> Surfels:
    """The street ``copies`` times as long (same density), laid end to end around x = 0:
    copy i is the street of seed + i shifted by (i - copies // 2) street lengths."""
    if copies < 1:
        raise ValueError(f"long_street: copies must be >= 1, got {copies}")
    parts = []
    for i in range(copies):
        s = street_surfels(n_per_copy, seed=seed + i, channels=channels)
        shift = torch.tensor([(i - copies // 2) * STREET_LENGTH, 0.0, 0.0])
        parts.append(Surfels(s.means + shift, s.quats, s.scales, s.opacities, s.features))
    return Surfels.cat(parts)
