"""The ``gssim edit``, ``gssim labels`` and ``gssim edit-check`` commands.

    gssim edit out/scene edits.json --out out/scene_edited [--library assets/library] [--labels out/labels]
    gssim labels out/scene_edited --out out/labels [--times 0.0 0.5] [--sensors cam_front lidar_top]
    gssim edit-check out/scene --actor parked_car_29 [--frames 0 6 12] [--json out/check.json]
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from gssim.edit.assets import DEFAULT_LIBRARY, AssetError


def add_parser(sub) -> None:
    """Register ``edit``, ``labels`` and ``edit-check`` on an argparse subparsers object."""
    p = sub.add_parser("edit", help="apply edits (insert/remove/replace/move/retime) to a scene",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scene", type=Path, help="source scene folder (never modified)")
    p.add_argument("edits", type=Path, help="JSON file: a list of edits (see gssim.edit.edits)")
    p.add_argument("--out", type=Path, required=True, help="folder of the edited scene (written atomically)")
    p.add_argument("--library", type=Path, default=DEFAULT_LIBRARY, help="asset library folder")
    p.add_argument("--labels", type=Path, default=None, help="also write labels of every frame to this folder")
    p.set_defaults(func=main_edit)

    p = sub.add_parser("labels", help="2D/3D boxes, instance and semantic masks, LiDAR point labels of a scene")
    p.add_argument("scene", type=Path)
    p.add_argument("--out", type=Path, required=True, help="labels folder")
    p.add_argument("--times", type=float, nargs="*", default=None, help="times (default: every recorded frame)")
    p.add_argument("--sensors", nargs="*", default=None, help="sensor ids (default: all)")
    p.set_defaults(func=main_labels)

    p = sub.add_parser("edit-check", help="insert a synthetic actor's ground-truth asset and measure it "
                                          "against the ground-truth renders")
    p.add_argument("scene", type=Path, help="a scene trained on a synthetic log")
    p.add_argument("--actor", required=True, help="actor id of the synthetic world")
    p.add_argument("--frames", type=int, nargs="*", default=None, help="frame indices (default: all)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.set_defaults(func=main_check)


def _load(path: Path):
    from gssim.recon.scene_files import load_scene
    from gssim.recon.scene_io import SceneFormatError

    try:
        return load_scene(path)
    except SceneFormatError as exc:
        print(f"gssim: {exc}")
        return None


def main_edit(args: argparse.Namespace) -> int:
    from gssim.edit.edits import EditError, edit_scene
    from gssim.edit.labels import write_scene_labels
    from gssim.recon.scene_io import SceneFormatError

    try:
        scene = edit_scene(args.scene, args.edits, args.out, args.library)
    except (EditError, AssetError, SceneFormatError, FileExistsError) as exc:
        print(f"gssim edit: {exc}")
        return 2
    print(f"wrote {args.out}: {len(scene.nodes)} nodes, {len(scene.meta['edits'])} edits")
    if args.labels is not None:
        n = write_scene_labels(scene, args.labels)
        print(f"wrote labels of {n} frames to {args.labels}")
    return 0


def main_labels(args: argparse.Namespace) -> int:
    from gssim.edit.labels import write_scene_labels

    scene = _load(args.scene)
    if scene is None:
        return 2
    try:
        n = write_scene_labels(scene, args.out, args.times, args.sensors)
    except KeyError as exc:
        print(f"gssim labels: {exc.args[0]}")
        return 2
    print(f"wrote labels of {n} frames to {args.out}")
    return 0


def main_check(args: argparse.Namespace) -> int:
    from gssim.edit.check import measure_insert

    logging.getLogger("gssim").setLevel(logging.WARNING)
    scene = _load(args.scene)
    if scene is None:
        return 2
    try:
        res = measure_insert(scene, args.actor, args.frames)
    except ValueError as exc:
        print(f"gssim edit-check: {exc}")
        return 2
    cam, lid = res["camera"], res["lidar"]

    def f(v, unit=""):
        return "-" if v is None else f"{v:.3f}{unit}"
    print(f"{res['scene']}: {res['actor']} replaced by its ground-truth asset; frames {res['frames']}, "
          f"{res['views']} camera views")
    print(f"  camera PSNR in the object mask: edited {f(cam['psnr_edited'], ' dB')} (asset lit with the scene's "
          f"shadows {f(cam['psnr_edited_scene_lit'], ' dB')}), reconstruction "
          f"{f(cam['psnr_recon'], ' dB')}, object removed {f(cam['psnr_removed'], ' dB')}")
    print(f"  camera PSNR in its cast shadow: with our shadow {f(cam['psnr_shadow_edited'], ' dB')}, without "
          f"{f(cam['psnr_shadow_no_shadow'], ' dB')}")
    print(f"  LiDAR on the object: {lid['returned']}/{lid['rays_on_object']} rays return, median |range error| "
          f"{f(lid['median_abs_range_error_m'], ' m')} (reconstruction {f(lid['recon_median_abs_range_error_m'], ' m')})")
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=1))
    return 0
