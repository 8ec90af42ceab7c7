"""The ``gssim assets`` command: build, list, import and extract library assets.

    gssim assets build                              # every procedural asset into assets/library
    gssim assets build --only sedan,traffic_cone --library out/lib
    gssim assets list
    gssim assets import car.glb --class car --name my_car
    gssim assets import scan.ply --class car --up=-y --forward=x --scale 0.01
    gssim assets extract out/scene car_3 --name parked_car

Axis values start with '-' for negative axes: write them with '=' (``--up=-y``).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from gssim.data.convert.common import CLASSES
from gssim.edit.assets import (ASSET_JSON, DEFAULT_LIBRARY, AssetError, list_assets, load_asset, save_asset,
                               write_thumbnail)
from gssim.edit.build import build_library
from gssim.edit.importers import AXES, extract_actor, import_file, safe_name
from gssim.edit.surfelize import FitConfig


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``assets`` subcommand (build, list, import, extract); returns its parser."""
    p = subparsers.add_parser("assets", help="the Gaussian asset library: build, list, import, extract",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="assets_command", required=True)

    def library_arg(q):
        q.add_argument("--library", type=Path, default=DEFAULT_LIBRARY,
                       help="library folder (default: the repository's assets/library)")

    b = sub.add_parser("build", help="build the procedural assets (meshes -> fitted surfels, thumbnails)")
    library_arg(b)
    b.add_argument("--only", default=None, metavar="NAME,...", help="build only these assets")
    b.add_argument("--surfels", type=int, default=FitConfig.surfels, help="target surfels per asset")
    b.add_argument("--steps", type=int, default=FitConfig.steps, help="fitting steps per asset (0: no fitting)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    ls = sub.add_parser("list", help="list the assets of a library")
    library_arg(ls)
    ls.set_defaults(func=_list)

    imp = sub.add_parser("import", help="a mesh (glTF/GLB, OBJ, PLY, STL) or a 3DGS splat PLY -> a library asset")
    library_arg(imp)
    imp.add_argument("file", type=Path)
    imp.add_argument("--class", dest="cls", required=True, help=f"object class ({', '.join(CLASSES)})")
    imp.add_argument("--name", default=None, help="asset name (default: the file name)")
    imp.add_argument("--up", default=None, choices=list(AXES), help="file axis pointing up (default: detected)")
    imp.add_argument("--forward", default=None, choices=list(AXES),
                     help="file axis pointing to the object's front (default: detected)")
    imp.add_argument("--scale", type=float, default=1.0, help="multiply file units by this to get metres")
    imp.add_argument("--surfels", type=int, default=FitConfig.surfels, help="target surfels (meshes)")
    imp.add_argument("--steps", type=int, default=60, help="fitting steps (meshes; 0: none)")
    imp.add_argument("--overwrite", action="store_true", help="replace an asset of the same name")
    imp.set_defaults(func=_import)

    ex = sub.add_parser("extract", help="a reconstructed actor of a scene -> a library asset")
    library_arg(ex)
    ex.add_argument("scene", type=Path)
    ex.add_argument("actor_id")
    ex.add_argument("--name", default=None, help="asset name (default: <scene name>_<actor id>)")
    ex.add_argument("--camera", default=None, help="appearance of this camera (default: the mean)")
    ex.add_argument("--overwrite", action="store_true", help="replace an asset of the same name")
    ex.set_defaults(func=_extract)
    return p


def _fit_summary(fit: dict | None) -> str:
    if not fit or "after" not in fit:
        return "-"
    b, a = fit["before"], fit["after"]
    return f"PSNR {b['psnr']:.1f}->{a['psnr']:.1f} dB, range err {a['range_error_m'] * 100:.1f} cm"


def _build(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.surfels < 1 or args.steps < 0:
        print("gssim assets build: --surfels must be >= 1 and --steps >= 0")
        return 2
    t0 = time.perf_counter()
    try:
        built = build_library(args.library, only, FitConfig(surfels=args.surfels, steps=args.steps),
                              show_progress=not args.quiet)
    except (KeyError, AssetError) as exc:
        print(f"gssim assets build: {exc.args[0] if exc.args else exc}")
        return 2
    print(f"built {len(built)} assets into {args.library} in {time.perf_counter() - t0:.1f} s")
    return 0


def _list(args: argparse.Namespace) -> int:
    names = list_assets(args.library)
    if not names:
        print(f"no assets in {args.library}")
        return 0
    print(f"{'name':<16} {'class':<14} {'size l x w x h (m)':<20} {'surfels':>7}  {'source':<28} fit")
    for name in names:
        try:
            a = load_asset(name, args.library)
        except AssetError as exc:
            print(f"{name:<16} unreadable: {exc}")
            continue
        size = " x ".join(f"{v:.2f}" for v in a.size)
        print(f"{a.name:<16} {a.cls:<14} {size:<20} {len(a):>7}  {a.source[:28]:<28} {_fit_summary(a.fit)}")
    return 0


def _exists(name: str, args, command: str) -> bool:
    """True (after saying so) when the asset exists and --overwrite was not given."""
    if args.overwrite or not (Path(args.library) / name / ASSET_JSON).is_file():
        return False
    print(f"gssim assets {command}: asset {name} exists in {args.library}; pass --overwrite to replace it")
    return True


def _save(asset, args, command: str) -> int:
    if _exists(asset.name, args, command):
        return 2
    try:
        folder = save_asset(asset, args.library, overwrite=args.overwrite)
    except FileExistsError as exc:   # written meanwhile by another process
        print(f"gssim assets {command}: {exc}")
        return 2
    write_thumbnail(asset, args.library)
    print(f"wrote {folder} ({asset.cls}, {len(asset)} surfels, size "
          f"{' x '.join(f'{v:.2f}' for v in asset.size)} m; {asset.source}; fit {_fit_summary(asset.fit)})")
    return 0


def _import(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if _exists(args.name or safe_name(args.file.stem), args, "import"):   # before the (slow) fit
        return 2
    try:
        asset = import_file(args.file, args.cls, name=args.name, up=args.up, forward=args.forward, scale=args.scale,
                            cfg=FitConfig(surfels=args.surfels, steps=args.steps))
    except AssetError as exc:
        print(f"gssim assets import: {exc}")
        return 2
    return _save(asset, args, "import")


def _extract(args: argparse.Namespace) -> int:
    try:
        asset = extract_actor(args.scene, args.actor_id, name=args.name, camera_id=args.camera)
    except AssetError as exc:
        print(f"gssim assets extract: {exc}")
        return 2
    return _save(asset, args, "extract")
