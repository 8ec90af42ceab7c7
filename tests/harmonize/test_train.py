"""Harmonizer training: it learns a correction, checkpoints, resumes and writes sample grids."""
from __future__ import annotations

import json

import pytest
import torch

from gssim.harmonize.model import Harmonizer, HarmonizerConfig
from gssim.harmonize.pairs import Pairs
from gssim.harmonize.train import HarmonizerTrainConfig, train_harmonizer
from gssim.recon.metrics import psnr
from tests.harmonize.conftest import TINY_WIDTHS

SMALL = dict(batch=4, crop=16, widths=TINY_WIDTHS, lr=3e-3, sample_every=20, checkpoint_every=20)


def cast_pairs(n: int = 6, h: int = 24, w: int = 32) -> Pairs:
    """Smooth random truths and renders with a colour cast (what a reconstruction's wrong exposure does)."""
    g = torch.Generator().manual_seed(0)
    truth = torch.nn.functional.interpolate(torch.rand(n, 3, h // 4, w // 4, generator=g), (h, w),
                                            mode="bilinear").permute(0, 2, 3, 1)
    render = (truth * torch.tensor([0.7, 0.8, 1.0]) + 0.15).clamp(0, 1)
    ones = torch.ones(n, h, w)
    return Pairs(render, ones * 10, ones, ones, truth)


def test_training_learns_the_correction_and_saves_a_loadable_model(tmp_path):
    pairs = cast_pairs()
    model = train_harmonizer(pairs, tmp_path / "harm", HarmonizerTrainConfig(steps=60, **SMALL),
                             HarmonizerConfig(patch=2), progress=False)
    back = Harmonizer.load(tmp_path / "harm")
    fixed = back(pairs.render, pairs.depth, pairs.alpha)
    before, after = float(psnr(pairs.render, pairs.truth)), float(psnr(fixed, pairs.truth))
    assert after > before + 3.0, (before, after)
    assert torch.allclose(fixed, model(pairs.render, pairs.depth, pairs.alpha), atol=2e-6)
    work = tmp_path / "harm.training"
    curves = json.loads((work / "curves.json").read_text())
    assert [c["step"] for c in curves] == [20, 40, 60] and curves[-1]["loss"] < curves[0]["loss"]
    assert (work / "samples_000060.png").is_file() and (work / "latest").read_text() == "ckpt_000060.safetensors"


def test_resume_continues_from_the_checkpoint_and_a_second_run_is_refused(tmp_path):
    pairs = cast_pairs(n=2)
    cfg = HarmonizerTrainConfig(steps=20, **SMALL)
    train_harmonizer(pairs, tmp_path / "harm", cfg, HarmonizerConfig(patch=2), progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train_harmonizer(pairs, tmp_path / "harm", cfg, HarmonizerConfig(patch=2), progress=False)
    longer = HarmonizerTrainConfig(steps=40, **SMALL)
    train_harmonizer(pairs, tmp_path / "harm", longer, HarmonizerConfig(patch=2), resume=True, progress=False)
    assert (tmp_path / "harm.training/latest").read_text() == "ckpt_000040.safetensors"
    assert [c["step"] for c in json.loads((tmp_path / "harm.training/curves.json").read_text())] == [20, 40]
    with pytest.raises(ValueError, match="multiple of"):
        train_harmonizer(pairs, tmp_path / "h2", HarmonizerTrainConfig(steps=1, **{**SMALL, "crop": 10}),
                         HarmonizerConfig(patch=2), progress=False)
