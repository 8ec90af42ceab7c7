"""Training the tiny drive: the loss falls, held-out PSNR rises, a killed run resumes
from its checkpoint, and evaluation / export / the CLI work on the result."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gssim
from gssim.cli import main
from gssim.recon.evaluate import evaluate
from gssim.recon.export import world_surfels
from gssim.recon.ply import read_gaussian_ply
from gssim.recon.train import Trainer, train
from gssim.synth.config import config_from_dict
from gssim.synth.generate import generate_log

from .conftest import TINY_DRIVE, tiny_config


def gssim_cli(*argv: str) -> None:
    """Run the ``gssim`` command; it must exit with status 0."""
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    assert done.value.code == 0


@pytest.fixture(scope="module")
def trained(tiny_drive, tmp_path_factory):
    """The tiny drive trained for 160 steps: (scene folder, scene, curves)."""
    out = tmp_path_factory.mktemp("trained") / "scene"
    scene = train(tiny_drive, out, tiny_config(steps=160), progress=False)
    curves = json.loads((out.parent / "scene.training" / "curves.json").read_text())
    return out, scene, curves


def test_loss_falls_and_held_out_psnr_rises(tiny_log, trained):
    out, scene, curves = trained
    untrained = Trainer(tiny_log, tiny_config()).validate()
    assert curves[0]["step"] == 1 and curves[-1]["step"] == 160
    assert curves[-1]["loss"] < 0.6 * curves[0]["loss"]
    assert curves[-1]["val_psnr"] > untrained + 3.0
    assert (out / "report" / "curves.png").is_file() and (out / "report" / "renders.png").is_file()


@pytest.fixture
def one_thread():
    """One CPU thread: the native backward's atomic adds then sum in a fixed order, so two
    runs of the same optimisation agree (with more, Adam amplifies the rounding)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_killed_run_resumes_from_its_checkpoint(tiny_drive, tmp_path, one_thread):
    cfg = tiny_config(steps=30, densify_from=10, densify_every=10)
    whole = train(tiny_drive, tmp_path / "whole", cfg, progress=False)
    part = train(tiny_drive, tmp_path / "part", cfg, progress=False, stop_after=20)
    work = tmp_path / "part.training"
    assert (work / "latest").read_text() == "ckpt_0000020"
    assert not (tmp_path / "part").exists(), "no scene before the run ends"
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_drive, tmp_path / "part", cfg, progress=False)
    resumed = train(tiny_drive, tmp_path / "part", cfg, progress=False, resume=True)
    state = json.loads((work / (work / "latest").read_text() / "state.json").read_text())
    assert state["step"] == 30
    assert [c["step"] for c in state["curves"]][-1] == 30
    assert part.nodes[0].field.n_rows > 0
    # The resumed run continues the same optimisation (same samples, moments and rows).
    for a, b in zip(whole.nodes, resumed.nodes):
        assert a.field.n_rows == b.field.n_rows
        for name, t in a.field.state_dict().items():
            assert torch.allclose(t, b.field.state_dict()[name], atol=1e-4, rtol=1e-3), name


def test_evaluation_on_held_out_frames_and_on_another_log(tiny_drive, trained, tmp_path):
    out, scene, _ = trained
    loaded = gssim.load_scene(out)
    report = evaluate(loaded, gssim.data.load_log(tiny_drive), tmp_path / "m.png", progress=False)
    assert report["frames"] == [2, 6]
    for key in ("psnr", "ssim", "lidar_median_range_error_m", "chamfer_m", "intensity_rmse", "raydrop_accuracy"):
        assert np.isfinite(report[key]), key
    assert report["psnr"] > 15 and 0 < report["ssim"] <= 1
    assert report["lidar_median_range_error_m"] < 0.5 and report["raydrop_accuracy"] > 0.7
    assert (tmp_path / "m.png").is_file()
    # The same world driven one lane over: every frame counts.
    shifted = tmp_path / "shifted"
    generate_log(config_from_dict(TINY_DRIVE), shifted, shift_lateral=1.0, previews=False, show_progress=False)
    other = evaluate(loaded, gssim.data.load_log(shifted), None, progress=False)
    assert other["frames"] == list(range(8)) and "not trained on" in other["mode"]
    assert np.isfinite(other["psnr"])


