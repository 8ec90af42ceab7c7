"""Hostile and broken logs: every kind of damage is a LogFormatError naming the file, the
field and the frame; nothing outside the log folder is opened; no allocation is sized by
a claim of the input; valid but unusual files are read.

One table per class of damage (issue 8): 1 escaping paths, 2 files that do not decode,
3 sizes that would allocate, 4 values that cannot be right, 6 unusual valid input.
A row is (id, damage(root, written) -> optional call on the opened log, expected file,
field, frame, a substring of the message).
"""
from __future__ import annotations

import builtins
import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gssim.data import LogFormatError, LogLimits, load_log

IMG1 = "cameras/cam_front/000001.png"
NPY1 = "lidar/lidar_top/000001.npy"
CAM1 = "frames[1].cameras.cam_front"
LID1 = "frames[1].lidars.lidar_top"


# --- helpers ------------------------------------------------------------------------
def edit_json(root: Path, fn) -> None:
    path = root / "log.json"
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def png_bytes(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, **kw).save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height RGB pixels, with no image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def npy_with_header(shape, dtype="<f4", data: bytes = b"") -> bytes:
    """A .npy file (format 1.0) whose header claims ``shape``, followed by ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def set_points(root: Path, written, frame: int, edit) -> None:
    pts = written["points"][frame].copy()
    edit(pts)
    np.save(root / f"lidar/lidar_top/{frame:06d}.npy", pts)


def expect_error(root: Path, file: str, field: str | None, frame: int | None, match: str, call=None,
                 **open_kw) -> LogFormatError:
    with pytest.raises(LogFormatError) as info:
        log = load_log(root, **open_kw)
        if call is not None:
            call(log)
    err = info.value
    msg = str(err)
    assert (err.file, err.field, err.frame) == (file, field, frame), msg
    assert match in msg, msg
    assert file in msg and (field is None or field in msg) and (frame is None or f"frame {frame}" in msg), msg
    return err


@pytest.fixture
def outside(tmp_path):
    """A folder beside the log, holding files a hostile log points at."""
    d = tmp_path / "outside"
    d.mkdir()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(d / "image.png")
    np.save(d / "points.npy", np.array([[5.0, 0, 0, 0.5, 1, 0.01]], np.float32))
    (d / "secret.txt").write_text("root:x:0:0\n")
    return d


@pytest.fixture
def opened_paths(monkeypatch):
    """Every path opened through os.open or open() while the test runs (real paths)."""
    seen: list[str] = []
    real_os_open, real_open = os.open, builtins.open

    def spy_os_open(path, *a, **kw):
        if isinstance(path, (str, bytes, os.PathLike)):
            seen.append(os.path.realpath(path))
        return real_os_open(path, *a, **kw)

    def spy_open(file, *a, **kw):
        if isinstance(file, (str, bytes, os.PathLike)):
            seen.append(os.path.realpath(file))
        return real_open(file, *a, **kw)
    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    return seen


def _relink(path: Path, target: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    path.symlink_to(target)


def _swap_dir_for_link(root: Path, sub: str, outside: Path) -> None:
    """Move ``root/sub`` outside the folder and leave a symbolic link to it."""
    moved = outside / sub.replace("/", "_")
    (root / sub).rename(moved)
    (root / sub).symlink_to(moved, target_is_directory=True)


# --- 1. paths that leave the log folder -----------------------------------------------
ESCAPES = [
    ("image-symlink-to-outside-png", lambda r, o: _relink(r / IMG1, o / "image.png"),
     IMG1, CAM1, 1, "leads outside the folder"),
    ("image-symlink-to-secret", lambda r, o: _relink(r / IMG1, o / "secret.txt"),
     IMG1, CAM1, 1, "leads outside the folder"),
    ("npy-symlink-to-outside-npy", lambda r, o: _relink(r / NPY1, o / "points.npy"),
     NPY1, LID1, 1, "leads outside the folder"),
    ("cameras-folder-is-a-link", lambda r, o: _swap_dir_for_link(r, "cameras", o),
     "cameras/cam_front/000000.png", "frames[0].cameras.cam_front", 0, "leads outside the folder"),
    ("lidar-sensor-folder-is-a-link", lambda r, o: _swap_dir_for_link(r, "lidar/lidar_top", o),
     "lidar/lidar_top/000000.npy", "frames[0].lidars.lidar_top", 0, "leads outside the folder"),
    ("log-json-is-a-link", lambda r, o: ((r / "log.json").rename(o / "log.json"),
                                         (r / "log.json").symlink_to(o / "log.json")),
     "log.json", None, None, "leads outside the folder"),
    ("symlink-loop", lambda r, o: _relink(r / IMG1, r / IMG1), IMG1, CAM1, 1, "cannot open"),
    ("dangling-symlink", lambda r, o: _relink(r / IMG1, r / "nowhere.png"), IMG1, CAM1, 1, "missing file"),
    ("absolute-path", lambda r, o: edit_json(r, lambda d: d["frames"][1]["cameras"].update(
        cam_front=str(o / "image.png"))), "log.json", CAM1, 1, "absolute paths are not allowed"),
    ("dot-dot-path", lambda r, o: edit_json(r, lambda d: d["frames"][1]["cameras"].update(
        cam_front="../outside/image.png")), "log.json", CAM1, 1, "'..' is not allowed"),
    ("dot-dot-inside-path", lambda r, o: edit_json(r, lambda d: d["frames"][1]["lidars"].update(
        lidar_top="lidar/../../outside/points.npy")), "log.json", LID1, 1, "'..' is not allowed"),
]


@pytest.mark.parametrize("damage, file, field, frame, match", [r[1:] for r in ESCAPES], ids=[r[0] for r in ESCAPES])
def test_paths_never_leave_the_log_folder(tiny_log, outside, opened_paths, damage, file, field, frame, match):
    root, _ = tiny_log
    damage(root, outside)
    expect_error(root, file, field, frame, match)
    # ... and the lazy readers refuse the same without a check at open time.
    if file != "log.json":
        log = load_log(root, check_files=False)
        reader = log.image if "cameras" in field else log.lidar_points
        with pytest.raises(LogFormatError, match="leads outside|not allowed|cannot open|missing"):
            reader(frame, field.rsplit(".", 1)[-1])
    leaked = [p for p in opened_paths if p.startswith(str(outside.resolve()) + os.sep)]
    assert not leaked, f"opened outside the log: {leaked}"


def test_links_that_stay_inside_are_followed(tiny_log):
    root, written = tiny_log
    (root / "spare").mkdir()
    (root / IMG1).rename(root / "spare/frame1.png")
    (root / IMG1).symlink_to(Path("../../spare/frame1.png"))
    np.testing.assert_array_equal(load_log(root).image(1, "cam_front"), written["images"][1])


# --- 2. files that do not decode ----------------------------------------------------
def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _garble_png_data(path: Path) -> None:
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start:start + 40] = b"\xaa" * 40
    path.write_bytes(bytes(data))


def _npz_as_npy(path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, points=np.zeros((3, 6), np.float32))
    path.write_bytes(buf.getvalue())


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _long_name(chars: int):
    def damage(root: Path) -> None:
        edit_json(root, lambda d: d["frames"][1]["cameras"].update(cam_front="cameras/" + "a" * chars + ".png"))
    return damage


def _raw_json(text: bytes):
    return lambda root: (root / "log.json").write_bytes(text)


def _json_with_extra(value):
    return lambda root: edit_json(root, lambda d: d.update(extra=value))


def _nested(depth: int):
    v: object = 0
    for _ in range(depth):
        v = [v]
    return v


IMAGE_CALL = (lambda log: log.image(1, "cam_front"))
NPY_CALL = (lambda log: log.lidar_points(1, "lidar_top"))

# (id, damage(root), call or None (error at load_log), load_log keywords, file, field, frame, match)
STRICT, LAZY = {}, {"check_files": False}
UNDECODABLE = [
    ("png-half-copied", lambda r: _truncate(r / IMG1), None, STRICT, IMG1, CAM1, 1, "incomplete"),
    ("png-half-copied-lazy", lambda r: _truncate(r / IMG1), IMAGE_CALL, LAZY, IMG1, CAM1, 1, "cannot read image"),
    ("png-header-only", lambda r: _truncate(r / IMG1, 0.1), IMAGE_CALL, LAZY, IMG1, CAM1, 1, "cannot read image"),
    ("png-garbled-data", lambda r: _garble_png_data(r / IMG1), IMAGE_CALL, STRICT, IMG1, CAM1, 1,
     "cannot read image"),
    ("png-decompression-bomb", lambda r: (r / IMG1).write_bytes(png_header_only(20000, 20000)), None, STRICT,
     IMG1, CAM1, 1, "decompression-bomb"),
    ("png-empty", lambda r: (r / IMG1).write_bytes(b""), None, STRICT, IMG1, CAM1, 1, "empty"),
    ("png-is-a-directory", lambda r: _dir(r / IMG1), None, STRICT, IMG1, CAM1, 1, "is a directory"),
    ("png-is-a-fifo", lambda r: _fifo(r / IMG1), None, STRICT, IMG1, CAM1, 1, "not a regular file"),
    ("npy-empty", lambda r: (r / NPY1).write_bytes(b""), None, STRICT, NPY1, "array header", 1, "empty (0 bytes)"),
    ("npz-saved-as-npy", lambda r: _npz_as_npy(r / NPY1), None, STRICT, NPY1, "array header", 1, "zip archive"),
    ("npy-is-text", lambda r: (r / NPY1).write_text("1 2 3 4 5 6\n"), None, STRICT, NPY1, "array header", 1,
     "not a .npy array"),
    ("npy-truncated", lambda r: _truncate(r / NPY1, 0.7), None, STRICT, NPY1, "array data", 1, "truncated"),
    ("npy-header-garbage", lambda r: (r / NPY1).write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': <f4 ###}\n"),
     None, STRICT, NPY1, LID1, 1, "cannot read .npy array"),
    ("npy-object-dtype", lambda r: (r / NPY1).write_bytes(npy_with_header((2, 6), "|O")), None, STRICT, NPY1,
     "array dtype", 1, "expected float32"),
    ("npy-is-a-fifo", lambda r: _fifo(r / NPY1), NPY_CALL, LAZY, NPY1, LID1, 1, "not a regular file"),
    ("file-name-5000-chars", _long_name(5000), None, STRICT, "log.json", CAM1, 1,
     "characters long, over the limit of 1024"),
    ("file-name-component-300-bytes", _long_name(300), None, STRICT, "log.json", CAM1, 1, "over the limit of 255"),
    ("file-name-nul-byte", lambda r: edit_json(r, lambda d: d["frames"][1]["cameras"].update(
        cam_front="cameras/a\x00b.png")), None, STRICT, "log.json", CAM1, 1, "NUL byte"),
    ("log-json-utf16-bom", lambda r: (r / "log.json").write_text((r / "log.json").read_text(), encoding="utf-16"),
     None, STRICT, "log.json", None, None, "UTF-16"),
    ("log-json-utf16-no-bom", lambda r: (r / "log.json").write_bytes((r / "log.json").read_text()
                                                                      .encode("utf-16-le")),
     None, STRICT, "log.json", None, None, "UTF-16"),
    ("log-json-utf32", lambda r: (r / "log.json").write_text((r / "log.json").read_text(), encoding="utf-32"),
     None, STRICT, "log.json", None, None, "UTF-32"),
    ("log-json-bad-byte", lambda r: (r / "log.json").write_bytes(
        (r / "log.json").read_bytes().replace(b'"tiny"', b'"ti\xffny"')), None, STRICT, "log.json", None, None,
     "not valid UTF-8: byte 0xff at line"),
    ("log-json-nested-100000", _raw_json(b"[" * 100000 + b"]" * 100000), None, STRICT, "log.json", None, None,
     "nested deeper than 64"),
    ("log-json-nested-80-in-extra", _json_with_extra(_nested(80)), None, STRICT, "log.json", None, None,
     "over the limit of 64"),
    ("log-json-nan", _raw_json(b'{"format": "gssim-log", "version": NaN}'), None, STRICT, "log.json", None, None,
     "NaN is not a finite number"),
    ("log-json-overflowing-number", _raw_json(b'{"format": "gssim-log", "version": 1e999}'), None, STRICT,
     "log.json", None, None, "1e999 is not a finite number"),
    ("log-json-5000-digit-integer", _raw_json(b'{"version": ' + b"9" * 5000 + b"}"), None, STRICT, "log.json", None,
     None, "invalid JSON"),
    ("log-json-duplicate-key", _raw_json(b'{"format": "gssim-log", "version": 1, "version": 2}'), None, STRICT,
     "log.json", None, None, "duplicate key 'version'"),
    ("log-json-empty", _raw_json(b""), None, STRICT, "log.json", None, None, "invalid JSON at line 1"),
    ("log-json-is-a-directory", lambda r: ((r / "log.json").unlink(), (r / "log.json").mkdir()), None, STRICT,
     "log.json", None, None, "is a directory"),
    ("log-json-over-size-limit", lambda r: None, None, {"limits": LogLimits(max_json_bytes=100)}, "log.json", None,
     None, "over the limit of 100"),
]


@pytest.mark.parametrize("damage, call, open_kw, file, field, frame, match", [r[1:] for r in UNDECODABLE],
                         ids=[r[0] for r in UNDECODABLE])
def test_files_that_do_not_decode_are_named_errors(tiny_log, damage, call, open_kw, file, field, frame, match):
    root, _ = tiny_log
    damage(root)
    expect_error(root, file, field, frame, match, call=call, **open_kw)


# --- 3. sizes that would allocate -------------------------------------------------------
def _sensor(sid: str, **fields):
    return lambda r: edit_json(r, lambda d: d["sensors"][sid].update(fields))


HUGE = [
    ("camera-100000x100000", _sensor("cam_front", width=100000, height=100000), None, "log.json",
     "sensors.cam_front.width", None, "LIMITS.max_side"),
    ("camera-60000x60000", _sensor("cam_front", width=60000, height=60000), None, "log.json",
     "sensors.cam_front.width", None, "LIMITS.max_cells"),
    ("camera-width-10**30", _sensor("cam_front", width=10 ** 30), None, "log.json", "sensors.cam_front.width", None,
     "must be <= 65536"),
    ("lidar-azimuth-resolution-1e-6", _sensor("lidar_top", azimuth_resolution_deg=1e-6), None, "log.json",
     "sensors.lidar_top.azimuth_resolution_deg", None, "3.6e+08 columns"),
    ("lidar-azimuth-resolution-5e-324", _sensor("lidar_top", azimuth_resolution_deg=5e-324), None, "log.json",
     "sensors.lidar_top.azimuth_resolution_deg", None, "over the limit"),
    ("lidar-100000-beams", _sensor("lidar_top", elevations_deg=list(np.linspace(-80, 80, 100000))), None,
     "log.json", "sensors.lidar_top.elevations_deg", None, "100000 entries, over the limit of 1024"),
    ("lidar-beams-times-columns", _sensor("lidar_top", elevations_deg=list(np.linspace(-80, 80, 1000)),
                                          azimuth_resolution_deg=360 / 60000), None, "log.json",
     "sensors.lidar_top.azimuth_resolution_deg", None, "LIMITS.max_cells"),
    ("solid-state-resolution-1e-6", _sensor("lidar_top", model="solid_state", horizontal_fov_deg=60.0,
                                            vertical_fov_deg=20.0, horizontal_resolution_deg=1e-6,
                                            vertical_resolution_deg=1.0), None, "log.json",
     "sensors.lidar_top.horizontal_resolution_deg", None, "over the limit of 65536"),
    ("npy-header-claims-1e12-rows", lambda r: (r / NPY1).write_bytes(npy_with_header((10 ** 12, 6))), None, NPY1,
     "array shape", 1, "over the limit of 16777216"),
    ("npy-header-claims-1e6-rows-holds-10", lambda r: (r / NPY1).write_bytes(
        npy_with_header((10 ** 6, 6), data=b"\0" * 240)), NPY_CALL, NPY1, "array data", 1, "truncated"),
    ("image-header-claims-60000x60000", lambda r: (r / IMG1).write_bytes(png_header_only(60000, 60000)), None, IMG1,
     CAM1, 1, "decompression-bomb"),
    ("image-header-claims-1000x1000", lambda r: (r / IMG1).write_bytes(png_header_only(1000, 1000)), None, IMG1,
     "sensors.cam_front.width/height", 1, "image is 1000x1000, but sensors.cam_front is 16x12"),
]


@pytest.mark.parametrize("damage, call, file, field, frame, match", [r[1:] for r in HUGE], ids=[r[0] for r in HUGE])
def test_hostile_sizes_are_refused_before_allocating(tiny_log, damage, call, file, field, frame, match):
    import tracemalloc
    root, _ = tiny_log
    damage(root)
    tracemalloc.start()
    try:
        expect_error(root, file, field, frame, match, call=call)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2 ** 20, f"peak traced allocation {peak / 2 ** 20:.0f} MiB"


def test_limits_can_be_raised(tiny_log):
    root, written = tiny_log
    pts = written["points"][1]
    with pytest.raises(LogFormatError, match="over the limit of 5"):
        load_log(root, limits=LogLimits(max_lidar_points=5))
    np.testing.assert_array_equal(load_log(root, limits=LogLimits(max_lidar_points=len(pts))).lidar_points(
        1, "lidar_top"), pts)


# --- 4. values that cannot be right -------------------------------------------------
def _frame(pos: int, **fields):
    return lambda r, w: edit_json(r, lambda d: d["frames"][pos].update(fields))


def _pose_entry(path, i, j, value):
    def edit(d):
        node = d
        for key in path:
            node = node[key]
        node[i][j] = value
    return lambda r, w: edit_json(r, edit)


def _jpeg_as_png(r: Path, w) -> None:
    Image.fromarray(w["images"][1]).save(r / IMG1, format="JPEG")


def _points(edit):
    return lambda r, w: set_points(r, w, 1, edit)


def _col(c, v, row=0):
    def edit(p):
        p[row, c] = v
    return edit


def _at_range(r_metres):
    def edit(p):
        p[0, :3] = p[0, :3] / np.linalg.norm(p[0, :3]) * r_metres
    return edit


LID_CALL = (lambda log: log.lidar_points(1, "lidar_top"))
RI_CALL = (lambda log: log.range_image(1, "lidar_top"))
TIME = "column 5 (time offset)"
XYZ = "columns 0-2 (x, y, z)"

# (id, damage(root, written), call, file, field, frame, match)
WRONG_VALUES = [
    ("version-true", lambda r, w: edit_json(r, lambda d: d.update(version=True)), None, "log.json", "version", None,
     "unsupported version True"),
    ("version-1.0", lambda r, w: edit_json(r, lambda d: d.update(version=1.0)), None, "log.json", "version", None,
     "unsupported version 1.0"),
    ("version-string", lambda r, w: edit_json(r, lambda d: d.update(version="1")), None, "log.json", "version", None,
     "unsupported version '1'"),
    ("fx-1e-300", lambda r, w: _sensor("cam_front", fx=1e-300)(r), None, "log.json", "sensors.cam_front.fx", None,
     "field of view"),
    ("fx-1e30", lambda r, w: _sensor("cam_front", fx=1e30)(r), None, "log.json", "sensors.cam_front.fx", None,
     "LIMITS.max_focal_px"),
    ("fx-10**400", lambda r, w: _sensor("cam_front", fx=10 ** 400)(r), None, "log.json", "sensors.cam_front.fx",
     None, "too large"),
    ("fx-string", lambda r, w: _sensor("cam_front", fx="10")(r), None, "log.json", "sensors.cam_front.fx", None,
     "must be a number, got str"),
    ("width-true", lambda r, w: _sensor("cam_front", width=True)(r), None, "log.json", "sensors.cam_front.width",
     None, "got bool"),
    ("cx-1e300", lambda r, w: _sensor("cam_front", cx=1e300)(r), None, "log.json", "sensors.cam_front.cx", None,
     "field of view"),
    ("distortion-string", lambda r, w: _sensor("cam_front", distortion="none")(r), None, "log.json",
     "sensors.cam_front.distortion", None, "must be a list of numbers"),
    ("rolling-shutter-string", lambda r, w: _sensor("cam_front", rolling_shutter_s="0")(r), None, "log.json",
     "sensors.cam_front.rolling_shutter_s", None, "got str"),
    ("rolling-shutter-1e300", lambda r, w: _sensor("cam_front", rolling_shutter_s=1e300)(r), None, "log.json",
     "sensors.cam_front.rolling_shutter_s", None, "must lie in [0, 1]"),
    ("clockwise-string-false", lambda r, w: _sensor("lidar_top", clockwise="false")(r), None, "log.json",
     "sensors.lidar_top.clockwise", None, "must be True or False, got str 'false'"),
    ("spin-hz-1e-300", lambda r, w: _sensor("lidar_top", spin_hz=1e-300)(r), None, "log.json",
     "sensors.lidar_top.spin_hz", None, "must lie in [0.01, 1000]"),
    ("elevation-bool", lambda r, w: _sensor("lidar_top", elevations_deg=[True, 0.0])(r), None, "log.json",
     "sensors.lidar_top.elevations_deg[0]", None, "got bool"),
    ("min-range-string", lambda r, w: _sensor("lidar_top", min_range="1")(r), None, "log.json",
     "sensors.lidar_top.min_range", None, "got str"),
    ("sensor-id-with-slash", lambda r, w: edit_json(r, lambda d: d["sensors"].update(
        {"a/b": d["sensors"]["cam_front"]})), None, "log.json", "sensors.a/b", None, "must not contain '/'"),
    ("frame-translation-1e300", _pose_entry(["frames", 1, "T_world_ego"], 0, 3, 1e300), None, "log.json",
     "frames[1].T_world_ego", 1, "LIMITS.max_coordinate_m"),
    ("mount-translation-1e300", _pose_entry(["sensors", "lidar_top", "T_ego_sensor"], 2, 3, -1e300), None,
     "log.json", "sensors.lidar_top.T_ego_sensor", None, "LIMITS.max_coordinate_m"),
    ("actor-translation-1e300", _pose_entry(["actors", 0, "track", 1, "T_world_object"], 1, 3, 1e300), None,
     "log.json", "actors[0].track[1].T_world_object", None, "LIMITS.max_coordinate_m"),
    ("pose-bool-entry", _pose_entry(["frames", 2, "T_world_ego"], 3, 3, True), None, "log.json",
     "frames[2].T_world_ego", 2, "element [3][3] is bool"),
    ("pose-string-entry", _pose_entry(["frames", 2, "T_world_ego"], 0, 0, "1"), None, "log.json",
     "frames[2].T_world_ego", 2, "element [0][0] is str"),
    ("pose-ragged", lambda r, w: edit_json(r, lambda d: d["frames"][0]["T_world_ego"][1].pop()), None, "log.json",
     "frames[0].T_world_ego", 0, "expected a 4x4 matrix"),
    ("frame-1e-12-s-after-previous", lambda r, w: edit_json(r, lambda d: d["frames"][1].update(
        t=d["frames"][0]["t"] + 1e-12)), None, "log.json", "frames[1].t", 1, "LogLimits.min_frame_interval_s"),
    ("frame-t-1e300", _frame(2, t=1e300), None, "log.json", "frames[2].t", 2, "over the limit of 1e+10"),
    ("frame-index-bool", _frame(0, index=False), None, "log.json", "frames[0].index", 0,
     "expected a non-negative integer"),
    ("actor-samples-1e-12-s-apart", lambda r, w: edit_json(r, lambda d: d["actors"][0]["track"][1].update(
        t=d["actors"][0]["track"][0]["t"] + 1e-12)), None, "log.json", "actors[0].track[1].t", None,
     "LogLimits.min_frame_interval_s"),
    ("actor-id-path", lambda r, w: edit_json(r, lambda d: d["actors"][0].update(id="../../etc")), None, "log.json",
     "actors[0].id", None, "must not contain '/'"),
    ("actor-size-1e300", lambda r, w: edit_json(r, lambda d: d["actors"][0].update(size=[1e300, 1, 1])), None,
     "log.json", "actors[0].size[0]", None, "over the limit"),
    ("jpeg-bytes-named-png", _jpeg_as_png, None, IMG1, CAM1, 1, "file content is JPEG, but the name says PNG"),
    ("gif-bytes-named-png", lambda r, w: Image.fromarray(w["images"][1]).save(r / IMG1, format="GIF"), None, IMG1,
     CAM1, 1, "file content is GIF"),
    ("image-suffix-bmp", _frame(1, cameras={"cam_front": "cameras/cam_front/000001.bmp"}), None, "log.json", CAM1,
     1, "must end in one of"),
    ("lidar-suffix-npz", _frame(1, lidars={"lidar_top": "lidar/lidar_top/000001.npz"}), None, "log.json", LID1, 1,
     "must end in one of"),
    ("image-16-bit", lambda r, w: Image.fromarray(np.zeros((12, 16), np.uint16)).save(r / IMG1), None, IMG1, CAM1, 1,
     "image mode"),
    ("time-offset-minus-0.5", _points(_col(5, -0.5)), LID_CALL, NPY1, TIME, 1, "got [-0.5,"),
    ("time-offset-plus-5", _points(_col(5, 5.0)), RI_CALL, NPY1, TIME, 1, "within one sweep (0.1 s"),
    ("time-offset-1e30", _points(_col(5, 1e30)), RI_CALL, NPY1, TIME, 1, "within one sweep"),
    ("time-offsets-span-two-sweeps", _points(lambda p: (_col(5, -0.1)(p), _col(5, 0.1, row=1)(p))), RI_CALL, NPY1,
     TIME, 1, "got [-0.1, 0.1] s"),
    ("point-at-origin", _points(lambda p: p.__setitem__((3, slice(0, 3)), 0.0)), LID_CALL, NPY1, XYZ, 1,
     "row 3 is at the sensor origin"),
    ("point-beyond-max-range", _points(_at_range(400.0)), RI_CALL, NPY1, XYZ, 1, "row 0 is 400 m from the sensor"),
    ("point-coordinate-1e39", lambda r, w: np.save(r / NPY1, np.concatenate(
        [w["points"][1].astype(np.float64), [[1e39, 0, 0, 0.5, 0, 0.01]]])), LID_CALL, NPY1, "values", 1,
     "overflows float32"),
    ("point-nan", _points(_col(2, np.nan, row=4)), LID_CALL, NPY1, "values", 1, "non-finite value in row 4"),
    ("beam-negative", _points(_col(4, -1)), LID_CALL, NPY1, "column 4 (beam index)", 1, "beam index must be"),
    ("beam-fractional", _points(_col(4, 1.5)), LID_CALL, NPY1, "column 4 (beam index)", 1, "beam index must be"),
]


@pytest.mark.parametrize("damage, call, file, field, frame, match", [r[1:] for r in WRONG_VALUES],
                         ids=[r[0] for r in WRONG_VALUES])
def test_values_that_cannot_be_right_are_named(tiny_log, damage, call, file, field, frame, match):
    root, written = tiny_log
    damage(root, written)
    expect_error(root, file, field, frame, match, call=call)


def test_returns_past_max_range_within_the_motion_slack_are_kept(tiny_log):
    """The ego moves 20 m/s: a return 1 m past max_range (50 m) late in the sweep is the
    motion compensation, not damage; 5 m past is."""
    root, written = tiny_log

    def push(r):
        def edit(p):
            p[0, :3] = p[0, :3] / np.linalg.norm(p[0, :3]) * r
            p[0, 5] = 0.09
        set_points(root, written, 1, edit)
    push(51.0)
    assert load_log(root).range_image(1, "lidar_top").range.max() > 50.0
    push(55.0)
    with pytest.raises(LogFormatError, match="outside .min_range, max_range. = .1, 50. m with slack"):
        load_log(root).range_image(1, "lidar_top")


# --- 6. valid but unusual input -----------------------------------------------------------
def test_utf8_bom_in_log_json_is_accepted(tiny_log):
    root, written = tiny_log
    (root / "log.json").write_bytes(b"\xef\xbb\xbf" + (root / "log.json").read_bytes())
    assert load_log(root).name == "tiny"


@pytest.mark.parametrize("transparency", [False, True])
def test_palette_png_is_read_as_rgb(tiny_log, transparency):
    root, _ = tiny_log
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255], [10, 200, 30]], np.uint8)
    index = (np.arange(12 * 16).reshape(12, 16) % 4).astype(np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette(palette.reshape(-1).tolist())
    kw = {"transparency": 0} if transparency else {}
    im.save(root / IMG1, **kw)
    np.testing.assert_array_equal(load_log(root).image(1, "cam_front"), palette[index])


def test_grey_and_rgba_pngs_are_read(tiny_log):
    root, written = tiny_log
    grey = written["images"][1][..., 0]
    Image.fromarray(grey).save(root / IMG1)
    np.testing.assert_array_equal(load_log(root).image(1, "cam_front"), np.repeat(grey[..., None], 3, -1))
    rgba = np.concatenate([written["images"][1], np.full((12, 16, 1), 7, np.uint8)], -1)
    Image.fromarray(rgba).save(root / IMG1)
    np.testing.assert_array_equal(load_log(root).image(1, "cam_front"), written["images"][1])


def test_jpeg_named_jpeg_is_read(tiny_log):
    root, written = tiny_log
    Image.fromarray(written["images"][1]).save(root / "cameras/cam_front/000001.jpeg", quality=98)
    edit_json(root, lambda d: d["frames"][1]["cameras"].update(cam_front="cameras/cam_front/000001.jpeg"))
    with Image.open(root / "cameras/cam_front/000001.jpeg") as im:
        np.testing.assert_array_equal(load_log(root).image(1, "cam_front"), np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("layout", ["big-endian float32", "float64", "fortran order", "big-endian float64"])
def test_unusual_npy_layouts_are_read(tiny_log, layout):
    root, written = tiny_log
    pts = written["points"][1]
    stored = {"big-endian float32": pts.astype(">f4"), "float64": pts.astype(np.float64),
              "fortran order": np.asfortranarray(pts), "big-endian float64": pts.astype(">f8")}[layout]
    np.save(root / NPY1, stored)
    got = load_log(root).lidar_points(1, "lidar_top")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, pts)
