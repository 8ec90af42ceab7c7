"""Batch rollouts on Ray: many closed-loop scenarios (scene, edits, traffic seed, stack
parameters), one Ray task each, metrics collected into one table.

SCENARIOS.json is a list of rollouts, or {"defaults": {...}, "rollouts": [...]}; each
rollout (defaults filled in) holds::

    {"name": "stop-and-go", "scene": "out/scene", "edits": [...] | "edits.json",
     "seed": 3, "closed_loop": {ClosedLoopConfig fields but seed}, "stack": {AccConfig fields},
     "out": "runs/stop-and-go"}      # optional: write the rollout's strip, plot, metrics

Relative paths are relative to the JSON file (example: ``scenes/sim/batch_small.json``).  A rollout that fails is a row with its
error; the batch goes on.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
import traceback
from pathlib import Path

log = logging.getLogger(__name__)

ROLLOUT_KEYS = {"name", "scene", "edits", "seed", "closed_loop", "stack", "out"}
COLUMNS = ["name", "scene", "seed", "status", "ended", "steps", "sim_time_s", "distance_m", "mean_speed", "max_speed",
           "min_ttc_s", "min_gap_m", "collisions", "emergency_steps", "mean_render_s", "wall_s", "error"]


def load_scenarios(path: str | Path) -> list[dict]:
    """Rollout specs of a scenarios file, defaults merged, paths made absolute, checked."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not readable JSON: {exc}") from None
    defaults: dict = {}
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"defaults", "rollouts"})
        if unknown or "rollouts" not in data:
            raise ValueError(f"{path}: expected a list of rollouts or {{'defaults', 'rollouts'}}, "
                             f"got keys {sorted(data)}")
        defaults, data = data.get("defaults") or {}, data["rollouts"]
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: needs a non-empty list of rollouts")
    specs = []
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: rollouts[{i}]: expected an object, got {type(r).__name__}")
        spec = {**defaults, **r}
        for key in ("closed_loop", "stack"):
            spec[key] = {**(defaults.get(key) or {}), **(r.get(key) or {})}
        unknown = sorted(set(spec) - ROLLOUT_KEYS)
        if unknown:
            raise ValueError(f"{path}: rollouts[{i}]: unknown keys {unknown}; known are {sorted(ROLLOUT_KEYS)}")
        if "scene" not in spec:
            raise ValueError(f"{path}: rollouts[{i}]: missing 'scene'")
        spec.setdefault("name", f"rollout_{i}")
        spec.setdefault("seed", 0)
        for key in ("scene", "out") + (("edits",) if isinstance(spec.get("edits"), str) else ()):
            if spec.get(key) is not None:
                spec[key] = str((path.parent / spec[key]).resolve())
        specs.append(spec)
    return specs


def run_rollout(spec: dict) -> dict:
    """One rollout -> a table row; any failure becomes the row's ``error``."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    row = {"name": spec.get("name"), "scene": spec.get("scene"), "seed": spec.get("seed"), "status": "ok",
           "error": ""}
    t0 = time.perf_counter()
    try:
        import torch
        torch.set_num_threads(1)
        from gssim.sim.closed_loop import ClosedLoopConfig, closed_loop_scene
        cfg = ClosedLoopConfig.from_dict({**spec.get("closed_loop", {}), "seed": int(spec.get("seed", 0))})
        rollout = closed_loop_scene(spec["scene"], spec.get("out"), cfg, spec.get("stack"), spec.get("edits"))
        row.update({k: v for k, v in rollout.metrics.items() if k in COLUMNS})
    except Exception as exc:  # a failed rollout is a row, not a failed batch
        row["status"] = "error"
        row["error"] = f"{type(exc).__name__}: {exc}"
        log.debug("rollout %s failed:\n%s", spec.get("name"), traceback.format_exc())
    row["wall_s"] = time.perf_counter() - t0
    return row


def run_batch(specs: list[dict], address: str = "local", num_cpus: int = 2) -> list[dict]:
    """Run every rollout as a Ray task; ``address`` "local" starts a local Ray with
    ``num_cpus`` (no dashboard), "auto" joins the running cluster, anything else is a
    cluster address (``ray://host:10001``).  Rows come back in the order of ``specs``."""
    import ray
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        else:
            ray.init(address=address, log_to_driver=False)
    task = ray.remote(num_cpus=1, max_retries=0)(run_rollout)
    futures = [task.remote(s) for s in specs]
    rows = []
    for spec, fut in zip(specs, futures):
        try:
            rows.append(ray.get(fut))
        except Exception as exc:  # the worker died (crash, out of memory): still a row
            rows.append({"name": spec.get("name"), "scene": spec.get("scene"), "seed": spec.get("seed"),
                         "status": "error", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"})
    return rows


def write_table(rows: list[dict], path: str | Path) -> Path:
    """The rows as CSV (``COLUMNS``; empty cells for what a row lacks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return path


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the main columns."""
    cols = ["name", "seed", "status", "distance_m", "mean_speed", "min_ttc_s", "collisions", "wall_s", "error"]

    def cell(v):
        if isinstance(v, float):
            return f"{v:.2f}"
        return "" if v is None else str(v)[:60]

    table = [cols] + [[cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table)
