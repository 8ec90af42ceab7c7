"""Scene expansion: distil the harmonizer's repairs of off-path views back into the scene.

For each lateral offset (metres, ego-left positive) and each training frame of the
scene's own log, every camera is rendered from the ego pose moved sideways by the
offset; the harmonizer repairs the render, and the repaired image becomes a
pseudo-ground-truth view.  The scene is then fine-tuned (``gssim.recon.train.Trainer``,
densification off, learning rates scaled down) on its real training views and LiDAR
sweeps plus the pseudo views, whose camera loss is weighted by ``pseudo_weight`` (< 1:
the real frames win where they disagree).  No LiDAR pseudo-data is made: the real sweeps
keep the geometry.  Held-out frames of the log stay out of everything.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gssim.data.reader import Log, load_log
from gssim.harmonize.model import Harmonizer
from gssim.recon.config import TrainConfig
from gssim.recon.report import side_by_side, to_uint8
from gssim.recon.scene import Scene
from gssim.recon.scene_files import load_scene, save_scene
from gssim.recon.train import CameraView, Trainer, readout_poses
from gssim.render.pipeline import build_rays

Tensor = torch.Tensor
log = logging.getLogger(__name__)

MAX_OFFSET_M = 20.0


@dataclass
class ExpandConfig:
    """Settings of ``gssim expand``."""

    steps: int = 300
    pseudo_weight: float = 0.5     # camera-loss weight of a repaired view (a real view weighs 1)
    every: int = 2                 # repair views of every N-th training frame
    lr_scale: float = 0.5          # the preset's learning rates are scaled by this for fine-tuning
    preset: str = "fast"           # losses and learning rates of this training preset
    lidar_every: int = 3           # a real LiDAR sweep every N steps

    def check(self) -> None:
        if self.steps < 1 or self.every < 1 or self.lidar_every < 0:
            raise ValueError(f"expand: steps and every must be >= 1 and lidar_every >= 0, got {self}")
        if not 0 < self.pseudo_weight <= 1:
            raise ValueError(f"expand: pseudo_weight must be in (0, 1], got {self.pseudo_weight}")
        if not 0 < self.lr_scale <= 1:
            raise ValueError(f"expand: lr_scale must be in (0, 1], got {self.lr_scale}")


@dataclass
class PseudoView(CameraView):
    """A repaired off-path view: a camera view whose loss is weighted."""

    weight: float = 0.5
    render: Tensor | None = None   # the render before repair (for the report picture)


class ExpansionTrainer(Trainer):
    """The reconstruction trainer whose camera views may include weighted pseudo views."""

    def camera_loss(self, view: CameraView):
        loss, info = super().camera_loss(view)
        if isinstance(view, PseudoView):
            loss = loss * view.weight
        return loss, info


def shifted_pose(T_world_sensor: np.ndarray, T_world_ego: np.ndarray, offset: float) -> np.ndarray:
    """A sensor pose moved with its ego ``offset`` metres along the ego's y axis (left)."""
    shift = np.eye(4)
    shift[1, 3] = offset
    return T_world_ego @ shift @ np.linalg.inv(T_world_ego) @ T_world_sensor


