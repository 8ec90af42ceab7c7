"""The harmonizer: a conditional diffusion model (a diffusers ``UNet2DModel``) that turns
a rendered camera image, with its rendered depth, alpha and an edit mask, into a
corrected image.

Sampling is img2img in one or a few steps, as a single-step fixer does: the render is
noised to a low timestep ``t0 = strength * (T - 1)`` (the forward process,
``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps``) and the network predicts the clean
image from ``x_t`` and the conditions.  The prediction is parametrised as a residual on
the render (``x0 = render + unet(...)``), so an untrained or weak correction stays
faithful.  With ``steps > 1`` the DDIM update (eta = 0) goes from ``t0`` down to 0.

A harmonizer is a diffusers-format folder::

    harmonizer.json                  {"format": "gssim-harmonizer", "version": 1, ...}  (optional)
    unet/config.json, unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json

The UNet sees the image space-to-depth rearranged in ``patch`` x ``patch`` blocks
(``pixel_unshuffle``), so it works at 1/patch resolution while its output, shuffled back,
keeps full resolution (this is what makes a 640x360 frame cost well under a second on
two cores).  Any such folder whose UNet takes ``(3 + len(CONDITIONS)) * patch**2`` input
channels and returns ``3 * patch**2`` loads, fully offline; anything else is refused with a
message naming what is wrong.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
log = logging.getLogger(__name__)

FORMAT = "gssim-harmonizer"
VERSION = 1
CONDITIONS = ("render_r", "render_g", "render_b", "depth", "alpha", "mask")
IN_CHANNELS = 3 + len(CONDITIONS)     # per pixel: the noised image, then the conditions


class HarmonizerError(ValueError):
    """A harmonizer folder is missing, incomplete or incompatible, or an input is malformed."""


@dataclass
class HarmonizerConfig:
    """Inference settings stored beside the weights (``harmonizer.json``)."""

    strength: float = 0.2           # img2img strength: t0 = strength * (T - 1)
    steps: int = 1                  # denoising steps from t0 to 0
    max_strength: float = 0.4       # training draws t uniformly in [0, max_strength * (T - 1)]
    depth_scale_m: float = 10.0     # depth condition: 1 / (1 + depth / depth_scale_m), 0 where nothing was hit
    seed: int = 0                   # noise of the forward process (outputs are deterministic)
    patch: int = 4                  # space-to-depth block size of the UNet's input and output

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "HarmonizerConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - {"format", "version"})
        if unknown:
            raise HarmonizerError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.check(where)
        return cfg

    def check(self, where: str = "harmonizer config") -> None:
        if not 0.0 <= self.strength <= 1.0 or not 0.0 < self.max_strength <= 1.0:
            raise HarmonizerError(f"{where}: strength {self.strength} and max_strength {self.max_strength} "
                                  f"must lie in [0, 1]")
        if int(self.steps) < 1:
            raise HarmonizerError(f"{where}: steps must be >= 1, got {self.steps}")
        if int(self.patch) < 1:
            raise HarmonizerError(f"{where}: patch must be >= 1, got {self.patch}")
        if not self.depth_scale_m > 0:
            raise HarmonizerError(f"{where}: depth_scale_m must be > 0, got {self.depth_scale_m}")


def tiny_unet(widths: tuple[int, ...] = (48, 64, 96), layers_per_block: int = 1, patch: int = 4):
    """A small UNet2DModel for CPU training (no attention) on ``patch``-unshuffled images."""
    from diffusers import UNet2DModel

    return UNet2DModel(in_channels=IN_CHANNELS * patch ** 2, out_channels=3 * patch ** 2,
                       block_out_channels=tuple(widths),
                       layers_per_block=layers_per_block, down_block_types=("DownBlock2D",) * len(widths),
                       up_block_types=("UpBlock2D",) * len(widths), norm_num_groups=min(8, widths[0]))


def default_scheduler():
    """The forward process (linear betas, 1000 steps) the harmonizer is trained with."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="sample")


def condition_stack(render: Tensor, depth: Tensor, alpha: Tensor, mask: Tensor, depth_scale_m: float) -> Tensor:
    """Conditions (B, 6, H, W): render in [-1, 1], inverse depth, alpha, mask.

    render: (B, H, W, 3) in [0, 1]; depth, alpha, mask: (B, H, W) (depth in metres, 0 where
    nothing was hit).
    """
    inv_depth = torch.where(depth > 0, 1.0 / (1.0 + depth.clamp(min=0) / depth_scale_m), torch.zeros_like(depth))
    return torch.cat([render.permute(0, 3, 1, 2) * 2 - 1, inv_depth[:, None], alpha[:, None],
                      mask[:, None].to(render.dtype)], 1)


