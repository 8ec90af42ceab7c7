"""Training the harmonizer on CPU, from the identity (the UNet's last layer zeroed):
random crops of the pairs, a timestep drawn in [0, max_strength * (T - 1)], the render
noised to it (the img2img start), and an L1 + MSE loss of the predicted clean image
against the truth (heavier inside the mask).

Writes ``OUT/`` (the harmonizer folder, when done), ``OUT.training/`` with checkpoints
``ckpt_<step>.safetensors`` (weights, optimiser and RNG state; ``latest`` names the last
complete one), ``curves.json`` and sample grids ``samples_<step>.png`` (render | harmonized
| truth | error x4 of a few fixed crops).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from PIL import Image
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from gssim.harmonize.model import Harmonizer, HarmonizerConfig, condition_stack
from gssim.harmonize.pairs import Pairs
from gssim.recon.report import side_by_side, to_uint8

Tensor = torch.Tensor
log = logging.getLogger(__name__)


@dataclass
class HarmonizerTrainConfig:
    """Settings of ``gssim harmonizer train`` (defaults train in minutes on two cores)."""

    steps: int = 300
    batch: int = 4
    crop: int = 96                # square crops (pixels, a multiple of the model's pad multiple)
    lr: float = 2e-3
    lr_final_ratio: float = 0.1   # cosine decay to this fraction
    mask_weight: float = 4.0      # loss weight inside the mask relative to outside
    widths: tuple[int, ...] = (48, 64, 96)
    sample_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0


def _crops(pairs: Pairs, idx: Tensor, crop: int, gen: torch.Generator) -> tuple[Tensor, ...]:
    """Random crops (and horizontal flips) of the pairs ``idx``: render, depth, alpha, mask, truth."""
    H, W = pairs.render.shape[1:3]
    ch, cw = min(crop, H), min(crop, W)
    outs = [[] for _ in range(5)]
    for i in idx.tolist():
        y = int(torch.randint(H - ch + 1, (1,), generator=gen))
        x = int(torch.randint(W - cw + 1, (1,), generator=gen))
        flip = bool(torch.rand((), generator=gen) < 0.5)
        for k, t in enumerate((pairs.render, pairs.depth, pairs.alpha, pairs.mask, pairs.truth)):
            c = t[i, y:y + ch, x:x + cw]
            outs[k].append(c.flip(1) if flip else c)
    return tuple(torch.stack(o) for o in outs)


def loss_of(model: Harmonizer, batch: tuple[Tensor, ...], gen: torch.Generator, mask_weight: float) -> Tensor:
    """The training loss of one batch (see the module docstring)."""
    render, depth, alpha, mask, truth = batch
    cond = condition_stack(render, depth, alpha, mask, model.config.depth_scale_m)
    t_max = model.timestep(model.config.max_strength)
    t = torch.randint(t_max + 1, (len(render),), generator=gen)
    x_t = model.noised(cond[:, :3], t, torch.randn(cond[:, :3].shape, generator=gen))
    x0 = model.predict(x_t, cond, t)
    target = truth.permute(0, 3, 1, 2) * 2 - 1
    w = 1 + (mask_weight - 1) * mask[:, None]
    w = w / w.mean()
    err = x0 - target
    return (w * (err.abs() + err ** 2)).mean()


def sample_grid(model: Harmonizer, pairs: Pairs, idx: list[int], path: Path) -> Path:
    """PNG: one row per pair (render | harmonized | truth | |error| x4 of the harmonized image)."""
    rows = []
    for i in idx:
        out = model(pairs.render[i], pairs.depth[i], pairs.alpha[i], pairs.mask[i])
        err = ((out - pairs.truth[i]).abs() * 4).clamp(0, 1)
        rows.append(side_by_side([to_uint8(pairs.render[i]), to_uint8(out), to_uint8(pairs.truth[i]), to_uint8(err)]))
    Image.fromarray(side_by_side(rows, vertical=True)).save(path)
    return path


def _save_checkpoint(work: Path, step: int, model: Harmonizer, opt: torch.optim.Optimizer, gen: torch.Generator,
                     curves: list[dict]) -> None:
    tensors = {f"unet.{k}": v.contiguous() for k, v in model.unet.state_dict().items()}
    for pi, p in enumerate(model.unet.parameters()):
        for key, val in opt.state.get(p, {}).items():
            tensors[f"opt.{pi}.{key}"] = val.detach().contiguous().reshape(val.shape)
    tensors["rng"] = gen.get_state()
    name = f"ckpt_{step:06d}.safetensors"
    tmp = work / f".{name}.tmp"
    safetensors.torch.save_file(tensors, str(tmp), metadata={"step": str(step), "curves": json.dumps(curves)})
    os.replace(tmp, work / name)
    (work / ".latest.tmp").write_text(name)
    os.replace(work / ".latest.tmp", work / "latest")
    for old in work.glob("ckpt_*.safetensors"):
        if old.name != name:
            old.unlink()


def _load_checkpoint(work: Path, model: Harmonizer, opt: torch.optim.Optimizer,
                     gen: torch.Generator) -> tuple[int, list[dict]]:
    latest = work / "latest"
    if not latest.is_file():
        return 0, []
    path = work / latest.read_text().strip()
    with safetensors.safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = safetensors.torch.load_file(str(path))
    model.unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    for pi, p in enumerate(model.unet.parameters()):
        st = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{pi}.")}
        if st:
            opt.state[p] = st
    gen.set_state(tensors["rng"])
    log.info("resumed harmonizer training from %s", path)
    return int(meta["step"]), json.loads(meta["curves"])


def train_harmonizer(pairs: Pairs, out, cfg: HarmonizerTrainConfig | None = None,
                     model_config: HarmonizerConfig | None = None, resume: bool = False,
                     progress: bool = True) -> Harmonizer:
    """Train a new small harmonizer on ``pairs``; save it to ``out`` (see the module docstring)."""
    cfg = cfg or HarmonizerTrainConfig()
    if len(pairs) == 0:
        raise ValueError("no training pairs")
    out = Path(out)
    work = Path(str(out) + ".training")
    if (work / "latest").is_file() and not resume:
        raise FileExistsError(f"{work} holds a checkpoint of an earlier run; pass --resume to continue it, "
                              f"or delete the folder")
    work.mkdir(parents=True, exist_ok=True)
    model = Harmonizer.new(cfg.widths, config=model_config, seed=cfg.seed)
    with torch.no_grad():     # start as the identity (zero residual): training adds only what helps
        model.unet.conv_out.weight.zero_()
        model.unet.conv_out.bias.zero_()
    if cfg.crop % model.pad_multiple:
        raise ValueError(f"crop {cfg.crop} must be a multiple of {model.pad_multiple} for this model")
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.unet.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step, curves = _load_checkpoint(work, model, opt, gen) if resume else (0, [])
    sample_idx = torch.linspace(0, len(pairs) - 1, min(4, len(pairs))).round().long().tolist()
    model.unet.train()
    cols = (TextColumn("harmonizer"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn())
    seconds, run = 0.0, 0
    with Progress(*cols, disable=not progress) as bar:
        task = bar.add_task("train", total=cfg.steps, completed=step, loss=0.0)
        ema = None
        while step < cfg.steps:
            t0 = time.perf_counter()
            frac = step / max(1, cfg.steps)
            for g in opt.param_groups:   # cosine decay
                g["lr"] = cfg.lr * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + np.cos(np.pi * frac)))
            idx = torch.randint(len(pairs), (cfg.batch,), generator=gen)
            loss = loss_of(model, _crops(pairs, idx, cfg.crop, gen), gen, cfg.mask_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run += 1
            seconds += time.perf_counter() - t0
            value = loss.item()
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            bar.update(task, completed=step, loss=ema)
            if step % cfg.sample_every == 0 or step == cfg.steps:
                model.unet.eval()
                sample_grid(model, pairs, sample_idx, work / f"samples_{step:06d}.png")
                model.unet.train()
                curves.append({"step": step, "loss": ema, "seconds": round(seconds, 2)})
                log.info("harmonizer step %d: loss %.4f (%.2f s/step)", step, ema, seconds / run)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _save_checkpoint(work, step, model, opt, gen, curves)
    model.unet.eval()
    model.save(out)
    (work / "curves.json").write_text(json.dumps(curves, indent=1))
    (work / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return model
