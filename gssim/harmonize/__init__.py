"""Diffusion harmonizer (diffusers) and scene expansion.

- ``model``: the conditional one/few-step diffusion model, its diffusers-format folder.
- ``pairs`` and ``train``: training pairs from our own data and CPU training.
- ``edit_frames``: harmonizing only the edited regions of an edited scene's frames.
- ``expand``: repairing off-path views and fine-tuning the scene on them.
- ``measure``: PSNR / SSIM of renders and of their repair on a log with true images.
"""
from gssim.harmonize.model import Harmonizer, HarmonizerConfig, HarmonizerError

__all__ = ["Harmonizer", "HarmonizerConfig", "HarmonizerError"]
