"""gssim.data.safe_files: paths stay inside the folder, only regular files are opened,
JSON is decoded strictly; every refusal is a ValueError naming the path."""
from __future__ import annotations

import os

import numpy as np
import pytest

from gssim.data import LogWriter
from gssim.data.safe_files import (FileReadError, MissingFileError, SafeFileError, UnsafePathError, check_name,
                                   check_relative, open_inside, parse_json, read_bytes_inside, read_json_inside,
                                   resolve_inside)
from gssim.sensors import PinholeCamera, SpinningLidar


@pytest.fixture
def folder(tmp_path):
    """root/ with a file, a sub-folder, links inside and out; outside/ beside it."""
    root, out = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    out.mkdir()
    (root / "a.json").write_text('{"a": [1, 2]}')
    (root / "sub/b.bin").write_bytes(b"\x00\x01\x02")
    (out / "secret.json").write_text('{"secret": true}')
    (root / "inside_link.json").symlink_to("a.json")
    (root / "outside_link.json").symlink_to(out / "secret.json")
    (root / "sub/up").symlink_to("..", target_is_directory=True)
    (root / "sub/away").symlink_to(out, target_is_directory=True)
    os.mkfifo(root / "fifo")
    return root, out


# (id, relative path, error class, message substring)
REFUSED = [
    ("absolute", "/etc/passwd", UnsafePathError, "absolute paths are not allowed"),
    ("dot-dot", "../outside/secret.json", UnsafePathError, "'..' is not allowed"),
    ("dot-dot-deep", "sub/../../outside/secret.json", UnsafePathError, "'..' is not allowed"),
    ("link-out", "outside_link.json", UnsafePathError, "leads outside the folder"),
    ("dir-link-out", "sub/away/secret.json", UnsafePathError, "leads outside the folder"),
    ("nul", "a\x00.json", UnsafePathError, "NUL byte"),
    ("empty", "", UnsafePathError, "empty path"),
    ("too-long", "x/" * 600 + "a.json", UnsafePathError, "over the limit of 1024"),
    ("name-too-long", "é" * 200, UnsafePathError, "over the limit of 255"),
    ("not-a-string", 7, UnsafePathError, "expected a relative path"),
    ("missing", "nope.json", MissingFileError, "missing file"),
    ("directory", "sub", FileReadError, "is a directory"),
    ("fifo", "fifo", FileReadError, "not a regular file"),
]


