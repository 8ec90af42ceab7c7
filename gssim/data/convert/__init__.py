"""Converters of public driving datasets to the gssim log format (``gssim convert``)."""
from __future__ import annotations

import importlib

# --from name -> module (each defines ``convert(source, scene, out, progress=True) -> Path``).
CONVERTERS = {
    "nuscenes": "gssim.data.convert.nuscenes",
    "waymo": "gssim.data.convert.waymo",
    "pandaset": "gssim.data.convert.pandaset",
    "argoverse2": "gssim.data.convert.argoverse2",
    "kitti360": "gssim.data.convert.kitti360",
}


def converter(name: str):
    """The ``convert`` function of a source dataset by its ``--from`` name."""
    if name not in CONVERTERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(CONVERTERS)}")
    return importlib.import_module(CONVERTERS[name]).convert
