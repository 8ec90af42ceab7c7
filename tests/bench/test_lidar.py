"""`gssim bench lidar` on a tiny scene: every line, the mesh it ray-casts, its arguments."""
import argparse
import math

import pytest
import torch

import gssim
from gssim.bench import lidar as bench
from gssim.render import native


@pytest.mark.skipif(not native.available(), reason="native extension not built")
def test_bench_lidar_runs_on_a_tiny_scene():
    lines = []
    res = bench.run(n_surfels=3000, seed=1, sweeps=("32x1024",), repeats=1, ref_shape=(4, 32), ref_surfels=200,
                    open3d=True, backward=True, moving=False, growth=0, report=lines.append)
    row = res["sweeps"]["32x1024"]
    assert row["forward"].rays == 32 * 1024 and row["forward"].mrays > 0 and row["backward"].mrays > 0
    assert row["open3d"].mrays > 0 and res["reference"]["forward"].rays == 4 * 32
    assert len(lines) == 6 and "Mrays/s" in lines[1] and "split" in lines[2] and "open3d" in lines[4]
    assert "moving sweep" in lines[3] and row["preparation"]["native"] > 0 and row["preparation"]["moving_torch"] > 0
    assert "reference" in lines[5] and row["split"][2] > 0
    # The mesh holds two triangles per surfel over the alpha >= 1/255 rectangle.
    s = gssim.Surfels(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[1.0, 2.0]]),
                      torch.tensor([1.0]), torch.ones(1, 1))
    verts, tris = bench.surfel_mesh(s)
    k = math.sqrt(2 * math.log(255.0))
    assert verts.shape == (4, 3) and tris.shape == (2, 3)
    assert verts[:, 0].abs().max().item() == pytest.approx(k, rel=1e-5)
    assert verts[:, 1].abs().max().item() == pytest.approx(2 * k, rel=1e-5)
    parser = argparse.ArgumentParser()
    bench.add_parser(parser.add_subparsers(dest="bench"))
    ns = parser.parse_args(["lidar", "--surfels", "10", "--ref-shape", "4x8", "--sweeps", "64x2048"])
    assert ns.ref_shape == (4, 8) and ns.func is bench.main
    with pytest.raises(SystemExit, match="unknown sweep"):
        bench.main(parser.parse_args(["lidar", "--sweeps", "7x7"]))


@pytest.mark.skipif(not native.available(), reason="native extension not built")
def test_bench_lidar_moving_sweep_and_growth():
    lines = []
    res = bench.run(n_surfels=2000, seed=1, sweeps=("32x1024",), repeats=1, ref_shape=(4, 32), ref_surfels=100,
                    open3d=False, backward=False, moving=True, growth=3, report=lines.append)
    assert res["moving"].rays == 32 * 1024 and res["moving"].mrays > 0
    assert set(res["growth"]) == {"base", "plain", "culled", "chunked"}
    assert any("while driving" in line for line in lines) and any("growth" in line for line in lines)
