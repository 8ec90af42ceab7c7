"""Limits of sensor construction, and the argument checks every sensor model shares.

A sensor allocates per-cell grids when it is built (float64 ray directions, parameter
hulls), so a hostile or mistyped size -- a 100000 x 100000 camera, a spinning LiDAR with
``azimuth_resolution_deg=1e-6`` -- would try to allocate tens of gigabytes.  Every
constructor checks its grid against ``LIMITS`` *before* allocating anything, and checks
the type and range of every argument (a bool or a string where a number belongs is a
``SensorTypeError``, not a 1x1 camera).

Defaults (``SensorLimits()``):

========================  ============  ==================================================
``max_cells``             2**25         rows x cols of one sensor (33.5 M: an 8K UHD
                                        camera, 7680 x 4320, fits; about 1 GB of float64
                                        rays)
``max_side``              2**16         rows or columns (a spinning LiDAR down to
                                        360 / 65536 = 0.0055 deg azimuth resolution)
``max_beams``             1024          beams of a spinning LiDAR (binning tables are
                                        beams x beams)
``max_focal_px``          1e7           focal length in pixels: beyond it neighbouring
                                        rays are closer than float32 resolves (1e-7 rad)
``max_coordinate_m``      1e8           largest |x|, |y|, |z| of a pose's translation
                                        (render poses, log poses): float32 render maths
                                        and UTM/ECEF coordinates both fit
========================  ============  ==================================================

Override them for the whole process, or for a block::

    gssim.sensors.LIMITS.max_cells = 2**27
    with gssim.sensors.sensor_limits(max_cells=2**27, max_side=2**17):
        cam = gssim.PinholeCamera(16384, 8192, ...)

Errors are ``SensorConfigError`` (a ``ValueError``) naming the sensor class and the
parameter (``err.param``); wrong types raise ``SensorTypeError``, which is both a
``SensorConfigError`` and a ``TypeError``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch


@dataclass
class SensorLimits:
    """Largest sensors and coordinates accepted (see the module docstring)."""

    max_cells: int = 2 ** 25
    max_side: int = 2 ** 16
    max_beams: int = 1024
    max_focal_px: float = 1e7
    max_coordinate_m: float = 1e8


LIMITS = SensorLimits()


@contextmanager
def sensor_limits(**overrides: Any) -> Iterator[SensorLimits]:
    """Temporarily change fields of ``LIMITS`` (restored on exit); yields ``LIMITS``."""
    names = {f.name for f in dataclasses.fields(SensorLimits)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"sensor_limits: unknown limits {sorted(unknown)}; known are {sorted(names)}")
    saved = dataclasses.asdict(LIMITS)
    try:
        for key, value in overrides.items():
            setattr(LIMITS, key, value)
        yield LIMITS
    finally:
        for key, value in saved.items():
            setattr(LIMITS, key, value)


class SensorConfigError(ValueError):
    """A sensor argument that cannot be right; ``owner`` is the sensor class name and
    ``param`` the argument (``"width"``, ``"elevations_deg[3]"``)."""

    def __init__(self, owner: str, param: str, message: str) -> None:
        self.owner = owner
        self.param = param
        self.detail = message
        super().__init__(f"{owner}: {message}")


class SensorTypeError(SensorConfigError, TypeError):
    """A sensor argument of the wrong type (a bool or a string where a number belongs)."""


def _scalar(owner: str, key: str, value: Any, kind: str) -> Any:
    """Unwrap 0-d numpy arrays and tensors; refuse bools, strings and non-numbers."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        if value.ndim != 0:
            raise SensorTypeError(owner, key, f"{key} must be a single {kind}, got an array of shape "
                                              f"{tuple(value.shape)}")
        if isinstance(value, torch.Tensor) and value.device.type == "meta":
            raise SensorTypeError(owner, key, f"{key} is a tensor on the meta device (it has no value)")
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise SensorTypeError(owner, key, f"{key} must be a {kind}, got {type(value).__name__} {value!r}")
    return value


def real(owner: str, key: str, value: Any, lo: float = -math.inf, hi: float = math.inf,
         lo_open: bool = False, hi_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` as a float inside [lo, hi] (open ends with ``lo_open``/``hi_open``);
    finite unless ``allow_inf``.  Raises SensorTypeError / SensorConfigError naming ``key``."""
    v = _scalar(owner, key, value, "number")
    try:
        v = float(v)
    except OverflowError:
        raise SensorConfigError(owner, key, f"{key} is too large, got {value!r}") from None
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise SensorConfigError(owner, key, f"{key} must be finite, got {v}")
    below = v <= lo if lo_open else v < lo
    above = v >= hi if hi_open else v > hi
    if below or above:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise SensorConfigError(owner, key, f"{key} must lie in {interval}, got {v:g}")
    return v


def integer(owner: str, key: str, value: Any, lo: int, hi: int, hint: str = "") -> int:
    """``value`` as an int in [lo, hi] (a float with an integral value is accepted)."""
    v = _scalar(owner, key, value, "whole number")
    if isinstance(v, numbers.Integral):
        v = int(v)
    else:
        f = float(v)
        if not (math.isfinite(f) and f == int(f)):
            raise SensorConfigError(owner, key, f"{key} must be a whole number, got {value!r}")
        v = int(f)
    if v < lo:
        raise SensorConfigError(owner, key, f"{key} must be {'positive' if lo == 1 else f'>= {lo}'}, got {v}")
    if v > hi:
        raise SensorConfigError(owner, key, f"{key} must be <= {hi}, got {v}{hint}")
    return v


def boolean(owner: str, key: str, value: Any) -> bool:
    """``value`` as a bool; only True/False (numpy bools too), never a string or number."""
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 0 and value.dtype in (np.bool_, torch.bool):
        value = bool(value.item())
    if not isinstance(value, (bool, np.bool_)):
        raise SensorTypeError(owner, key, f"{key} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def reals(owner: str, key: str, values: Any, max_len: int | None = None) -> list[float]:
    """A sequence (list, tuple, 1-D array or tensor) of finite numbers, as floats.

    The length is checked against ``max_len`` before any element is converted."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise SensorTypeError(owner, key, f"{key} must be a list of numbers, got {type(values).__name__}")
    if isinstance(values, (np.ndarray, torch.Tensor)) and values.ndim != 1:
        raise SensorTypeError(owner, key, f"{key} must be a 1-D list of numbers, got shape {tuple(values.shape)}")
    if max_len is not None and len(values) > max_len:
        raise SensorConfigError(owner, key, f"{key} has {len(values)} entries, over the limit of {max_len}")
    return [real(owner, f"{key}[{i}]", v) for i, v in enumerate(values)]


def check_cells(owner: str, rows: int, cols: int, what: str, param: str) -> None:
    """Refuse a rows x cols grid over ``LIMITS`` (before anything is allocated); ``what``
    says where the size comes from, ``param`` is the argument blamed."""
    if rows > LIMITS.max_side or cols > LIMITS.max_side:
        raise SensorConfigError(owner, param, f"{what} gives a {rows} x {cols} grid; each side is limited to "
                                              f"{LIMITS.max_side} (gssim.sensors.LIMITS.max_side)")
    if rows * cols > LIMITS.max_cells:
        raise SensorConfigError(owner, param, f"{what} gives a {rows} x {cols} grid = {rows * cols} cells, over "
                                              f"the limit of {LIMITS.max_cells} (gssim.sensors.LIMITS.max_cells)")
