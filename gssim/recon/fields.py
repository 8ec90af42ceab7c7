"""Surfel fields: what a scene node stores and how it turns into surfels.

Two variants behind one interface (``decode``):

``NeuralField`` (Scaffold-GS style, 2D): M anchors, each with a position, a learned
feature, a log scale and a base rotation, spawn K surfels through learned offsets.
Small MLPs decode from the anchor feature each surfel's opacity, shape (two scales and
a rotation relative to the anchor's), colour as spherical-harmonic coefficients (the
colour MLP also sees the camera's appearance embedding) and LiDAR feature channels.
The decoders see no view direction: view dependence enters through the SH basis, so a
decoded (baked) set of surfels renders exactly like the neural field.

``ExplicitField`` (2DGS with spherical harmonics): every surfel's parameters are free.

``decode(index, appearance)`` returns a ``Decoded`` set in the node's own frame.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from gssim.core.transforms import quat_to_rotmat, rotmat_to_quat

Tensor = torch.Tensor

SH_C0 = 0.28209479177387814
MIN_SCALE = 1e-6   # metres; decoded scales stay above it (Surfels refuses < 1e-9)
# Radius (in sigmas) within which a surfel of opacity <= 1 can reach the renderer's alpha
# cut-off of 1/255: exp(-r^2 / 2) >= 1/255.
CUTOFF_SIGMAS = math.sqrt(2 * math.log(255.0))
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """Real SH basis (..., (degree+1)^2) of unit directions (..., 3), degree <= 2 (3DGS ordering)."""
    if not 0 <= degree <= 2:
        raise ValueError(f"sh_basis: degree must be 0, 1 or 2, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        out += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * z * z - x * x - y * y),
                SH_C2[3] * x * z, SH_C2[4] * (x * x - y * y)]
    return torch.stack(out, -1)


def sh_to_rgb(sh: Tensor, dirs: Tensor) -> Tensor:
    """Colour (N, 3) of SH coefficients (N, S, 3) seen along unit directions (N, 3) (3DGS: 0.5 + sum, >= 0)."""
    degree = int(round(math.sqrt(sh.shape[1]))) - 1
    basis = sh_basis(dirs, degree)
    return (0.5 + (basis[..., None] * sh).sum(1)).clamp(min=0.0)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product a * b of quaternions (..., 4) (w, x, y, z)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def normal_to_quat(normals: Tensor) -> Tensor:
    """Unit quaternions (N, 4) whose third rotation column is each unit normal (N, 3)."""
    n = normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    helper = torch.where((n[:, 2:3].abs() < 0.9), torch.tensor([0.0, 0.0, 1.0]).expand_as(n),
                         torch.tensor([1.0, 0.0, 0.0]).expand_as(n))
    u = torch.linalg.cross(helper, n)
    u = u / u.norm(dim=-1, keepdim=True)
    v = torch.linalg.cross(n, u)
    return rotmat_to_quat(torch.stack([u, v, n], -1))


@dataclass
class Decoded:
    """Surfels decoded from a field, in the node's frame (all float32).

    means (N, 3), quats (N, 4) unit, scales (N, 2), opacities (N,), sh (N, S, 3),
    lidar (N, L) LiDAR feature channels, slot (N,) long: the spawn slot each came from
    (row * slots_per_row + k), for densification statistics.
    """

    means: Tensor
    quats: Tensor
    scales: Tensor
    opacities: Tensor
    sh: Tensor
    lidar: Tensor
    slot: Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    def select(self, mask: Tensor) -> "Decoded":
        return Decoded(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


class Field(nn.Module):
    """Common interface of the surfel fields."""

    kind = ""
    row_names: tuple[str, ...] = ()   # per-row parameters (rows grow and shrink with densification)
    slots_per_row = 1                 # surfels a row spawns

    def __init__(self, sh_degree: int, lidar_channels: int) -> None:
        super().__init__()
        self.sh_degree = int(sh_degree)
        self.n_sh = (self.sh_degree + 1) ** 2
        self.lidar_channels = int(lidar_channels)

    @property
    def n_rows(self) -> int:
        return getattr(self, self.row_names[0]).shape[0]

    @abstractmethod
    def centres(self) -> Tensor:
        """(M, 3) row positions (anchors or surfels) for culling and densification."""

    @abstractmethod
    def extent(self) -> Tensor:
        """(M,) radius around each centre that holds everything the row spawns (m)."""

    @abstractmethod
    def decode(self, index: Tensor, appearance: Tensor | None) -> Decoded:
        """Surfels of rows ``index`` (n,) for a camera of appearance embedding (E,) or None."""

    @abstractmethod
    def config(self) -> dict:
        """Constructor arguments (with ``kind``) that rebuild this field's shapes."""

    def tensors(self) -> dict[str, Tensor]:
        """Everything the field stores, detached, for a safetensors file."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    def set_rows(self, new: dict[str, Tensor]) -> None:
        """Replace every per-row parameter (after densification)."""
        for name in self.row_names:
            setattr(self, name, nn.Parameter(new[name].detach().contiguous()))


class NeuralField(Field):
    """Anchors spawning K surfels each through learned offsets and MLP decoders.

    anchors (M, 3); features (M, F); offsets (M, K, 3) in units of the anchor scale;
    log_scales (M, 4): three for the offsets, one for the surfel size; quats (M, 4) the
    anchor's base rotation.  Decoders (one hidden layer each): opacity K, shape K*6
    (two scale logits, a rotation delta), colour K*S*3 (SH, also given the appearance
    embedding), LiDAR K*L.
    """

    kind = "neural"
    row_names = ("anchors", "features", "offsets", "log_scales", "quats")

    def __init__(self, n_anchors: int, n_offsets: int = 4, feature_dim: int = 24, hidden: int = 48,
                 appearance_dim: int = 8, sh_degree: int = 1, lidar_channels: int = 4) -> None:
        super().__init__(sh_degree, lidar_channels)
        M, K, F = int(n_anchors), int(n_offsets), int(feature_dim)
        self.n_offsets, self.feature_dim, self.hidden, self.appearance_dim = K, F, int(hidden), int(appearance_dim)
        self.slots_per_row = K
        self.anchors = nn.Parameter(torch.zeros(M, 3))
        self.features = nn.Parameter(torch.zeros(M, F))
        self.offsets = nn.Parameter(torch.zeros(M, K, 3))
        self.log_scales = nn.Parameter(torch.zeros(M, 4))
        self.quats = nn.Parameter(torch.tensor([1.0, 0, 0, 0]).repeat(M, 1))
        self.mlp_opacity = _mlp(F, self.hidden, K)
        self.mlp_shape = _mlp(F, self.hidden, K * 6)
        self.mlp_color = _mlp(F + self.appearance_dim, self.hidden, K * self.n_sh * 3)
        self.mlp_lidar = _mlp(F, self.hidden, K * self.lidar_channels)
        with torch.no_grad():  # start from opaque-ish surfels, anchor-aligned, unit size
            self.mlp_shape[-1].weight.mul_(0.1)
            self.mlp_shape[-1].bias.zero_()
            self.mlp_opacity[-1].bias.fill_(0.5)

    @classmethod
    def from_points(cls, points: Tensor, normals: Tensor, spacing: Tensor, colors: Tensor | None = None,
                    **cfg) -> "NeuralField":
        """Anchors at points (M, 3) with surface normals (M, 3) and spacing (M,) metres."""
        f = cls(points.shape[0], **cfg)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            f.anchors.copy_(points)
            f.features.copy_(torch.randn(points.shape[0], f.feature_dim, generator=g) * 0.1)
            f.offsets.copy_(torch.randn(points.shape[0], f.n_offsets, 3, generator=g) * 0.5)
            f.offsets[..., 2] *= 0.1   # spread mostly in the surface plane (anchor frame z = normal)
            s = spacing.clamp(min=1e-3).log()[:, None]
            # Offsets spread over the anchor's spacing; surfels start at half of it.
            f.log_scales.copy_(torch.cat([s.expand(-1, 3), s + math.log(0.5)], 1))
            f.quats.copy_(normal_to_quat(normals))
        return f

    def warm_start(self, colors: Tensor, steps: int = 150) -> float:
        """Fit the features and colour decoder so every anchor's surfels start with the
        colour (M, 3) the cameras see at it (NaN rows are skipped); returns the final L1."""
        ok = torch.isfinite(colors).all(1)
        if not ok.any():
            return float("nan")
        idx = torch.nonzero(ok).squeeze(1)
        target = colors[idx]
        opt = torch.optim.Adam([self.features, *self.mlp_color.parameters()], lr=0.01)
        zero = self.features.new_zeros(self.appearance_dim)
        for _ in range(steps):
            opt.zero_grad()
            inp = torch.cat([self.features[idx], zero.expand(idx.shape[0], -1)], 1)
            sh = self.mlp_color(inp).reshape(idx.shape[0], self.n_offsets, self.n_sh, 3)
            loss = (0.5 + SH_C0 * sh[:, :, 0] - target[:, None]).abs().mean()
            loss.backward()
            opt.step()
        return float(loss.detach())

    def config(self) -> dict:
        return {"kind": self.kind, "n_offsets": self.n_offsets, "feature_dim": self.feature_dim,
                "hidden": self.hidden, "appearance_dim": self.appearance_dim, "sh_degree": self.sh_degree,
                "lidar_channels": self.lidar_channels}

    def centres(self) -> Tensor:
        return self.anchors

    def extent(self) -> Tensor:
        s = self.log_scales.detach().exp()
        reach = (self.offsets.detach().abs().amax(1) * s[:, :3]).norm(dim=-1)
        return reach + CUTOFF_SIGMAS * 2 * s[:, 3]

    def slot_positions(self, slots: Tensor) -> Tensor:
        """(n, 3) positions of spawn slots (row * K + k), without gradients."""
        with torch.no_grad():
            rows, k = slots // self.n_offsets, slots % self.n_offsets
            q = self.quats[rows] / self.quats[rows].norm(dim=-1, keepdim=True)
            local = self.offsets[rows, k] * self.log_scales[rows, :3].exp()
            return self.anchors[rows] + (quat_to_rotmat(q) @ local[:, :, None])[:, :, 0]

    def decode(self, index: Tensor, appearance: Tensor | None) -> Decoded:
        """Surfels of anchors ``index`` (n,), with the appearance embedding (E,) of the camera
        (None: the zero embedding).  Returns n*K surfels; ones below 1/255 opacity are left out."""
        K, S, L = self.n_offsets, self.n_sh, self.lidar_channels
        feat = self.features[index]
        n = feat.shape[0]
        scale = self.log_scales[index].exp()
        q_anchor = self.quats[index]
        q_anchor = q_anchor / q_anchor.norm(dim=-1, keepdim=True)
        R = quat_to_rotmat(q_anchor)                                         # (n, 3, 3)
        local = self.offsets[index] * scale[:, None, :3]                     # (n, K, 3) anchor frame
        means = self.anchors[index][:, None, :] + torch.einsum("nij,nkj->nki", R, local)
        opac = torch.sigmoid(self.mlp_opacity(feat)).reshape(n * K)
        shape = self.mlp_shape(feat).reshape(n, K, 6)
        scales = (2 * torch.sigmoid(shape[..., :2]) * scale[:, None, 3:4]).clamp(min=MIN_SCALE)
        dq = torch.cat([1 + shape[..., 2:3], shape[..., 3:6]], -1)
        dq = dq / dq.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        quats = quat_multiply(q_anchor[:, None, :].expand(n, K, 4), dq)
        if appearance is None:
            appearance = feat.new_zeros(self.appearance_dim)
        col_in = torch.cat([feat, appearance.expand(n, self.appearance_dim)], 1)
        sh = self.mlp_color(col_in).reshape(n * K, S, 3)
        lid = self.mlp_lidar(feat).reshape(n * K, L)
        slot = (index[:, None] * K + torch.arange(K)).reshape(n * K)
        out = Decoded(means.reshape(n * K, 3), quats.reshape(n * K, 4), scales.reshape(n * K, 2), opac, sh, lid,
                      slot)
        return out.select(opac > 1.0 / 255)


class ExplicitField(Field):
    """Free surfels (2DGS): means (N, 3), quats (N, 4), log_scales (N, 2), opacity logits
    (N,), SH coefficients (N, S, 3) and LiDAR channels (N, L)."""

    kind = "explicit"
    row_names = ("means", "quats", "log_scales", "opacity_logits", "sh", "lidar")

    def __init__(self, n_surfels: int, sh_degree: int = 1, lidar_channels: int = 4) -> None:
        super().__init__(sh_degree, lidar_channels)
        N = int(n_surfels)
        self.means = nn.Parameter(torch.zeros(N, 3))
        self.quats = nn.Parameter(torch.tensor([1.0, 0, 0, 0]).repeat(N, 1))
        self.log_scales = nn.Parameter(torch.zeros(N, 2))
        self.opacity_logits = nn.Parameter(torch.full((N,), 1.0))
        self.sh = nn.Parameter(torch.zeros(N, self.n_sh, 3))
        self.lidar = nn.Parameter(torch.zeros(N, self.lidar_channels))

    @classmethod
    def from_points(cls, points: Tensor, normals: Tensor, spacing: Tensor, colors: Tensor | None = None,
                    **cfg) -> "ExplicitField":
        """Surfels at points (N, 3) facing normals (N, 3), sized by spacing (N,), coloured (N, 3)."""
        cfg = {k: v for k, v in cfg.items() if k in ("sh_degree", "lidar_channels")}
        f = cls(points.shape[0], **cfg)
        with torch.no_grad():
            f.means.copy_(points)
            f.quats.copy_(normal_to_quat(normals))
            f.log_scales.copy_(spacing.clamp(min=1e-3).log()[:, None].expand(-1, 2))
            if colors is not None:
                f.sh[:, 0].copy_((colors - 0.5) / SH_C0)
        return f

    def config(self) -> dict:
        return {"kind": self.kind, "sh_degree": self.sh_degree, "lidar_channels": self.lidar_channels}

    def centres(self) -> Tensor:
        return self.means

    def extent(self) -> Tensor:
        return CUTOFF_SIGMAS * self.log_scales.detach().exp().amax(-1)

    def decode(self, index: Tensor, appearance: Tensor | None) -> Decoded:
        q = self.quats[index]
        out = Decoded(self.means[index], q / q.norm(dim=-1, keepdim=True),
                      self.log_scales[index].exp().clamp(min=MIN_SCALE),
                      torch.sigmoid(self.opacity_logits[index]), self.sh[index], self.lidar[index], index)
        return out.select(out.opacities > 1.0 / 255)


FIELD_KINDS = {"neural": NeuralField, "explicit": ExplicitField}


def field_from_config(cfg: dict, n_rows: int) -> Field:
    """An empty field of ``n_rows`` rows from its ``config()``; raises on an unknown kind."""
    kind = cfg.get("kind")
    if kind not in FIELD_KINDS:
        raise ValueError(f"unknown field kind {kind!r}; expected one of {sorted(FIELD_KINDS)}")
    kwargs = {k: v for k, v in cfg.items() if k != "kind"}
    return FIELD_KINDS[kind](n_rows, **kwargs)
