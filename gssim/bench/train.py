"""`gssim bench train`: where a training step's time goes, on a real log.

Times the phases of a camera step (compose and decode, render forward, the loss, the
backward pass, the optimizer) and of a LiDAR step, and measures in the same run what
the step's two shortcuts buy: the LiDAR slice (a random 120-degree slice of the sweep,
surfels outside it culled) against scoring the whole sweep, and the banded-matrix SSIM
against the same SSIM by ``conv2d``.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from gssim.bench import median_time
from gssim.data import load_log
from gssim.recon.config import TrainConfig
from gssim.recon.metrics import gaussian_window, ssim
from gssim.recon.train import Trainer


def _ssim_conv(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The reference: the same SSIM with two 1D convolutions."""
    H, W, C = pred.shape
    x = pred.permute(2, 0, 1).reshape(C, 1, H, W)
    y = target.permute(2, 0, 1).reshape(C, 1, H, W)
    g = gaussian_window(11, 1.5)
    maps = torch.cat([x, y, x * x, y * y, x * y])
    maps = F.conv2d(F.conv2d(maps, g.reshape(1, 1, 1, 11)), g.reshape(1, 1, 11, 1))
    mx, my, exx, eyy, exy = maps.split(C)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    vx, vy, cxy = exx - mx ** 2, eyy - my ** 2, exy - mx * my
    return (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean()


def run(log_path, preset: str, warm_steps: int, repeats: int) -> list[str]:
    lines = []
    cfg = TrainConfig.preset(preset, densify_from=10 ** 9)
    t0 = time.perf_counter()
    tr = Trainer(load_log(log_path), cfg)
    lines.append(f"gssim bench train: log {log_path}, preset {preset} ({cfg.field} field), "
                 f"{sum(n.field.n_rows for n in tr.scene.nodes)} rows in {len(tr.scene.nodes)} nodes, "
                 f"set-up {time.perf_counter() - t0:.1f} s, torch threads {torch.get_num_threads()}")
    for _ in range(warm_steps):
        tr.train_step()
    cam = tr.cams[len(tr.cams) // 2]
    sensor = tr.log.sensor(cam.sid)
    comp_t = median_time(lambda: tr.scene.compose(cam.t, cam.sid, cam.T0, cam.T1, sensor=sensor,
                                                  channels="rgb+depth"), repeats)
    n_surfels = len(tr.scene.compose(cam.t, cam.sid, cam.T0, cam.T1, sensor=sensor).surfels)
    fwd_t = median_time(lambda: tr.camera_loss(cam), repeats)
    step_t = median_time(lambda: tr.camera_loss(cam)[0].backward(), repeats)
    lines.append(f"camera step ({cam.sid}, {sensor.cols}x{sensor.rows}, {n_surfels} surfels in view): "
                 f"{step_t * 1e3:.0f} ms = compose+decode {comp_t * 1e3:.0f} ms, render+loss "
                 f"{(fwd_t - comp_t) * 1e3:.0f} ms, backward {(step_t - fwd_t) * 1e3:.0f} ms "
                 f"-> {sensor.cols * sensor.rows / step_t / 1e6:.2f} MP/s trained")
    opt_t = median_time(lambda: tr.optimizer.step(), repeats)
    lines.append(f"optimizer step (Adam, foreach): {opt_t * 1e3:.0f} ms")
    if tr.lidars:
        lv = tr.lidars[len(tr.lidars) // 2]
        lidar = tr.log.sensor(lv.sid)
        slice_t = median_time(lambda: tr.lidar_loss(lv).backward(), repeats)
        whole = cfg.lidar_sector_deg
        cfg.lidar_sector_deg = 360.0
        whole_t = median_time(lambda: tr.lidar_loss(lv).backward(), repeats)
        cfg.lidar_sector_deg = whole
        rays = lidar.rows * lidar.cols
        lines.append(f"LiDAR step ({lv.sid}, {lidar.rows}x{lidar.cols}): {whole:.0f}-degree slice "
                     f"{slice_t * 1e3:.0f} ms ({rays * whole / 360 / slice_t / 1e6:.3f} Mrays/s scored) | whole "
                     f"sweep {whole_t * 1e3:.0f} ms ({rays / whole_t / 1e6:.3f} Mrays/s) -> slice/whole time "
                     f"{slice_t / whole_t:.2f}, rays per second ratio {(whole / 360 * whole_t / slice_t):.2f}")
    img = cam.image.clone().requires_grad_(True)
    band_t = median_time(lambda: ssim(img, cam.image).backward(), repeats)
    conv_t = median_time(lambda: _ssim_conv(img, cam.image).backward(), repeats)
    with torch.no_grad():
        diff = abs(float(ssim(img, cam.image * 0.9)) - float(_ssim_conv(img, cam.image * 0.9)))
    lines.append(f"SSIM forward+backward at {sensor.cols}x{sensor.rows}: banded matrices {band_t * 1e3:.1f} ms, "
                 f"conv2d {conv_t * 1e3:.1f} ms -> {conv_t / band_t:.1f}x (values agree to {diff:.1e})")
    return lines


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("train", help="training step: time per phase, LiDAR slice and SSIM speed-ups")
    p.add_argument("log", help="a log folder (e.g. from `gssim synth --preset small`)")
    p.add_argument("--preset", default="fast")
    p.add_argument("--warm-steps", type=int, default=20, help="training steps before measuring")
    p.add_argument("--repeats", type=int, default=5)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    for line in run(args.log, args.preset, args.warm_steps, args.repeats):
        print(line)
    return 0
