"""The ``gssim harmonizer train``, ``gssim harmonizer measure``, ``gssim harmonize`` and
``gssim expand`` commands.

    gssim harmonizer train --scene out/fast2 --log out/small --log out/small_shift1.5 --out out/harm
    gssim harmonizer measure out/fast2 --model out/harm --log out/small_shift3 --json out/measure.json
    gssim harmonize out/scene_edited --model out/harm --out out/harmonized [--frames 0 5] [--sensors cam_front]
    gssim expand out/fast2 --model out/harm --offsets -3,3 --out out/fast2_expanded
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _offsets(text: str) -> list[float]:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--offsets wants metres separated by commas, e.g. -3,3; got {text!r}") \
            from exc
    if not vals:
        raise argparse.ArgumentTypeError("--offsets needs at least one value")
    return vals


def join_offsets(argv: list[str]) -> list[str]:
    """``--offsets -3,3`` as ``--offsets=-3,3`` (argparse takes a value starting with '-' for an option)."""
    out, k = [], 0
    while k < len(argv):
        if argv[k] == "--offsets" and k + 1 < len(argv) and argv[k + 1].startswith("-"):
            out.append(f"--offsets={argv[k + 1]}")
            k += 2
        else:
            out.append(argv[k])
            k += 1
    return out


def add_parser(sub) -> None:
    """Register ``harmonizer``, ``harmonize`` and ``expand`` on an argparse subparsers object."""
    h = sub.add_parser("harmonizer", help="train or measure the diffusion harmonizer",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    hsub = h.add_subparsers(dest="harmonizer", required=True)
    p = hsub.add_parser("train", help="train a small harmonizer from a scene and logs of its world")
    p.add_argument("--scene", type=Path, required=True, help="reconstructed scene whose renders are repaired")
    p.add_argument("--log", type=Path, action="append", required=True,
                   help="log of the scene's world with true images (repeatable): its own log (held-out frames "
                        "are skipped) and logs driven to the side")
    p.add_argument("--out", type=Path, required=True, help="harmonizer folder to write")
    p.add_argument("--every", type=int, default=1, help="use every N-th frame of each log")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in OUT.training "
                   "(with the training pairs stored there)")
    p.set_defaults(func=_train)

    p = hsub.add_parser("measure", help="PSNR/SSIM of a scene's renders and of their harmonized repair on a log")
    p.add_argument("scene", type=Path)
    p.add_argument("--log", type=Path, required=True, help="log with true images (e.g. the lane-shifted log)")
    p.add_argument("--model", type=Path, default=None, help="harmonizer folder (omit: the scene's renders only)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.set_defaults(func=_measure)

    p = sub.add_parser("harmonize", help="harmonize the edited regions of an edited scene's camera frames")
    p.add_argument("scene", type=Path, help="an edited scene (gssim edit)")
    p.add_argument("--model", type=Path, required=True, help="harmonizer folder")
    p.add_argument("--out", type=Path, required=True, help="folder for PNGs and report.json")
    p.add_argument("--frames", type=int, nargs="*", default=None, help="ego frame indices (default: all)")
    p.add_argument("--sensors", nargs="*", default=None, help="camera ids (default: all cameras)")
    p.add_argument("--grow", type=int, default=None, help="pixels added around the edit masks")
    p.set_defaults(func=_harmonize)

    p = sub.add_parser("expand", help="repair renders along shifted trajectories and fine-tune the scene on them")
    p.add_argument("scene", type=Path)
    p.add_argument("--model", type=Path, required=True, help="harmonizer folder")
    p.add_argument("--offsets", type=_offsets, default=[-3.0, 3.0], help="lateral offsets in metres (left +)")
    p.add_argument("--out", type=Path, required=True, help="expanded scene folder to write")
    p.add_argument("--log", type=Path, default=None, help="the scene's own log (default: its source_log)")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps")
    p.add_argument("--pseudo-weight", type=float, default=None, help="loss weight of repaired views (real: 1)")
    p.add_argument("--every", type=int, default=None, help="repair views of every N-th training frame")
    p.set_defaults(func=_expand)


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from gssim.data.reader import load_log
    import safetensors.torch

    from gssim.harmonize.pairs import Pairs, make_pairs
    from gssim.harmonize.train import HarmonizerTrainConfig, train_harmonizer
    from gssim.recon.scene_files import load_scene

    cfg = HarmonizerTrainConfig()
    cfg = replace(cfg, **{k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("crop", args.crop))
                          if v is not None})
    cache = Path(str(args.out) + ".training") / "pairs.safetensors"
    try:
        if args.resume and cache.is_file():
            pairs = Pairs(**safetensors.torch.load_file(str(cache)))
        else:
            pairs = make_pairs(load_scene(args.scene), [load_log(p) for p in args.log], every=args.every)
            cache.parent.mkdir(parents=True, exist_ok=True)
            safetensors.torch.save_file(pairs.tensors(), str(cache))
        train_harmonizer(pairs, args.out, cfg, resume=args.resume)
    except (FileExistsError, ValueError) as exc:
        print(f"gssim harmonizer train: {exc}")
        return 2
    print(f"harmonizer written to {args.out} (checkpoints and sample grids in {args.out}.training)")
    return 0


def _measure(args: argparse.Namespace) -> int:
    from gssim.data.reader import load_log
    from gssim.harmonize.measure import measure
    from gssim.harmonize.model import Harmonizer
    from gssim.recon.scene_files import load_scene

    try:
        model = Harmonizer.load(args.model) if args.model else None
        report = measure(load_scene(args.scene), load_log(args.log), model)
    except ValueError as exc:          # HarmonizerError, SceneFormatError, LogFormatError
        print(f"gssim harmonizer measure: {exc}")
        return 2
    report["scene"], report["log"] = str(args.scene), str(args.log)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "per_sensor"}, indent=1))
    return 0


def _harmonize(args: argparse.Namespace) -> int:
    from gssim.harmonize.edit_frames import harmonize_scene
    from gssim.harmonize.model import Harmonizer
    from gssim.recon.scene_files import load_scene

    try:
        model = Harmonizer.load(args.model)
        report = harmonize_scene(load_scene(args.scene), model, args.out, args.frames, args.sensors,
                                 **({} if args.grow is None else {"grow": args.grow}))
    except (ValueError, KeyError) as exc:    # HarmonizerError, SceneFormatError, unknown frames or cameras
        print(f"gssim harmonize: {exc}")
        return 2
    print(json.dumps({k: v for k, v in report.items() if k != "frames"}, indent=1))
    return 0


def _expand(args: argparse.Namespace) -> int:
    from gssim.harmonize.expand import ExpandConfig, expand_scene
    from gssim.harmonize.model import Harmonizer

    overrides = {k: v for k, v in (("steps", args.steps), ("pseudo_weight", args.pseudo_weight),
                                   ("every", args.every)) if v is not None}
    try:
        model = Harmonizer.load(args.model)
        expand_scene(args.scene, model, args.offsets, args.out, log_path=args.log,
                     cfg=ExpandConfig(**overrides))
    except ValueError as exc:                # HarmonizerError, SceneFormatError, LogFormatError, bad settings
        print(f"gssim expand: {exc}")
        return 2
    print(f"expanded scene written to {args.out}")
    return 0
