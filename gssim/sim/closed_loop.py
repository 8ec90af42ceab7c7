"""Closed loop: SUMO traffic and gssim sensors stepped together at a fixed rate, a driving
stack steering the ego.

Each step k (t = t0 + k / rate): read the SUMO vehicles -> pose the scene's actors (and
pool assets) -> render the ego's sensors at its pose -> the stack's command -> integrate
the ego (kinematic bicycle) -> move it in SUMO -> step SUMO.  Metrics use SUMO's ground
truth: time to collision with the vehicle ahead in the ego's path, box overlaps
(collisions), speed, distance.  A run ends early when the ego reaches the end of the road.  Scene time is clamped to the scene's time range
(actors not driven by SUMO, e.g. pedestrians, hold their last recorded pose after it).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from gssim.edit.edits import footprint_corners, footprints_overlap
from gssim.sim.stack import Command, Observation
from gssim.sim.sumo_bridge import (EGO_ID, RoadLayout, SumoBridge, TrafficMapper, VehicleState, layout_for_scene,
                                   planar_pose, yaw_of)

log = logging.getLogger(__name__)


@dataclass
class ClosedLoopConfig:
    """Settings of one rollout (defaults fit a laptop CPU)."""

    steps: int = 100
    rate_hz: float = 10.0
    seed: int = 0
    traffic: int = 6                     # SUMO-only vehicles shown by library assets
    asset: str = "sedan"
    library: str | None = None           # asset library (default: the repository's)
    bind_actors: bool = True             # scene cars on a lane follow SUMO counterparts
    actor_speed: str = "sumo"            # "sumo": SUMO drives bound actors; "recorded": they keep their speed
    ego_speed: float | None = None       # initial speed (m/s; default: the recorded one)
    ego_size: tuple[float, float, float] = (4.5, 1.9, 1.5)
    wheelbase: float = 2.7
    cameras: list[str] | None = None     # default: every camera of the scene
    lidar: str | None = None             # default: the first LiDAR
    strip_every: int = 10                # a strip row every N steps
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.steps < 1 or not self.rate_hz > 0:
            raise ValueError(f"closed loop: need steps >= 1 and rate_hz > 0, got {self.steps}, {self.rate_hz}")
        if self.traffic < 0:
            raise ValueError(f"closed loop: traffic must be >= 0, got {self.traffic}")
        if self.actor_speed not in ("sumo", "recorded"):
            raise ValueError(f"closed loop: actor_speed must be 'sumo' or 'recorded', got {self.actor_speed!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> "ClosedLoopConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"closed loop: unknown settings {unknown}; known are {sorted(known)}")
        if "ego_size" in d:
            d["ego_size"] = tuple(d["ego_size"])
        return cls(**d)


# ------------------------------------------------------------------ metrics
def lead_ttc(T_ego: np.ndarray, speed: float, ego_size, states: dict[str, VehicleState]
             ) -> tuple[float, float | None, str | None]:
    """(time to collision s, bumper gap m, id) with the nearest vehicle ahead whose box
    overlaps the ego's path (its lateral extent); ttc is inf when not closing, gap None
    when nothing is ahead."""
    best = (math.inf, None, None)
    inv = np.linalg.inv(T_ego)
    yaw_e = yaw_of(T_ego)
    for vid, s in states.items():
        if vid == EGO_ID:
            continue
        p = inv @ s.T_world_object[:, 3]
        half_w = (ego_size[1] + s.size[1]) / 2
        if p[0] <= 0 or abs(p[1]) >= half_w:
            continue
        gap = float(p[0] - (ego_size[0] + s.size[0]) / 2)
        if best[1] is not None and gap >= best[1]:
            continue
        closing = speed - s.speed * math.cos(yaw_of(s.T_world_object) - yaw_e)
        ttc = gap / closing if closing > 1e-6 and gap > 0 else (0.0 if gap <= 0 else math.inf)
        best = (ttc, gap, vid)
    return best


def summarize(records: list[dict], collided: set[str], dt: float) -> dict:
    """Metrics of a rollout from its per-step records (ego x, y, speed, ttc)."""
    if not records:
        raise ValueError("summarize: no steps recorded")
    xy = np.array([[r["x"], r["y"]] for r in records])
    speeds = np.array([r["speed"] for r in records])
    ttcs = [r["ttc"] for r in records if r["ttc"] is not None and math.isfinite(r["ttc"])]
    gaps = [r["gap"] for r in records if r["gap"] is not None]
    return {"steps": len(records), "sim_time_s": len(records) * dt,
            "distance_m": float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()),
            "mean_speed": float(speeds.mean()), "max_speed": float(speeds.max()),
            "min_ttc_s": float(min(ttcs)) if ttcs else None,
            "min_gap_m": float(min(gaps)) if gaps else None,
            "collisions": len(collided), "collided_with": sorted(collided),
            "emergency_steps": int(sum(bool(r.get("emergency")) for r in records))}


# ------------------------------------------------------------------ the loop
@dataclass
class Rollout:
    """What a closed-loop run produced: metrics, per-step records, every vehicle's track
    {id: [(x, y), ...]}, the cameras side by side at every step (uint8 (H, W, 3)), the
    steps of the PNG strip and the road layout."""

    metrics: dict
    records: list[dict]
    tracks: dict[str, list[tuple[float, float]]]
    camera_rows: list[np.ndarray] = field(default_factory=list)
    strip_every: int = 10
    layout: RoadLayout | None = None
    sizes: dict = field(default_factory=dict)


def _to_uint8(color: torch.Tensor) -> np.ndarray:
    return (color.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)


def _ego_speed(scene, t0: float) -> float:
    t1 = min(t0 + 0.1, scene.time_range[1])
    if t1 <= t0:
        return 0.0
    d = scene.ego_track.at(t1)[:3, 3] - scene.ego_track.at(t0)[:3, 3]
    return float(np.linalg.norm(d) / (t1 - t0))


def run_closed_loop(scene, stack, cfg: ClosedLoopConfig | None = None, layout: RoadLayout | None = None,
                    work_dir: str | Path | None = None, progress: bool = False) -> Rollout:
    """Drive the ego through SUMO traffic in ``scene`` with ``stack`` (see the module
    docstring).  ``layout`` defaults to ``layout_for_scene(scene)``; the SUMO network is
    built in ``work_dir`` (default: a temporary folder).  The scene gains the pool nodes."""
    cfg = cfg or ClosedLoopConfig()
    layout = layout or layout_for_scene(scene)
    dt = 1.0 / cfg.rate_hz
    cams = cfg.cameras if cfg.cameras is not None else [k for k, s in scene.sensors.items() if s.type == "camera"]
    lidars = [k for k, s in scene.sensors.items() if s.type == "lidar"]
    lidar = cfg.lidar or (lidars[0] if lidars else None)
    if lidar is None:
        raise ValueError(f"closed loop: scene {scene.name!r} has no LiDAR for the stack; "
                         f"sensors are {sorted(scene.sensors)}")
    sensors = list(cams) + [lidar]
    for sid in sensors:
        scene._spec(sid)
    T_ego_sensor = {sid: scene.sensors[sid].T_ego_sensor for sid in sensors}
    sensor_models = {sid: scene.sensors[sid].sensor for sid in sensors}
    t0, t_end = scene.time_range
    T_ego = scene.ego_track.at(t0)
    speed = _ego_speed(scene, t0) if cfg.ego_speed is None else float(cfg.ego_speed)
    ego_size = np.asarray(cfg.ego_size, np.float64)
    z_ego, yaw = float(T_ego[2, 3]), yaw_of(T_ego)
    x, y = float(T_ego[0, 3]), float(T_ego[1, 3])
    mapper = TrafficMapper(scene)
    tmp = tempfile.TemporaryDirectory(prefix="gssim-sumo-") if work_dir is None else None
    folder = Path(work_dir) if work_dir is not None else Path(tmp.name)
    if hasattr(stack, "reset"):
        stack.reset()
    records, tracks, rows, collided, sizes = [], {}, [], set(), {}
    ended = "all steps run"
    bridge = SumoBridge(layout, folder, dt, cfg.seed, ground_z=float(layout.T_world_road[2, 3]))
    try:
        with bridge:
            if cfg.bind_actors:
                mapper.bind_scene_actors(bridge, t0, hold_speed=cfg.actor_speed == "recorded")
            if cfg.traffic:
                from gssim.edit.assets import DEFAULT_LIBRARY, load_asset
                asset = load_asset(cfg.asset, cfg.library or DEFAULT_LIBRARY)
                mapper.add_asset_pool(asset, cfg.traffic)
                T_road = np.linalg.solve(layout.T_world_road, T_ego)
                bridge.spawn_traffic(cfg.traffic, cfg.seed, size=asset.size,
                                     keep_clear=(T_road[0, 3] - 15.0, T_road[0, 3] + 25.0))
            bridge.add_ego(T_ego, speed, ego_size)
            bridge.step()
            prog = None
            if progress:
                from rich.progress import Progress
                prog = Progress(transient=True)
                prog.start()
                task = prog.add_task("closed loop", total=cfg.steps)
            try:
                for k in range(cfg.steps):
                    t = t0 + k * dt
                    states = bridge.vehicles()
                    T_ego = planar_pose(x, y, z_ego, yaw)
                    t_scene = min(max(t, t0), t_end)
                    actors = mapper.actor_poses(states)
                    t_render = time.perf_counter()
                    frames = scene.render(t_scene, sensors=sensors, T_world_ego=T_ego, actors=actors,
                                          backend=cfg.backend)
                    render_s = time.perf_counter() - t_render
                    cmd: Command = stack(Observation(t, frames, sensor_models, T_ego_sensor, speed, T_ego))
                    ttc, gap, lead = lead_ttc(T_ego, speed, ego_size, states)
                    for vid, s in states.items():
                        if vid != EGO_ID:
                            tracks.setdefault(vid, []).append((float(s.T_world_object[0, 3]),
                                                               float(s.T_world_object[1, 3])))
                            sizes[vid] = s.size.tolist()
                            if footprints_overlap(T_ego, ego_size, s.T_world_object, s.size):
                                collided.add(vid)
                    records.append({"t": t, "x": x, "y": y, "yaw": yaw, "speed": speed, "accel": cmd.accel,
                                    "steer": cmd.steer, "ttc": ttc if math.isfinite(ttc) else None, "gap": gap,
                                    "lead": lead, "render_s": render_s,
                                    "emergency": bool(getattr(stack, "state", {}).get("emergency", False))})
                    if cams:
                        rows.append(np.concatenate([_to_uint8(frames[c].color) for c in cams], axis=1))
                    # Kinematic bicycle, speed never negative.
                    v_new = max(speed + cmd.accel * dt, 0.0)
                    v_mid = 0.5 * (speed + v_new)
                    yaw += v_mid / cfg.wheelbase * math.tan(cmd.steer) * dt
                    x += v_mid * math.cos(yaw) * dt
                    y += v_mid * math.sin(yaw) * dt
                    speed = v_new
                    x_road = np.linalg.solve(layout.T_world_road, np.array([x, y, z_ego, 1.0]))[0]
                    if not layout.x_start + ego_size[0] / 2 <= x_road <= layout.x_end - ego_size[0] / 2:
                        ended = "ego reached the end of the road"
                        break
                    bridge.move_ego(planar_pose(x, y, z_ego, yaw), speed)
                    bridge.step()
                    if prog is not None:
                        prog.update(task, advance=1, description=f"closed loop v={speed:4.1f} m/s")
            finally:
                if prog is not None:
                    prog.stop()
    finally:
        if tmp is not None:
            tmp.cleanup()
    metrics = summarize(records, collided, dt)
    metrics["mean_render_s"] = float(np.mean([r["render_s"] for r in records]))
    metrics["ended"] = ended
    return Rollout(metrics, records, tracks, rows, max(cfg.strip_every, 1), layout, sizes)


# ------------------------------------------------------------------ outputs
def write_outputs(rollout: Rollout, out: str | Path, fps: float = 2.0, video: bool = True) -> dict[str, Path]:
    """Write ``metrics.json``, ``trajectory.json``, ``cameras_strip.png``, ``birds_eye.png``
    (every ``strip_every``-th step) and (when PyAV is installed and ``video``) ``cameras.mp4``
    of every step at ``fps`` into ``out``."""
    from PIL import Image
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "trajectory": out / "trajectory.json"}
    paths["metrics"].write_text(json.dumps(rollout.metrics, indent=1))
    paths["trajectory"].write_text(json.dumps({"ego": rollout.records, "vehicles": rollout.tracks}, indent=1))
    if rollout.camera_rows:
        paths["strip"] = out / "cameras_strip.png"
        Image.fromarray(np.concatenate(rollout.camera_rows[::rollout.strip_every], axis=0)).save(paths["strip"])
        if video:
            if importlib.util.find_spec("av") is None or importlib.util.find_spec("imageio") is None:
                log.info("no PyAV/imageio: skipping cameras.mp4 (the PNG strip has the frames)")
            else:
                import imageio.v3 as iio
                frames = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in rollout.camera_rows]
                paths["video"] = out / "cameras.mp4"
                iio.imwrite(paths["video"], np.stack(frames), plugin="pyav", codec="libx264",
                            fps=fps)
    paths["birds_eye"] = out / "birds_eye.png"
    birds_eye_plot(rollout, paths["birds_eye"])
    return paths


def birds_eye_plot(rollout: Rollout, path: str | Path) -> None:
    """The ego's trajectory coloured by speed, the other vehicles' tracks and final boxes,
    the road's lane lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    ego = np.array([[r["x"], r["y"]] for r in rollout.records])
    lay = rollout.layout
    if lay is not None:
        lo = min(ego[:, 0].min(), *(p[0] for tr in rollout.tracks.values() for p in tr)) - 10
        hi = max(ego[:, 0].max(), *(p[0] for tr in rollout.tracks.values() for p in tr)) + 10
        lo, hi = max(lo, lay.x_start), min(hi, lay.x_end)
        n, w = lay.lanes_per_direction, lay.lane_width
        for k in range(-n, n + 1):
            line = lay.T_world_road @ np.array([[lo, k * w, 0, 1], [hi, k * w, 0, 1]]).T
            ax.plot(line[0], line[1], color="0.6", lw=1.5 if abs(k) in (0, n) else 0.6,
                    ls="-" if abs(k) == n else "--")
    for vid, tr in rollout.tracks.items():
        tr = np.asarray(tr)
        ax.plot(tr[:, 0], tr[:, 1], lw=0.8, color="tab:blue", alpha=0.6)
        ax.plot(tr[-1, 0], tr[-1, 1], "s", ms=4, color="tab:blue")
    sc = ax.scatter(ego[:, 0], ego[:, 1], c=[r["speed"] for r in rollout.records], s=8, cmap="viridis", zorder=3)
    last = rollout.records[-1]
    ax.add_patch(Polygon(footprint_corners(planar_pose(last["x"], last["y"], 0, last["yaw"]), (4.5, 1.9)), closed=True,
                         fc="tab:red", alpha=0.6, zorder=4))
    fig.colorbar(sc, ax=ax, label="ego speed (m/s)")
    m = rollout.metrics
    ttc = "none" if m["min_ttc_s"] is None else f"{m['min_ttc_s']:.2f} s"
    ax.set_title(f"ego (coloured by speed) and {len(rollout.tracks)} SUMO vehicles (blue): "
                 f"{m['distance_m']:.0f} m, min TTC {ttc}, collisions {m['collisions']}")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def closed_loop_scene(scene_dir: str | Path, out: str | Path | None, cfg: ClosedLoopConfig,
                      stack_params: dict | None = None, edits=None, progress: bool = False,
                      baked: bool = True) -> Rollout:
    """Load a scene (its baked surfels where present, when ``baked``; applying ``edits``
    when given), run the ACC stack through SUMO traffic and write the outputs to ``out``
    (when given)."""
    from gssim.recon.scene_files import load_scene
    from gssim.sim.stack import AccConfig, AccStack
    scene = load_scene(scene_dir, baked=baked)
    if edits:
        from gssim.edit.assets import DEFAULT_LIBRARY
        from gssim.edit.edits import apply_edits, load_edits
        edits = load_edits(edits) if isinstance(edits, (str, Path)) else edits
        scene = apply_edits(scene, edits, cfg.library or DEFAULT_LIBRARY)
    stack = AccStack(AccConfig.from_dict(stack_params))
    rollout = run_closed_loop(scene, stack, cfg, progress=progress)
    rollout.metrics["stack"] = asdict(stack.cfg)
    if out is not None:
        write_outputs(rollout, out, cfg.rate_hz)
    return rollout
