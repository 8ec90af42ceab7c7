"""Anchor growing: new anchors go on the grid of their level, sized to it, one per voxel."""
from __future__ import annotations

import math

import torch

from gssim.recon.densify import Densifier
from gssim.recon.fields import NeuralField
from gssim.recon.scene import Node

from .conftest import tiny_config


class _Scene:
    def __init__(self, nodes):
        self.nodes = nodes


def grown(levels: int, voxel: float = 0.4):
    """A 5 x 5 plane of anchors on a ``voxel`` grid whose every slot has a large gradient,
    after one densification pass with ``levels`` grid levels: (field, rows before)."""
    g = torch.arange(5) * voxel + voxel / 2
    pts = torch.stack(torch.meshgrid(g, g, indexing="ij") + (torch.full((5, 5), voxel / 2),), -1).reshape(-1, 3)
    fld = NeuralField.from_points(pts, torch.tensor([[0.0, 0, 1]]).expand(25, 3), torch.full((25,), voxel),
                                  n_offsets=4, feature_dim=8, hidden=16)
    with torch.no_grad():
        fld.offsets[..., :2] = torch.tensor([[0.4, 0.4], [-0.4, 0.4], [0.4, -0.4], [-0.4, -0.4]])
    node = Node("background", "background", fld)
    cfg = tiny_config(voxel=voxel, grow_threshold=1e-3, grow_levels=levels)
    dens = Densifier(_Scene([node]), cfg)
    st = dens._node_stats(node)
    st["grad"].fill_(1.0)
    st["count"].fill_(10)
    st["seen"].fill_(10)
    st["opacity"].fill_(10 * 4)
    opt = torch.optim.Adam([fld.anchors, fld.features, fld.offsets, fld.log_scales, fld.quats])
    dens.run(opt, cfg.densify_from)
    return fld, 25


def test_finer_levels_add_anchors_on_their_own_grid_sized_to_it():
    one, n0 = grown(1)
    two, _ = grown(2)
    assert one.n_rows == n0, "every slot lies in a voxel of the base grid that an anchor holds"
    new = two.anchors.detach()[n0:]
    assert new.shape[0] > 0
    size = 0.2
    on_grid = (new / size - 0.5).round()
    assert torch.allclose(new, (on_grid + 0.5) * size, atol=1e-5)
    assert torch.unique(on_grid.long(), dim=0).shape[0] == new.shape[0], "one anchor per voxel"
    assert (two.log_scales.detach()[n0:, :3] <= math.log(size) + 1e-6).all()
    assert (two.log_scales.detach()[n0:, 3] <= math.log(size / 2) + 1e-6).all()
    assert all(getattr(two, n).shape[0] == two.n_rows for n in two.row_names)
