"""Gaussian-splat PLY: round trip, the stored values and header as 3DGS viewers expect, damaged files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gssim.core.transforms import quat_to_rotmat
from gssim.recon.ply import (SH_C0, PlyFormatError, gaussian_ply_properties, read_gaussian_ply,
                             write_gaussian_ply)

N = 40


def random_splats(k: int | None = 3, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(N, 3, generator=gen) * 5,
        "quats": torch.randn(N, 4, generator=gen) * 2,  # not normalised: the writer normalises
        "scales": torch.rand(N, 2, generator=gen) * 0.5 + 0.01,
        "opacities": torch.rand(N, generator=gen) * 0.98 + 0.01,
        "colors": torch.rand(N, 3, generator=gen),
        "sh_rest": None if k is None else torch.randn(N, k, 3, generator=gen) * 0.1,
    }


def split_file(path, k: int):
    """(header lines, (N, P) float32 data) of a file written by write_gaussian_ply."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    lines = raw[:end].decode("ascii").splitlines()
    data = np.frombuffer(raw[end:], dtype="<f4")
    return lines, data.reshape(N, len(gaussian_ply_properties(k)))


@pytest.mark.parametrize("k", [None, 3, 15])
def test_round_trip(tmp_path, k):
    splats = random_splats(k)
    path = write_gaussian_ply(tmp_path / "s.ply", **splats)
    back = read_gaussian_ply(path)
    quats = splats["quats"] / splats["quats"].norm(dim=1, keepdim=True)
    torch.testing.assert_close(back.means, splats["means"])
    torch.testing.assert_close(back.quats, quats)
    torch.testing.assert_close(back.scales, splats["scales"])
    torch.testing.assert_close(back.opacities, splats["opacities"])
    torch.testing.assert_close(back.colors, splats["colors"])
    if k is None:
        assert back.sh_rest is None
    else:
        torch.testing.assert_close(back.sh_rest, splats["sh_rest"])
    assert [p.name for p in tmp_path.iterdir()] == ["s.ply"]


def test_header_and_stored_values(tmp_path):
    splats = random_splats(3)
    path = write_gaussian_ply(tmp_path / "s.ply", **splats)
    lines, data = split_file(path, 3)
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", f"element vertex {N}"]
    assert lines[-1] == "end_header"
    names = [line.split() for line in lines[3:-1]]
    assert all(words[:2] == ["property", "float"] for words in names)
    assert [w[2] for w in names] == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                                     + [f"f_rest_{i}" for i in range(9)]
                                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    col = {w[2]: i for i, w in enumerate(names)}
    d = torch.from_numpy(data.copy()).double()
    s = {key: v.double() if v is not None else None for key, v in splats.items()}
    quats = s["quats"] / s["quats"].norm(dim=1, keepdim=True)
    torch.testing.assert_close(d[:, col["rot_0"]:col["rot_3"] + 1], quats, rtol=0, atol=1e-6)
    torch.testing.assert_close(d[:, col["nx"]:col["nz"] + 1], quat_to_rotmat(quats)[:, :, 2], rtol=0, atol=1e-6)
    torch.testing.assert_close(d[:, col["f_dc_0"]:col["f_dc_2"] + 1], (s["colors"] - 0.5) / SH_C0)
    # f_rest is channel-major: f_rest[c * K + k] = sh_rest[k, c]
    torch.testing.assert_close(d[:, col["f_rest_0"]:col["f_rest_8"] + 1],
                               s["sh_rest"].transpose(1, 2).reshape(N, 9))
    torch.testing.assert_close(d[:, col["f_rest_4"]], s["sh_rest"][:, 1, 1])
    torch.testing.assert_close(d[:, col["opacity"]], torch.logit(s["opacities"]))
    torch.testing.assert_close(d[:, col["scale_0"]:col["scale_1"] + 1], s["scales"].log())
    torch.testing.assert_close(d[:, col["scale_2"]], (1e-4 * s["scales"].max(dim=1).values).log())


def test_plyfile_reads_it(tmp_path):
    plyfile = pytest.importorskip("plyfile")
    splats = random_splats(8)
    path = write_gaussian_ply(tmp_path / "s.ply", **splats)
    ply = plyfile.PlyData.read(str(path))
    assert [e.name for e in ply.elements] == ["vertex"]
    vertex = ply["vertex"]
    assert vertex.count == N
    assert [p.name for p in vertex.properties] == gaussian_ply_properties(8)
    assert np.allclose(vertex["x"], splats["means"][:, 0].numpy())
    assert np.allclose(vertex["f_rest_23"], splats["sh_rest"][:, 7, 2].numpy())


def write_custom_ply(path, props: list[tuple[str, str]], values: dict[str, np.ndarray], n: int,
                     header_extra: str = "", fmt: str = "binary_little_endian 1.0", tail: bytes = b"") -> None:
    """A hand-made PLY with the given (type, name) vertex properties."""
    types = {"float": "<f4", "double": "<f8", "uchar": "u1"}
    dtype = np.dtype([(name, types[t]) for t, name in props])
    arr = np.zeros(n, dtype=dtype)
    for name, v in values.items():
        arr[name] = v
    header = f"ply\nformat {fmt}\ncomment made by hand\nelement vertex {n}\n"
    header += "".join(f"property {t} {name}\n" for t, name in props) + header_extra + "end_header\n"
    path.write_bytes(header.encode("ascii") + arr.tobytes() + tail)


