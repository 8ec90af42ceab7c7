"""`gssim train`, `gssim eval`, `gssim bake` and `gssim export`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gssim.recon.config import TrainConfig


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="reconstruct a scene from a log")
    p.add_argument("log", type=Path, help="log folder (gssim log format)")
    p.add_argument("--out", type=Path, required=True, help="scene folder to write")
    p.add_argument("--preset", default="fast", help="training preset in scenes/train_<name>.json "
                   "(fast, quality, demo)")
    p.add_argument("--holdout-every", type=int, default=None, help="hold out frames with index %% N == N // 2")
    p.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    p.add_argument("--field", choices=["neural", "explicit"], default=None, help="override the field kind")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT.training")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="evaluate a scene on a log (held-out frames of its own log)")
    p.add_argument("scene", type=Path)
    p.add_argument("log", type=Path)
    p.add_argument("--out", type=Path, default=Path("metrics.json"), help="metrics JSON (a PNG is written beside)")
    p.set_defaults(func=_eval)

    p = sub.add_parser("bake", help="store explicit surfels of every neural node in the scene (fast serving)")
    p.add_argument("scene", type=Path)
    p.add_argument("--out", type=Path, default=None, help="write to another folder (default: in place)")
    p.set_defaults(func=_bake)

    p = sub.add_parser("export", help="export a scene's composed surfels")
    p.add_argument("scene", type=Path)
    p.add_argument("--ply", type=Path, required=True, help="Gaussian-splat PLY file to write")
    p.add_argument("--t", type=float, default=None, help="time of the actor poses (default: start)")
    p.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    from gssim.recon.train import train
    overrides = {k: v for k, v in (("holdout_every", args.holdout_every), ("steps", args.steps),
                                   ("field", args.field)) if v is not None}
    cfg = TrainConfig.preset(args.preset, **overrides)
    train(args.log, args.out, cfg, resume=args.resume)
    print(f"scene written to {args.out} (report in {args.out / 'report'})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from gssim.recon.evaluate import evaluate_paths
    report = evaluate_paths(args.scene, args.log, args.out)
    print(json.dumps({k: v for k, v in report.items() if k not in ("per_sensor", "frames")}, indent=1))
    return 0


def _bake(args: argparse.Namespace) -> int:
    from gssim.recon.scene_files import load_scene, save_scene
    scene = load_scene(args.scene)
    out = save_scene(scene, args.out or args.scene, with_baked=True)
    print(f"baked scene written to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from gssim.recon.export import export_ply
    n = export_ply(args.scene, args.ply, args.t)
    print(f"wrote {n} surfels to {args.ply}")
    return 0
