"""Safe reading of the files of a folder someone else wrote (a log, a scene).

A folder format names its files by relative paths taken from its own JSON.  Reading
them safely takes three guarantees, which this module gives and nothing more:

* **the path stays inside the folder**: absolute paths, ``..`` components, NUL bytes,
  over-long names and symbolic links whose target leaves the folder are refused
  (``check_relative``, ``resolve_inside``); a name that will become a file name (an
  id) holds no separator or control character (``check_name``);
* **only a regular file is opened**, without following a last-moment symbolic link,
  and not when it is larger than a limit: a FIFO would block, a device never end
  (``open_inside``, ``read_bytes_inside``);
* **JSON is decoded strictly**: UTF-8 (a byte-order mark is accepted; UTF-16/32 and bad
  bytes are named errors), no NaN/Infinity, no duplicate keys, a nesting-depth limit
  instead of a ``RecursionError`` (``decode_text``, ``parse_json``, ``read_json_inside``).

Every error is a ``SafeFileError`` (a ``ValueError``): ``UnsafePathError`` when the path
itself is refused, ``FileReadError`` when the file cannot be opened or decoded
(``MissingFileError`` when it does not exist).  Each carries ``path`` (the relative path
as given), ``what`` (the caller's description of the file) and ``detail`` (what is
wrong), so a caller wraps it in its own error class::

    try:
        data = read_json_inside(root, "scene.json", "scene description")
    except SafeFileError as exc:
        raise SceneFormatError(f"{exc.path}: {exc.detail}") from None

The check-then-open sequence resolves every symbolic link once and opens the resolved
path with ``O_NOFOLLOW``; a folder whose components are swapped for links *while* it is
read is out of scope (that needs ``openat2``).
"""
from __future__ import annotations

import codecs
import json
import math
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

# Longest relative path (characters) and file-name component (UTF-8 bytes, NAME_MAX).
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
# Defaults of the JSON readers: size of the file and nesting depth of its values.
DEFAULT_MAX_JSON_BYTES = 256 * 2 ** 20
DEFAULT_MAX_JSON_DEPTH = 64


class SafeFileError(ValueError):
    """A file of a folder that cannot be read safely.  ``str(err)`` names the file."""

    def __init__(self, path: str, what: str, detail: str) -> None:
        self.path = path
        self.what = what
        self.detail = detail
        super().__init__(f"{what} {path!r}: {detail}")


class UnsafePathError(SafeFileError):
    """The path is refused: absolute, ``..``, malformed, or leading outside the folder."""


class FileReadError(SafeFileError):
    """The file cannot be opened, is not a regular file, is too large, or does not decode."""


class MissingFileError(FileReadError):
    """The path is safe but no file exists there."""


def check_relative(rel: str, what: str = "file") -> PurePosixPath:
    """Syntactic checks of a relative path (no file-system access): a non-empty string,
    '/'-separated, not absolute, no ``..`` component, no NUL byte, at most
    MAX_PATH_CHARS characters and MAX_NAME_BYTES bytes per component."""
    if not isinstance(rel, str):
        raise UnsafePathError(repr(rel), what, f"expected a relative path (a string), got {type(rel).__name__}")
    shown = rel if len(rel) <= 80 else rel[:60] + "..." + rel[-12:]
    if not rel:
        raise UnsafePathError(rel, what, "empty path")
    if "\x00" in rel:
        raise UnsafePathError(shown, what, "path contains a NUL byte")
    if len(rel) > MAX_PATH_CHARS:
        raise UnsafePathError(shown, what, f"path is {len(rel)} characters long, over the limit of {MAX_PATH_CHARS}")
    pure = PurePosixPath(rel)
    if pure.is_absolute():
        raise UnsafePathError(shown, what, "absolute paths are not allowed; give a path relative to the folder")
    if ".." in pure.parts:
        raise UnsafePathError(shown, what, "'..' is not allowed in a path; files must lie inside the folder")
    for part in pure.parts:
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise UnsafePathError(shown, what, "path is not valid Unicode text") from None
        if size > MAX_NAME_BYTES:
            raise UnsafePathError(shown, what, f"a file name is {size} bytes long, over the limit of "
                                               f"{MAX_NAME_BYTES}")
    return pure


