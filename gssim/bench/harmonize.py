"""`gssim bench harmonize`: seconds per camera frame of the harmonizer on the CPU.

Times, in one run and on one machine, a full-frame (every pixel in the mask) repair of a
W x H frame with the harmonizer's own settings (one step by default), and as the
reference the same model sampled in ``--ref-steps`` steps (the chain a non-distilled
img2img sampler would run).  Prints megapixels per second, wall seconds per frame, the
ratio and the load average seen during the run; on a shared machine the process's CPU
seconds per frame tell what the frame costs (wall seconds on idle cores are about
CPU seconds / threads).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from gssim.bench import median_time


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("harmonize", help="harmonizer seconds per frame (one step vs a multi-step chain)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="harmonizer folder (default: a new untrained "
                   "one of the default size: the cost does not depend on the weights)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ref-steps", type=int, default=4, help="steps of the reference chain")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from gssim.harmonize.model import Harmonizer, HarmonizerError

    try:
        model = Harmonizer.load(args.model) if args.model else Harmonizer.new()
    except HarmonizerError as exc:
        print(f"gssim bench harmonize: {exc}")
        return 2
    g = torch.Generator().manual_seed(0)
    h, w = args.height, args.width
    render, depth, alpha = torch.rand(h, w, 3, generator=g), torch.rand(h, w, generator=g) * 40, torch.ones(h, w)
    load0 = os.getloadavg()[0]
    cpu0 = time.process_time()
    one = median_time(lambda: model(render, depth, alpha), args.repeats)
    cpu = (time.process_time() - cpu0) / (args.repeats + 1)
    ref = median_time(lambda: model(render, depth, alpha, steps=args.ref_steps), max(1, args.repeats // 2))
    report = {"frame": [w, h], "steps": model.config.steps, "seconds_per_frame": one, "cpu_seconds_per_frame": cpu,
              "megapixels_per_s": w * h / one / 1e6, "reference_steps": args.ref_steps,
              "reference_seconds_per_frame": ref, "ratio": ref / one, "threads": torch.get_num_threads(),
              "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    print(f"harmonizer {w}x{h}, {model.config.steps} step(s): {one:.3f} s/frame "
          f"({report['megapixels_per_s']:.2f} MP/s); "
          f"{cpu:.3f} CPU s/frame; {args.ref_steps}-step reference {ref:.3f} s/frame; ratio {ref / one:.2f}x; "
          f"{torch.get_num_threads()} threads, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0
