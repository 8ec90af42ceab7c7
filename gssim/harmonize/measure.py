"""Measuring the harmonizer on a log with true images: PSNR / SSIM of a scene's camera
renders and of their harmonized repair (whole image), per camera and overall, and the
harmonizer's seconds per frame.  Frames are chosen as ``gssim eval`` chooses them
(held-out frames on the scene's own log, every frame on any other log).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gssim.data.reader import Log
from gssim.harmonize.model import Harmonizer
from gssim.recon.evaluate import eval_frames
from gssim.recon.metrics import psnr, ssim
from gssim.recon.scene import Scene
from gssim.recon.train import readout_poses


def measure(scene: Scene, log_: Log, model: Harmonizer | None = None, progress: bool = True) -> dict:
    """Figures of ``scene`` (and of ``model``'s repair of its renders) on ``log_``."""
    frames, mode = eval_frames(scene, log_)
    jobs = [(i, sid) for i in frames for sid in log_.frames[i].cameras]
    per: dict[str, dict[str, list[float]]] = {}
    seconds = []
    cols = (TextColumn("measuring"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn())
    with Progress(*cols, disable=not progress) as bar, torch.no_grad():
        task = bar.add_task("measure", total=len(jobs))
        for i, sid in jobs:
            T0, T1 = readout_poses(log_, i, sid)
            app = sid if sid in scene.appearance.camera_ids else None
            frame, _, _ = scene.render_camera(sid, log_.frames[i].t, sensor=log_.sensor(sid), T0=T0, T1=T1,
                                              appearance_id=app)
            render = frame.color.clamp(0, 1)
            truth = torch.from_numpy(log_.image(i, sid, np.float32))
            m = per.setdefault(sid, {"render_psnr": [], "render_ssim": []})
            m["render_psnr"].append(float(psnr(render, truth)))
            m["render_ssim"].append(float(ssim(render, truth)))
            if model is not None:
                t0 = time.perf_counter()
                fixed = model(render, frame.depth, frame.alpha)
                seconds.append(time.perf_counter() - t0)
                m.setdefault("harmonized_psnr", []).append(float(psnr(fixed, truth)))
                m.setdefault("harmonized_ssim", []).append(float(ssim(fixed, truth)))
            bar.advance(task)
    report: dict = {"mode": mode, "frames": [log_.frames[i].index for i in frames], "views": len(jobs),
                    "per_sensor": {sid: {k: float(np.mean(v)) for k, v in m.items()} for sid, m in per.items()}}
    for key in next(iter(report["per_sensor"].values()), {}):
        report[key] = float(np.mean([s[key] for s in report["per_sensor"].values()]))
    if seconds:
        h, w = render.shape[:2]
        report["harmonize_seconds_per_frame"] = float(np.median(seconds))
        report["harmonize_frame_size"] = [w, h]
    return report
