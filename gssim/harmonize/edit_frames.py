"""Harmonizing the edited regions of an edited scene's camera frames.

A frame's edit mask (``gssim.edit.edits.edited_region``: holes of removed or moved actors,
inserted objects and their shadows) is grown by ``grow`` pixels; the harmonizer runs on
the mask's bounding box plus ``context`` pixels (its conditions see the surroundings),
and only pixels inside the grown mask take its output.  Every pixel outside is the
render's own value, bit for bit; the report measures it.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gssim.data.safe_files import check_name
from gssim.harmonize.model import Harmonizer
from gssim.harmonize.pairs import grow_mask
from gssim.recon.report import to_uint8
from gssim.recon.scene import Scene

Tensor = torch.Tensor
log = logging.getLogger(__name__)

GROW = 6          # px around the edit mask that the harmonizer may change
CONTEXT = 24      # px of surroundings the harmonizer sees around the grown mask


def harmonize_region(model: Harmonizer, color: Tensor, depth: Tensor, alpha: Tensor, mask: Tensor,
                     grow: int = GROW, context: int = CONTEXT) -> tuple[Tensor, Tensor]:
    """The frame with its masked region harmonized, and the region (H, W) bool.

    color: (H, W, 3) in [0, 1]; depth, alpha: (H, W); mask: (H, W) bool, the edited pixels.
    Pixels outside ``region`` (mask grown by ``grow``) are returned unchanged.
    """
    if mask.shape != color.shape[:2]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the image {tuple(color.shape[:2])}")
    region = grow_mask(mask.bool(), grow)
    out = color.clone()
    if not region.any():
        return out, region
    ij = torch.nonzero(region)
    H, W = region.shape
    r0, c0 = (ij.min(0).values - context).clamp(min=0).tolist()
    r1, c1 = (ij.max(0).values + context + 1).tolist()
    r1, c1 = min(r1, H), min(c1, W)
    box = (slice(r0, r1), slice(c0, c1))
    fixed = model(color[box], depth[box], alpha[box], region[box].float())
    inside = region[box]
    out[box] = torch.where(inside[..., None], fixed, color[box])
    return out, region


def harmonize_scene(scene: Scene, model: Harmonizer, out, frames: list[int] | None = None,
                    sensors: list[str] | None = None, grow: int = GROW, progress: bool = True) -> dict:
    """Render, harmonize and write every (frame, camera) of an edited scene.

    Writes ``out/<camera>/<frame:06d>.png`` (harmonized), ``..._render.png`` (as rendered),
    ``..._mask.png`` (the region allowed to change) and ``out/report.json``: per frame the
    region's size, the mean change inside it, the largest change outside it (0 by
    construction, measured on the float images and the written 8-bit files) and the
    harmonizer's seconds.
    """
    out = Path(out)
    times = [float(t) for t in scene.ego_track.times]
    frames = list(range(len(times))) if frames is None else frames
    bad = [k for k in frames if not 0 <= k < len(times)]
    if bad:
        raise KeyError(f"scene {scene.name!r} has frames 0..{len(times) - 1}; no frames {bad}")
    cams = [s for s, spec in scene.sensors.items() if spec.type == "camera"]
    sensors = cams if sensors is None else sensors
    unknown = sorted(set(sensors) - set(cams))
    if unknown:
        raise KeyError(f"scene {scene.name!r} has cameras {cams}; not {unknown}")
    if not any(isinstance(r, dict) and ("hole" in r or r.get("op") in ("insert", "replace"))
               for r in scene.meta.get("edits") or []):
        log.warning("scene %r records no edit that inserts or vacates anything: nothing to harmonize", scene.name)
    from gssim.edit.edits import edited_region

    records, seconds = [], []
    cols = (TextColumn("harmonizing"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn())
    with Progress(*cols, disable=not progress) as bar, torch.no_grad():
        task = bar.add_task("harmonize", total=len(frames) * len(sensors))
        for sid in sensors:
            folder = out / check_name(sid, "camera id")
            folder.mkdir(parents=True, exist_ok=True)
            for k in frames:
                t = times[k]
                frame, _, _ = scene.render_camera(sid, t)
                color = frame.color.clamp(0, 1)
                mask = edited_region(scene, t, sid).any
                t0 = time.perf_counter()
                fixed, region = harmonize_region(model, color, frame.depth, frame.alpha, mask, grow)
                dt = time.perf_counter() - t0
                img, ren = to_uint8(fixed), to_uint8(color)
                Image.fromarray(img).save(folder / f"{k:06d}.png")
                Image.fromarray(ren).save(folder / f"{k:06d}_render.png")
                Image.fromarray((region.numpy() * 255).astype(np.uint8)).save(folder / f"{k:06d}_mask.png")
                outside = ~region
                rec = {"frame": k, "t": t, "sensor": sid, "region_pixels": int(region.sum()),
                       "outside_max_abs_change": float((fixed - color).abs()[outside].max()) if outside.any() else 0.0,
                       "outside_max_abs_change_8bit": int(np.abs(img.astype(np.int16) - ren)[outside.numpy()].max())
                       if outside.any() else 0,
                       "inside_mean_abs_change": float((fixed - color).abs()[region].mean()) if region.any() else 0.0}
                if region.any():
                    rec["seconds"] = dt
                    seconds.append(dt)
                records.append(rec)
                bar.advance(task)
    report = {"scene": scene.name, "frames_written": len(records),
              "frames_with_edits": sum(r["region_pixels"] > 0 for r in records),
              "outside_max_abs_change": max((r["outside_max_abs_change"] for r in records), default=0.0),
              "outside_max_abs_change_8bit": max((r["outside_max_abs_change_8bit"] for r in records), default=0),
              "seconds_per_harmonized_frame": float(np.mean(seconds)) if seconds else None,
              "frames": records}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report