@pytest.mark.parametrize("rel, error, match", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_paths_are_named(folder, rel, error, match):
    root, _ = folder
    with pytest.raises(error) as info:
        read_bytes_inside(root, rel, "test file")
    err = info.value
    assert isinstance(err, SafeFileError) and isinstance(err, ValueError)
    assert match in err.detail and "test file" in str(err) and err.what == "test file"
    shown = rel if isinstance(rel, str) else repr(rel)
    assert err.path[:40] == shown[:40] and repr(err.path)[1:-1][:40] in str(err)


def test_paths_inside_are_resolved(folder):
    root, _ = folder
    assert resolve_inside(root, "inside_link.json") == (root / "a.json").resolve()
    assert resolve_inside(root, "sub/up/a.json") == (root / "a.json").resolve()
    assert resolve_inside(root, "./sub//b.bin") == (root / "sub/b.bin").resolve()
    assert resolve_inside(root, "not/yet/there.json") == root.resolve() / "not/yet/there.json"
    assert read_bytes_inside(root, "sub/b.bin") == b"\x00\x01\x02"
    with open_inside(root, "inside_link.json") as f:
        assert f.read() == b'{"a": [1, 2]}'
    assert check_relative("a/b.png").parts == ("a", "b.png")


def test_size_limit(folder):
    root, _ = folder
    assert read_bytes_inside(root, "a.json", max_bytes=13) == b'{"a": [1, 2]}'
    with pytest.raises(FileReadError, match="13 bytes, over the limit of 12"):
        read_bytes_inside(root, "a.json", max_bytes=12)
    with pytest.raises(FileReadError, match="over the limit of 12"):
        open_inside(root, "a.json", max_bytes=12)


# (id, bytes, message substring)
BAD_JSON = [
    ("utf16-bom", '{"a": 1}'.encode("utf-16"), "UTF-16 text"),
    ("utf16-no-bom", '{"a": 1}'.encode("utf-16-be"), "NUL byte"),
    ("utf32", '{"a": 1}'.encode("utf-32"), "UTF-32 text"),
    ("latin1-byte", '{"a": "caf\xe9"}'.encode("latin-1"), "not valid UTF-8: byte 0xe9 at line 1"),
    ("bad-byte-line-3", b'{\n"a": 1,\n"b": "\xc3("}', "at line 3"),
    ("syntax", b'{"a": 1,,}', "invalid JSON at line 1 column 9"),
    ("nan", b'{"a": NaN}', "NaN is not a finite number"),
    ("minus-infinity", b'[-Infinity]', "-Infinity is not a finite number"),
    ("overflow", b'[1.5e400]', "1.5e400 is not a finite number"),
    ("duplicate-key", b'{"a": 1, "b": {"c": 1, "c": 2}}', "duplicate key 'c'"),
    ("deep", b"[" * 5000 + b"]" * 5000, "nested deeper than 64"),
    ("depth-65", b'{"x": ' + b"[" * 64 + b"]" * 64 + b"}", "nested 65 levels deep, over the limit of 64"),
    ("huge-integer", b"[" + b"7" * 10000 + b"]", "invalid JSON"),
]


@pytest.mark.parametrize("data, match", [r[1:] for r in BAD_JSON], ids=[r[0] for r in BAD_JSON])
def test_bad_json_is_named(data, match):
    with pytest.raises(FileReadError) as info:
        parse_json(data, "scene.json", "scene description")
    assert match in str(info.value) and "scene.json" in str(info.value)


def test_valid_json_variants():
    assert parse_json(b'\xef\xbb\xbf{"a": 1}', "x.json") == {"a": 1}
    assert parse_json('\ufeff[1, 2.5, "]]}{"]', "x.json") == [1, 2.5, "]]}{"]
    assert parse_json(b'{"s": "\\"[[[[\\\\"}', "x.json") == {"s": '"[[[[\\'}
    assert parse_json(b"[" * 64 + b"]" * 64, "x.json", max_depth=64) is not None
    assert parse_json(b"[" * 100 + b"]" * 100, "x.json", max_depth=100) is not None
    assert parse_json('{"é": "ü"}'.encode(), "x.json") == {"é": "ü"}


def test_read_json_inside(folder):
    root, _ = folder
    assert read_json_inside(root, "inside_link.json") == {"a": [1, 2]}
    with pytest.raises(UnsafePathError):
        read_json_inside(root, "outside_link.json")
    with pytest.raises(FileReadError, match="over the limit of 5"):
        read_json_inside(root, "a.json", max_bytes=5)
    with pytest.raises(FileReadError, match="over the limit of 1"):
        read_json_inside(root, "a.json", max_depth=1)


@pytest.mark.parametrize("name, ok", [("car_3", True), ("cam front.v2", True), ("é-ü", True), ("", False),
                                      (".", False), ("..", False), ("a/b", False), ("a\\b", False),
                                      ("a\nb", False), ("x" * 256, False), (None, False)])
def test_check_name(name, ok):
    if ok:
        assert check_name(name, "id") == name
    else:
        with pytest.raises(UnsafePathError):
            check_name(name, "id")


def test_writer_refuses_what_the_reader_would(tmp_path):
    cam = PinholeCamera(8, 6, 10.0, 10.0, 4.0, 3.0)
    lidar = SpinningLidar([0.0, -2.0], 10.0)
    w = LogWriter(tmp_path / "w", "w")
    for sid in ("../cam", "a/b", "", "cam\x00"):
        with pytest.raises(ValueError, match="sensor id"):
            w.add_sensor(sid, cam, np.eye(4))
    w.add_sensor("cam", cam, np.eye(4))
    w.add_sensor("lidar", lidar, np.eye(4))
    with pytest.raises(ValueError, match="must be a finite number"):
        w.add_frame(True, np.eye(4))
    w.add_frame(0.0, np.eye(4))
    with pytest.raises(ValueError, match="only 1e-12 s after"):
        w.add_frame(1e-12, np.eye(4))
    late = np.array([[5.0, 0.0, 0.0, 0.5, 1, 3.0]], np.float32)
    with pytest.raises(ValueError, match="frame 1, lidar lidar: column 5 .time offset.: time offsets must lie"):
        w.add_frame(0.1, np.eye(4), lidar_points={"lidar": late})
    origin = np.array([[0.0, 0.0, 0.0, 0.5, 1, 0.01]], np.float32)
    with pytest.raises(ValueError, match="at the sensor origin"):
        w.add_frame(0.1, np.eye(4), lidar_points={"lidar": origin})
    with pytest.raises(ValueError, match="actor id"):
        w.add_actor("../car", "car", [4, 2, 1.5], [0.0], np.eye(4)[None])
