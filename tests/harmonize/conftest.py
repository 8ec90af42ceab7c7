"""Tiny fixtures for the harmonizer: a tiny model, a tiny drive and its lane-shifted twin,
and a tiny scene trained on it (made once per session, in seconds)."""
from __future__ import annotations

import pytest
import torch

from gssim.harmonize.model import Harmonizer, HarmonizerConfig
from gssim.recon.train import train
from gssim.synth.config import config_from_dict
from gssim.synth.generate import generate_log
from tests.recon.conftest import TINY_DRIVE, tiny_config

TINY_WIDTHS = (8, 16)


def tiny_harmonizer(seed: int = 0, **config) -> Harmonizer:
    """A two-level UNet with 8 and 16 channels on 2x2 patches."""
    return Harmonizer.new(TINY_WIDTHS, config=HarmonizerConfig(patch=2, **config), seed=seed)


def frame(h: int = 20, w: int = 28, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """A random render (H, W, 3), depth and alpha (H, W)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(h, w, 3, generator=g), torch.rand(h, w, generator=g) * 30, torch.rand(h, w, generator=g)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """(own log, log driven 1 m to the left, trained scene folder) of the tiny drive."""
    root = tmp_path_factory.mktemp("harmonize")
    cfg = config_from_dict(TINY_DRIVE)
    own, shifted = root / "tiny", root / "tiny_shift1"
    generate_log(cfg, own, previews=False, show_progress=False)
    generate_log(cfg, shifted, shift_lateral=1.0, previews=False, show_progress=False)
    train(own, root / "scene", tiny_config(steps=20), progress=False)
    return own, shifted, root / "scene"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run faster on one thread (no thread hand-offs per small op)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
