"""Driving logs: the log format (version 1) reader and writer, and its validation."""
from gssim.data.errors import LogFormatError
from gssim.data.limits import LOG_LIMITS, LogLimits
from gssim.data.poses import PoseTrack
from gssim.data.rangeimage import RangeImage, rebin_points
from gssim.data.reader import ActorBox, Log, load_log
from gssim.data.writer import LogWriter

__all__ = ["LogFormatError", "LogLimits", "LOG_LIMITS", "PoseTrack", "RangeImage", "rebin_points", "ActorBox", "Log",
           "load_log", "LogWriter"]
