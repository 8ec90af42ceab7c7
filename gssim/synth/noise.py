"""Deterministic procedural noise of world positions (no random state).

``hash01`` maps integer lattice coordinates and a seed to [0, 1); ``value_noise`` is
trilinearly interpolated lattice noise.  Same inputs give the same values everywhere.
"""
from __future__ import annotations

import numpy as np

_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int | np.ndarray = 0) -> np.ndarray:
    """Hash of integer lattice points (broadcast arrays) to float64 in [0, 1)."""
    with np.errstate(over="ignore"):
        h = (np.asarray(ix, np.int64).astype(np.uint64) * _M1
             ^ np.asarray(iy, np.int64).astype(np.uint64) * _M2
             ^ np.asarray(iz, np.int64).astype(np.uint64) * _M3
             ^ (np.asarray(seed, np.int64).astype(np.uint64) + np.uint64(0x632BE59BD9B4E019)) * _M1)
        h ^= h >> np.uint64(31)
        h *= _M2
        h ^= h >> np.uint64(29)
        h *= _M3
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(points: np.ndarray, cell: float, seed: int | np.ndarray = 0) -> np.ndarray:
    """Smooth noise in [0, 1) of points (N, 3) with lattice spacing ``cell`` (m); (N,)."""
    p = np.asarray(points, np.float64) / cell
    i0 = np.floor(p)
    f = p - i0
    f = f * f * (3 - 2 * f)
    i0 = i0.astype(np.int64)
    out = np.zeros(p.shape[0])
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1 - f[:, 2]
                out += wx * wy * wz * hash01(i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz, seed)
    return out


def fbm(points: np.ndarray, cell: float, octaves: int = 3, seed: int | np.ndarray = 0) -> np.ndarray:
    """Fractal sum of value noise (N,) in [0, 1): octaves halve the cell and the weight."""
    total, weight, norm = np.zeros(len(points)), 1.0, 0.0
    for o in range(octaves):
        total += weight * value_noise(points, cell / 2 ** o, np.asarray(seed) + 101 * o)
        norm += weight
        weight *= 0.5
    return total / norm
