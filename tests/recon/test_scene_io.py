"""Scene folder format version 1: round trip, atomic replace, and one error per kind of damage."""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal

import pytest
import safetensors.torch
import torch

from gssim.recon import scene_io
from gssim.recon.scene_io import (SceneFormatError, read_scene_folder, read_scene_metadata, validate_tensors,
                                  write_scene_folder)

EYE = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
BG = "nodes/background.safetensors"
BAKED = "baked/background.safetensors"
CAR = "nodes/car_3.safetensors"
SCENE_FILE = "scene.safetensors"


def translation(x: float) -> list[list[float]]:
    T = copy.deepcopy(EYE)
    T[0][3] = x
    return T


def scene_content(value: float = 1.0):
    """A small scene: (scene_json, tensor_files); tensors filled from ``value``."""
    gen = torch.Generator().manual_seed(int(value))
    scene = {
        "name": "tiny", "source_log": "logs/tiny",
        "sensors": {
            "cam_front": {"type": "camera", "model": "pinhole", "width": 16, "height": 12, "fx": 10.0, "fy": 10.0,
                          "cx": 8.0, "cy": 6.0, "distortion": [], "rolling_shutter_s": 0.0, "T_ego_sensor": EYE},
            "lidar_top": {"type": "lidar", "model": "spinning", "elevations_deg": [5.0, 0.0, -5.0],
                          "azimuth_resolution_deg": 10.0, "min_range": 1.0, "max_range": 50.0, "spin_hz": 10.0,
                          "T_ego_sensor": translation(1.0)},
        },
        "ego_track": [{"t": 0.0, "T_world_ego": EYE}, {"t": 0.1, "T_world_ego": translation(1.0)}],
        "nodes": [
            {"id": "background", "kind": "background", "tensors": BG, "baked": BAKED},
            {"id": "car_3", "kind": "actor", "class": "car", "size": [4.5, 1.9, 1.6], "tensors": CAR,
             "track": [{"t": 0.0, "T_world_object": translation(5.0)}]},
        ],
        "tensors": SCENE_FILE, "model": {"k": 4}, "edits": [], "versions": {"gssim": "0.1.0"},
    }
    shared = torch.randn(6, 3, generator=gen)
    files = {
        BG: {"anchors": torch.randn(5, 3, generator=gen) * value, "offsets": torch.randn(5, 4, 3, generator=gen),
             "level": torch.arange(5), "half": torch.ones(2, dtype=torch.float16) * value},
        BAKED: {"means": shared[:3], "colors": shared[3:]},  # views of one storage
        CAR: {"anchors": torch.full((2, 3), value), "offsets": torch.zeros(2, 4, 3)},
        SCENE_FILE: {"sky.texture": torch.full((3, 4, 8), value)},
    }
    return scene, files


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for rel in a:
        assert a[rel].keys() == b[rel].keys(), rel
        for name in a[rel]:
            assert a[rel][name].dtype == b[rel][name].dtype
            assert torch.equal(a[rel][name], b[rel][name]), (rel, name)


@pytest.fixture
def scene_dir(tmp_path):
    root = tmp_path / "s"
    scene, files = scene_content()
    write_scene_folder(root, scene, files, metadata={BG: {"note": "background"}})
    return root


def test_round_trip(tmp_path):
    scene, files = scene_content()
    root = write_scene_folder(tmp_path / "out" / "s", scene, files, metadata={CAR: {"class": "car"}})
    assert root == tmp_path / "out" / "s"
    d, tensors = read_scene_folder(root)
    assert d == {"format": "gssim-scene", "version": 1, **scene}
    assert_same_tensors(tensors, files)
    assert read_scene_metadata(root) == {BG: {}, BAKED: {}, CAR: {"class": "car"}, SCENE_FILE: {}}
    assert sorted(os.listdir(tmp_path / "out")) == ["s"]


def test_format_and_version_are_enforced(tmp_path):
    scene, files = scene_content()
    scene.update(format="other", version=7)
    d, _ = read_scene_folder(write_scene_folder(tmp_path / "s", scene, files))
    assert (d["format"], d["version"]) == ("gssim-scene", 1)


