"""Harmonizing edited frames: only the grown edit mask changes, bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gssim.edit.edits import apply_edits, edited_region
from gssim.harmonize.edit_frames import harmonize_region, harmonize_scene
from gssim.harmonize.pairs import grow_mask
from tests.edit.test_edits import library, make_scene  # noqa: F401  (library is a fixture)
from tests.harmonize.conftest import frame, tiny_harmonizer


def test_grow_mask_is_a_square_dilation():
    m = torch.zeros(9, 9, dtype=torch.bool)
    m[4, 4] = True
    g = grow_mask(m, 2)
    assert int(g.sum()) == 25 and bool(g[2:7, 2:7].all())
    assert torch.equal(grow_mask(m, 0), m)


def test_pixels_outside_the_grown_mask_are_unchanged():
    h = tiny_harmonizer()
    color, depth, alpha = frame(40, 56)
    mask = torch.zeros(40, 56, dtype=torch.bool)
    mask[10:18, 20:30] = True
    out, region = harmonize_region(h, color, depth, alpha, mask, grow=3, context=8)
    assert torch.equal(region, grow_mask(mask, 3))
    assert torch.equal(out[~region], color[~region])
    assert (out[region] - color[region]).abs().mean() > 1e-3, "the region is harmonized"
    # the region's values are the model's on the box it saw (context around the grown mask)
    box = (slice(0, 18 + 3 + 8), slice(20 - 3 - 8, 30 + 3 + 8))   # rows clipped at the top
    fixed = h(color[box], depth[box], alpha[box], region[box].float())
    assert torch.equal(out[box][region[box]], fixed[region[box]])
    empty, none = harmonize_region(h, color, depth, alpha, torch.zeros_like(mask))
    assert torch.equal(empty, color) and not none.any()
    with pytest.raises(ValueError, match="does not match"):
        harmonize_region(h, color, depth, alpha, mask[:-1])


def test_harmonize_scene_changes_only_the_hole_of_a_removed_actor(library, tmp_path):  # noqa: F811
    edited = apply_edits(make_scene(), [{"op": "remove", "actor": "car_1"}], library)
    report = harmonize_scene(edited, tiny_harmonizer(), tmp_path / "out", frames=[0, 1], progress=False)
    assert report["frames_written"] == 2 and report["frames_with_edits"] == 2
    assert report["outside_max_abs_change"] == 0.0 and report["outside_max_abs_change_8bit"] == 0
    rec = report["frames"][0]
    t = rec["t"]
    hole = edited_region(edited, t, "cam").hole
    assert rec["region_pixels"] >= int(hole.sum()) > 20 and rec["inside_mean_abs_change"] > 0
    img = np.asarray(Image.open(tmp_path / "out/cam/000000.png"))
    ren = np.asarray(Image.open(tmp_path / "out/cam/000000_render.png"))
    region = np.asarray(Image.open(tmp_path / "out/cam/000000_mask.png")) > 0
    assert np.array_equal(img[~region], ren[~region]) and not np.array_equal(img[region], ren[region])
    assert json.loads((tmp_path / "out/report.json").read_text())["frames_written"] == 2
    with pytest.raises(KeyError, match="no frames"):
        harmonize_scene(edited, tiny_harmonizer(), tmp_path / "o2", frames=[7], progress=False)
    with pytest.raises(KeyError, match="not \\['lidar'\\]"):
        harmonize_scene(edited, tiny_harmonizer(), tmp_path / "o3", sensors=["lidar"], progress=False)
