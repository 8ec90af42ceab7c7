"""Growing and pruning rows from accumulated gradients (Scaffold-GS for anchors, 3DGS
clone/split for explicit surfels), with the optimizer's moments carried along.

Each spawn slot accumulates the norm of its surfel's position gradient scaled to image
units (|dL/dx| * distance / focal * width / 2, the normalised-device-coordinate
gradient gsplat's strategies threshold) and how often it was seen.  Every
``densify_every`` steps: neural nodes get a new anchor in each empty voxel that a slot
with a large mean gradient sits in (voxel = the node's spacing); explicit nodes split
such surfels in two.  Rows whose surfels stay nearly transparent are pruned.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from gssim.core.transforms import quat_to_rotmat
from gssim.recon.config import TrainConfig
from gssim.recon.fields import ExplicitField, NeuralField

Tensor = torch.Tensor
log = logging.getLogger(__name__)

MIN_SEEN = 3


def remap_rows(optimizer: torch.optim.Optimizer, fld: nn.Module, new: dict[str, Tensor], src: Tensor) -> None:
    """Replace a field's per-row parameters by ``new`` (name -> tensor with R rows); row r
    of each takes the Adam moments of old row ``src[r]`` (fresh zeros where src is -1)."""
    have = src >= 0
    for name in fld.row_names:
        old = getattr(fld, name)
        param = nn.Parameter(new[name].detach().contiguous())
        for g in optimizer.param_groups:
            g["params"] = [param if p is old else p for p in g["params"]]
        state = optimizer.state.pop(old, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                moved = torch.zeros_like(param)
                moved[have] = state[key][src[have]]
                state[key] = moved
            optimizer.state[param] = state
        setattr(fld, name, param)


class Densifier:
    """Gradient statistics per node and the grow/prune pass (see the module docstring)."""

    def __init__(self, scene, cfg: TrainConfig) -> None:
        self.scene = scene
        self.cfg = cfg
        self.stats: dict[str, dict[str, Tensor]] = {}
        self.spacing = {n.id: cfg.voxel if n.track is None else cfg.actor_voxel for n in scene.nodes}

    def _node_stats(self, node) -> dict[str, Tensor]:
        fld = node.field
        slots = fld.n_rows * fld.slots_per_row
        st = self.stats.get(node.id)
        if st is None or st["grad"].shape[0] != slots:
            st = {"grad": torch.zeros(slots), "count": torch.zeros(slots), "opacity": torch.zeros(fld.n_rows),
                  "seen": torch.zeros(fld.n_rows)}
            self.stats[node.id] = st
        return st

    def observe(self, comp, origin, focal: float, width: int) -> None:
        """Accumulate gradients of one rendered view (after backward)."""
        for node, dec, rows, dist in comp.parts:
            st = self._node_stats(node)
            st["seen"].index_add_(0, rows, torch.ones(rows.shape[0]))
            st["opacity"].index_add_(0, dec.slot // node.field.slots_per_row, dec.opacities.detach())
            g = dec.means.grad
            if g is None:
                continue
            val = g.norm(dim=-1) * dist / focal * (width / 2)
            st["grad"].index_add_(0, dec.slot, val)
            st["count"].index_add_(0, dec.slot, torch.ones_like(val))

    def due(self, step: int) -> bool:
        cfg = self.cfg
        return (cfg.densify_from <= step <= cfg.steps * cfg.densify_until_ratio
                and step % cfg.densify_every == 0)

    def run(self, optimizer, step: int) -> None:
        """Grow and prune every node; reset the statistics."""
        total = sum(n.field.n_rows for n in self.scene.nodes)
        for node in self.scene.nodes:
            st = self.stats.get(node.id)
            if st is None or st["grad"].shape[0] != node.field.n_rows * node.field.slots_per_row:
                continue
            budget = max(0, self.cfg.max_rows - total)
            before = node.field.n_rows
            if isinstance(node.field, NeuralField):
                self._anchors(node, st, optimizer, budget)
            elif isinstance(node.field, ExplicitField):
                self._surfels(node, st, optimizer, budget)
            total += node.field.n_rows - before
            if node.field.n_rows != before:
                log.debug("step %d: node %s %d -> %d rows", step, node.id, before, node.field.n_rows)
        self.stats.clear()

    def _prune_mask(self, node, st) -> Tensor:
        mean_opacity = st["opacity"] / (st["seen"] * node.field.slots_per_row).clamp(min=1)
        return (st["seen"] >= MIN_SEEN) & (mean_opacity < self.cfg.prune_opacity)

    def _anchors(self, node, st, optimizer, budget: int) -> None:
        fld: NeuralField = node.field
        avg = st["grad"] / st["count"].clamp(min=1)
        grow = (st["count"] >= MIN_SEEN) & (avg > self.cfg.grow_threshold)
        voxel = self.spacing[node.id]
        new_pos = torch.zeros(0, 3)
        parents = torch.zeros(0, dtype=torch.long)
        if grow.any() and budget > 0:
            slots = torch.nonzero(grow).squeeze(1)
            pos = fld.slot_positions(slots)
            keys = torch.floor(pos / voxel).long()
            existing = torch.floor(fld.anchors.detach() / voxel).long()
            uniq, first = _unique_rows(keys)
            taken = _rows_in(uniq, existing)
            sel = first[~taken][:budget]
            new_pos = (torch.floor(pos[sel] / voxel) + 0.5) * voxel
            parents = slots[sel] // fld.n_offsets
        prune = self._prune_mask(node, st)
        keep = torch.nonzero(~prune).squeeze(1)
        n_new = new_pos.shape[0]
        if n_new == 0 and keep.shape[0] == fld.n_rows:
            return
        with torch.no_grad():
            offsets = torch.randn(n_new, fld.n_offsets, 3) * 0.5
            offsets[..., 2] *= 0.1
            new = {"anchors": torch.cat([fld.anchors[keep], new_pos]),
                   "features": torch.cat([fld.features[keep], fld.features[parents]]),
                   "offsets": torch.cat([fld.offsets[keep], offsets]),
                   "log_scales": torch.cat([fld.log_scales[keep], fld.log_scales[parents]]),
                   "quats": torch.cat([fld.quats[keep], fld.quats[parents]])}
        remap_rows(optimizer, fld, new, torch.cat([keep, torch.full((n_new,), -1, dtype=torch.long)]))

    def _surfels(self, node, st, optimizer, budget: int) -> None:
        fld: ExplicitField = node.field
        avg = st["grad"] / st["count"].clamp(min=1)
        grow = torch.nonzero((st["count"] >= MIN_SEEN) & (avg > self.cfg.grow_threshold)).squeeze(1)[:budget]
        prune = self._prune_mask(node, st)
        prune[grow] = False
        keep = torch.nonzero(~prune).squeeze(1)
        if grow.numel() == 0 and keep.shape[0] == fld.n_rows:
            return
        with torch.no_grad():
            q = fld.quats[grow] / fld.quats[grow].norm(dim=-1, keepdim=True)
            R = quat_to_rotmat(q)
            s = fld.log_scales[grow].exp()
            # Split each grown surfel into two along its longer tangent axis, each 0.6x the size.
            axis = torch.where((s[:, 0] >= s[:, 1])[:, None], R[:, :, 0], R[:, :, 1]) * s.amax(1, keepdim=True)
            shrink = torch.log(torch.tensor(0.6))
            keep_rows = {n: getattr(fld, n)[keep] for n in fld.row_names}
            where_grown = torch.nonzero(torch.isin(keep, grow)).squeeze(1)
            order = torch.searchsorted(grow, keep[where_grown])
            keep_rows["means"][where_grown] += 0.5 * axis[order]
            keep_rows["log_scales"][where_grown] += shrink
            new = {n: torch.cat([keep_rows[n], getattr(fld, n)[grow]]) for n in fld.row_names}
            new["means"][keep.shape[0]:] -= 0.5 * axis
            new["log_scales"][keep.shape[0]:] += shrink
        remap_rows(optimizer, fld, new, torch.cat([keep, grow]))

    def state_tensors(self) -> dict[str, Tensor]:
        """The statistics as named tensors (for checkpoints)."""
        return {f"densify.{nid}.{k}": v for nid, st in self.stats.items() for k, v in st.items()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        ids = {n.id for n in self.scene.nodes}
        for key, val in tensors.items():
            if key.startswith("densify."):
                nid, name = key[len("densify."):].rsplit(".", 1)
                if nid in ids:
                    self.stats.setdefault(nid, {})[name] = val


def _unique_rows(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Unique rows of an integer (n, 3) tensor and the index of the first occurrence of each."""
    uniq, inv = torch.unique(keys, dim=0, return_inverse=True)
    first = torch.full((uniq.shape[0],), keys.shape[0], dtype=torch.long)
    first.scatter_reduce_(0, inv, torch.arange(keys.shape[0]), reduce="amin")
    return uniq, first


def _rows_in(a: Tensor, b: Tensor) -> Tensor:
    """(len(a),) bool: which integer rows of a (n, 3) occur in b (m, 3)."""
    if b.shape[0] == 0 or a.shape[0] == 0:
        return torch.zeros(a.shape[0], dtype=torch.bool)
    lo = torch.minimum(a.min(0).values, b.min(0).values)
    span = torch.maximum(a.max(0).values, b.max(0).values) - lo + 1
    def code(x):
        x = x - lo
        return (x[:, 0] * span[1] + x[:, 1]) * span[2] + x[:, 2]
    return torch.isin(code(a), code(b))