def pseudo_views(scene: Scene, log_: Log, model: Harmonizer, offsets: list[float], frames: list[int],
                 weight: float, progress: bool = True) -> list[PseudoView]:
    """Harmonized renders of every camera of ``frames`` at every lateral offset."""
    jobs = [(o, i, sid) for o in offsets for i in frames for sid in log_.frames[i].cameras if sid in scene.sensors]
    views = []
    cols = (TextColumn("repairing off-path views"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn())
    with Progress(*cols, disable=not progress) as bar, torch.no_grad():
        task = bar.add_task("pseudo", total=len(jobs))
        for o, i, sid in jobs:
            T_we = log_.frames[i].T_world_ego
            T0, T1 = readout_poses(log_, i, sid)
            T0 = shifted_pose(T0, T_we, o)
            T1 = None if T1 is None else shifted_pose(T1, T_we, o)
            cam = log_.sensor(sid)
            frame, _, _ = scene.render_camera(sid, log_.frames[i].t, sensor=cam, T0=T0, T1=T1)
            render = frame.color.clamp(0, 1)
            fixed = model(render, frame.depth, frame.alpha)
            dirs = build_rays(cam, T0, T1).rays_d.reshape(cam.rows, cam.cols, 3)
            views.append(PseudoView(i, sid, log_.frames[i].t, T0, T1, fixed, dirs, weight=weight, render=render))
            bar.advance(task)
    return views


def expand_scene(scene_path, model: Harmonizer, offsets: list[float], out, log_path=None,
                 cfg: ExpandConfig | None = None, progress: bool = True) -> Scene:
    """``gssim expand``: load the scene, make pseudo views, fine-tune, save to ``out``
    (with ``report/expansion_views.png``: render | repaired of a few pseudo views; the
    settings recorded in scene.json under ``training.expansion``)."""
    cfg = cfg or ExpandConfig()
    cfg.check()
    bad = [o for o in offsets if not math.isfinite(o) or o == 0 or abs(o) > MAX_OFFSET_M]
    if bad or not offsets:
        raise ValueError(f"expand: offsets must be non-zero metres within ±{MAX_OFFSET_M:g}, got {offsets}")
    src, dst = Path(scene_path).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        raise ValueError(f"expand: --out {out} must not be the source scene {scene_path} or inside it")
    scene = load_scene(scene_path)
    log_path = log_path or scene.meta.get("source_log")
    if log_path is None or not Path(log_path).is_dir():
        raise ValueError(f"expand: the scene's log {log_path!r} is not a folder; give it with --log")
    log_ = load_log(log_path)
    training = scene.meta.get("training") or {}
    base = TrainConfig.preset(cfg.preset)
    tcfg = TrainConfig.from_dict({
        **base.to_dict(), "steps": cfg.steps, "holdout_every": int(training.get("holdout_every", base.holdout_every)),
        "densify_from": cfg.steps + 1, "normal_from_step": 0, "lidar_every": cfg.lidar_every,
        "checkpoint_minutes": 1e9, "lr": {k: v * cfg.lr_scale for k, v in base.lr.items()}})
    trainer = ExpansionTrainer(log_, tcfg, scene=scene)
    frames = sorted({v.frame for v in trainer.cams})[::cfg.every]
    pseudo = pseudo_views(scene, log_, model, offsets, frames, cfg.pseudo_weight, progress)
    trainer.cams = trainer.cams + pseudo
    log.info("expanding %s: %d real views, %d repaired views at offsets %s, %d steps", scene.name,
             len(trainer.cams) - len(pseudo), len(pseudo), offsets, cfg.steps)
    cols = (TextColumn("fine-tuning"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("psnr {task.fields[psnr]:.2f}"), TimeRemainingColumn())
    with Progress(*cols, disable=not progress) as bar:
        task = bar.add_task("expand", total=cfg.steps, psnr=0.0)
        while trainer.step < cfg.steps:
            stats = trainer.train_step()
            bar.update(task, completed=trainer.step, psnr=stats["psnr"])
    scene.meta["training"] = {**training, "expansion": {
        "offsets": list(offsets), "steps": cfg.steps, "pseudo_weight": cfg.pseudo_weight, "pseudo_views": len(pseudo),
        "lr_scale": cfg.lr_scale, "preset": cfg.preset}}
    save_scene(scene, dst)
    pick = pseudo[:: max(1, len(pseudo) // 4)][:4]
    (dst / "report").mkdir(exist_ok=True)
    Image.fromarray(side_by_side([side_by_side([to_uint8(v.render), to_uint8(v.image)]) for v in pick],
                                 vertical=True)).save(dst / "report" / "expansion_views.png")
    return scene
