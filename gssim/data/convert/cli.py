"""`gssim convert --from DATASET SOURCE --scene ID OUT`."""
from __future__ import annotations

import argparse
import sys

from gssim.data.convert import CONVERTERS, converter
from gssim.data.convert.common import ConvertError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert a scene of a public dataset to a gssim log")
    p.add_argument("--from", dest="source_format", required=True, choices=sorted(CONVERTERS))
    p.add_argument("source", help="the dataset's root folder")
    p.add_argument("--scene", required=True, help="scene / sequence / log id within the dataset")
    p.add_argument("out", help="the log folder to write")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        out = converter(args.source_format)(args.source, args.scene, args.out, progress=not args.no_progress)
    except (ConvertError, FileExistsError) as exc:  # the dataset's fault or an existing log: a message, no trace
        print(f"gssim convert: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
