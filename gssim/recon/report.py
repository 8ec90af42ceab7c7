"""Pictures of a training run: loss / PSNR curves and renders beside the truth."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """(H, W, 3) float image in [0, 1] -> uint8."""
    arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    return (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)


def side_by_side(images: list[np.ndarray], vertical: bool = False) -> np.ndarray:
    """Concatenate uint8 images (H, W, 3) of any sizes in a row (or a column), padding with black."""
    axis = 0 if vertical else 1
    other = 1 - axis
    size = max(im.shape[other] for im in images)
    padded = []
    for im in images:
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[other] = (0, size - im.shape[other])
        padded.append(np.pad(im, pad))
    return np.concatenate(padded, axis)


def plot_curves(curves: list[dict], path: Path, title: str = "training") -> Path:
    """Training loss, training and held-out PSNR, and held-out LiDAR range error against step (PNG)."""
    steps = [c["step"] for c in curves]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    axes[0].plot(steps, [c["loss"] for c in curves], label="loss (EMA)")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[1].plot(steps, [c["psnr"] for c in curves], label="train PSNR (EMA)")
    val = [(c["step"], c["val_psnr"]) for c in curves if c.get("val_psnr") is not None]
    if val:
        axes[1].plot(*zip(*val), "o-", label="held-out PSNR")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("dB")
    axes[1].legend()
    rng = [(c["step"], 100 * c["val_range_error_m"]) for c in curves if c.get("val_range_error_m") is not None]
    if rng:
        axes[2].plot(*zip(*rng), "o-", color="tab:green", label="held-out LiDAR median range error")
        axes[2].set_ylabel("cm")
        axes[2].legend()
    axes[2].set_xlabel("step")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_training_report(trainer, folder: Path) -> list[Path]:
    """curves.png and renders.png (truth above render, held-out views first) in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [plot_curves(trainer.curves, folder / "curves.png", f"training {trainer.log.name}")]
    views = (trainer.val_cams or trainer.cams)[:3]
    cols = []
    with torch.no_grad():
        for v in views:
            frame, _, _ = trainer.scene.render_camera(v.sid, v.t, T0=v.T0, T1=v.T1)
            cols.append(side_by_side([to_uint8(v.image), to_uint8(frame.color)], vertical=True))
    Image.fromarray(side_by_side(cols)).save(folder / "renders.png")
    paths.append(folder / "renders.png")
    return paths
