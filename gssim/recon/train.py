"""Training a scene from a log: initialisation from LiDAR, camera and LiDAR losses,
densification, Adam with decaying rates, checkpoints and resume.

A step renders one training camera image (L1 + D-SSIM, 2DGS depth distortion and
depth-normal consistency) and, every ``lidar_every`` steps, one LiDAR sweep (expected
and median range, intensity, ray-drop BCE, sky alpha).  Checkpoints are folders
``<out>.training/ckpt_<step>`` written whole and then named in ``latest``, so a run
killed at any moment resumes from its last complete checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gssim.data.reader import Log, load_log
from gssim.recon.appearance import Appearance, Sky
from gssim.recon.config import TrainConfig
from gssim.recon.densify import Densifier
from gssim.recon.fields import ExplicitField, NeuralField
from gssim.recon.initialize import accumulate_points, held_out, node_points, observe_colors
from gssim.recon.metrics import lidar_range_errors, psnr, ssim
from gssim.recon.scene import Node, Scene, SensorSpec, readout_duration
from gssim.recon.scene_files import load_scene, save_scene
from gssim.render import render as render_surfels
from gssim.render.lidar_returns import LidarReturnDecoder
from gssim.render.pipeline import build_rays

Tensor = torch.Tensor
log = logging.getLogger(__name__)

DECAYING = ("offsets", "means", "mlp")


# ------------------------------------------------------------------ data
@dataclass
class CameraView:
    frame: int
    sid: str
    t: float
    T0: np.ndarray
    T1: np.ndarray | None
    image: Tensor          # (H, W, 3) float32
    dirs_world: Tensor     # (H, W, 3) world ray directions (for the sky)


@dataclass
class LidarView:
    frame: int
    sid: str
    t: float
    T0: np.ndarray
    T1: np.ndarray | None
    range: Tensor          # (B, A) metres, 0 at drops
    intensity: Tensor      # (B, A)
    valid: Tensor          # (B, A) bool: the ray returned
    upward: Tensor         # (B, A) bool: ray above the horizon
    dirs_world: Tensor     # (B, A, 3)


def readout_poses(log_: Log, i: int, sid: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Start and end sensor poses of frame i's readout (end None for an instant sensor)."""
    sensor = log_.sensor(sid)
    T0 = log_.frame_sensor_pose(i, sid)
    if sensor.is_instant:
        return T0, None
    return T0, log_.sensor_pose_at(sid, log_.frames[i].t + readout_duration(sensor), extrapolate=True)


def camera_view(log_: Log, i: int, sid: str) -> CameraView:
    T0, T1 = readout_poses(log_, i, sid)
    cam = log_.sensor(sid)
    dirs = build_rays(cam, T0, T1).rays_d.reshape(cam.rows, cam.cols, 3)
    return CameraView(i, sid, log_.frames[i].t, T0, T1, torch.from_numpy(log_.image(i, sid, np.float32)), dirs)


def lidar_view(log_: Log, i: int, sid: str) -> LidarView:
    T0, T1 = readout_poses(log_, i, sid)
    lidar = log_.sensor(sid)
    ri = log_.range_image(i, sid)
    dirs = build_rays(lidar, T0, T1).rays_d.reshape(lidar.rows, lidar.cols, 3)
    up = lidar.ray_directions()[..., 2] > 0.0
    return LidarView(i, sid, log_.frames[i].t, T0, T1, torch.from_numpy(ri.range), torch.from_numpy(ri.intensity),
                     torch.from_numpy(ri.valid), up, dirs)


