"""Configuration of a synthetic driving log: world, trajectory, lighting, sensor rig.

A preset is data: ``scenes/synth_<name>.json`` holds a dict with the keys of
``SynthConfig`` (``world``, ``trajectory``, ``lighting``, ``cameras``, ``lidar``,
``render``); missing keys take the defaults below (small and fast).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

SCENES_DIR = Path(__file__).resolve().parents[2] / "scenes"
PRESETS = ("small", "medium", "large")


@dataclass
class WorldConfig:
    """A straight street along world x: lanes, parking strips, curbs, sidewalks, buildings."""

    road_length: float = 240.0          # m, street spans x in [-L/2, L/2]
    lanes_per_direction: int = 1
    lane_width: float = 3.5
    parking_width: float = 2.4          # parking strip between outer lane and curb
    curb_height: float = 0.15
    curb_width: float = 0.25
    sidewalk_width: float = 3.5
    building_setback: tuple[float, float] = (0.0, 2.0)
    building_width: tuple[float, float] = (8.0, 20.0)
    building_depth: tuple[float, float] = (8.0, 14.0)
    building_height: tuple[float, float] = (6.0, 24.0)
    building_gap: tuple[float, float] = (1.0, 7.0)
    tree_spacing: float = 14.0          # mean spacing along each sidewalk (m); 0 disables
    pole_spacing: float = 24.0
    parked_car_fraction: float = 0.5    # fraction of parking slots that hold a car
    moving_cars: int = 4
    pedestrians: int = 4


@dataclass
class TrajectoryConfig:
    """Ego drives in lane ``lane`` (0 = the rightmost lane of its direction) along +x."""

    frames: int = 20
    fps: float = 10.0
    speed: float = 8.0                  # m/s
    start_x: float = -20.0
    lane: int = 0


@dataclass
class LightingConfig:
    """Sun (Lambert, cast shadows) and sky ambient; sun azimuth is measured from +x to +y."""

    sun_azimuth_deg: float = 135.0
    sun_elevation_deg: float = 40.0
    sun_intensity: float = 0.8
    ambient: float = 0.45


@dataclass
class CameraSpec:
    """A camera of the rig.  ``hfov_deg`` sets fx = fy (ignored when ``fx`` is given).

    pose: ``position`` (ego frame, m), then yaw (about ego z, left positive) and pitch
    (down positive) of the optical axis.
    """

    id: str = "cam_front"
    model: str = "pinhole"
    width: int = 320
    height: int = 180
    hfov_deg: float = 90.0
    fx: float | None = None
    distortion: tuple[float, ...] = ()
    rolling_shutter_s: float = 0.0
    position: tuple[float, float, float] = (1.6, 0.0, 1.55)
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0


@dataclass
class LidarSpec:
    """A spinning LiDAR.  Beams: explicit ``elevations_deg`` or ``n_beams`` between
    ``elevation_min_deg`` and ``elevation_max_deg`` (``dense_horizon``: denser near 0).

    Returns: intensity = reflectivity * |cos(incidence)|; a return is dropped when the
    ray misses, its range is outside [min_range, max_range], or its power
    intensity * (reference_range / range)^2 is below ``min_return_power``.
    """

    id: str = "lidar_top"
    elevations_deg: tuple[float, ...] = ()
    n_beams: int = 32
    elevation_min_deg: float = -25.0
    elevation_max_deg: float = 10.0
    dense_horizon: bool = True
    azimuth_resolution_deg: float = 0.4
    min_range: float = 1.0
    max_range: float = 100.0
    spin_hz: float = 10.0
    position: tuple[float, float, float] = (1.2, 0.0, 1.9)
    range_noise_std: float = 0.02
    reference_range: float = 10.0
    min_return_power: float = 0.002

    def elevations(self) -> list[float]:
        """Beam elevations (degrees), top to bottom."""
        if self.elevations_deg:
            return [float(e) for e in self.elevations_deg]
        n = int(self.n_beams)
        if n < 1:
            raise ValueError(f"lidar {self.id}: n_beams must be >= 1, got {n}")
        u = np.linspace(1.0, -1.0, n) if n > 1 else np.zeros(1)
        if self.dense_horizon:
            u = np.sign(u) * np.abs(u) ** 1.6
        lo, hi = self.elevation_min_deg, self.elevation_max_deg
        mid, half_up, half_dn = 0.0, hi, -lo
        if not lo < 0 < hi:
            mid, half_up, half_dn = (lo + hi) / 2, (hi - lo) / 2, (hi - lo) / 2
        e = np.where(u >= 0, mid + u * half_up, mid + u * half_dn)
        return [round(float(v), 4) for v in e]


@dataclass
class RenderConfig:
    """Ground-truth rendering options: ``supersample`` k renders k x k rays per pixel."""

    supersample: int = 1
    image_format: str = "png"


@dataclass
class SynthConfig:
    """Everything that defines a synthetic log."""

    name: str = "synth-small"
    seed: int = 7
    world: WorldConfig = field(default_factory=WorldConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    cameras: list[CameraSpec] = field(default_factory=lambda: [CameraSpec()])
    lidar: LidarSpec | None = field(default_factory=LidarSpec)
    render: RenderConfig = field(default_factory=RenderConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _build(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    kwargs = {}
    for k, v in d.items():
        default = getattr(cls(), k) if cls is not SynthConfig else None
        if isinstance(default, tuple) and isinstance(v, list):
            v = tuple(v)
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        kwargs[k] = v
    return cls(**kwargs)


def config_from_dict(d: dict) -> SynthConfig:
    """Build and check a SynthConfig from a preset dict; errors name the offending key."""
    if not isinstance(d, dict):
        raise ValueError(f"preset: expected an object, got {type(d).__name__}")
    d = dict(d)
    sub = {"world": WorldConfig, "trajectory": TrajectoryConfig, "lighting": LightingConfig,
           "render": RenderConfig}
    parts = {k: _build(c, d.pop(k, {}), f"preset.{k}") for k, c in sub.items()}
    cams = d.pop("cameras", None)
    if cams is None:
        cams_l = [CameraSpec()]
    else:
        if not isinstance(cams, list) or not cams:
            raise ValueError("preset.cameras: expected a non-empty list")
        cams_l = [_build(CameraSpec, c, f"preset.cameras[{i}]") for i, c in enumerate(cams)]
    lidar = d.pop("lidar", {})
    lidar_s = None if lidar is None else _build(LidarSpec, lidar, "preset.lidar")
    unknown = sorted(set(d) - {"name", "seed"})
    if unknown:
        raise ValueError(f"preset: unknown keys {unknown}")
    cfg = SynthConfig(name=str(d.get("name", "synth")), seed=int(d.get("seed", 0)), cameras=cams_l,
                      lidar=lidar_s, **parts)
    check_config(cfg)
    return cfg


def check_config(cfg: SynthConfig) -> None:
    """Raise ValueError naming the key of any out-of-range setting."""
    w, tr = cfg.world, cfg.trajectory
    for key in ("road_length", "lane_width", "sidewalk_width", "curb_height", "curb_width"):
        if not getattr(w, key) > 0:
            raise ValueError(f"preset.world.{key} must be > 0, got {getattr(w, key)}")
    if w.lanes_per_direction < 1:
        raise ValueError(f"preset.world.lanes_per_direction must be >= 1, got {w.lanes_per_direction}")
    for key in ("building_setback", "building_width", "building_depth", "building_height", "building_gap"):
        lo, hi = getattr(w, key)
        if not 0 <= lo <= hi:
            raise ValueError(f"preset.world.{key} must be [lo, hi] with 0 <= lo <= hi, got {[lo, hi]}")
    if tr.frames < 1 or tr.fps <= 0 or tr.speed < 0:
        raise ValueError(f"preset.trajectory: need frames >= 1, fps > 0, speed >= 0; got {tr}")
    if not 0 <= tr.lane < w.lanes_per_direction:
        raise ValueError(f"preset.trajectory.lane must be in [0, {w.lanes_per_direction}), got {tr.lane}")
    end_x = tr.start_x + tr.speed * (tr.frames + 1) / tr.fps
    if abs(tr.start_x) > w.road_length / 2 or abs(end_x) > w.road_length / 2:
        raise ValueError(f"preset.trajectory: ego x goes from {tr.start_x} to {end_x:.1f}, outside the road "
                         f"[-{w.road_length / 2}, {w.road_length / 2}]; lengthen preset.world.road_length")
    if not 0 < cfg.lighting.sun_elevation_deg <= 90:
        raise ValueError(f"preset.lighting.sun_elevation_deg must be in (0, 90], got {cfg.lighting.sun_elevation_deg}")
    ids = [c.id for c in cfg.cameras] + ([cfg.lidar.id] if cfg.lidar else [])
    if len(set(ids)) != len(ids):
        raise ValueError(f"preset: sensor ids must be unique, got {ids}")
    for i, c in enumerate(cfg.cameras):
        if c.fx is None and not 0 < c.hfov_deg < (360 if c.model == "fisheye" else 179):
            raise ValueError(f"preset.cameras[{i}].hfov_deg out of range: {c.hfov_deg}")
    if cfg.render.supersample < 1:
        raise ValueError(f"preset.render.supersample must be >= 1, got {cfg.render.supersample}")


def load_preset(name_or_path: str | Path) -> SynthConfig:
    """A preset by name (``small``, ``medium``, ``large`` -> scenes/synth_<name>.json) or path."""
    path = Path(name_or_path)
    if str(name_or_path) in PRESETS:
        path = SCENES_DIR / f"synth_{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"preset {name_or_path!r} not found (looked for {path}); "
                                f"built-in presets are {list(PRESETS)}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return config_from_dict(data)


def camera_focal(spec: CameraSpec) -> float:
    """fx = fy in pixels: given, or from the horizontal field of view."""
    if spec.fx is not None:
        return float(spec.fx)
    half = math.radians(spec.hfov_deg) / 2
    if spec.model == "fisheye":  # equidistant: r = f * theta
        return spec.width / 2 / half
    return spec.width / 2 / math.tan(half)
