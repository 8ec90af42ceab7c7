"""Soft ground shadows and contact darkening of inserted objects.

The dominant light of a scene (``estimate_light``) comes, in order of preference, from:

1. the synthetic log's metadata (``<source_log>/log.json`` -> ``synth.config.lighting``):
   the sun direction, and a strength from the generator's shading model (ground lit by
   ``ambient + sun * sin(elevation)``, in shadow by ``ambient`` alone);
2. a Lambert fit on the background's surfels: luminance ~ a + b . n over surfels whose
   normals are turned towards the ego path; the light points along b (elevation clamped
   to [15, 80] degrees), the strength is b_z / (a + b_z) clipped to [0.2, 0.7];
3. a default: sun at 45 degrees elevation, azimuth 135 degrees, strength 0.45.

A shadow (``shadow_surfels``) is a set of flat, black, partly transparent surfels just
above the contact plane of an object, in the object's own frame, so they move with it:
the object's surfels projected along the light onto the ground, splatted on a grid and
blurred (soft edges), combined with a contact (ambient-occlusion) patch under the
footprint.  Compositing black with opacity a darkens the road by the factor (1 - a).
The shadow is cast for one heading (the light turned into the object frame at the
track's first pose); an object that turns keeps that shadow shape.

An object placed in the scene's own shadow (a building's, a tree's) must be darker than
its sunlit asset: ``sun_visibility`` renders the background's surfels from probe points
on the object's top towards the light (a narrow pinhole looking at the sun) and
``relight_colors`` dims each surfel facing the light by the share of sunlight it loses,
under the Lambert + ambient model that defines ``strength``:
``c *= 1 - (1 - visibility) * q n.l / (1 + q n.l)`` with ``q = strength / ((1 - strength) l_z)``.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gssim.core.transforms import quat_to_rotmat
from gssim.recon.fields import SH_C0
from gssim.render import render as render_surfels
from gssim.sensors import PinholeCamera

log = logging.getLogger(__name__)

DEFAULT_AZIMUTH_DEG = 135.0
DEFAULT_ELEVATION_DEG = 45.0
DEFAULT_STRENGTH = 0.45
CONTACT_STRENGTH = 0.35      # darkening right under the footprint (ambient occlusion)
LIFT = 0.03                  # shadow surfels sit this far above the contact plane (m)


@dataclass
class Light:
    """The scene's dominant light: ``direction`` (3,) unit world vector towards the light,
    ``strength`` in [0, 1] (how much a full shadow darkens the ground), ``source``
    ("synth-metadata", "lambert-fit" or "default")."""

    direction: np.ndarray
    strength: float
    source: str

    def to_dict(self) -> dict:
        return {"direction": [float(v) for v in self.direction], "strength": float(self.strength),
                "source": self.source}


def light_from_angles(azimuth_deg: float, elevation_deg: float, strength: float, source: str) -> Light:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return Light(np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]),
                 float(strength), source)


def _synth_light(scene) -> Light | None:
    src = scene.meta.get("source_log")
    if not src:
        return None
    path = Path(src) / "log.json"
    try:
        lighting = json.loads(path.read_text())["synth"]["config"]["lighting"]
        el, az = float(lighting["sun_elevation_deg"]), float(lighting["sun_azimuth_deg"])
        sun, amb = float(lighting["sun_intensity"]), float(lighting["ambient"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    lit = amb + sun * math.sin(math.radians(el))
    return light_from_angles(az, el, sun * math.sin(math.radians(el)) / lit if lit > 0 else 0.0, "synth-metadata")


def _lambert_light(scene) -> Light | None:
    """Fit luminance = a + b . n on background surfels (normals turned towards the ego)."""
    bg = [n for n in scene.nodes if n.kind == "background" and n.field.n_rows]
    if not bg:
        return None
    with torch.no_grad():
        fld = bg[0].field
        dec = fld.decode(torch.arange(fld.n_rows), None)
        keep = dec.opacities > 0.3
        if int(keep.sum()) < 50:
            return None
        means = dec.means[keep].double()
        normals = quat_to_rotmat(dec.quats[keep])[:, :, 2].double()
        lum = (0.5 + SH_C0 * dec.sh[keep][:, 0]).clamp(0, 1).mean(-1).double()
    ego = torch.as_tensor(scene.ego_track.poses[:, :3, 3])
    nearest = ego[torch.cdist(means, ego).argmin(1)]
    flip = ((nearest - means) * normals).sum(-1) < 0
    normals = torch.where(flip[:, None], -normals, normals)
    if float(torch.linalg.eigvalsh(torch.cov(normals.T)).min()) < 1e-3:
        return None                                   # normals in a plane or fewer: no direction to fit
    A = torch.cat([torch.ones_like(lum)[:, None], normals], 1)
    sol = torch.linalg.solve(A.T @ A + 1e-6 * torch.eye(4, dtype=A.dtype), A.T @ lum).numpy()
    a, b = float(sol[0]), sol[1:]
    if not np.isfinite(sol).all() or np.linalg.norm(b) < 1e-3 or b[2] <= 0:
        return None
    az = math.degrees(math.atan2(b[1], b[0]))
    el = min(max(math.degrees(math.asin(b[2] / np.linalg.norm(b))), 15.0), 80.0)
    strength = float(np.clip(b[2] / max(a + b[2], 1e-6), 0.2, 0.7))
    return light_from_angles(az, el, strength, "lambert-fit")


def estimate_light(scene) -> Light:
    """The dominant light of ``scene`` (see the module docstring for the order of sources)."""
    for fn in (_synth_light, _lambert_light):
        light = fn(scene)
        if light is not None:
            log.info("scene light from %s: direction %s, strength %.2f", light.source,
                     np.round(light.direction, 3).tolist(), light.strength)
            return light
    return light_from_angles(DEFAULT_AZIMUTH_DEG, DEFAULT_ELEVATION_DEG, DEFAULT_STRENGTH, "default")


def _blur(img: torch.Tensor, sigma_cells: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma_cells)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-x * x / (2 * sigma_cells ** 2))
    k = k / k.sum()
    out = torch.nn.functional.conv2d(img[None, None], k[None, None, :, None], padding=(r, 0))
    return torch.nn.functional.conv2d(out, k[None, None, None, :], padding=(0, r))[0, 0]


def shadow_surfels(means: torch.Tensor, opacities: torch.Tensor, size: np.ndarray, contact: np.ndarray,
                   light_object: np.ndarray, strength: float, cell: float = 0.15
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shadow surfels of an object, in its frame.

    means (N, 3), opacities (N,): the object's surfels (object frame); size (3,) its box;
    contact (3,) its ground contact point; light_object (3,) unit direction towards the
    light in the object frame; strength in [0, 1]; cell: grid spacing (m).
    Returns means (M, 3), quats (M, 4), scales (M, 2), opacities (M,) of flat surfels
    (normal +z) at ``contact_z + LIFT``.
    """
    z0 = float(contact[2])
    l = np.asarray(light_object, np.float64)
    l = l / np.linalg.norm(l)
    lz = max(l[2], math.sin(math.radians(10.0)))
    p = means.double()
    h = (p[:, 2] - z0).clamp(min=0)
    xy = p[:, :2] - h[:, None] * torch.as_tensor(l[:2] / lz)[None]        # along -l onto z = z0
    half = np.asarray(size[:2], np.float64) / 2
    lo = np.minimum(xy.min(0).values.numpy(), -half) - 1.0
    hi = np.maximum(xy.max(0).values.numpy(), half) + 1.0
    nx, ny = (np.ceil((hi - lo) / cell)).astype(int) + 1
    ij = ((xy.numpy() - lo) / cell).round().astype(int)
    cover = torch.zeros(nx * ny)
    cover.index_add_(0, torch.as_tensor(ij[:, 0] * ny + ij[:, 1]), opacities.float())
    sun = 1 - torch.exp(-2.0 * cover.reshape(nx, ny))                     # occupancy of each cell
    sun = _blur(sun, 1.2).clamp(0, 1)
    gx = torch.as_tensor(lo[0] + cell * np.arange(nx), dtype=torch.float32)
    gy = torch.as_tensor(lo[1] + cell * np.arange(ny), dtype=torch.float32)
    X, Y = torch.meshgrid(gx, gy, indexing="ij")
    under = ((X - float(contact[0])).abs() <= half[0] + 0.15) & ((Y - float(contact[1])).abs() <= half[1] + 0.15)
    ao = _blur(under.float(), 1.5).clamp(0, 1)
    target = 1 - (1 - strength * sun) * (1 - CONTACT_STRENGTH * ao)      # darkening wanted per cell
    # Neighbouring surfels (sigma 0.45 cell) overlap: each point sees about 1.25 surfels of
    # optical depth, so a surfel takes the opacity whose 1.25th power gives the target.
    opac = 1 - (1 - target) ** (1 / 1.25)
    keep = opac > 0.02
    m = int(keep.sum())
    out_means = torch.stack([X[keep], Y[keep], torch.full((m,), z0 + LIFT)], 1)
    quats = torch.tensor([1.0, 0, 0, 0]).repeat(m, 1)
    scales = torch.full((m, 2), 0.45 * cell)
    return out_means, quats, scales, opac[keep].float().clamp(max=0.95)


