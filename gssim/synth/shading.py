"""Lighting of the ground-truth camera images: sun (Lambert, cast shadows) and sky.

Radiance of a surface point with albedo a and unit normal n (facing the viewer):

    L = a * (ambient * (0.75 + 0.25 n_z) + sun_intensity * max(0, n . l) * lit)

where l is the unit direction to the sun and ``lit`` is 0 when a shadow ray towards the
sun hits geometry.  The ambient term is a sky dome (brighter for up-facing surfaces).
Rays that miss see the sky gradient (``sky_color``).  Values are linear, clipped to [0, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gssim.synth.config import LightingConfig

SKY_HORIZON = np.array([0.78, 0.84, 0.9])
SKY_ZENITH = np.array([0.32, 0.52, 0.85])
GROUND_HAZE = np.array([0.45, 0.45, 0.43])


def sun_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector (3,) from the scene towards the sun (azimuth from +x towards +y)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])


@dataclass
class Light:
    """Sun direction (3,) (towards the sun), sun intensity, sky ambient intensity."""

    sun_dir: np.ndarray
    sun_intensity: float = 0.8
    ambient: float = 0.45

    @classmethod
    def from_config(cls, cfg: LightingConfig) -> "Light":
        return cls(sun_direction(cfg.sun_azimuth_deg, cfg.sun_elevation_deg), cfg.sun_intensity, cfg.ambient)

    def ambient_term(self, normals: np.ndarray) -> np.ndarray:
        """(N,) sky irradiance of surfaces with unit normals (N, 3)."""
        return self.ambient * (0.75 + 0.25 * normals[:, 2])

    def shade(self, albedo: np.ndarray, normals: np.ndarray, lit: np.ndarray) -> np.ndarray:
        """Radiance (N, 3) of albedo (N, 3), viewer-facing normals (N, 3), lit (N,) bool."""
        ndl = np.clip(normals @ self.sun_dir, 0.0, None) * lit
        return np.clip(albedo * (self.ambient_term(normals) + self.sun_intensity * ndl)[:, None], 0.0, 1.0)

    def sky_color(self, dirs: np.ndarray) -> np.ndarray:
        """(N, 3) colour of the sky seen along world directions (N, 3), with the sun disc."""
        z = dirs[:, 2]
        up = np.clip(z, 0, 1) ** 0.6
        col = SKY_HORIZON * (1 - up[:, None]) + SKY_ZENITH * up[:, None]
        below = np.clip(-z * 4, 0, 1)[:, None]
        col = col * (1 - below) + GROUND_HAZE * below
        sun = np.clip((dirs @ self.sun_dir - 0.9995) / 0.0003, 0, 1)[:, None]
        return np.clip(col * (1 - sun) + sun, 0, 1)