# ------------------------------------------------------------------ scene from a log
def build_scene(log_: Log, cfg: TrainConfig, frames: list[int], min_actor_points: int = 20) -> Scene:
    """A first scene: background and actor fields from the LiDAR returns of ``frames``."""
    if not log_.lidar_ids:
        raise ValueError(f"log {log_.name!r} has no LiDAR: training initialises the scene from LiDAR returns")
    bg_xyz, bg_int, actor_pts = accumulate_points(log_, frames)
    if len(bg_xyz) < 10:
        raise ValueError(f"log {log_.name!r}: only {len(bg_xyz)} background LiDAR returns; nothing to start from")
    field_cls = NeuralField if cfg.field == "neural" else ExplicitField
    fcfg = dict(n_offsets=cfg.n_offsets, feature_dim=cfg.feature_dim, hidden=cfg.hidden,
                appearance_dim=cfg.appearance_dim, sh_degree=cfg.sh_degree, lidar_channels=cfg.lidar_channels)
    if cfg.field == "explicit":
        fcfg = dict(sh_degree=cfg.sh_degree, lidar_channels=cfg.lidar_channels)

    path = np.stack([log_.frames[i].T_world_ego[:3, 3] for i in frames])

    def make_field(xyz, intensity, voxel, track=None):
        ps = node_points(xyz, intensity, voxel, path if track is None else None)
        cols = torch.from_numpy(observe_colors(log_, frames, ps.xyz, track)).float()
        spacing = torch.from_numpy(ps.spacing).float()
        if cfg.field == "explicit":   # explicit surfels must cover the surface on their own
            return field_cls.from_points(torch.from_numpy(ps.xyz).float(), torch.from_numpy(ps.normals).float(),
                                         spacing * 0.7, cols.nan_to_num(0.5), **fcfg)
        fld = field_cls.from_points(torch.from_numpy(ps.xyz).float(), torch.from_numpy(ps.normals).float(),
                                    spacing, **fcfg)
        fld.warm_start(cols)
        return fld

    nodes = [Node("background", "background", make_field(bg_xyz, bg_int, cfg.voxel))]
    for aid, (xyz, inten) in sorted(actor_pts.items()):
        actor = log_.actors[aid]
        if len(xyz) < min_actor_points:
            log.info("actor %s: %d LiDAR returns, too few for a node; left out", aid, len(xyz))
            continue
        nodes.append(Node(aid, "actor", make_field(xyz, inten, cfg.actor_voxel, actor.track), actor.cls,
                          np.asarray(actor.size, np.float64), actor.track))
    sensors = {sid: SensorSpec(sid, e.type, e.sensor, e.T_ego_sensor,
                               {k: v for k, v in e.entry.items() if k != "T_ego_sensor"})
               for sid, e in log_.sensors.items()}
    sky_color = _sky_guess(log_, frames)
    decoders = {sid: LidarReturnDecoder(cfg.lidar_channels, 32, float(log_.sensor(sid).max_range))
                for sid in log_.lidar_ids}
    meta = {"name": log_.name, "source_log": str(log_.root), "model": {"field": cfg.field, **fcfg},
            "training": {"holdout_every": cfg.holdout_every}}
    scene = Scene(sensors, log_.ego_track, nodes, Appearance(log_.camera_ids, cfg.appearance_dim),
                  Sky(init_color=sky_color), decoders, meta)
    log.info("initial scene: %s", ", ".join(f"{n.id} {n.field.n_rows}" for n in nodes[:4]) +
             (f" and {len(nodes) - 4} more actors" if len(nodes) > 4 else ""))
    return scene