def check_name(name: str, what: str = "name") -> str:
    """A name that becomes one path component (a sensor or node id turned into a folder
    or file name): a non-empty string of at most MAX_NAME_BYTES UTF-8 bytes without
    '/', '\\', NUL or other control characters, and not '.' or '..'.  Returns it."""
    if not isinstance(name, str):
        raise UnsafePathError(repr(name), what, f"expected a string, got {type(name).__name__}")
    shown = name if len(name) <= 80 else name[:60] + "..." + name[-12:]
    if not name or name in (".", ".."):
        raise UnsafePathError(shown, what, "must be a non-empty name other than '.' and '..'")
    bad = sorted({c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise UnsafePathError(shown, what, f"must not contain {', '.join(repr(c) for c in bad)} "
                                           f"(it becomes a file name)")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafePathError(shown, what, "is not valid Unicode text") from None
    if size > MAX_NAME_BYTES:
        raise UnsafePathError(shown, what, f"is {size} bytes long, over the limit of {MAX_NAME_BYTES}")
    return name


def resolve_inside(root: str | os.PathLike, rel: str, what: str = "file") -> Path:
    """The real path of ``root/rel`` with every symbolic link resolved; raises
    UnsafePathError when ``rel`` is malformed (``check_relative``) or its target lies
    outside ``root`` (itself resolved).  The file need not exist."""
    pure = check_relative(rel, what)
    try:
        base = Path(os.path.realpath(root))
        target = Path(os.path.realpath(base.joinpath(*pure.parts)))
    except (OSError, ValueError) as exc:
        raise UnsafePathError(rel, what, f"cannot resolve the path: {exc}") from None
    if target != base and base not in target.parents:
        raise UnsafePathError(rel, what, f"leads outside the folder {base} (to {target}); symbolic links must "
                                         f"stay inside the folder")
    return target


def open_inside(root: str | os.PathLike, rel: str, what: str = "file", max_bytes: int | None = None) -> BinaryIO:
    """Open the regular file ``root/rel`` for binary reading (see ``resolve_inside``).

    Raises MissingFileError when it does not exist, FileReadError when it is not a
    regular file, cannot be opened, or is larger than ``max_bytes``.  The caller closes
    the returned file (use it in a ``with`` block)."""
    target = resolve_inside(root, rel, what)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags)
    except FileNotFoundError:
        raise MissingFileError(rel, what, "missing file") from None
    except OSError as exc:
        raise FileReadError(rel, what, f"cannot open: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO, socket or device)"
            raise FileReadError(rel, what, f"is {kind}")
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileReadError(rel, what, f"is {st.st_size} bytes, over the limit of {max_bytes}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes_inside(root: str | os.PathLike, rel: str, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The content of the regular file ``root/rel`` (see ``open_inside``)."""
    with open_inside(root, rel, what, max_bytes) as f:
        try:  # read what fstat saw (+1 to notice growth): the limit is never a buffer size
            data = f.read(os.fstat(f.fileno()).st_size + 1)
            if max_bytes is None:
                data += f.read()
        except OSError as exc:
            raise FileReadError(rel, what, f"cannot read: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise FileReadError(rel, what, f"is over the limit of {max_bytes} bytes")
    return data


_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def decode_text(data: bytes, path: str, what: str = "file") -> str:
    """Text of UTF-8 bytes; a UTF-8 byte-order mark is dropped.  UTF-16/32 text and
    invalid bytes raise FileReadError naming the line and byte offset."""
    for bom, name in _WIDE_BOMS:
        if data.startswith(bom):
            raise FileReadError(path, what, f"is {name} text (byte-order mark {bom.hex()}); save it as UTF-8")
    if len(data) >= 2 and (data[0] == 0 or data[1] == 0):
        raise FileReadError(path, what, "starts with a NUL byte (UTF-16 or UTF-32 text without a byte-order "
                                        "mark?); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.start + 1].hex()
        raise FileReadError(path, what, f"is not valid UTF-8: byte 0x{bad} at line {line} (offset {exc.start}); "
                                        f"save it as UTF-8") from None


class _DuplicateKey(ValueError):
    pass


class _BadConstant(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def _no_constant(name: str) -> Any:
    raise _BadConstant(name)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (math.inf, -math.inf):
        raise _BadConstant(literal[:40])
    return value


# A JSON string (valid JSON only: used after the parser accepted the text).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_OPEN = np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


def _nesting_depth(text: str, chunk: int = 1 << 22) -> int:
    """Deepest nesting of arrays/objects in valid JSON text (strings skipped)."""
    bare = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    depth = deepest = 0
    for start in range(0, len(bare), chunk):
        steps = _OPEN[np.frombuffer(bare, np.uint8, count=min(chunk, len(bare) - start), offset=start)]
        steps = steps[steps != 0].astype(np.int64)
        if len(steps):
            running = depth + np.cumsum(steps)
            deepest = max(deepest, int(running.max()))
            depth = int(running[-1])
    return deepest


def parse_json(data: bytes | str, path: str, what: str = "JSON file", max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Parse JSON text (bytes are decoded by ``decode_text``) strictly: NaN and
    Infinity literals, numbers that overflow a float (1e999), duplicate object keys,
    and nesting deeper than ``max_depth``
    raise FileReadError naming the line and column where the parser knows them."""
    text = decode_text(data, path, what) if isinstance(data, (bytes, bytearray)) else data.removeprefix("\ufeff")
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                           parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise FileReadError(path, what, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise FileReadError(path, what, f"invalid JSON: duplicate key {exc.args[0]!r} in an object") from None
    except _BadConstant as exc:
        raise FileReadError(path, what, f"invalid JSON: {exc.args[0]} is not a finite number") from None
    except RecursionError:
        raise FileReadError(path, what, f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # e.g. an integer literal of thousands of digits
        raise FileReadError(path, what, f"invalid JSON: {exc}") from None
    depth = _nesting_depth(text)
    if depth > max_depth:
        raise FileReadError(path, what, f"JSON nested {depth} levels deep, over the limit of {max_depth}")
    return value


def read_json_inside(root: str | os.PathLike, rel: str, what: str = "JSON file",
                     max_bytes: int = DEFAULT_MAX_JSON_BYTES, max_depth: int = DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Read and parse the JSON file ``root/rel`` (``read_bytes_inside`` + ``parse_json``)."""
    return parse_json(read_bytes_inside(root, rel, what, max_bytes), rel, what, max_depth)


__all__ = ["SafeFileError", "UnsafePathError", "FileReadError", "MissingFileError", "check_relative", "check_name",
           "resolve_inside", "open_inside", "read_bytes_inside", "decode_text", "parse_json", "read_json_inside",
           "MAX_PATH_CHARS", "MAX_NAME_BYTES", "DEFAULT_MAX_JSON_BYTES", "DEFAULT_MAX_JSON_DEPTH"]
