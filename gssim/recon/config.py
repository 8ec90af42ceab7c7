"""Training configuration: a dataclass with laptop-CPU defaults; presets are JSON files
in ``scenes/`` (``train_fast.json``, ``train_quality.json``, ``train_demo.json``)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from dataclasses import field as dc_field
from pathlib import Path

PRESETS = Path(__file__).resolve().parent.parent.parent / "scenes"


@dataclass
class TrainConfig:
    """Everything a training run needs besides the log."""

    field: str = "neural"               # "neural" (anchors + decoders) or "explicit" (2DGS + SH)
    steps: int = 3000
    holdout_every: int = 8              # frames with index % N == N // 2 are held out (0: none)
    voxel: float = 0.25                 # background anchor / surfel spacing at initialisation (m)
    actor_voxel: float = 0.1            # actors' spacing (m)
    n_offsets: int = 4                  # surfels per anchor (neural)
    feature_dim: int = 24
    hidden: int = 48
    appearance_dim: int = 8
    sh_degree: int = 1
    lidar_channels: int = 4
    lidar_every: int = 3                # a LiDAR sweep every N steps (0: cameras only)
    lidar_sector_deg: float = 120.0     # azimuth slice of the sweep scored per LiDAR step (360: all)
    ssim_weight: float = 0.2
    range_weight: float = 0.1           # per metre of L1 range error
    median_range_weight: float = 0.05
    intensity_weight: float = 1.0
    raydrop_weight: float = 0.1
    sky_weight: float = 0.1             # upward LiDAR rays without a return: alpha -> 0
    distortion_weight: float = 0.002    # 2DGS depth distortion (per m^2)
    normal_weight: float = 0.05         # depth-normal consistency, from normal_from_step on
    normal_from_step: int = 500
    scale_weight: float = 0.01          # keeps neural offsets and surfels compact
    lr: dict = dc_field(default_factory=lambda: {
        "anchors": 0.0, "features": 0.0075, "offsets": 0.01, "log_scales": 0.007, "quats": 0.002,
        "mlp": 0.004, "means": 0.00016, "opacity_logits": 0.05, "sh": 0.0025, "lidar": 0.0025,
        "appearance": 0.001, "exposure": 0.0005, "sky": 0.01, "lidar_decoder": 0.003})
    lr_final_ratio: float = 0.05        # positions, offsets and decoders decay to this fraction
    densify_from: int = 300
    densify_until_ratio: float = 0.7    # densify until this fraction of the steps
    densify_every: int = 100
    grow_threshold: float = 0.0008      # mean view-space gradient of a surfel to grow / split
    prune_opacity: float = 0.01         # anchors whose surfels stay below this mean opacity go
    max_rows: int = 400000
    checkpoint_minutes: float = 3.0
    seed: int = 0

    @classmethod
    def preset(cls, name: str, **overrides) -> "TrainConfig":
        """A preset (``scenes/train_<name>.json``, or a JSON file's path) with keyword overrides."""
        path = Path(name) if str(name).endswith(".json") else PRESETS / f"train_{name}.json"
        if not path.is_file():
            known = sorted(p.stem[len("train_"):] for p in PRESETS.glob("train_*.json"))
            raise ValueError(f"unknown training preset {name!r}; expected one of {known}")
        return cls.from_dict({**json.loads(path.read_text()), **overrides})

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Config from a dict; unknown keys are an error naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {sorted(names)}")
        cfg = cls(**{k: v for k, v in d.items() if k != "lr"})
        if "lr" in d:
            cfg.lr = {**cfg.lr, **d["lr"]}
        if cfg.field not in ("neural", "explicit"):
            raise ValueError(f"field must be 'neural' or 'explicit', got {cfg.field!r}")
        if cfg.steps < 1:
            raise ValueError(f"steps must be >= 1, got {cfg.steps}")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)
