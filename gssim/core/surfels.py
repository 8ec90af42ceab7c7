"""Surfels: the set of 2D Gaussians every renderer consumes."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from gssim.core.transforms import quat_to_rotmat

Tensor = torch.Tensor


def normalize_quats(quats: Tensor) -> Tensor:
    """Unit quaternions (..., 4) of any finite non-zero quaternions, robust to scale.

    Dividing by the largest |component| first keeps the norm finite for quaternions
    near the float32 maximum (x 1e20 would overflow the sum of squares) and non-zero
    near its minimum (x 1e-20 would underflow it), so both give the rotation of q.
    """
    big = quats.detach().abs().amax(dim=-1, keepdim=True)
    q = quats / torch.where(big > 0, big, torch.ones_like(big))
    return q / q.norm(dim=-1, keepdim=True)


@dataclass
class Surfels:
    """N 2D Gaussians (surfels), float32 tensors on one device (cpu or cuda).

    means: (N, 3) world-frame centres.
    quats: (N, 4) rotations (w, x, y, z); the surfel plane is spanned by the first two
        columns of R(quat) (t_u, t_v), the normal is the third.  Rendering normalises
        them (robustly: any finite non-zero scale gives the same rotation); a zero or
        non-finite quaternion is an error.
    scales: (N, 2) standard deviations s_u, s_v along t_u, t_v, metres, >= MIN_SCALE.
    opacities: (N,) in [0, 1].
    features: (N, C) composited channels (RGB when C == 3).
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    features: Tensor

    # Smallest scale (m) accepted: the renderer divides by scales, and 1 / s^2 (in the
    # gradients) overflows float32 below about 5e-20; a nanometre is far below any
    # visible surfel and far above that.
    MIN_SCALE = 1e-9

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def validate(self) -> None:
        """Raise ValueError (TypeError for a wrong type) naming the first malformed field."""
        fields = {"means": self.means, "quats": self.quats, "scales": self.scales,
                  "opacities": self.opacities, "features": self.features}
        for name, value in fields.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"Surfels.{name}: expected a torch.Tensor, got {type(value).__name__}")
            if value.dtype != torch.float32:
                raise TypeError(f"Surfels.{name}: expected float32, got {value.dtype}")
            if value.device.type not in ("cpu", "cuda"):
                raise ValueError(f"Surfels.{name}: on the {value.device.type} device; surfels must hold data on "
                                 f"cpu or cuda")
            if value.device != self.means.device:
                raise ValueError(f"Surfels.{name}: on {value.device}, means are on {self.means.device}")
        if self.means.dim() != 2 or self.means.shape[1] != 3:
            raise ValueError(f"Surfels.means: expected shape (N, 3), got {tuple(self.means.shape)}")
        n = self.means.shape[0]
        expected = {"quats": (n, 4), "scales": (n, 2), "opacities": (n,)}
        for name, shape in expected.items():
            if tuple(fields[name].shape) != shape:
                want = "(N,)" if len(shape) == 1 else f"(N, {shape[1]})"
                raise ValueError(f"Surfels.{name}: expected shape {want} with N={n} (from means), "
                                 f"got {tuple(fields[name].shape)}")
        if self.features.dim() != 2 or self.features.shape[0] != n or self.features.shape[1] < 1:
            raise ValueError(f"Surfels.features: expected shape (N, C) with N={n} (from means) and C >= 1, "
                             f"got {tuple(self.features.shape)}")
        with torch.no_grad():
            for name, value in fields.items():
                if not torch.isfinite(value).all():
                    raise ValueError(f"Surfels.{name}: contains NaN or inf")
            if n and (self.quats.abs().amax(dim=-1) == 0).any():
                raise ValueError("Surfels.quats: contains a zero quaternion")
            if n and (self.scales < self.MIN_SCALE).any():
                bad = float(self.scales.min())
                raise ValueError(f"Surfels.scales: must be >= {self.MIN_SCALE:g} m (Surfels.MIN_SCALE), "
                                 f"got {bad:g}")
            if n and ((self.opacities < 0) | (self.opacities > 1)).any():
                raise ValueError("Surfels.opacities: must lie in [0, 1]")

    def rotations(self) -> Tensor:
        """(N, 3, 3) rotation matrices of the normalised quaternions; columns t_u, t_v, n."""
        return quat_to_rotmat(normalize_quats(self.quats))

    def take(self, index: Tensor) -> "Surfels":
        """The surfels at ``index`` (1-D indices; differentiable).  A subset of valid surfels
        is valid, so it is not checked again."""
        out = object.__new__(Surfels)
        for f in ("means", "quats", "scales", "opacities", "features"):
            setattr(out, f, getattr(self, f).index_select(0, index))
        return out

    def to(self, device: torch.device | str) -> "Surfels":
        return Surfels(*(getattr(self, f).to(device) for f in
                         ("means", "quats", "scales", "opacities", "features")))

    @staticmethod
    def cat(parts: list["Surfels"]) -> "Surfels":
        """Concatenate surfel sets with the same channel count."""
        return Surfels(*(torch.cat([getattr(p, f) for p in parts]) for f in
                         ("means", "quats", "scales", "opacities", "features")))
