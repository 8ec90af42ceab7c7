"""`gssim showcase`: render the bundled procedural street through every camera model and
a spinning LiDAR to PNGs (no training; the sensor models at a glance)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from gssim.bench.street import street_camera_pose, street_surfels
from gssim.render import render
from gssim.render.lidar_returns import to_point_cloud
from gssim.sensors import SpinningLidar, camera_from_dict

log = logging.getLogger(__name__)
SCENES = Path(__file__).resolve().parent.parent / "scenes"


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    return (img.detach().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def depth_to_rgb(depth: torch.Tensor, max_depth: float = 80.0) -> np.ndarray:
    """Log-depth colouring from 1 m (yellow) to ``max_depth`` (blue); no depth is black."""
    v = (torch.log(depth.clamp(min=1.0)) / np.log(max_depth)).clamp(0, 1)
    rgb = torch.stack([1 - v, 0.8 * (1 - v) + 0.1, v], -1) * (depth > 0)[..., None]
    return _to_uint8(rgb)


def lidar_pose(x: float, height: float) -> torch.Tensor:
    """(4, 4) float64 pose of a LiDAR on the street (its frame: x forward, y left, z up)."""
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3], T[2, 3] = x, height
    return T


def birds_eye(points: torch.Tensor, size: int = 600, metres: float = 100.0) -> np.ndarray:
    """Top view (size, size, 3) uint8 of sensor-frame points (M, >= 3), x up, coloured by z."""
    p = points[:, :3].numpy()
    scale = size / metres
    u = np.floor(size / 2 - p[:, 1] * scale).astype(int)
    v = np.floor(size / 2 - p[:, 0] * scale).astype(int)
    ok = (u >= 0) & (u < size) & (v >= 0) & (v < size)
    z = np.clip((p[ok, 2] + 2.5) / 10.0, 0, 1)
    img = np.zeros((size, size, 3), np.uint8)
    img[v[ok], u[ok]] = np.stack([255 * z, 200 * (1 - np.abs(z - 0.5) * 2) + 55, 255 * (1 - z)], 1).astype(np.uint8)
    return img


def run_showcase(preset: Path, out: Path, backend: str = "auto") -> list[Path]:
    """Render the preset's scene through each of its cameras; returns the PNGs written."""
    cfg = json.loads(preset.read_text())
    spec = cfg["surfels"]
    if spec.get("generator") != "street":
        raise ValueError(f"{preset}: surfels.generator must be 'street', got {spec.get('generator')!r}")
    surfels = street_surfels(int(spec["n"]), seed=int(spec["seed"]))
    ego = cfg["ego"]
    out.mkdir(parents=True, exist_ok=True)
    written, tiles = [], []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn()) as progress:
        task = progress.add_task("rendering sensors", total=len(cfg["cameras"]) + ("lidar" in cfg))
        for name, cam_cfg in cfg["cameras"].items():
            cam = camera_from_dict({"type": "camera", **cam_cfg})
            T0 = street_camera_pose(ego["x"], ego["height"])
            T1 = street_camera_pose(ego["x"] + ego["speed_mps"] * cam.rolling_shutter_s, ego["height"])
            with torch.no_grad():
                o = render(surfels, cam, T0, T1, backend=backend, background=torch.tensor([0.55, 0.7, 0.9]))
            color, depth = _to_uint8(o.color), depth_to_rgb(o.depth)
            normal = _to_uint8(o.normal * 0.5 + 0.5) * (o.alpha > 0).numpy()[..., None].astype(np.uint8)
            for kind, img in (("color", color), ("depth", depth), ("normal", normal)):
                path = out / f"{name}_{kind}.png"
                Image.fromarray(img).save(path)
                written.append(path)
            tiles.append((name, np.concatenate([color, depth, normal], 0)))
            progress.advance(task)
        if "lidar" in cfg:
            written += _render_lidar(surfels, cfg["lidar"], ego, out, backend)
            progress.advance(task)
    sheet = np.concatenate([t for _, t in tiles], 1)
    sheet_path = out / "cameras_side_by_side.png"
    Image.fromarray(sheet).save(sheet_path)
    written.append(sheet_path)
    log.info("columns, left to right: %s; rows: colour, depth, normal", ", ".join(n for n, _ in tiles))
    return written


def _render_lidar(surfels, lcfg: dict, ego: dict, out: Path, backend: str) -> list[Path]:
    """One sweep while the ego drives: range image and bird's-eye point cloud PNGs."""
    lidar = SpinningLidar.preset(lcfg["preset"])
    T0 = lidar_pose(ego["x"], lcfg["height"])
    T1 = lidar_pose(ego["x"] + ego["speed_mps"] * lidar.sweep_duration_s, lcfg["height"])
    with torch.no_grad():
        sweep = render(surfels, lidar, T0, T1, backend=backend)
    rng = depth_to_rgb(torch.where(sweep.alpha > 0.5, sweep.range, torch.zeros_like(sweep.range)))
    rng = np.repeat(rng, max(1, 512 // lidar.rows), axis=0)
    points = to_point_cloud(sweep, lidar, T_world_sensor=T0, T_world_sensor_end=T1, min_alpha=0.5)
    paths = [out / "lidar_range.png", out / "lidar_birds_eye.png"]
    Image.fromarray(rng).save(paths[0])
    Image.fromarray(birds_eye(points)).save(paths[1])
    log.info("LiDAR %s: %d of %d rays returned", lcfg["preset"], points.shape[0], lidar.rows * lidar.cols)
    return paths


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("showcase", help="render a procedural street through every camera model and a LiDAR")
    p.add_argument("--preset", type=Path, default=SCENES / "showcase.json")
    p.add_argument("--out", type=Path, default=Path("out/showcase"))
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "torch"])
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    for path in run_showcase(args.preset, args.out, args.backend):
        print(path)
    return 0
