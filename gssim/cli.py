"""The `gssim` command: demo, showcase, synth, convert, train, eval, bake, export, edit, harmonize, bench."""
from __future__ import annotations

import argparse
import logging
import sys

from gssim import demo, showcase
from gssim.bench import harmonize as bench_harmonize
from gssim.bench import lidar as bench_lidar
from gssim.bench import render as bench_render
from gssim.bench import serve as bench_serve
from gssim.bench import train as bench_train
from gssim.data.convert import cli as convert_cli
from gssim.edit import cli as assets_cli
from gssim.edit import cli_edit
from gssim.harmonize import cli as harmonize_cli
from gssim.recon import cli as recon_cli
from gssim.sim import serve_cli
from gssim.sim import sim_cli
from gssim.synth import cli as synth_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gssim", description="Driving-scene sensor simulation with 2D Gaussians")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_parser(sub)
    showcase.add_parser(sub)
    synth_cli.add_parser(sub)
    convert_cli.add_parser(sub)
    recon_cli.add_parsers(sub)
    assets_cli.add_parser(sub)
    cli_edit.add_parser(sub)
    harmonize_cli.add_parser(sub)
    serve_cli.add_parser(sub)
    sim_cli.add_parser(sub)
    bench = sub.add_parser("bench", help="benchmarks: throughput and ratio against a reference")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    bench_render.add_parser(bench_sub)
    bench_lidar.add_parser(bench_sub)
    bench_serve.add_parser(bench_sub)
    bench_train.add_parser(bench_sub)
    bench_harmonize.add_parser(bench_sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(harmonize_cli.join_offsets(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    raise SystemExit(args.func(args) or 0)


if __name__ == "__main__":
    main()
