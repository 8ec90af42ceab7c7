"""`gssim bench render|lidar --device cuda` on a small scene (skipped without a GPU): it
prints its measurements, gsplat's CUDA peer included."""
from __future__ import annotations

import argparse

import pytest
import torch

from gssim.bench import gpu
from gssim.render import native

pytestmark = pytest.mark.skipif(not (torch.cuda.is_available() and native.available("cuda")),
                                reason="needs a CUDA GPU and a build of gssim with its CUDA kernels")


def test_render_bench_on_cuda(capsys):
    gpu.render_main(argparse.Namespace(surfels=20_000, width=320, height=180, repeats=2))
    out = capsys.readouterr().out
    assert "gssim cuda" in out and "MP/s" in out
    assert "gsplat 2DGS" in out and "gssim / gsplat time ratio" in out


def test_lidar_bench_on_cuda(capsys):
    gpu.lidar_main(argparse.Namespace(surfels=20_000, seed=0, sweeps="32x1024", repeats=2))
    out = capsys.readouterr().out
    assert out.count("Mrays/s") == 4  # still and driving, forward and backward
