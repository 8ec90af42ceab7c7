"""The harmonizer model: residual x0 prediction, the DDIM step, determinism, save/load
round trip, and named errors for missing or incompatible weights and bad inputs."""
from __future__ import annotations

import json

import pytest
import torch

from gssim.harmonize.model import IN_CHANNELS, Harmonizer, HarmonizerError
from tests.harmonize.conftest import frame, tiny_harmonizer


def test_zero_residual_returns_the_render_for_any_strength_and_steps():
    h = tiny_harmonizer()
    with torch.no_grad():
        h.unet.conv_out.weight.zero_()
        h.unet.conv_out.bias.zero_()
    render, depth, alpha = frame()
    for strength, steps in ((0.0, 1), (0.2, 1), (0.6, 4)):
        out = h(render, depth, alpha, strength=strength, steps=steps)
        assert torch.allclose(out, render, atol=1e-6)


def test_ddim_step_moves_a_noised_image_along_the_same_noise():
    h = tiny_harmonizer()
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, torch.randn(1, 3, 8, 8, generator=g)
    x_300 = h.noised(x0, torch.tensor([300]), eps)
    x_100 = h._ddim_step(x_300, x0, 300, 100)
    assert torch.allclose(x_100, h.noised(x0, torch.tensor([100]), eps), atol=1e-5)
    a = h.alphas_cumprod[300]
    assert torch.allclose(x_300, a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-6)


def test_output_is_deterministic_in_range_and_depends_on_the_conditions():
    h = tiny_harmonizer()
    render, depth, alpha = frame()
    a = h(render, depth, alpha)
    assert a.shape == render.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, h(render, depth, alpha))
    assert not torch.equal(a, h(render, depth, alpha, mask=torch.zeros_like(alpha)))
    batch = h(render[None].repeat(2, 1, 1, 1), depth[None].repeat(2, 1, 1), alpha[None].repeat(2, 1, 1))
    assert batch.shape == (2, *render.shape)


def test_saved_model_loads_back_with_identical_outputs(tmp_path):
    h = tiny_harmonizer(seed=3, strength=0.3, steps=2)
    h.save(tmp_path / "harm")
    back = Harmonizer.load(tmp_path / "harm")
    assert back.config == h.config
    saved, loaded = h.unet.state_dict(), back.unet.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    render, depth, alpha = frame(seed=5)
    out = back(render, depth, alpha)
    # same weights; the fresh module and the loaded one may pick other conv kernels (rounding only)
    assert torch.allclose(out, h(render, depth, alpha), atol=2e-6)
    assert torch.equal(out, Harmonizer.load(tmp_path / "harm")(render, depth, alpha))
    assert (out - render).abs().mean() > 1e-3


def test_missing_weights_name_what_is_missing(tmp_path):
    with pytest.raises(HarmonizerError, match="does not exist"):
        Harmonizer.load(tmp_path / "nowhere")
    h = tiny_harmonizer()
    h.save(tmp_path / "harm")
    (tmp_path / "harm/unet/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(HarmonizerError, match="no UNet weights"):
        Harmonizer.load(tmp_path / "harm")
    (tmp_path / "harm/scheduler/scheduler_config.json").unlink()
    with pytest.raises(HarmonizerError, match="lacks scheduler/scheduler_config.json"):
        Harmonizer.load(tmp_path / "harm")


def test_truncated_weights_are_a_named_error(tmp_path):
    tiny_harmonizer().save(tmp_path / "harm")
    w = tmp_path / "harm/unet/diffusion_pytorch_model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(HarmonizerError, match="cannot load its weights"):
        Harmonizer.load(tmp_path / "harm")


def test_incompatible_models_are_refused_with_the_reason(tmp_path):
    from diffusers import UNet2DModel

    plain = UNet2DModel(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                        down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=8)
    tiny_harmonizer().save(tmp_path / "harm")
    plain.save_pretrained(tmp_path / "harm/unet")
    with pytest.raises(HarmonizerError, match=r"UNet takes 3 channels and returns 3.*needs 36 in"):
        Harmonizer.load(tmp_path / "harm")
    # An image-generation pipeline folder (e.g. Stable Diffusion) is not a harmonizer.
    tiny_harmonizer().save(tmp_path / "sd")
    (tmp_path / "sd/model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionInpaintPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}))
    with pytest.raises(HarmonizerError, match="StableDiffusionInpaintPipeline.*not a harmonizer"):
        Harmonizer.load(tmp_path / "sd")
    # harmonizer.json of another format or with unknown keys
    tiny_harmonizer().save(tmp_path / "meta")
    meta = json.loads((tmp_path / "meta/harmonizer.json").read_text())
    (tmp_path / "meta/harmonizer.json").write_text(json.dumps({**meta, "version": 9}))
    with pytest.raises(HarmonizerError, match="version 9"):
        Harmonizer.load(tmp_path / "meta")
    (tmp_path / "meta/harmonizer.json").write_text(json.dumps({**meta, "strenght": 0.1}))
    with pytest.raises(HarmonizerError, match="unknown keys"):
        Harmonizer.load(tmp_path / "meta")
    assert IN_CHANNELS == 9


def test_bad_inputs_are_named():
    h = tiny_harmonizer()
    render, depth, alpha = frame()
    with pytest.raises(HarmonizerError, match="depth must be"):
        h(render, depth[:-1], alpha)
    with pytest.raises(HarmonizerError, match=r"render must be \(H, W, 3\)"):
        h(render[..., :2], depth, alpha)
    with pytest.raises(HarmonizerError, match="non-finite"):
        h(render.clone().fill_(float("nan")), depth, alpha)
    with pytest.raises(HarmonizerError, match="strength"):
        h(render, depth, alpha, strength=1.5)
