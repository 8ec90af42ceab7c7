"""The error a log reader raises: it names the file, the field and the frame."""
from __future__ import annotations


class LogFormatError(ValueError):
    """A log that does not follow format version 1.

    ``file`` is the path relative to the log folder (``log.json``, ``cameras/...``),
    ``field`` the JSON path of the offending value (``frames[3].T_world_ego``) or a
    description of the array part, ``frame`` the frame index (None when the error is
    not about one frame).  ``str(err)`` names all three.
    """

    def __init__(self, message: str, file: str, field: str | None = None, frame: int | None = None) -> None:
        self.file = file
        self.field = field
        self.frame = frame
        self.detail = message
        where = file
        if field:
            where += f", field {field}"
        if frame is not None:
            where += f", frame {frame}"
        super().__init__(f"{where}: {message}")
