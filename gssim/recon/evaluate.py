"""Evaluation of a scene against a log: camera PSNR / SSIM and LiDAR range, Chamfer,
intensity and ray-drop figures, overall and per sensor, with a truth / render / error
picture.

On the log a scene was trained from, only its held-out frames count
(``index % N == N // 2``, N as trained); on any other log (the same drive shifted a lane,
another rig) every frame does.  Sensors of the log that the scene lacks are rendered
with the log's own definition and the mean appearance.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gssim.data.reader import Log, load_log
from gssim.recon.initialize import held_out
from gssim.recon.metrics import chamfer_distance, intensity_rmse, psnr, raydrop_accuracy, ssim
from gssim.recon.report import side_by_side, to_uint8
from gssim.recon.scene import Scene
from gssim.recon.scene_files import load_scene
from gssim.recon.train import readout_poses

log = logging.getLogger(__name__)


def eval_frames(scene: Scene, log_: Log) -> tuple[list[int], str]:
    """Frames to evaluate and how they were chosen."""
    src = scene.meta.get("source_log")
    same = src is not None and Path(src).resolve() == Path(log_.root).resolve()
    if same:
        n = int((scene.meta.get("training") or {}).get("holdout_every", 8))
        frames = [i for i, f in enumerate(log_.frames) if held_out(f.index, n)]
        if not frames:
            raise ValueError(f"scene {scene.name!r} was trained on every frame of {log_.root} (holdout_every={n}); "
                             f"evaluate it on another log")
        return frames, f"held-out frames of the training log (index % {n} == {n // 2})"
    return list(range(len(log_.frames))), "every frame of a log the scene was not trained on"


def evaluate(scene: Scene, log_: Log, picture: Path | None = None, backend: str = "auto",
             progress: bool = True) -> dict:
    """Metrics of ``scene`` on ``log_`` (see the module docstring); writes ``picture``
    (truth / render / error of up to three camera views) when given."""
    frames, mode = eval_frames(scene, log_)
    per_cam: dict[str, dict[str, list]] = {}
    per_lidar: dict[str, dict[str, list]] = {}
    tiles = []
    jobs = [(i, sid) for i in frames for sid in list(log_.frames[i].cameras) + list(log_.frames[i].lidars)]
    cols = (TextColumn("evaluating"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn())
    with Progress(*cols, disable=not progress) as bar, torch.no_grad():
        task = bar.add_task("eval", total=len(jobs))
        for i, sid in jobs:
            T0, T1 = readout_poses(log_, i, sid)
            t = log_.frames[i].t
            sensor = log_.sensor(sid)   # the log's own definition, also for sensors the scene lacks
            if log_.sensors[sid].type == "camera":
                app = sid if sid in scene.appearance.camera_ids else None
                frame, _, _ = scene.render_camera(sid, t, sensor=sensor, T0=T0, T1=T1, backend=backend,
                                                  appearance_id=app)
                truth = torch.from_numpy(log_.image(i, sid, np.float32))
                pred = frame.color.clamp(0, 1)
                m = per_cam.setdefault(sid, {"psnr": [], "ssim": []})
                m["psnr"].append(float(psnr(pred, truth)))
                m["ssim"].append(float(ssim(pred, truth)))
                if len(tiles) < 3:
                    err = (pred - truth).abs().clamp(0, 1) * 4
                    tiles.append(side_by_side([to_uint8(truth), to_uint8(pred), to_uint8(err.clamp(0, 1))],
                                              vertical=True))
            else:
                dec = sid if sid in scene.lidar_decoders else None
                frame, _, _ = scene.render_lidar(sid, t, sensor=sensor, T0=T0, T1=T1, backend=backend,
                                                 decoder_id=dec)
                ri = log_.range_image(i, sid)
                valid = torch.from_numpy(ri.valid)
                m = per_lidar.setdefault(sid, {"range": [], "chamfer": [], "intensity_sq": [], "n": [], "drop": []})
                if valid.any():
                    err = (frame.range - torch.from_numpy(ri.range))[valid].abs()
                    m["range"].append(err.numpy())
                    irmse = intensity_rmse(frame.intensity, torch.from_numpy(ri.intensity), valid)
                    m["intensity_sq"].append(irmse ** 2 * int(valid.sum()))
                    m["n"].append(int(valid.sum()))
                    gt_pts = np.array(log_.lidar_points(i, sid)[:, :3], dtype=np.float64)
                    if len(frame.points):
                        m["chamfer"].append(chamfer_distance(frame.points[:, :3].numpy(), gt_pts))
                m["drop"].append(raydrop_accuracy(frame.drop_prob, ~valid))
            bar.advance(task)
    report = {"mode": mode, "frames": [log_.frames[i].index for i in frames], "log": str(log_.root),
              "scene": scene.name, "per_sensor": {}}
    for sid, m in per_cam.items():
        report["per_sensor"][sid] = {"psnr": float(np.mean(m["psnr"])), "ssim": float(np.mean(m["ssim"])),
                                     "views": len(m["psnr"])}
    for sid, m in per_lidar.items():
        entry = {"raydrop_accuracy": float(np.mean(m["drop"])), "sweeps": len(m["drop"])}
        if m["range"]:
            errs = np.concatenate(m["range"])
            entry.update(lidar_median_range_error_m=float(np.median(errs)),
                         intensity_rmse=float(np.sqrt(sum(m["intensity_sq"]) / sum(m["n"]))))
        if m["chamfer"]:
            entry["chamfer_m"] = float(np.mean(m["chamfer"]))
        report["per_sensor"][sid] = entry
    cams = [report["per_sensor"][s] for s in per_cam]
    lids = [report["per_sensor"][s] for s in per_lidar]
    if cams:
        report["psnr"] = float(np.mean([c["psnr"] for c in cams]))
        report["ssim"] = float(np.mean([c["ssim"] for c in cams]))
    for key in ("lidar_median_range_error_m", "chamfer_m", "intensity_rmse", "raydrop_accuracy"):
        vals = [entry[key] for entry in lids if key in entry]
        if vals:
            report[key] = float(np.mean(vals))
    if picture is not None and tiles:
        picture.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(side_by_side(tiles)).save(picture)
        report["picture"] = str(picture)
    return report


def evaluate_paths(scene_path, log_path, out_json, backend: str = "auto", progress: bool = True) -> dict:
    """``gssim eval``: load both, evaluate, write the metrics JSON and a PNG beside it."""
    scene = load_scene(scene_path)
    log_ = load_log(log_path)
    out_json = Path(out_json)
    report = evaluate(scene, log_, out_json.with_suffix(".png"), backend=backend, progress=progress)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(report, indent=1))
    return report