def _look_at(origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """T_world_camera (4, 4) of an OpenCV camera at ``origin`` looking along ``direction``."""
    z = direction / np.linalg.norm(direction)
    helper = np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    T[:3, 3] = origin
    return T


def sun_visibility(scene, T_world_object: np.ndarray, size: np.ndarray, light: Light, t: float) -> float:
    """Share (0..1) of the sun seen from five probes on the top of a box of ``size`` at
    ``T_world_object``, through the scene's background surfels at time t."""
    cam = PinholeCamera(8, 8, 115.0, 115.0, 4.0, 4.0, near=0.3)       # about 4 degrees across
    hide = {n.id: None for n in scene.nodes if n.kind != "background"}
    l, w, h = (float(v) for v in size)
    probes = np.array([[0, 0, 0.45 * h]] + [[sx * 0.4 * l, sy * 0.4 * w, 0.45 * h] for sx in (-1, 1) for sy in (-1, 1)])
    seen = []
    with torch.no_grad():
        for p in probes @ T_world_object[:3, :3].T + T_world_object[:3, 3]:
            T = _look_at(p, light.direction)
            comp = scene.compose(t, None, T, sensor=cam, actors=hide, channels="lidar")
            seen.append(1.0 - float(render_surfels(comp.surfels, cam, T).alpha.mean()))
    return float(np.mean(seen))


def relight_colors(colors: torch.Tensor, normals: torch.Tensor, light_object: np.ndarray, strength: float,
                   visibility: float) -> torch.Tensor:
    """Colours (N, 3) of surfels with outward unit normals (N, 3) (object frame) dimmed for
    a sun ``visibility`` in [0, 1] (see the module docstring); surfels facing away from the
    light had no sun to lose."""
    l = torch.as_tensor(np.asarray(light_object) / np.linalg.norm(light_object), dtype=torch.float32)
    q = strength / max((1 - strength) * max(float(l[2]), 0.1), 1e-6)
    c = (normals @ l).clamp(min=0)
    drop = q * c / (1 + q * c)
    return colors * (1 - (1 - visibility) * drop)[:, None]
