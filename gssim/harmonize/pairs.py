"""Training pairs for the harmonizer, made from our own data.

Two kinds, both (render, depth, alpha, mask) -> truth at a log's camera poses:

- **repair**: the scene's render where the log has a true image: off-path views (a log of
  the same synthetic world driven to the side) and the training frames of the scene's own
  log (so that what is already right stays right).  Mask: the whole image.
- **composite** (frames of the scene's own log only, where its actors are seen as
  trained): a true image with the scene's render of its actors pasted over it (with a
  random colour gain and offset, as an inserted asset lit differently would look), and
  the true image as the target.  Mask: the actors' pixels, grown by ``MASK_GROW`` pixels.
  Depth and alpha are the render's.

Frames held out of the scene's own log are never used, so held-out figures stay honest.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gssim.data.reader import Log
from gssim.recon.initialize import held_out
from gssim.recon.scene import Scene
from gssim.recon.train import readout_poses

Tensor = torch.Tensor
log = logging.getLogger(__name__)

MASK_GROW = 4            # px added around pasted actors
ACTOR_DIFF = 0.02        # a pixel shows an actor where hiding the actors changes it by more than this


@dataclass
class Pairs:
    """N pairs of one image size: render, truth (N, H, W, 3) in [0, 1]; depth, alpha, mask (N, H, W)."""

    render: Tensor
    depth: Tensor
    alpha: Tensor
    mask: Tensor
    truth: Tensor

    def __len__(self) -> int:
        return len(self.render)

    def tensors(self) -> dict[str, Tensor]:
        return {k: getattr(self, k).contiguous() for k in ("render", "depth", "alpha", "mask", "truth")}

    @classmethod
    def cat(cls, parts: list["Pairs"]) -> "Pairs":
        return cls(*(torch.cat([getattr(p, k) for p in parts]) for k in ("render", "depth", "alpha", "mask", "truth")))


def grow_mask(mask: Tensor, pixels: int) -> Tensor:
    """Binary dilation of (..., H, W) bool masks by a square of radius ``pixels``."""
    if pixels <= 0:
        return mask.bool()
    m = mask.float().reshape(-1, 1, *mask.shape[-2:])
    m = F.max_pool2d(m, 2 * pixels + 1, stride=1, padding=pixels)
    return m.reshape(mask.shape) > 0.5


def is_own_log(scene: Scene, log_: Log) -> bool:
    """Whether ``log_`` is the log the scene was trained on."""
    src = scene.meta.get("source_log")
    return src is not None and Path(src).resolve() == Path(log_.root).resolve()


def log_frames(scene: Scene, log_: Log, every: int = 1) -> list[int]:
    """Frames of ``log_`` usable for training: every ``every``-th, minus the scene's held-out ones."""
    n = int((scene.meta.get("training") or {}).get("holdout_every", 0)) if is_own_log(scene, log_) else 0
    return [i for i, f in enumerate(log_.frames) if i % every == 0 and not held_out(f.index, n)]


def _check_cameras(scene: Scene, log_: Log) -> list[str]:
    cams = [s for s in log_.camera_ids if s in scene.sensors]
    if not cams:
        raise ValueError(f"log {log_.root} has cameras {log_.camera_ids}, none of them in scene {scene.name!r} "
                         f"({sorted(scene.sensors)})")
    return cams


def make_pairs(scene: Scene, logs: list[Log], every: int = 1, composites: bool = True, seed: int = 0,
               progress: bool = True) -> Pairs:
    """Repair pairs from every log and composite pairs from every log's frames (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    jobs = [(lg, i, sid) for lg in logs for i in log_frames(scene, lg, every) for sid in _check_cameras(scene, lg)
            if sid in lg.frames[i].cameras]
    out: list[Pairs] = []
    cols = (TextColumn("training pairs"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn())
    with Progress(*cols, disable=not progress) as bar, torch.no_grad():
        task = bar.add_task("pairs", total=len(jobs))
        for lg, i, sid in jobs:
            T0, T1 = readout_poses(lg, i, sid)
            t = lg.frames[i].t
            sensor = lg.sensor(sid)
            frame, _, _ = scene.render_camera(sid, t, sensor=sensor, T0=T0, T1=T1)
            render = frame.color.clamp(0, 1)
            truth = torch.from_numpy(lg.image(i, sid, np.float32))
            ones = torch.ones_like(frame.alpha)
            out.append(Pairs(render[None], frame.depth[None], frame.alpha[None], ones[None], truth[None]))
            if composites and is_own_log(scene, lg):
                actors = {n.id: None for n in scene.nodes if n.kind != "background"}
                bare, _, _ = scene.render_camera(sid, t, sensor=sensor, T0=T0, T1=T1, actors=actors)
                shown = (render - bare.color.clamp(0, 1)).abs().amax(-1) > ACTOR_DIFF
                if shown.sum() >= 16:
                    gain = 1 + 0.3 * (torch.rand(3, generator=gen) - 0.5)
                    offset = 0.1 * (torch.rand(3, generator=gen) - 0.5)
                    pasted = torch.where(shown[..., None], (render * gain + offset).clamp(0, 1), truth)
                    mask = grow_mask(shown, MASK_GROW).float()
                    out.append(Pairs(pasted[None], frame.depth[None], frame.alpha[None], mask[None], truth[None]))
            bar.advance(task)
    if not out:
        raise ValueError("no training pairs: the logs have no usable camera frames")
    sizes = {tuple(p.render.shape[1:3]) for p in out}
    if len(sizes) > 1:
        raise ValueError(f"camera images of several sizes {sorted(sizes)}; give logs whose cameras share one size")
    pairs = Pairs.cat(out)
    log.info("%d training pairs (%d repair, %d composite) from %d logs", len(pairs), len(jobs),
             len(pairs) - len(jobs), len(logs))
    return pairs