def test_replace_previous_scene(scene_dir):
    scene, files = scene_content(2.0)
    scene["nodes"] = scene["nodes"][:1]
    files.pop(CAR)
    write_scene_folder(scene_dir, scene, files)
    d, tensors = read_scene_folder(scene_dir)
    assert [n["id"] for n in d["nodes"]] == ["background"]
    assert_same_tensors(tensors, files)
    assert not (scene_dir / CAR).exists()
    assert sorted(os.listdir(scene_dir.parent)) == ["s"]


def test_failure_mid_write_keeps_the_old_scene(scene_dir, monkeypatch):
    before_json, before = read_scene_folder(scene_dir)
    real_save = safetensors.torch.save_file
    calls = []

    def failing_save(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise OSError("disk full")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    scene, files = scene_content(3.0)
    with pytest.raises(OSError, match="disk full"):
        write_scene_folder(scene_dir, scene, files)
    assert len(calls) == 2
    after_json, after = read_scene_folder(scene_dir)
    assert after_json == before_json
    assert_same_tensors(after, before)
    assert sorted(os.listdir(scene_dir.parent)) == ["s"]


def test_empty_folder_is_replaced(tmp_path):
    (tmp_path / "s").mkdir()
    scene, files = scene_content()
    write_scene_folder(tmp_path / "s", scene, files)
    assert read_scene_folder(tmp_path / "s")[0]["name"] == "tiny"


@pytest.mark.parametrize("existing", ["folder", "file", "other_json"])
def test_refuses_to_replace_what_is_not_a_scene(tmp_path, existing):
    target = tmp_path / "s"
    if existing == "file":
        target.write_text("keep me")
    else:
        target.mkdir()
        content = "keep me" if existing == "folder" else json.dumps({"format": "gssim-log"})
        (target / ("notes.txt" if existing == "folder" else "scene.json")).write_text(content)
    snapshot = sorted(p.name for p in tmp_path.iterdir())
    scene, files = scene_content()
    with pytest.raises(FileExistsError, match="not a gssim scene folder"):
        write_scene_folder(target, scene, files)
    assert sorted(p.name for p in tmp_path.iterdir()) == snapshot
    if existing == "file":
        assert target.read_text() == "keep me"


WRITE_DAMAGE = [
    # name, mutate(scene, files), file, field, substring of the message
    ("absolute key", lambda s, f: f.update({"/tmp/x.safetensors": {}}), "/tmp/x.safetensors", None, "is absolute"),
    ("dotdot key", lambda s, f: f.update({"../x.safetensors": {}}), "../x.safetensors", None, "contains '..'"),
    ("unreferenced file", lambda s, f: f.update({"extra.safetensors": {}}), "extra.safetensors", None,
     "not referenced"),
    ("file not given", lambda s, f: f.pop(CAR), "scene.json", "nodes[1].tensors", "not among the tensor files"),
    ("dotdot node path", lambda s, f: s["nodes"][1].update(tensors="../x"), "scene.json", "nodes[1].tensors",
     "contains '..'"),
    ("NaN in JSON", lambda s, f: s.update(model={"lr": float("nan")}), "scene.json", None, "strict JSON"),
    ("not a tensor", lambda s, f: f[CAR].update(anchors=[1.0]), CAR, "tensor 'anchors'", "expected a torch.Tensor"),
]


@pytest.mark.parametrize("damage", WRITE_DAMAGE, ids=[d[0] for d in WRITE_DAMAGE])
def test_write_refuses_bad_content(tmp_path, damage):
    _, mutate, file, field, match = damage
    scene, files = scene_content()
    mutate(scene, files)
    with pytest.raises(SceneFormatError) as info:
        write_scene_folder(tmp_path / "s", scene, files)
    assert (info.value.file, info.value.field) == (file, field)
    assert match in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- damage table for the reader


def edit_json(fn):
    def damage(root):
        d = json.loads((root / "scene.json").read_text())
        fn(d)
        (root / "scene.json").write_text(json.dumps(d))
    return damage


def truncate(root):
    data = (root / CAR).read_bytes()
    (root / CAR).write_bytes(data[: len(data) - 20])


def garbage(root):
    (root / CAR).write_bytes(bytes(range(256)) * 3)


def symlink_outside(root):
    outside = root.parent / "outside.safetensors"
    os.replace(root / CAR, outside)
    os.symlink(outside, root / CAR)


def symlink_outside_relative(root):
    os.replace(root / CAR, root.parent / "outside.safetensors")
    os.symlink("../../outside.safetensors", root / CAR)


def symlink_inside(root):
    os.replace(root / CAR, root / "nodes" / "car_3.real.safetensors")
    os.symlink("car_3.real.safetensors", root / CAR)


def fifo(root):
    (root / CAR).unlink()
    os.mkfifo(root / CAR)


def edit_text(fn):
    def damage(root):
        (root / "scene.json").write_text(fn((root / "scene.json").read_text()))
    return damage


def nested(depth: int):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def header_length(n: int):
    def damage(root):
        data = (root / CAR).read_bytes()
        (root / CAR).write_bytes(n.to_bytes(8, "little") + data[8:])
    return damage


def dotdot_to_real_file(root):
    os.replace(root / CAR, root.parent / "x.safetensors")
    edit_json(lambda d: d["nodes"][1].update(tensors="../x.safetensors"))(root)


DAMAGE = [
    # name, damage(root), file, field, substring of the message
    ("truncated safetensors", truncate, CAR, "nodes[1].tensors", "not a readable safetensors file"),
    ("garbage bytes", garbage, CAR, "nodes[1].tensors", "not a readable safetensors file"),
    ("empty tensor file", lambda r: (r / CAR).write_bytes(b""), CAR, "nodes[1].tensors", "not a readable"),
    ("missing tensor file", lambda r: (r / CAR).unlink(), CAR, "nodes[1].tensors", "missing file"),
    ("missing baked file", lambda r: (r / BAKED).unlink(), BAKED, "nodes[0].baked", "missing file"),
    ("missing scene tensor file", lambda r: (r / SCENE_FILE).unlink(), SCENE_FILE, "tensors", "missing file"),
    ("scene tensor path escapes", edit_json(lambda d: d.update(tensors="../scene.safetensors")), "scene.json",
     "tensors", "contains '..'"),
    ("tensor path is a folder", lambda r: (r / CAR).unlink() or (r / CAR).mkdir(), CAR, "nodes[1].tensors",
     "not a regular file"),
    ("symlink escaping the folder", symlink_outside, CAR, "nodes[1].tensors", "outside the scene folder"),
    ("missing scene.json", lambda r: (r / "scene.json").unlink(), "scene.json", None, "missing file"),
    ("bad JSON", lambda r: (r / "scene.json").write_text('{"format": "gssim-scene",\n "version": 1,,}'),
     "scene.json", None, "invalid JSON at line 2"),
    ("not UTF-8", lambda r: (r / "scene.json").write_bytes(b'{"name": "\xff"}'), "scene.json", None, "not UTF-8"),
    ("not an object", lambda r: (r / "scene.json").write_text("[1, 2]"), "scene.json", None,
     "expected an object, got list"),
    ("wrong format", edit_json(lambda d: d.update(format="gssim-log")), "scene.json", "format",
     "expected 'gssim-scene', got 'gssim-log'"),
    ("version 2", edit_json(lambda d: d.update(version=2)), "scene.json", "version", "unsupported version 2"),
    ("version true", edit_json(lambda d: d.update(version=True)), "scene.json", "version",
     "expected an integer, got True"),
    ("version string", edit_json(lambda d: d.update(version="1")), "scene.json", "version",
     "expected an integer, got '1'"),
    ("missing version", edit_json(lambda d: d.pop("version")), "scene.json", "version", "missing"),
    ("missing key", edit_json(lambda d: d.pop("ego_track")), "scene.json", "ego_track", "missing"),
    ("missing node key", edit_json(lambda d: d["nodes"][1].pop("tensors")), "scene.json", "nodes[1].tensors",
     "missing"),
    ("unknown kind", edit_json(lambda d: d["nodes"][1].update(kind="tree")), "scene.json", "nodes[1].kind",
     "unknown kind 'tree'"),
    ("duplicate ids", edit_json(lambda d: d["nodes"][1].update(id="background")), "scene.json", "nodes[1].id",
     "duplicate node id 'background' (also nodes[0])"),
    ("empty id", edit_json(lambda d: d["nodes"][0].update(id="")), "scene.json", "nodes[0].id",
     "expected a non-empty string"),
    ("../x path", dotdot_to_real_file, "scene.json", "nodes[1].tensors", "'../x.safetensors' contains '..'"),
    ("absolute path", edit_json(lambda d: d["nodes"][1].update(tensors="/etc/passwd")), "scene.json",
     "nodes[1].tensors", "'/etc/passwd' is absolute"),
    ("windows drive path", edit_json(lambda d: d["nodes"][1].update(tensors="C:/x.safetensors")), "scene.json",
     "nodes[1].tensors", "is absolute"),
    ("path not a string", edit_json(lambda d: d["nodes"][0].update(baked=3)), "scene.json", "nodes[0].baked",
     "expected a relative file path, got 3"),
    ("nodes not a list", edit_json(lambda d: d.update(nodes={})), "scene.json", "nodes",
     "expected a list of nodes"),
    ("bad sensor", edit_json(lambda d: d["sensors"]["cam_front"].update(fx=-1)), "scene.json",
     "sensors.cam_front.fx", "must be > 0"),
    ("non-rigid ego pose", edit_json(lambda d: d["ego_track"][1]["T_world_ego"][0].__setitem__(0, 2.0)),
     "scene.json", "ego_track[1].T_world_ego", "not a rigid transform"),
    ("ego track out of order", edit_json(lambda d: d["ego_track"][1].update(t=-1.0)), "scene.json",
     "ego_track[1].t", "timestamps out of order"),
    ("node track pose missing", edit_json(lambda d: d["nodes"][1]["track"][0].pop("T_world_object")),
     "scene.json", "nodes[1].track[0].T_world_object", "missing"),
    # files opened only through gssim.data.safe_files
    ("tensor file is a FIFO", fifo, CAR, "nodes[1].tensors", "not a regular file"),
    ("relative symlink escaping the folder", symlink_outside_relative, CAR, "nodes[1].tensors",
     "outside the scene folder"),
    ("safetensors header claims a huge length", header_length(2 ** 62), CAR, "nodes[1].tensors",
     "not a readable safetensors file (header claims 4611686018427387904 bytes"),
    ("safetensors header past the end", header_length(5000), CAR, "nodes[1].tensors",
     "header claims 5000 bytes, but the file holds"),
    ("NaN in scene.json", edit_json(lambda d: d.update(model={"lr": float("nan")})), "scene.json", None,
     "NaN is not a finite number"),
    ("duplicate key in scene.json", edit_text(lambda t: t.replace('"name": "tiny"', '"name": "tiny", "name": "x"')),
     "scene.json", None, "duplicate key 'name'"),
    ("scene.json nested too deep", edit_json(lambda d: d.update(model=nested(scene_io.SCENE_JSON_MAX_DEPTH))),
     "scene.json", None, f"over the limit of {scene_io.SCENE_JSON_MAX_DEPTH}"),
    ("scene.json in UTF-16", lambda r: (r / "scene.json").write_text((r / "scene.json").read_text(), "utf-16"),
     "scene.json", None, "is UTF-16 text"),
]


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail instead of hanging (a reader blocked on a FIFO)."""
    def alarm(signum, frame):
        raise TimeoutError(f"read still blocked after {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("damage", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_scene_names_file_and_field(scene_dir, damage):
    _, apply, file, field, match = damage
    apply(scene_dir)
    for read in (read_scene_folder, read_scene_metadata):
        with pytest.raises(SceneFormatError) as info, no_hang():
            read(scene_dir)
        err = info.value
        assert (err.file, err.field) == (file, field)
        assert str(err).startswith(f"scene {scene_dir}: {file}: ")
        assert match in err.message and match in str(err)


ACCEPTED = [
    # name, change(root) that a reader must accept
    ("scene.json with a UTF-8 byte-order mark",
     lambda r: (r / "scene.json").write_bytes(b"\xef\xbb\xbf" + (r / "scene.json").read_bytes())),
    ("tensor file a symlink inside the folder", symlink_inside),
    ("scene.json nested to the limit", edit_json(lambda d: d.update(model=nested(scene_io.SCENE_JSON_MAX_DEPTH - 1)))),
]


@pytest.mark.parametrize("change", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_variants_read_the_same(scene_dir, change):
    _, tensors = read_scene_folder(scene_dir)
    metadata = read_scene_metadata(scene_dir)
    change[1](scene_dir)
    with no_hang():
        assert_same_tensors(read_scene_folder(scene_dir)[1], tensors)
        assert read_scene_metadata(scene_dir) == metadata


def test_size_limits_are_module_constants(scene_dir, monkeypatch):
    size = (scene_dir / CAR).stat().st_size
    monkeypatch.setattr(scene_io, "MAX_TENSOR_FILE_BYTES", size - 1)
    for read in (read_scene_folder, read_scene_metadata):
        with pytest.raises(SceneFormatError) as info:
            read(scene_dir)
        assert info.value.file in (BG, BAKED, CAR, SCENE_FILE)
        assert f"over the limit of {size - 1}" in str(info.value)
    monkeypatch.setattr(scene_io, "MAX_TENSOR_FILE_BYTES", 2 ** 40)
    monkeypatch.setattr(scene_io, "SCENE_JSON_MAX_BYTES", 100)
    with pytest.raises(SceneFormatError, match=r"scene\.json: .*over the limit of 100"):
        read_scene_folder(scene_dir)


def test_metadata_read_checks_the_header(scene_dir):
    """The metadata-only read refuses what the full read refuses: offsets past the data."""
    data = bytearray((scene_dir / CAR).read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["anchors"]["data_offsets"][1] += 4
    raw = json.dumps(header).encode()
    (scene_dir / CAR).write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n:])
    for read in (read_scene_folder, read_scene_metadata):
        with pytest.raises(SceneFormatError, match="nodes/car_3.safetensors: nodes\\[1\\].tensors: not a readable"):
            read(scene_dir)


def test_missing_scene_folder(tmp_path):
    with pytest.raises(SceneFormatError, match="no scene folder at"):
        read_scene_folder(tmp_path / "nowhere")


# ---------------------------------------------------------------- validate_tensors


SPEC = {"anchors": ("M", 3), "offsets": ("M", "K", 3), "scale": (1,)}


def good_tensors():
    return {"anchors": torch.zeros(5, 3), "offsets": torch.zeros(5, 4, 3), "scale": torch.ones(1),
            "step": torch.tensor(7)}


def test_validate_tensors_returns_symbol_sizes():
    assert validate_tensors(CAR, good_tensors(), SPEC) == {"M": 5, "K": 4}
    assert validate_tensors(CAR, good_tensors(), {"step": ()}, dtypes={"step": torch.int64}) == {}


def test_validate_tensors_message_format():
    tensors = good_tensors()
    tensors["anchors"] = torch.zeros(5, 2)
    with pytest.raises(SceneFormatError) as info:
        validate_tensors(CAR, tensors, SPEC, scene="out/s")
    assert str(info.value) == ("scene out/s: nodes/car_3.safetensors: tensor 'anchors': "
                               "expected shape (M, 3), got (5, 2)")
    assert (info.value.file, info.value.field, info.value.scene) == (CAR, "tensor 'anchors'", "out/s")


@pytest.mark.parametrize("name, value, kwargs, match", [
    ("offsets", torch.zeros(4, 4, 3), {}, "expected shape (M, K, 3) with M=5 (from tensor 'anchors'), got (4, 4, 3)"),
    ("offsets", torch.zeros(5, 4), {}, "expected shape (M, K, 3), got (5, 4)"),
    ("scale", torch.ones(2), {}, "expected shape (1,), got (2,)"),
    ("anchors", None, {}, "missing"),
    ("anchors", torch.zeros(5, 3, dtype=torch.float64), {}, "expected dtype float32, got float64"),
    ("anchors", torch.tensor([[0.0, float("nan"), 0.0]] * 5), {}, "5 non-finite values (NaN or inf)"),
    ("anchors", torch.zeros(5, 3), {"sizes": {"M": 6}},
     "expected shape (M, 3) with M=6 (from the given sizes), got (5, 3)"),
    ("step", torch.tensor(7), {"dtypes": {"step": torch.int32}}, "expected dtype int32, got int64"),
])
def test_validate_tensors_errors(name, value, kwargs, match):
    tensors = good_tensors()
    if value is None:
        tensors.pop(name)
    else:
        tensors[name] = value
    spec = dict(SPEC, step=())
    kwargs = {"dtypes": {"step": torch.int64}, **kwargs}
    with pytest.raises(SceneFormatError) as info:
        validate_tensors(CAR, tensors, spec, **kwargs)
    assert info.value.field == f"tensor {name!r}"
    assert str(info.value) == f"{CAR}: tensor {name!r}: {match}"
