"""`gssim demo`: the whole pipeline on a small synthetic drive.

1. ``gssim synth --preset small`` writes the recorded drive, and the same world driven
   along a new path (a lane change 3 m to the left) whose ground truth scores the scene
   off the recorded path;
2. training with the ``demo`` preset (a shorter schedule than ``fast``);
3. evaluation on the held-out frames and on the new path (metrics JSON + truth / render
   / error PNGs);
4. renders of the new path through every camera and the LiDAR (PNG frames, a contact
   sheet, a range image and a bird's-eye view), and the training curves.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gssim.data import load_log
from gssim.data.errors import LogFormatError
from gssim.recon.config import TrainConfig
from gssim.recon.evaluate import evaluate
from gssim.recon.report import side_by_side, to_uint8
from gssim.recon.train import train
from gssim.showcase import birds_eye, depth_to_rgb
from gssim.synth.config import load_preset
from gssim.synth.generate import generate_log

log = logging.getLogger(__name__)

NEW_PATH_SHIFT_M = 3.0


def _log(path: Path, preset: str, shift: float = 0.0) -> Path:
    """The synthetic log at ``path``, generated unless a valid one is already there."""
    try:
        load_log(path)
        log.info("reusing the log at %s", path)
        return path
    except LogFormatError:
        pass
    generate_log(load_preset(preset), path, shift_lateral=shift, lane_change=shift != 0, overwrite=True)
    return path


def render_new_path(scene, new_log, out: Path, every: int = 2) -> list[Path]:
    """Render the scene along the ego poses of ``new_log`` through every sensor; returns PNGs."""
    frames_dir = out / "new_path"
    frames_dir.mkdir(parents=True, exist_ok=True)
    written, rows = [], []
    picks = list(range(0, len(new_log.frames), every))
    lidar_done = False
    cols = (TextColumn("rendering the new path"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn())
    with Progress(*cols) as bar, torch.no_grad():
        task = bar.add_task("render", total=len(picks))
        for i in picks:
            fr = new_log.frames[i]
            ego0 = fr.T_world_ego
            ego1 = new_log.pose_at(fr.t + 0.1, extrapolate=True)
            frames = scene.render(fr.t, T_world_ego=ego0, T_world_ego_end=ego1)
            row = []
            for sid, f in frames.items():
                if hasattr(f, "color"):
                    img = to_uint8(f.color)
                    path = frames_dir / f"{sid}_{fr.index:04d}.png"
                    Image.fromarray(img).save(path)
                    written.append(path)
                    row.append(side_by_side([img, depth_to_rgb(f.depth)], vertical=True))
                elif not lidar_done and i >= len(new_log.frames) // 2:
                    written += _lidar_pictures(f, out)
                    lidar_done = True
            if row:
                rows.append(side_by_side(row))
            bar.advance(task)
    sheet = out / "new_path.png"
    Image.fromarray(side_by_side(rows[:: max(1, len(rows) // 4)], vertical=True)).save(sheet)
    return [sheet] + written


def _lidar_pictures(frame, out: Path) -> list[Path]:
    rng = depth_to_rgb(torch.where(frame.drop_prob < 0.5, frame.range, torch.zeros_like(frame.range)))
    rng = np.repeat(rng, max(1, 256 // rng.shape[0]), axis=0)
    inten = (frame.intensity * (frame.drop_prob < 0.5)).clamp(0, 1).numpy()
    inten = np.repeat((inten * 255).astype(np.uint8)[..., None].repeat(3, 2), max(1, 256 // inten.shape[0]), 0)
    paths = [out / "lidar_range_intensity.png", out / "lidar_birds_eye.png"]
    Image.fromarray(np.concatenate([rng, inten], 0)).save(paths[0])
    Image.fromarray(birds_eye(frame.points)).save(paths[1])
    return paths


def run_demo(out: Path, preset: str = "demo", synth_preset: str = "small", steps: int | None = None) -> dict:
    """Run the pipeline into ``out``; returns the two metrics reports."""
    out.mkdir(parents=True, exist_ok=True)
    recorded = _log(out / "log", synth_preset)
    new_path = _log(out / "log_new_path", synth_preset, NEW_PATH_SHIFT_M)
    cfg = TrainConfig.preset(preset, **({"steps": steps} if steps else {}))
    scene_dir = out / "scene"
    shutil.rmtree(Path(str(scene_dir) + ".training"), ignore_errors=True)
    scene = train(recorded, scene_dir, cfg)
    held = evaluate(scene, load_log(recorded), out / "metrics_held_out.png")
    new_log = load_log(new_path)
    off = evaluate(scene, new_log, out / "metrics_new_path.png")
    report = {"held_out": held, "new_path": off, "training": scene.meta.get("training")}
    (out / "metrics.json").write_text(json.dumps(report, indent=1))
    shutil.copy(scene_dir / "report" / "curves.png", out / "training_curves.png")
    render_new_path(scene, new_log, out)
    return report


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="synthesise a drive, train a scene, render a new path (about 6 min)")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--preset", default="demo", help="training preset (demo, fast, quality)")
    p.add_argument("--steps", type=int, default=None, help="override the preset's training steps")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    report = run_demo(args.out, args.preset, steps=args.steps)
    for part in ("held_out", "new_path"):
        r = report[part]
        print(f"{part:9s}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, LiDAR median range error "
              f"{r['lidar_median_range_error_m'] * 100:.1f} cm, Chamfer {r['chamfer_m'] * 100:.1f} cm, intensity RMSE "
              f"{r['intensity_rmse']:.3f}, ray-drop accuracy {r['raydrop_accuracy']:.3f}")
    print(f"pictures and metrics in {args.out}: new_path.png, new_path/, lidar_birds_eye.png, "
          f"lidar_range_intensity.png, metrics.json, metrics_*.png, training_curves.png")
    return 0
