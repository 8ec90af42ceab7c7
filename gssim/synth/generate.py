"""Generate a complete synthetic log: world, ego drive, rendered sensors, actor tracks.

``generate_log(cfg, out)`` writes log format v1 to ``out`` plus ``contact_sheet.png``
and ``lidar_bev.png``.  ``shift_lateral`` renders the same world (same seed, same actors)
from a trajectory moved sideways, constant or as a smooth lane change, for novel-view
(extrapolation) ground truth.
"""
from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gssim.data.reader import load_log
from gssim.data.writer import LogWriter
from gssim.synth.config import SynthConfig
from gssim.synth.preview import contact_sheet, lidar_birds_eye
from gssim.synth.raycast import RayCaster
from gssim.synth.render import render_camera, render_lidar
from gssim.synth.rig import build_rig
from gssim.synth.shading import Light
from gssim.synth.trajectory import EgoTrajectory
from gssim.synth.world import World, build_world

logger = logging.getLogger(__name__)


@dataclass
class SynthResult:
    """What ``generate_log`` wrote: the log folder, its preview images, timing (s)."""

    root: Path
    contact_sheet: Path | None
    lidar_bev: Path | None
    seconds: float
    n_frames: int


def ego_trajectory(cfg: SynthConfig, world: World, shift_lateral: float = 0.0, lane_change: bool = False
                   ) -> EgoTrajectory:
    """The ego path of ``cfg`` in ``world``; shifted sideways by ``shift_lateral`` metres
    (left positive), over the middle half of the log when ``lane_change``."""
    tr = cfg.trajectory
    duration = tr.frames / tr.fps
    return EgoTrajectory(world.layout.lane_centre(tr.lane, +1), tr.start_x, tr.speed, shift=shift_lateral,
                         lane_change=lane_change, change_start=0.25 * duration, change_end=0.75 * duration)


def _seed_of(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def generate_log(cfg: SynthConfig, out: str | Path, shift_lateral: float = 0.0, lane_change: bool = False,
                 overwrite: bool = False, previews: bool = True, show_progress: bool = True) -> SynthResult:
    """Render the log of ``cfg`` into the folder ``out``; returns what was written."""
    start = time.perf_counter()
    out = Path(out)
    tr = cfg.trajectory
    frame_times = np.arange(tr.frames) / tr.fps
    world = build_world(cfg, track_times=np.arange(tr.frames + 1) / tr.fps)
    caster = RayCaster(world)
    light = Light.from_config(cfg.lighting)
    traj = ego_trajectory(cfg, world, shift_lateral, lane_change)
    rig = build_rig(cfg)
    name = cfg.name if shift_lateral == 0 else f"{cfg.name}-shift{shift_lateral:+g}{'-lc' if lane_change else ''}"
    writer = LogWriter(out, name=name, image_format=cfg.render.image_format, overwrite=overwrite)
    for s in rig:
        writer.add_sensor(s.id, s.sensor, s.T_ego_sensor)
    writer.extra["synth"] = {"generator": "gssim.synth", "config": cfg.to_dict(), "shift_lateral": shift_lateral,
                             "lane_change": lane_change, "lane_y": traj.lane_y}
    columns = (TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task(f"synth {name}", total=tr.frames, info="")
        for i, t in enumerate(frame_times):
            T_we = traj.poses(t)
            images, lidars, n_ret = {}, {}, 0
            for s in rig:
                if s.kind == "camera":
                    T_end = traj.poses(t + s.sensor.rolling_shutter_s) @ s.T_ego_sensor
                    frame = render_camera(caster, light, s.sensor, T_we @ s.T_ego_sensor, T_end, t,
                                          supersample=cfg.render.supersample)
                    images[s.id] = frame.rgb
                else:
                    spec = s.spec
                    T_end = traj.poses(t + s.sensor.sweep_duration_s) @ s.T_ego_sensor
                    rng = np.random.default_rng(_seed_of(cfg.seed, s.id, i, shift_lateral))
                    lf = render_lidar(caster, s.sensor, T_we @ s.T_ego_sensor, T_end, t, rng,
                                      spec.range_noise_std, spec.reference_range, spec.min_return_power)
                    lidars[s.id] = lf.points
                    n_ret += len(lf.points)
            writer.add_frame(float(t), T_we, images=images, lidar_points=lidars)
            progress.update(task, advance=1, info=f"{n_ret} returns" if lidars else "")
        for a in world.actors:
            writer.add_actor(a.id, a.cls, a.size, a.track.times, a.track.poses, moving=a.moving)
        writer.finish()
    sheet_path = bev_path = None
    if previews:
        log = load_log(out)
        sheet_path = out / "contact_sheet.png"
        contact_sheet(log).save(sheet_path)
        if log.lidar_ids:
            bev_path = out / "lidar_bev.png"
            lidar_birds_eye(log).save(bev_path)
    seconds = time.perf_counter() - start
    logger.debug("generated %s (%d frames) in %.1f s", out, tr.frames, seconds)
    return SynthResult(out, sheet_path, bev_path, seconds, tr.frames)