def _sky_guess(log_: Log, frames: list[int]) -> tuple[float, float, float]:
    """Mean colour of the top rows of the first camera image (a start for the sky)."""
    for i in frames:
        for sid in log_.frames[i].cameras:
            img = log_.image(i, sid, np.float32)
            return tuple(float(x) for x in img[: max(1, img.shape[0] // 20)].reshape(-1, 3).mean(0))
    return (0.6, 0.75, 0.9)


# ------------------------------------------------------------------ losses
def depth_normals(depth: Tensor, dirs_cam: Tensor, R: Tensor) -> tuple[Tensor, Tensor]:
    """World normals (H-1, W-1, 3) of the surface a z-depth map (H, W) describes, from
    finite differences of back-projected points, and the pixels where all are defined."""
    pts = dirs_cam * (depth / dirs_cam[..., 2].clamp(min=1e-6))[..., None]
    dx = pts[:-1, 1:] - pts[:-1, :-1]
    dy = pts[1:, :-1] - pts[:-1, :-1]
    n = torch.linalg.cross(dx, dy, dim=-1)
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    n = torch.where((n * pts[:-1, :-1]).sum(-1, keepdim=True) > 0, -n, n)  # face the camera
    ok = (depth[:-1, :-1] > 0) & (depth[:-1, 1:] > 0) & (depth[1:, :-1] > 0)
    return n @ R.T, ok


class Trainer:
    """One training run (see the module docstring)."""

    def __init__(self, log_: Log, cfg: TrainConfig, scene: Scene | None = None) -> None:
        self.log = log_
        self.cfg = cfg
        self.train_frames = [i for i, f in enumerate(log_.frames) if not held_out(f.index, cfg.holdout_every)]
        self.test_frames = [i for i, f in enumerate(log_.frames) if held_out(f.index, cfg.holdout_every)]
        if not self.train_frames:
            raise ValueError(f"log {log_.name!r}: no frames left to train on with holdout_every={cfg.holdout_every}")
        torch.manual_seed(cfg.seed)
        self.scene = scene if scene is not None else build_scene(log_, cfg, self.train_frames)
        self.cams = [camera_view(log_, i, sid) for i in self.train_frames for sid in log_.frames[i].cameras]
        self.lidars = [lidar_view(log_, i, sid) for i in self.train_frames for sid in log_.frames[i].lidars]
        self.val_cams = [camera_view(log_, i, sid) for i in self.test_frames for sid in log_.frames[i].cameras][:6]
        val_lidars = [(i, sid) for i in self.test_frames for sid in log_.frames[i].lidars]
        self.val_lidar = lidar_view(log_, *val_lidars[0]) if val_lidars else None
        if not self.cams:
            raise ValueError(f"log {log_.name!r} has no camera images in its training frames")
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.curves: list[dict] = []
        self.densifier = Densifier(self.scene, cfg)
        self.optimizer = self._build_optimizer()
        self.train_seconds = 0.0

    # --- optimisation -----------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Adam:
        lr = self.cfg.lr
        groups = []
        for ni, node in enumerate(self.scene.nodes):
            fld = node.field
            for name in fld.row_names:
                key = "sh" if name == "sh" else name
                groups.append({"params": [getattr(fld, name)], "name": f"node{ni}.{name}", "kind": key,
                               "lr": lr[key] * (0.1 if name == "means" and node.track is not None else 1.0)})
            mlp = [p for n, p in fld.named_parameters() if n.startswith("mlp_")]
            if mlp:
                groups.append({"params": mlp, "name": f"node{ni}.mlp", "kind": "mlp", "lr": lr["mlp"]})
        sc = self.scene
        groups += [{"params": [sc.appearance.embeddings], "name": "appearance", "kind": "appearance",
                    "lr": lr["appearance"]},
                   {"params": [sc.appearance.exposure], "name": "exposure", "kind": "exposure", "lr": lr["exposure"]},
                   {"params": list(sc.sky.parameters()), "name": "sky", "kind": "sky", "lr": lr["sky"]},
                   {"params": list(sc.lidar_decoders.parameters()), "name": "lidar_decoder",
                    "kind": "lidar_decoder", "lr": lr["lidar_decoder"]}]
        for g in groups:
            g["base_lr"] = g["lr"]
        return torch.optim.Adam(groups, eps=1e-15, foreach=True)

    def _schedule(self) -> None:
        frac = self.step / max(1, self.cfg.steps)
        for g in self.optimizer.param_groups:
            decay = self.cfg.lr_final_ratio ** frac if g["kind"] in DECAYING else 1.0
            g["lr"] = g["base_lr"] * decay

    # --- one step -----------------------------------------------------------------------
    def camera_loss(self, view: CameraView) -> tuple[Tensor, dict]:
        cfg, sc = self.cfg, self.scene
        cam = self.log.sensor(view.sid)
        comp = sc.compose(view.t, view.sid, view.T0, view.T1, sensor=cam, channels="rgb+depth")
        for _, dec, _, _ in comp.parts:
            dec.means.retain_grad()
        out = render_surfels(comp.surfels, cam, view.T0, view.T1, backend="auto")
        rgb = out.color[..., :3] + (1 - out.alpha)[..., None] * sc.sky(view.dirs_world)
        rgb = sc.appearance.correct(rgb, view.sid)
        l1 = (rgb - view.image).abs().mean()
        d_ssim = 1 - ssim(rgb, view.image)
        loss = (1 - cfg.ssim_weight) * l1 + cfg.ssim_weight * d_ssim
        distortion = (out.alpha * out.color[..., 4] - out.color[..., 3] ** 2).clamp(min=0).mean()
        loss = loss + cfg.distortion_weight * distortion
        stats = {"l1": float(l1.detach()), "psnr": float(psnr(rgb.detach().clamp(0, 1), view.image))}

        if self.step >= cfg.normal_from_step and cfg.normal_weight > 0:
            R = torch.as_tensor(view.T0[:3, :3], dtype=torch.float32)
            n_depth, ok = depth_normals(out.depth, cam.ray_directions(), R)
            ok = ok & (out.alpha[:-1, :-1] > 0.5)
            if ok.any():
                cos = (n_depth * out.normal[:-1, :-1]).sum(-1)
                loss = loss + cfg.normal_weight * (1 - cos)[ok].mean()
        loss = loss + cfg.scale_weight * self._scale_penalty(comp)
        return loss, {"comp": comp, "origin": view.T0[:3, 3], "focal": float(getattr(cam, "fx", 1.0)),
                      "width": cam.cols, **stats}

    def _scale_penalty(self, comp) -> Tensor:
        """Mean surfel scale relative to its node's spacing (keeps surfels from ballooning)."""
        terms = [dec.scales.mean() for _, dec, _, _ in comp.parts if len(dec)]
        return torch.stack(terms).mean() if terms else torch.zeros(())

    def lidar_loss(self, view: LidarView) -> Tensor:
        cfg, sc = self.cfg, self.scene
        lidar = self.log.sensor(view.sid)
        # A random slice of azimuth: surfels outside it (with a margin for the sweep's motion)
        # are culled before any per-surfel work, and only the slice's rays are scored.
        centre = float(torch.rand((), generator=self.gen)) * 2 * math.pi - math.pi
        half = math.radians(cfg.lidar_sector_deg) / 2
        comp = sc.compose(view.t, view.sid, view.T0, view.T1, sensor=lidar, channels="lidar",
                          azimuth_sector=(centre, half + math.radians(10.0)))
        out = render_surfels(comp.surfels, lidar, view.T0, view.T1, backend="auto")
        cos_inc = (-(out.normal * view.dirs_world).sum(-1)).clamp(0, 1)
        intensity, drop = sc.lidar_decoders[view.sid](out.features, out.alpha, cos_inc, out.range)
        d = lidar.ray_directions()
        scored = (torch.remainder(torch.atan2(d[..., 1], d[..., 0]) - centre + math.pi, 2 * math.pi) - math.pi
                  ).abs() <= half
        v = view.valid & scored
        loss = cfg.raydrop_weight * F.binary_cross_entropy(drop[scored].clamp(1e-5, 1 - 1e-5),
                                                           (~view.valid[scored]).float())
        if v.any():
            loss = loss + cfg.range_weight * (out.range - view.range)[v].abs().mean()
            loss = loss + cfg.median_range_weight * (out.median_range - view.range)[v].abs().mean()
            loss = loss + cfg.intensity_weight * (intensity - view.intensity)[v].abs().mean()
        sky = view.upward & ~view.valid & scored
        if sky.any():
            loss = loss + cfg.sky_weight * out.alpha[sky].mean()
        return loss

    def train_step(self) -> dict:
        self._schedule()
        self.optimizer.zero_grad(set_to_none=True)
        k = int(torch.randint(len(self.cams), (1,), generator=self.gen))
        loss, info = self.camera_loss(self.cams[k])
        if self.cfg.lidar_every and self.lidars and self.step % self.cfg.lidar_every == 0:
            j = int(torch.randint(len(self.lidars), (1,), generator=self.gen))
            loss = loss + self.lidar_loss(self.lidars[j])
        loss.backward()
        self.densifier.observe(info["comp"], info["origin"], info["focal"], info["width"])
        self.optimizer.step()
        self.step += 1
        if self.densifier.due(self.step):
            self.densifier.run(self.optimizer, self.step)
        return {"loss": float(loss.detach()), "psnr": info["psnr"]}

    # --- validation ---------------------------------------------------------------------
    def validate(self) -> float | None:
        """Mean PSNR over a few held-out camera images (None without held-out frames)."""
        if not self.val_cams:
            return None
        vals = []
        with torch.no_grad():
            for view in self.val_cams:
                frame, _, _ = self.scene.render_camera(view.sid, view.t, T0=view.T0, T1=view.T1)
                vals.append(float(psnr(frame.color.clamp(0, 1), view.image)))
        return float(np.mean(vals))

    def validate_lidar(self) -> float | None:
        """Median absolute range error (m) of one held-out LiDAR sweep (None without one)."""
        if not self.val_lidar:
            return None
        v = self.val_lidar
        with torch.no_grad():
            frame, _, _ = self.scene.render_lidar(v.sid, v.t, T0=v.T0, T1=v.T1)
        return lidar_range_errors(frame.range, v.range, v.valid) if v.valid.any() else None


# ------------------------------------------------------------------ checkpoints
def _write_checkpoint(trainer: Trainer, work: Path) -> Path:
    """Write ``work/ckpt_<step>`` whole (temporary name, then renamed) and point ``latest`` at it."""
    work.mkdir(parents=True, exist_ok=True)
    name = f"ckpt_{trainer.step:07d}"
    tmp = work / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_scene(trainer.scene, tmp / "scene")
    opt_tensors = {}
    for gi, g in enumerate(trainer.optimizer.param_groups):
        for pi, p in enumerate(g["params"]):
            for key, val in trainer.optimizer.state.get(p, {}).items():
                opt_tensors[f"{g['name']}.{pi}.{key}"] = val.detach().contiguous()
    opt_tensors["rng.sampler"] = trainer.gen.get_state()
    opt_tensors["rng.torch"] = torch.get_rng_state()
    opt_tensors.update(trainer.densifier.state_tensors())
    safetensors.torch.save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    state = {"step": trainer.step, "config": trainer.cfg.to_dict(), "curves": trainer.curves,
             "train_seconds": trainer.train_seconds}
    (tmp / "state.json").write_text(json.dumps(state))
    final = work / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    latest_tmp = work / ".latest.tmp"
    latest_tmp.write_text(name)
    os.replace(latest_tmp, work / "latest")
    for old in work.glob("ckpt_*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _read_checkpoint(log_: Log, work: Path) -> Trainer | None:
    """The trainer of the last complete checkpoint in ``work`` (None if there is none)."""
    latest = work / "latest"
    if not latest.is_file():
        return None
    ck = work / latest.read_text().strip()
    state = json.loads((ck / "state.json").read_text())
    cfg = TrainConfig.from_dict(state["config"])
    scene = load_scene(ck / "scene")
    trainer = Trainer(log_, cfg, scene=scene)
    trainer.step = int(state["step"])
    trainer.curves = state["curves"]
    trainer.train_seconds = float(state.get("train_seconds", 0.0))
    tensors = safetensors.torch.load_file(str(ck / "optimizer.safetensors"))
    for g in trainer.optimizer.param_groups:
        for pi, p in enumerate(g["params"]):
            prefix = f"{g['name']}.{pi}."
            st = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if st:
                trainer.optimizer.state[p] = st
    trainer.gen.set_state(tensors["rng.sampler"])
    torch.set_rng_state(tensors["rng.torch"])
    trainer.densifier.load_state_tensors(tensors)
    log.info("resumed from %s at step %d", ck, trainer.step)
    return trainer


# ------------------------------------------------------------------ the run
def train(log_path, out, cfg: TrainConfig, resume: bool = False, stop_after: int | None = None,
          progress: bool = True) -> Scene:
    """Train a scene from the log at ``log_path`` and save it to ``out``.

    resume: continue from the last checkpoint in ``<out>.training`` (otherwise a previous
    one there is an error, to protect it).  stop_after: end the run after this many steps
    (checkpointing first), as a kill would.  Writes the scene, ``<out>.training/``
    (checkpoints, ``curves.json``) and, in the scene folder, ``report/curves.png`` and
    ``report/renders.png``.
    """
    log_ = load_log(log_path)
    out = Path(out)
    work = Path(str(out) + ".training")
    trainer = _read_checkpoint(log_, work) if resume else None
    if trainer is None:
        if (work / "latest").is_file():
            raise FileExistsError(f"{work} holds a checkpoint of an earlier run; pass --resume to continue it, "
                                  f"or delete the folder")
        trainer = Trainer(log_, cfg)
    cfg = trainer.cfg
    last_ckpt = time.monotonic()
    eval_every = max(50, cfg.steps // 12)
    cols = (TextColumn("training {task.fields[name]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f} psnr {task.fields[psnr]:.2f} val {task.fields[val]}"),
            TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not progress) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=trainer.step, name=log_.name, loss=0.0, psnr=0.0,
                            val="-")
        ema = None
        while trainer.step < cfg.steps:
            t0 = time.perf_counter()
            stats = trainer.train_step()
            trainer.train_seconds += time.perf_counter() - t0
            ema = stats if ema is None else {k: 0.9 * ema[k] + 0.1 * stats[k] for k in stats}
            if trainer.step % eval_every == 0 or trainer.step in (1, cfg.steps):
                val = trainer.validate()
                trainer.curves.append({"step": trainer.step, "seconds": trainer.train_seconds, **ema,
                                       "val_psnr": val, "val_range_error_m": trainer.validate_lidar(),
                                       "rows": sum(n.field.n_rows for n in trainer.scene.nodes)})
                bar.update(task, val=f"{val:.2f}" if val is not None else "-")
                c = trainer.curves[-1]
                log.info("step %d (%.0f s): loss %.4f, train PSNR %.2f, held-out PSNR %s, range error %s, %d rows",
                         trainer.step, trainer.train_seconds, ema["loss"], ema["psnr"],
                         "-" if val is None else f"{val:.2f}",
                         "-" if c["val_range_error_m"] is None else f"{c['val_range_error_m'] * 100:.1f} cm", c["rows"])
            bar.update(task, completed=trainer.step, loss=ema["loss"], psnr=ema["psnr"])
            stop = stop_after is not None and trainer.step >= stop_after
            if stop or time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
                _write_checkpoint(trainer, work)
                last_ckpt = time.monotonic()
            if stop and trainer.step < cfg.steps:
                log.info("stopping at step %d as asked; resume with --resume", trainer.step)
                return trainer.scene
    trainer.scene.meta["training"] = {"holdout_every": cfg.holdout_every, "steps": cfg.steps,
                                      "seconds": round(trainer.train_seconds, 1), "field": cfg.field}
    save_scene(trainer.scene, out)
    _write_checkpoint(trainer, work)
    (work / "curves.json").write_text(json.dumps(trainer.curves, indent=1))
    from gssim.recon.report import write_training_report
    write_training_report(trainer, out / "report")
    return trainer.scene
