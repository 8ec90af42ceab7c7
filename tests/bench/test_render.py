"""`gssim bench render` on a tiny scene: it measures both backends on the same input."""
import argparse

import pytest

from gssim.bench import render as bench
from gssim.bench.street import street_surfels
from gssim.render import native

pytestmark = pytest.mark.skipif(not native.available(), reason="native extension not built")


def test_time_backend_reports_work_and_times():
    surfels = street_surfels(2000, seed=0)
    cam = bench._camera("pinhole", 32, 18)
    nat = bench.time_backend(surfels, cam, "cpu", repeats=1)
    ref = bench.time_backend(surfels, cam, "torch", repeats=1)
    for r in (nat, ref):
        assert r["fwd"] > 0 and r["bwd"] > 0 and r["prep"] > 0 and r["raster"] > 0 and r["pixels"] == 32 * 18
    # Same input, same binning: the work measured is identical for both backends.
    assert nat["records"] == ref["records"] > 0 and nat["pairs"] == ref["pairs"] > 0


def test_bench_render_prints_every_line(capsys):
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="bench"))
    args = parser.parse_args(["render", "--surfels", "2000", "--width", "64", "--height", "36", "--repeats", "1",
                              "--ref-width", "16", "--ref-surfels", "300", "--models", "pinhole,fisheye",
                              "--no-moving", "--growth", "0", "--train-size", ""])
    args.func(args)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 2 * 5
    assert "MP/s" in out[1] and "forward split" in out[2] and "torch reference path" in out[2]
    assert "rolling shutter" in out[3] and "speed-up" in out[4] and "pairs/s" in out[5]
    assert out[6].split()[0] == "fisheye"


def test_peak_memory_of_a_small_render():
    base, peak = bench.peak_memory_forward(1000, 64, 36)
    assert 0 < base <= peak < 4.0


def test_bench_render_moving_growth_and_training_step(capsys):
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="bench"))
    args = parser.parse_args(["render", "--surfels", "1500", "--width", "48", "--height", "27", "--repeats", "1",
                              "--ref-width", "16", "--ref-surfels", "200", "--models", "pinhole", "--growth", "3",
                              "--far", "60", "--train-size", "32x18"])
    args.func(args)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + 5 + 1 + 2 + 1
    assert out[6].lstrip().startswith("moving rolling shutter") and "moving / still" in out[6]
    assert "growth, far plane inf m" in out[7] and "growth, far plane 60 m" in out[8] and "chunks" in out[8]
    assert "training-sized step (32x18" in out[9]


def test_time_render_backward_covers_every_surfel_tensor():
    surfels = street_surfels(500, seed=2)
    cam = bench._camera("pinhole", 24, 16)
    r = bench.time_render(surfels, cam, bench.street_camera_pose(), repeats=1, backward=True)
    assert r["fwd"] > 0 and r["bwd"] > 0 and r["pixels"] == 24 * 16
