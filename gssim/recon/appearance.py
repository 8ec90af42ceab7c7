"""Per-camera appearance: an embedding the colour decoders see, and an exposure /
colour correction (a 3x3 matrix and an offset) applied to the final image; plus the
sky, a learned environment over world ray directions that fills what surfels leave."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


class Appearance(nn.Module):
    """Embeddings (n, E) and colour corrections (n, 3, 4) of the log's cameras.

    A camera the scene was not trained on (``index`` None) gets the mean embedding and
    the identity correction.
    """

    def __init__(self, camera_ids: list[str], dim: int = 8) -> None:
        super().__init__()
        self.camera_ids = list(camera_ids)
        n = len(self.camera_ids)
        self.dim = int(dim)
        self.embeddings = nn.Parameter(torch.zeros(n, self.dim))
        self.exposure = nn.Parameter(torch.eye(3, 4).repeat(n, 1, 1))

    def index(self, sid: str) -> int | None:
        return self.camera_ids.index(sid) if sid in self.camera_ids else None

    def embedding(self, sid: str | None) -> Tensor:
        """(E,) embedding of camera ``sid``; the mean one for a camera not in the log."""
        i = self.index(sid) if sid is not None else None
        if i is None:
            return self.embeddings.mean(0) if len(self.camera_ids) else self.embeddings.new_zeros(self.dim)
        return self.embeddings[i]

    def correct(self, color: Tensor, sid: str | None) -> Tensor:
        """Colour-corrected image (..., 3) of camera ``sid`` (identity for an unknown camera)."""
        i = self.index(sid) if sid is not None else None
        if i is None:
            return color
        M = self.exposure[i]
        return color @ M[:, :3].T + M[:, 3]


class Sky(nn.Module):
    """Sky colour over world ray direction: an equirectangular texture (H, W, 3) sampled
    bilinearly by elevation (rows, +90 deg at the top) and azimuth (columns, wrapping)."""

    def __init__(self, height: int = 32, width: int = 128, init_color=(0.6, 0.75, 0.9)) -> None:
        super().__init__()
        self.texture = nn.Parameter(torch.tensor(init_color, dtype=torch.float32)[:, None, None]
                                    .repeat(1, int(height), int(width)).contiguous())

    def forward(self, dirs: Tensor) -> Tensor:
        """Colour (..., 3) of unit world directions (..., 3)."""
        lead = dirs.shape[:-1]
        d = dirs.reshape(-1, 3)
        el = torch.asin(d[:, 2].clamp(-1, 1))
        az = torch.atan2(d[:, 1], d[:, 0])
        # Pad one column on each side so azimuth wraps across the seam.
        tex = torch.cat([self.texture[:, :, -1:], self.texture, self.texture[:, :, :1]], 2)[None]
        W = self.texture.shape[2]
        x = (az / math.pi) * (W / (W + 2))
        y = -(el / (math.pi / 2))
        grid = torch.stack([x, y], -1)[None, None]
        out = F.grid_sample(tex, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out[0, :, 0].T.reshape(*lead, 3)