def test_export_writes_every_surfel_as_a_gaussian_splat_ply(trained, tmp_path):
    out, _, _ = trained
    gssim_cli("export", str(out), "--ply", str(tmp_path / "s.ply"))
    ply = read_gaussian_ply(tmp_path / "s.ply")
    ref = world_surfels(gssim.load_scene(out), 0.0)
    assert ply.means.shape == ref["means"].shape
    assert torch.allclose(ply.means, ref["means"], atol=1e-5)
    assert torch.allclose(ply.opacities, ref["opacities"], atol=1e-4)


def test_cli_trains_evaluates_and_bakes(tiny_drive, tmp_path):
    preset = tmp_path / "tiny.json"
    preset.write_text(json.dumps(tiny_config(steps=12).to_dict()))
    gssim_cli("train", str(tiny_drive), "--out", str(tmp_path / "s"), "--preset", str(preset))
    gssim_cli("eval", str(tmp_path / "s"), str(tiny_drive), "--out", str(tmp_path / "m.json"))
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["frames"] == [2, 6] and "psnr" in metrics
    gssim_cli("bake", str(tmp_path / "s"))
    baked = gssim.load_scene(tmp_path / "s", baked=True)
    assert all(n.field.kind == "explicit" for n in baked.nodes)


def test_other_rigs_train_and_evaluate(tmp_path):
    """A rolling-shutter fisheye, a distorted camera and another beam table: the same code path."""
    rig = dict(TINY_DRIVE, name="other-rig", trajectory=dict(TINY_DRIVE["trajectory"], frames=4))
    rig["cameras"] = [
        {"id": "fisheye_rs", "model": "fisheye", "width": 48, "height": 48, "hfov_deg": 190.0,
         "distortion": [0.02, 0.0, 0.0, 0.0], "rolling_shutter_s": 0.03, "yaw_deg": 30.0},
        {"id": "opencv", "model": "opencv", "width": 48, "height": 27, "hfov_deg": 80.0,
         "distortion": [-0.05, 0.01, 0.0, 0.0, 0.0], "yaw_deg": -40.0}]
    rig["lidar"] = dict(TINY_DRIVE["lidar"], n_beams=7, elevation_min_deg=-30.0, elevation_max_deg=2.0,
                        azimuth_resolution_deg=4.0)
    generate_log(config_from_dict(rig), tmp_path / "log", previews=False, show_progress=False)
    scene = train(tmp_path / "log", tmp_path / "scene", tiny_config(steps=10, holdout_every=2), progress=False)
    report = evaluate(gssim.load_scene(tmp_path / "scene"), gssim.data.load_log(tmp_path / "log"), None,
                      progress=False)
    assert set(report["per_sensor"]) == {"fisheye_rs", "opencv", "lidar_top"}
    assert np.isfinite(report["psnr"]) and np.isfinite(report["lidar_median_range_error_m"])
    frame = scene.render(0.1, sensors=["fisheye_rs"])["fisheye_rs"]
    assert frame.color.shape == (48, 48, 3)


def test_sh_turned_with_an_actor_gives_the_same_colour_in_the_world_frame():
    from gssim.recon.export import rotate_sh
    from gssim.recon.fields import sh_to_rgb
    from gssim.core.transforms import quat_to_rotmat
    g = torch.Generator().manual_seed(2)
    sh = torch.randn(20, 4, 3, generator=g) * 0.3
    R = quat_to_rotmat(torch.nn.functional.normalize(torch.randn(4, generator=g), dim=0))
    d_world = torch.nn.functional.normalize(torch.randn(20, 3, generator=g), dim=1)
    local = sh_to_rgb(sh, d_world @ R)                 # the view direction in the actor's frame
    assert torch.allclose(sh_to_rgb(rotate_sh(sh, R), d_world), local, atol=1e-5)
