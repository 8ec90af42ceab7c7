"""The ``gssim synth`` command: write a synthetic driving log from a preset.

    gssim synth --preset small out/small
    gssim synth --preset small --shift-lateral 3.5 out/small_shift      # same world, one lane left
    gssim synth --preset small --shift-lateral 3.5 --lane-change out/small_lc
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from gssim.synth.config import PRESETS, load_preset


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("synth", help="generate a synthetic driving log (cameras, LiDAR, actor tracks)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=main)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="output log folder")
    p.add_argument("--preset", default="small",
                   help=f"preset name ({', '.join(PRESETS)}) or path to a preset JSON (default: small)")
    p.add_argument("--seed", type=int, default=None, help="override the preset's world seed")
    p.add_argument("--frames", type=int, default=None, help="override the number of frames")
    p.add_argument("--shift-lateral", type=float, default=0.0, metavar="METRES",
                   help="render the same world from the ego path moved sideways (left positive), "
                        "e.g. 3.5 = one lane to the left; for extrapolation ground truth")
    p.add_argument("--lane-change", action="store_true",
                   help="with --shift-lateral: move over smoothly during the middle half of the log "
                        "instead of a constant offset")
    p.add_argument("--overwrite", action="store_true", help="replace an existing log in OUT")
    p.add_argument("--no-preview", action="store_true", help="skip contact_sheet.png and lidar_bev.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    """Run ``gssim synth``; returns the exit status."""
    from dataclasses import replace

    from gssim.synth.generate import generate_log

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        cfg = load_preset(args.preset)
    except (FileNotFoundError, ValueError) as exc:
        print(f"gssim synth: {exc}")
        return 2
    if args.seed is not None:
        cfg.seed = args.seed
    if args.frames is not None:
        if args.frames < 1:
            print("gssim synth: --frames must be >= 1")
            return 2
        cfg.trajectory = replace(cfg.trajectory, frames=args.frames)
    if args.lane_change and args.shift_lateral == 0:
        print("gssim synth: --lane-change needs a non-zero --shift-lateral")
        return 2
    try:
        res = generate_log(cfg, args.out, shift_lateral=args.shift_lateral, lane_change=args.lane_change,
                           overwrite=args.overwrite, previews=not args.no_preview, show_progress=not args.quiet)
    except FileExistsError as exc:
        print(f"gssim synth: {exc}")
        return 2
    print(f"wrote {res.root} ({res.n_frames} frames) in {res.seconds:.1f} s")
    for p in (res.contact_sheet, res.lidar_bev):
        if p is not None:
            print(f"  {p}")
    return 0
