"""Shared tiny fixtures: deterministic random surfel scenes made in the test."""
import hashlib

import pytest
import torch

import gssim


def random_surfels(n: int, channels: int = 3, seed: int = 0, centre=(0.0, 0.0, 3.0), spread: float = 0.6,
                   requires_grad: bool = False) -> gssim.Surfels:
    """n random surfels around ``centre`` (OpenCV camera at the origin looks at +z)."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=gen) * spread + torch.tensor(centre)
    quats = torch.randn(n, 4, generator=gen)
    scales = torch.rand(n, 2, generator=gen) * 0.3 + 0.05
    opacities = torch.rand(n, generator=gen) * 0.9 + 0.05
    features = torch.rand(n, channels, generator=gen)
    tensors = [t.requires_grad_(requires_grad) for t in (means, quats, scales, opacities, features)]
    return gssim.Surfels(*tensors)


@pytest.fixture
def identity_pose():
    return torch.eye(4, dtype=torch.float64)


def tree_digest(folder) -> str:
    """SHA-256 of a folder's relative paths and file contents (to show it is untouched)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()