def test_reads_2dgs_style_file_with_doubles_and_extra_properties(tmp_path):
    # 2DGS writes no scale_2; other tools add properties (filter_3D) or use doubles; a face element may follow.
    props = [("double", "x"), ("double", "y"), ("double", "z"), ("uchar", "red"), ("float", "filter_3D")]
    props += [("float", f"f_dc_{i}") for i in range(3)] + [("float", "opacity"), ("float", "scale_0"),
                                                           ("float", "scale_1")]
    props += [("float", f"rot_{i}") for i in range(4)]
    values = {"x": np.arange(3.0), "y": 1.0, "z": 2.0, "red": 7, "f_dc_0": 1.0, "opacity": 0.0,
              "scale_0": np.log(0.5), "scale_1": 0.0, "rot_0": 2.0}
    path = tmp_path / "2dgs.ply"
    write_custom_ply(path, props, values, 3, header_extra="element face 0\nproperty list uchar int vertex_indices\n")
    back = read_gaussian_ply(path)
    torch.testing.assert_close(back.means[:, 0], torch.arange(3.0))
    torch.testing.assert_close(back.quats, torch.tensor([[1.0, 0, 0, 0]] * 3))
    torch.testing.assert_close(back.scales, torch.tensor([[0.5, 1.0]] * 3))
    torch.testing.assert_close(back.opacities, torch.full((3,), 0.5))
    torch.testing.assert_close(back.colors[:, 0], torch.full((3,), 0.5 + SH_C0))
    assert back.sh_rest is None


BASE_PROPS = [("float", p) for p in ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
                                     "rot_0", "rot_1", "rot_2", "rot_3"]]
UNIT = {"rot_0": 1.0}


def truncate(path, n_bytes: int) -> None:
    path.write_bytes(path.read_bytes()[:-n_bytes])

DAMAGE = [
    # name, write(path), substring of the message
    ("not a ply", lambda p: p.write_bytes(b"hello\nworld\n"), "not a PLY file"),
    ("ascii format", lambda p: write_custom_ply(p, BASE_PROPS, UNIT, 2, fmt="ascii 1.0"),
     "unsupported format 'ascii 1.0'"),
    ("big endian", lambda p: write_custom_ply(p, BASE_PROPS, UNIT, 2, fmt="binary_big_endian 1.0"),
     "unsupported format 'binary_big_endian 1.0'"),
    ("no end_header", lambda p: p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"),
     "no 'end_header'"),
    ("missing property", lambda p: write_custom_ply(p, BASE_PROPS[:-1], UNIT, 2), "lacks properties ['rot_3']"),
    ("odd f_rest count", lambda p: write_custom_ply(p, BASE_PROPS + [("float", f"f_rest_{i}") for i in range(10)],
                                                    UNIT, 2), "got ['f_rest_0', 'f_rest_1', 'f_rest_2'"),
    ("f_rest gap", lambda p: write_custom_ply(p, BASE_PROPS + [("float", f"f_rest_{i + 1}") for i in range(9)],
                                              UNIT, 2), "expected f_rest_0 .. f_rest_{3K-1}"),
    ("truncated data", lambda p: write_custom_ply(p, BASE_PROPS, UNIT, 2) or truncate(p, 5),
     "truncated: 2 vertices need 104 bytes"),
    ("list in vertex", lambda p: write_custom_ply(p, BASE_PROPS, UNIT, 2,
                                                  header_extra="property list uchar float extra\n"),
     "list property in element 'vertex'"),
    ("face first", lambda p: p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement face 0\n"
                                           b"element vertex 0\nend_header\n"),
     "expected 'vertex' as the first element, found elements ['face', 'vertex']"),
    ("bad type", lambda p: p.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\n"
                                         b"property half x\nend_header\n"), "bad property line 'property half x'"),
    ("NaN value", lambda p: write_custom_ply(p, BASE_PROPS, {"rot_0": 1.0, "x": np.nan}, 2),
     "properties ['x'] contain NaN or inf"),
    ("zero rotation", lambda p: write_custom_ply(p, BASE_PROPS, {}, 2), "2 vertices have a zero rotation"),
    ("missing file", lambda p: None, "unreadable (No such file or directory)"),
]


@pytest.mark.parametrize("damage", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_file_names_file_and_problem(tmp_path, damage):
    _, write, match = damage
    path = tmp_path / "bad.ply"
    write(path)
    with pytest.raises(PlyFormatError) as info:
        read_gaussian_ply(path)
    assert str(info.value).startswith(f"{path}: ")
    assert match in str(info.value)


@pytest.mark.parametrize("change, match", [
    (lambda s: s.update(scales=s["scales"][:-1]), r"scales must be \(40, 2\), got shape \(39, 2\)"),
    (lambda s: s.update(sh_rest=torch.zeros(N, 4, 3)), "K in"),
    (lambda s: s["scales"].__setitem__((0, 0), 0.0), "scales must be > 0"),
    (lambda s: s["opacities"].__setitem__(0, 1.5), r"opacities must be in \[0, 1\]"),
    (lambda s: s["quats"].__setitem__(3, 0.0), "1 zero quaternions"),
    (lambda s: s["means"].__setitem__((0, 0), float("inf")), "means contains NaN or inf"),
])
def test_writer_rejects_bad_input(tmp_path, change, match):
    splats = random_splats(3)
    change(splats)
    with pytest.raises(ValueError, match=match):
        write_gaussian_ply(tmp_path / "s.ply", **splats)
    assert list(tmp_path.iterdir()) == []


def test_extreme_opacities_stay_finite(tmp_path):
    splats = random_splats(None)
    splats["opacities"][:2] = torch.tensor([0.0, 1.0])
    back = read_gaussian_ply(write_gaussian_ply(tmp_path / "s.ply", **splats))
    torch.testing.assert_close(back.opacities[:2], torch.tensor([1e-6, 1 - 1e-6]), rtol=0, atol=1e-7)