class Harmonizer:
    """The UNet, the noise schedule and the inference settings; see the module docstring."""

    def __init__(self, unet, scheduler, config: HarmonizerConfig | None = None) -> None:
        self.unet = unet.eval()
        self.scheduler = scheduler
        self.config = config or HarmonizerConfig()
        self.config.check()
        _check_unet_config(dict(unet.config), self.config.patch, "harmonizer")
        # the UNet halves its resolution at every block but the last
        self.pad_multiple = self.config.patch * 2 ** (len(unet.config.block_out_channels) - 1)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float32)

    @classmethod
    def new(cls, widths: tuple[int, ...] = (48, 64, 96), layers_per_block: int = 1,
            config: HarmonizerConfig | None = None, seed: int = 0) -> "Harmonizer":
        """A freshly initialised small harmonizer (weights from ``seed``)."""
        config = config or HarmonizerConfig()
        torch.manual_seed(seed)
        return cls(tiny_unet(widths, layers_per_block, config.patch), default_scheduler(), config)

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def timestep(self, strength: float) -> int:
        """The start timestep of img2img with this strength."""
        return int(round(float(strength) * (self.num_timesteps - 1)))

    # --- the network ------------------------------------------------------------------
    def predict(self, x_t: Tensor, cond: Tensor, t: Tensor) -> Tensor:
        """Predicted clean image (B, 3, H, W) in [-1, 1] space: render + residual.

        x_t: (B, 3, H, W) noised image; cond: (B, 6, H, W) from ``condition_stack``;
        t: (B,) integer timesteps.  H and W need not be multiples of anything (reflect-padded).
        """
        H, W = x_t.shape[-2:]
        ph, pw = (-H) % self.pad_multiple, (-W) % self.pad_multiple
        inp = torch.cat([x_t, cond], 1)
        if ph or pw:
            inp = F.pad(inp, (0, pw, 0, ph), mode="replicate")
        p = self.config.patch
        res = F.pixel_shuffle(self.unet(F.pixel_unshuffle(inp, p), t).sample, p)[..., :H, :W]
        return cond[:, :3] + res

    def noised(self, x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """The forward process q(x_t | x): sqrt(abar_t) x + sqrt(1 - abar_t) noise (DDPM eq. 4)."""
        return self.scheduler.add_noise(x, noise, t)

    # --- sampling ---------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, render: Tensor, depth: Tensor, alpha: Tensor, mask: Tensor | None = None,
                 strength: float | None = None, steps: int | None = None) -> Tensor:
        """Corrected image(s) in [0, 1], same shape as ``render``.

        render: (H, W, 3) or (B, H, W, 3) in [0, 1]; depth, alpha, mask: (H, W) or (B, H, W);
        mask (the region to correct, default: everywhere) only conditions the network —
        keeping pixels outside it is ``gssim.harmonize.edit_frames``'s job.
        """
        single = render.dim() == 3
        if single:
            render, depth, alpha = render[None], depth[None], alpha[None]
            mask = None if mask is None else mask[None]
        _check_inputs(render, depth, alpha, mask)
        if mask is None:
            mask = torch.ones_like(alpha)
        strength = self.config.strength if strength is None else strength
        steps = self.config.steps if steps is None else int(steps)
        if not 0.0 <= strength <= 1.0 or steps < 1:
            raise HarmonizerError(f"strength must be in [0, 1] and steps >= 1, got {strength} and {steps}")
        cond = condition_stack(render.float(), depth.float(), alpha.float(), mask, self.config.depth_scale_m)
        gen = torch.Generator().manual_seed(self.config.seed)
        x0 = cond[:, :3]
        t0 = self.timestep(strength)
        ts = sorted({int(round(v)) for v in torch.linspace(t0, 0, steps + 1)[:-1].tolist()}, reverse=True)
        x_t = self.noised(x0, torch.full((len(x0),), t0), torch.randn(x0.shape, generator=gen))
        for k, t in enumerate(ts):
            x0 = self.predict(x_t, cond, torch.full((len(x0),), t, dtype=torch.long))
            if k + 1 < len(ts):
                x_t = self._ddim_step(x_t, x0, t, ts[k + 1])
        out = ((x0.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)
        return out[0] if single else out

    def _ddim_step(self, x_t: Tensor, x0: Tensor, t: int, t_next: int) -> Tensor:
        """DDIM (eta = 0, Song et al. eq. 12): x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t') eps(x_t, x0)."""
        a_t, a_n = self.alphas_cumprod[t], self.alphas_cumprod[t_next]
        eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        return a_n.sqrt() * x0 + (1 - a_n).sqrt() * eps

    # --- files ------------------------------------------------------------------------
    def save(self, folder) -> Path:
        """Write the diffusers-format folder (see the module docstring)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(folder / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(folder / "scheduler")
        meta = {"format": FORMAT, "version": VERSION, **asdict(self.config)}
        (folder / "harmonizer.json").write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder) -> "Harmonizer":
        """Load a harmonizer folder offline; ``HarmonizerError`` names what is missing or incompatible."""
        from diffusers import DDPMScheduler, UNet2DModel

        folder = Path(folder)
        if not folder.is_dir():
            raise HarmonizerError(f"harmonizer folder {folder} does not exist (train one with "
                                  f"`gssim harmonizer train`, or give a diffusers-format folder)")
        index = folder / "model_index.json"
        if index.is_file():
            _check_pipeline_index(index)
        for rel in ("unet/config.json", "scheduler/scheduler_config.json"):
            if not (folder / rel).is_file():
                raise HarmonizerError(f"harmonizer folder {folder} lacks {rel}")
        weights = list((folder / "unet").glob("diffusion_pytorch_model*.safetensors")) + \
            list((folder / "unet").glob("diffusion_pytorch_model*.bin"))
        if not weights:
            raise HarmonizerError(f"harmonizer folder {folder} has no UNet weights "
                                  f"(unet/diffusion_pytorch_model.safetensors)")
        unet_cfg = _read_json(folder / "unet/config.json")
        if unet_cfg.get("_class_name") != "UNet2DModel":
            raise HarmonizerError(f"{folder / 'unet/config.json'}: the UNet is a {unet_cfg.get('_class_name')!r}; "
                                  f"the harmonizer needs a UNet2DModel taking the noised image and "
                                  f"{', '.join(CONDITIONS)} per pixel, returning RGB")
        config = HarmonizerConfig()
        meta_path = folder / "harmonizer.json"
        if meta_path.is_file():
            meta = _read_json(meta_path)
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise HarmonizerError(f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                                      f"expected {FORMAT!r} version {VERSION}")
            config = HarmonizerConfig.from_dict(meta, str(meta_path))
        _check_unet_config(unet_cfg, config.patch, str(folder / "unet/config.json"))
        try:
            unet = UNet2DModel.from_pretrained(folder / "unet", local_files_only=True, low_cpu_mem_usage=False)
            scheduler = DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise HarmonizerError(f"harmonizer folder {folder}: cannot load its weights: {exc}") from exc
        return cls(unet, scheduler, config)


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarmonizerError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(d, dict):
        raise HarmonizerError(f"{path}: expected a JSON object")
    return d


def _check_pipeline_index(index: Path) -> None:
    """A pipeline folder (model_index.json) loads only when its UNet is one we can condition."""
    d = _read_json(index)
    unet = d.get("unet")
    if not (isinstance(unet, list) and len(unet) == 2 and unet[1] == "UNet2DModel"):
        raise HarmonizerError(f"{index}: a {d.get('_class_name', 'diffusers')} pipeline with unet {unet!r} is not a "
                              f"harmonizer; gssim needs a UNet2DModel taking the noised image and "
                              f"{', '.join(CONDITIONS)} per pixel")


def _check_unet_config(cfg: dict, patch: int, where: str) -> None:
    want_in, want_out = IN_CHANNELS * patch ** 2, 3 * patch ** 2
    if cfg.get("in_channels") != want_in or cfg.get("out_channels") != want_out:
        raise HarmonizerError(f"{where}: UNet takes {cfg.get('in_channels')} channels and returns "
                              f"{cfg.get('out_channels')}; with patch {patch} the harmonizer needs {want_in} in "
                              f"((noised image + {', '.join(CONDITIONS)}) x {patch}x{patch}) and {want_out} out")


def _check_inputs(render: Tensor, depth: Tensor, alpha: Tensor, mask: Tensor | None) -> None:
    if render.dim() != 4 or render.shape[-1] != 3 or 0 in render.shape:
        raise HarmonizerError(f"render must be (H, W, 3) or (B, H, W, 3) and not empty, got {tuple(render.shape)}")
    want = tuple(render.shape[:3])
    for name, x in (("depth", depth), ("alpha", alpha), ("mask", mask)):
        if x is not None and tuple(x.shape) != want:
            raise HarmonizerError(f"{name} must be {want} like the render, got {tuple(x.shape)}")
    if not math.isfinite(float(render.sum())):
        raise HarmonizerError("render holds non-finite values")
