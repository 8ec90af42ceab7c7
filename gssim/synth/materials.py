"""Materials of the synthetic world: colour texture and LiDAR reflectivity.

Every triangle carries a material id and an object id.  A material is a vectorised
function of the hit point and normal in the object's own frame (world frame for static
objects) and of the object's parameters (``ObjectParams``: two colours, four pattern
numbers, a seed); it returns the albedo (N, 3) in [0, 1] and the LiDAR reflectivity (N,)
in [0, 1].  Textures are procedural (functions of position), so they need no UV maps and
stay sharp at any distance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from gssim.synth.noise import fbm, hash01, value_noise


@dataclass
class ObjectParams:
    """Per-object texture parameters, one row per object.

    color, color2: (K, 3) float64 in [0, 1]; pattern: (K, 4) float64; seed: (K,) int64.
    """

    color: np.ndarray
    color2: np.ndarray
    pattern: np.ndarray
    seed: np.ndarray

    def take(self, idx: np.ndarray) -> "ObjectParams":
        return ObjectParams(self.color[idx], self.color2[idx], self.pattern[idx], self.seed[idx])


Shader = Callable[[np.ndarray, np.ndarray, ObjectParams], tuple[np.ndarray, np.ndarray]]


def _gray(v: np.ndarray) -> np.ndarray:
    return np.repeat(v[:, None], 3, axis=1)


def _full(n: int, value: float) -> np.ndarray:
    return np.full(n, value, np.float64)


def plain(p, n, prm):
    """Constant colour ``color``; reflectivity ``pattern[0]``."""
    return prm.color.copy(), prm.pattern[:, 0].copy()


def ground(p, n, prm):
    """Grass and soil patches."""
    g = fbm(p, 3.0, 3, prm.seed)
    soil = np.array([0.36, 0.30, 0.22])
    grass = np.array([0.22, 0.36, 0.14])
    a = np.clip((g - 0.35) * 3, 0, 1)[:, None]
    fine = 0.85 + 0.3 * value_noise(p, 0.15, prm.seed + 1)[:, None]
    return np.clip((a * grass + (1 - a) * soil) * fine, 0, 1), _full(len(p), 0.25)


def asphalt(p, n, prm):
    """Grey asphalt with grain and darker patches."""
    v = 0.2 + 0.06 * fbm(p, 2.0, 2, prm.seed) + 0.05 * (value_noise(p, 0.1, prm.seed + 7) - 0.5)
    return _gray(v), _full(len(p), 0.12)


def marking(p, n, prm):
    """Road paint (colour ``color``), retroreflective."""
    wear = 0.9 + 0.1 * value_noise(p, 0.3, prm.seed)
    return np.clip(prm.color * wear[:, None], 0, 1), _full(len(p), 0.75)


def concrete(p, n, prm):
    """Curb concrete."""
    v = 0.55 + 0.08 * (value_noise(p, 0.4, prm.seed) - 0.5)
    return _gray(v), _full(len(p), 0.35)


def paving(p, n, prm):
    """Sidewalk slabs of ``pattern[0]`` metres with dark joints; per-slab tint."""
    size = np.where(prm.pattern[:, 0] > 0, prm.pattern[:, 0], 1.0)
    u, v = p[:, 0] / size, p[:, 1] / size
    iu, iv = np.floor(u), np.floor(v)
    joint = (np.minimum(u - iu, 1 - (u - iu)) < 0.03) | (np.minimum(v - iv, 1 - (v - iv)) < 0.03)
    tint = 0.85 + 0.2 * hash01(iu, iv, 0, prm.seed)
    col = prm.color * tint[:, None]
    col[joint] *= 0.55
    return np.clip(col, 0, 1), _full(len(p), 0.3)


def facade(p, n, prm):
    """Building walls: plaster/brick/panels (``pattern[0]`` = 0/1/2) in ``color`` with a
    grid of windows: spacing ``pattern[1]``, floor height ``pattern[2]``, window width
    ``pattern[3]``; glass in ``color2`` tones.  Up-facing faces are roof."""
    kind, spacing, floor_h, win_w = (prm.pattern[:, k] for k in range(4))
    tangent = np.stack([-n[:, 1], n[:, 0], np.zeros(len(n))], 1)
    tn = np.linalg.norm(tangent, axis=1, keepdims=True)
    tangent = np.where(tn > 1e-6, tangent / np.maximum(tn, 1e-12), 0)
    u = np.einsum("ij,ij->i", p, tangent)
    z = p[:, 2]
    col = prm.color * (0.9 + 0.2 * value_noise(p, 1.5, prm.seed))[:, None]
    # Brick: rows of 0.3 m, bricks 0.6 m, half-offset every other row; mortar lighter.
    brick = kind == 1
    if brick.any():
        row = np.floor(z / 0.3)
        bu = u / 0.6 + 0.5 * (row % 2)
        mortar = (z / 0.3 - row < 0.12) | (bu - np.floor(bu) < 0.06)
        shade = 0.8 + 0.35 * hash01(np.floor(bu), row, 3, prm.seed)
        bcol = np.where(mortar[:, None], 0.75, prm.color * shade[:, None])
        col = np.where(brick[:, None], bcol, col)
    panels = kind == 2
    if panels.any():
        seam = (np.abs(u / 1.5 - np.round(u / 1.5)) * 1.5 < 0.03) | (np.abs(z / floor_h - np.round(z / floor_h))
                                                                        * floor_h < 0.04)
        col = np.where((panels & seam)[:, None], col * 0.6, col)
    refl = _full(len(p), 0.3)
    # Windows.
    fl = np.floor(z / floor_h)
    fz = z / floor_h - fl
    cu = u / spacing
    fu = cu - np.floor(cu)
    half_w = 0.5 * win_w / spacing
    ground_floor = fl == 0
    w_lo, w_hi = np.where(ground_floor, 0.12, 0.3), np.where(ground_floor, 0.78, 0.82)
    half = np.where(ground_floor, np.minimum(0.42, half_w * 1.6), half_w)
    window = (np.abs(fu - 0.5) < half) & (fz > w_lo) & (fz < w_hi) & (np.abs(n[:, 2]) < 0.5) & (z > 0.05)
    frame_band = window & ((np.abs(fu - 0.5) > half - 0.04 / spacing) | (fz < w_lo + 0.03) | (fz > w_hi - 0.03))
    glass_var = hash01(np.floor(cu), fl, 11, prm.seed)
    glass = prm.color2 * (0.5 + 0.9 * glass_var)[:, None]
    col = np.where(window[:, None], glass, col)
    col = np.where(frame_band[:, None], 0.85, col)
    refl = np.where(window & ~frame_band, 0.06, refl)
    roof = n[:, 2] > 0.5
    col = np.where(roof[:, None], _gray(0.3 + 0.1 * value_noise(p, 2.0, prm.seed + 3)), col)
    return np.clip(col, 0, 1), refl


def metal(p, n, prm):
    """Painted metal (poles) in ``color``."""
    return prm.color.copy(), _full(len(p), 0.5)


def bark(p, n, prm):
    """Tree trunk."""
    v = 0.8 + 0.4 * value_noise(p * np.array([4.0, 4.0, 0.5]), 0.5, prm.seed)
    return np.clip(np.array([0.33, 0.24, 0.16]) * v[:, None], 0, 1), _full(len(p), 0.3)


def foliage(p, n, prm):
    """Leaves: ``color`` modulated by clumpy noise."""
    v = 0.65 + 0.6 * fbm(p, 0.6, 2, prm.seed)
    return np.clip(prm.color * v[:, None], 0, 1), _full(len(p), 0.4)


def car_paint(p, n, prm):
    """Car body in ``color``; a dark band near the bottom (bumpers, sills)."""
    col = np.where((p[:, 2] < prm.pattern[:, 0])[:, None], 0.08, prm.color)
    return col, np.where(p[:, 2] < prm.pattern[:, 0], 0.1, 0.45)


def car_cabin(p, n, prm):
    """Car cabin: tinted glass on the sides, body colour on the roof."""
    roof = n[:, 2] > 0.7
    col = np.where(roof[:, None], prm.color, np.array([0.08, 0.1, 0.12]))
    return col, np.where(roof, 0.45, 0.08)


def rubber(p, n, prm):
    """Tyres."""
    return _gray(_full(len(p), 0.05)), _full(len(p), 0.06)


def clothing(p, n, prm):
    """Pedestrian: ``color`` above local z ``pattern[0]`` (shirt), ``color2`` below (trousers)."""
    col = np.where((p[:, 2] > prm.pattern[:, 0])[:, None], prm.color, prm.color2)
    return col, _full(len(p), 0.3)


def skin(p, n, prm):
    """Head: a skin tone scaled by ``pattern[1]`` (1 when unset)."""
    tone = np.where(prm.pattern[:, 1] > 0, prm.pattern[:, 1], 1.0)
    return np.clip(np.array([0.85, 0.65, 0.5]) * tone[:, None], 0, 1), _full(len(p), 0.25)


MATERIALS: dict[str, Shader] = {
    "plain": plain, "ground": ground, "asphalt": asphalt, "marking": marking, "concrete": concrete,
    "paving": paving, "facade": facade, "metal": metal, "bark": bark, "foliage": foliage,
    "car_paint": car_paint, "car_cabin": car_cabin, "rubber": rubber, "clothing": clothing, "skin": skin,
}
MATERIAL_IDS = {name: i for i, name in enumerate(MATERIALS)}
MATERIAL_NAMES = list(MATERIALS)


def evaluate(material: np.ndarray, points: np.ndarray, normals: np.ndarray, params: ObjectParams
             ) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (N, 3) and reflectivity (N,) of hits with material ids (N,), object-frame
    points (N, 3) and unit normals (N, 3), object parameters (N rows)."""
    albedo = np.zeros((len(material), 3))
    refl = np.zeros(len(material))
    for mid in np.unique(material):
        sel = material == mid
        a, r = MATERIALS[MATERIAL_NAMES[int(mid)]](points[sel], normals[sel], params.take(np.flatnonzero(sel)))
        albedo[sel] = a
        refl[sel] = r
    return np.clip(albedo, 0, 1), np.clip(refl, 0, 1)
