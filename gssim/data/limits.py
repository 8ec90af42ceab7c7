"""Limits and tolerances of the log reader (documented, overridable).

A log arrives from converters, other teams' tools and half-finished copies; the reader
refuses what cannot be right, and never allocates on a size the input merely claims.
Sensor sizes (cameras, LiDAR grids) and the largest pose coordinate are limited by
``gssim.sensors.LIMITS`` (``max_cells``, ``max_side``, ``max_beams``, ``max_focal_px``,
``max_coordinate_m``); the rest is here.

Defaults (``LogLimits()``):

=========================  ===========  =================================================
``max_json_bytes``         256 MiB      size of ``log.json``
``max_json_depth``         64           nesting of its arrays/objects (a log needs 6)
``max_image_bytes``        256 MiB      size of one image file
``max_lidar_points``       2**24        rows of one LiDAR array (16.7 M returns)
``max_abs_time_s``         1e10         |t| of frames and tracks (Unix seconds to 2286;
                                        float64 still resolves microseconds there)
``min_frame_interval_s``   1e-6         between consecutive frames / track samples
``lidar_time_slack``       0.1          time offsets of a LiDAR frame must lie within
``lidar_time_slack_s``     1e-3         sweep * (1 + slack) + slack_s of the frame time
                                        and span at most that
``lidar_range_slack_m``    0.25         returns must lie within [min_range, max_range]
``lidar_range_slack_rel``  0.01         widened by slack_m + slack_rel * bound (noise,
                                        calibration) plus the distance the sensor moves
                                        between the frame time and the returns' times
                                        (motion compensation)
=========================  ===========  =================================================

Override for one call (``load_log(root, limits=LogLimits(max_lidar_points=10**8))``)
or for the process (``gssim.data.LOG_LIMITS.max_json_bytes = 2**30``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LogLimits:
    """What the log reader and writer accept (see the module docstring)."""

    max_json_bytes: int = 256 * 2 ** 20
    max_json_depth: int = 64
    max_image_bytes: int = 256 * 2 ** 20
    max_lidar_points: int = 2 ** 24
    max_abs_time_s: float = 1e10
    min_frame_interval_s: float = 1e-6
    lidar_time_slack: float = 0.1
    lidar_time_slack_s: float = 1e-3
    lidar_range_slack_m: float = 0.25
    lidar_range_slack_rel: float = 0.01


LOG_LIMITS = LogLimits()
