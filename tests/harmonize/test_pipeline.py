"""The whole pipeline offline on the tiny drive: pairs from the scene and its lane-shifted
log, a tiny harmonizer trained on them, measuring, scene expansion, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gssim.cli import main
from gssim.data.reader import load_log
from gssim.harmonize.expand import ExpandConfig, expand_scene, shifted_pose
from gssim.harmonize.measure import measure
from gssim.harmonize.model import HarmonizerConfig
from gssim.harmonize.pairs import log_frames, make_pairs
from gssim.harmonize.train import HarmonizerTrainConfig, train_harmonizer
from gssim.recon.scene_files import load_scene
from tests.conftest import tree_digest
from tests.harmonize.conftest import TINY_WIDTHS


def test_shifted_pose_moves_the_sensor_along_the_ego_left_axis():
    yaw = np.deg2rad(90.0)     # ego facing +y: its left is -x
    T_we = np.eye(4)
    T_we[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    T_we[:3, 3] = [5.0, 2.0, 0.0]
    T_ws = T_we @ np.array([[1, 0, 0, 1.5], [0, 1, 0, 0], [0, 0, 1, 1.6], [0, 0, 0, 1.0]])
    moved = shifted_pose(T_ws, T_we, 3.0)
    assert np.allclose(moved[:3, 3] - T_ws[:3, 3], [-3.0, 0.0, 0.0])
    assert np.allclose(moved[:3, :3], T_ws[:3, :3])


def test_pairs_harmonizer_measure_and_expand_end_to_end(tiny_world, tmp_path):
    own, shifted, scene_dir = tiny_world
    scene = load_scene(scene_dir)
    own_log, shift_log = load_log(own), load_log(shifted)
    # held-out frames of the scene's own log never become training pairs
    held = [i for i, f in enumerate(own_log.frames) if f.index % 4 == 2]
    assert held and not set(held) & set(log_frames(scene, own_log))
    assert log_frames(scene, shift_log) == list(range(len(shift_log.frames)))
    pairs = make_pairs(scene, [own_log, shift_log], progress=False)
    n_repair = len(log_frames(scene, own_log)) + len(shift_log.frames)
    assert n_repair <= len(pairs) <= 2 * n_repair - len(shift_log.frames)
    assert torch.equal(pairs.mask[:1], torch.ones_like(pairs.mask[:1]))          # repair: the whole image
    comp = pairs.mask.flatten(1).mean(1) < 1
    if comp.any():                                                                 # composites: outside = truth
        k = int(torch.nonzero(comp)[0])
        out = pairs.mask[k] == 0
        assert torch.equal(pairs.render[k][out], pairs.truth[k][out])

    model = train_harmonizer(pairs, tmp_path / "harm",
                             HarmonizerTrainConfig(steps=4, batch=2, crop=16, widths=TINY_WIDTHS, sample_every=4),
                             HarmonizerConfig(patch=2), progress=False)
    figures = measure(scene, shift_log, model, progress=False)
    assert figures["views"] == len(shift_log.frames) and figures["mode"].startswith("every frame")
    for key in ("render_psnr", "render_ssim", "harmonized_psnr", "harmonized_ssim"):
        assert np.isfinite(figures[key])
    assert 5 < figures["render_psnr"] < 60 and figures["harmonize_frame_size"] == [64, 36]

    source_digest = tree_digest(scene_dir)
    expanded = expand_scene(scene_dir, model, [-1.0, 1.0], tmp_path / "expanded", log_path=own,
                            cfg=ExpandConfig(steps=3, every=1, preset=str(_tiny_preset(tmp_path))), progress=False)
    assert tree_digest(scene_dir) == source_digest
    training = load_scene(tmp_path / "expanded").meta["training"]
    n_train = len(log_frames(scene, own_log))
    assert training["expansion"]["pseudo_views"] == 2 * n_train and training["expansion"]["offsets"] == [-1.0, 1.0]
    assert training["holdout_every"] == scene.meta["training"]["holdout_every"]
    assert (tmp_path / "expanded/report/expansion_views.png").is_file()
    a = scene.render(0.1, sensors=["cam_front"])["cam_front"].color
    b = expanded.render(0.1, sensors=["cam_front"])["cam_front"].color
    assert (a - b).abs().max() > 0, "fine-tuning changed the scene"
    with pytest.raises(ValueError, match="offsets"):
        expand_scene(scene_dir, model, [0.0], tmp_path / "bad", log_path=own)
    with pytest.raises(ValueError, match="must not be the source"):
        expand_scene(scene_dir, model, [1.0], scene_dir / "x", log_path=own)


def _tiny_preset(tmp_path):
    """The tiny test settings as a preset file (expand takes its losses and rates from a preset)."""
    from tests.recon.conftest import tiny_config

    path = tmp_path / "train_tiny.json"
    path.write_text(json.dumps(tiny_config().to_dict()))
    return path


def test_cli_reports_a_missing_harmonizer_and_bad_offsets(tiny_world, tmp_path, capsys):
    _, shifted, scene_dir = tiny_world
    with pytest.raises(SystemExit) as done:
        main(["harmonizer", "measure", str(scene_dir), "--log", str(shifted), "--model", str(tmp_path / "none")])
    assert done.value.code == 2 and "does not exist" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["expand", str(scene_dir), "--model", str(tmp_path / "none"), "--out", str(tmp_path / "e")])
    assert done.value.code == 2 and "does not exist" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["expand", str(scene_dir), "--model", "m", "--out", "o", "--offsets", "left"])
    assert done.value.code == 2
    with pytest.raises(SystemExit) as done:
        main(["harmonizer", "measure", str(scene_dir), "--log", str(shifted), "--json", str(tmp_path / "m.json")])
    assert done.value.code == 0 and json.loads((tmp_path / "m.json").read_text())["views"] > 0


def test_offsets_starting_with_a_minus_parse_as_in_the_issue():
    from gssim.cli import build_parser
    from gssim.harmonize.cli import join_offsets

    argv = join_offsets(["expand", "s", "--model", "m", "--offsets", "-3,3", "--out", "o"])
    assert build_parser().parse_args(argv).offsets == [-3.0, 3.0]
    assert join_offsets(["expand", "--offsets"]) == ["expand", "--offsets"]


def test_cli_names_a_missing_scene(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["harmonizer", "measure", str(tmp_path / "no_scene"), "--log", str(tmp_path / "no_log")])
    assert done.value.code == 2 and "no_scene" in capsys.readouterr().out
