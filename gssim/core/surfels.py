"""Surfels: the set of 2D Gaussians every renderer consumes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gssim.core.transforms import quat_to_rotmat

Tensor = torch.Tensor


@dataclass
class Surfels:
    """N 2D Gaussians (surfels), float32 tensors on one device.

    means: (N, 3) world-frame centres.
    quats: (N, 4) rotations (w, x, y, z); the surfel plane is spanned by the first two
        columns of R(quat) (t_u, t_v), the normal is the third.  Rendering normalises
        them; a zero or non-finite quaternion is an error.
    scales: (N, 2) standard deviations s_u, s_v along t_u, t_v, metres, > 0.
    opacities: (N,) in [0, 1].
    features: (N, C) composited channels (RGB when C == 3).
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    features: Tensor

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def validate(self) -> None:
        """Raise ValueError naming the first malformed field."""
        fields = {"means": self.means, "quats": self.quats, "scales": self.scales,
                  "opacities": self.opacities, "features": self.features}
        for name, value in fields.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"Surfels.{name}: expected a torch.Tensor, got {type(value).__name__}")
            if value.dtype != torch.float32:
                raise TypeError(f"Surfels.{name}: expected float32, got {value.dtype}")
            if value.device != self.means.device:
                raise ValueError(f"Surfels.{name}: on {value.device}, means are on {self.means.device}")
        n = self.means.shape[0] if self.means.dim() == 2 else -1
        expected = {"means": (n, 3), "quats": (n, 4), "scales": (n, 2), "opacities": (n,)}
        for name, shape in expected.items():
            if tuple(fields[name].shape) != shape or n < 0:
                want = "(N, 3)" if name == "means" else str(shape).replace(str(n), "N")
                raise ValueError(f"Surfels.{name}: expected shape {want}, got {tuple(fields[name].shape)}")
        if self.features.dim() != 2 or self.features.shape[0] != n or self.features.shape[1] < 1:
            raise ValueError(f"Surfels.features: expected shape (N={n}, C>=1), got {tuple(self.features.shape)}")
        with torch.no_grad():
            for name, value in fields.items():
                if not torch.isfinite(value).all():
                    raise ValueError(f"Surfels.{name}: contains NaN or inf")
            if n and (self.quats.norm(dim=-1) < 1e-12).any():
                raise ValueError("Surfels.quats: contains a zero quaternion")
            if n and (self.scales <= 0).any():
                raise ValueError("Surfels.scales: must be > 0")
            if n and ((self.opacities < 0) | (self.opacities > 1)).any():
                raise ValueError("Surfels.opacities: must lie in [0, 1]")

    def rotations(self) -> Tensor:
        """(N, 3, 3) rotation matrices of the normalised quaternions; columns t_u, t_v, n."""
        q = self.quats / self.quats.norm(dim=-1, keepdim=True)
        return quat_to_rotmat(q)

    def to(self, device: torch.device | str) -> "Surfels":
        return Surfels(*(getattr(self, f).to(device) for f in
                         ("means", "quats", "scales", "opacities", "features")))

    @staticmethod
    def cat(parts: list["Surfels"]) -> "Surfels":
        """Concatenate surfel sets with the same channel count."""
        return Surfels(*(torch.cat([getattr(p, f) for p in parts]) for f in
                         ("means", "quats", "scales", "opacities", "features")))
