"""Build the procedural asset library: recipes -> meshes -> fitted surfels -> assets.

Reproducible: the sampling and the order of training views come from fixed seeds
(``FitConfig.seed`` plus the asset's index in the recipes file).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from gssim.edit.assets import DEFAULT_LIBRARY, Asset, save_asset, write_thumbnail
from gssim.edit.meshes import RECIPES_FILE, load_recipes
from gssim.edit.surfelize import FitConfig, asset_from_mesh

log = logging.getLogger(__name__)


@dataclass
class BuiltAsset:
    asset: Asset
    folder: Path
    seconds: float


def build_library(library: str | Path = DEFAULT_LIBRARY, only: list[str] | None = None,
                  cfg: FitConfig | None = None, recipes: str | Path = RECIPES_FILE,
                  show_progress: bool = True) -> list[BuiltAsset]:
    """Build (overwriting) the recipes' assets (all, or ``only`` these names) into ``library``."""
    cfg = cfg or FitConfig()
    table = load_recipes(recipes)
    names = list(table)
    if only:
        unknown = [n for n in only if n not in table]
        if unknown:
            raise KeyError(f"no recipe for {unknown} in {recipes} (recipes: {', '.join(names)})")
        names = [n for n in names if n in only]
    built = []
    columns = (TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TimeElapsedColumn())
    with Progress(*columns, disable=not show_progress) as bar:
        for name in names:
            cls, mesh = table[name]
            task = bar.add_task(name, total=max(cfg.steps, 1))
            t0 = time.perf_counter()
            asset_cfg = replace(cfg, seed=cfg.seed + list(table).index(name))
            asset = asset_from_mesh(name, cls, mesh, f"procedural:{name}", asset_cfg,
                                    progress=lambda step, task=task: bar.update(task, completed=step + 1))
            seconds = time.perf_counter() - t0
            asset.fit["build_seconds"] = round(seconds, 1)
            folder = save_asset(asset, library, overwrite=True)
            write_thumbnail(asset, library)
            bar.update(task, completed=max(cfg.steps, 1))
            b, a = asset.fit["before"], asset.fit["after"]
            log.info("%s (%s): %d surfels, held-out PSNR %.2f -> %.2f dB, range error %.3f -> %.3f m, %.1f s",
                     name, cls, len(asset), b["psnr"], a["psnr"], b["range_error_m"], a["range_error_m"], seconds)
            built.append(BuiltAsset(asset, folder, seconds))
    return built
