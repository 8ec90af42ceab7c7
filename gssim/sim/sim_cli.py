"""The ``gssim closed-loop`` and ``gssim batch`` commands.

    gssim closed-loop out/scene [--steps 100 --rate 10 --seed 0 --traffic 6 --out runs/cl]
    gssim batch scenarios.json [--address local|auto|ray://host:10001] [--out table.csv]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    """Register ``closed-loop`` and ``batch`` on an argparse subparsers object."""
    p = sub.add_parser("closed-loop", help="drive the ego with an ACC stack through SUMO traffic in a scene",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", type=Path, help="scene folder")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--rate", type=float, default=10.0, help="steps per second (SUMO and sensors)")
    p.add_argument("--seed", type=int, default=0, help="traffic seed")
    p.add_argument("--traffic", type=int, default=6, help="SUMO vehicles shown by library assets")
    p.add_argument("--asset", default="sedan", help="library asset of the SUMO traffic")
    p.add_argument("--library", type=Path, default=None, help="asset library (default: the repository's)")
    p.add_argument("--target-speed", type=float, default=10.0, help="ACC set speed (m/s)")
    p.add_argument("--actor-speed", choices=("sumo", "recorded"), default="sumo",
                   help="scene cars on the road: driven by SUMO, or keeping their recorded speed")
    p.add_argument("--strip-every", type=int, default=10, help="a camera strip row every N steps")
    p.add_argument("--out", type=Path, default=Path("runs/closed_loop"), help="output folder")
    p.set_defaults(func=main_closed_loop)

    p = sub.add_parser("batch", help="closed-loop rollouts of a scenarios file as Ray tasks; one metrics table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenarios", type=Path, help="JSON: a list of rollouts (see gssim.sim.batch)")
    p.add_argument("--address", default="local", help="'local' (start Ray here), 'auto' (running cluster) or a "
                                                      "cluster address")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of a local Ray")
    p.add_argument("--out", type=Path, default=Path("batch.csv"), help="CSV table")
    p.set_defaults(func=main_batch)


def main_closed_loop(args) -> int:
    from gssim.sim.closed_loop import ClosedLoopConfig, closed_loop_scene
    cfg = ClosedLoopConfig(steps=args.steps, rate_hz=args.rate, seed=args.seed, traffic=args.traffic,
                           asset=args.asset, library=None if args.library is None else str(args.library),
                           strip_every=args.strip_every, actor_speed=args.actor_speed)
    rollout = closed_loop_scene(args.scene, args.out, cfg, {"target_speed": args.target_speed}, progress=True)
    m = {k: v for k, v in rollout.metrics.items() if k != "stack"}
    print(json.dumps(m, indent=1))
    print(f"outputs in {args.out}: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
    return 0


def main_batch(args) -> int:
    from gssim.sim.batch import format_table, load_scenarios, run_batch, write_table
    rows = run_batch(load_scenarios(args.scenarios), args.address, args.num_cpus)
    print(format_table(rows))
    print(f"table: {write_table(rows, args.out)}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1
