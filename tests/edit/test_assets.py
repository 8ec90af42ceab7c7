"""Asset library: procedural build (fit against the ray-cast mesh), import, extract, files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

import gssim
from gssim.cli import main as gssim_main
from gssim.core.transforms import quat_to_rotmat
from gssim.data.convert.common import CLASSES
from gssim.edit.assets import Asset, AssetError, list_assets, load_asset, save_asset, write_thumbnail
from gssim.edit.build import build_library
from gssim.edit.importers import SH_C0, detect_axes, extract_actor, import_file
from gssim.edit.meshes import RecipeError, load_recipes, recipe_mesh
from gssim.edit.surfelize import FitConfig, MeshRaycaster, asset_from_mesh, evaluate, ground_truth, \
    initial_tensors, sample_surfels
from gssim.edit.views import look_at
from gssim.recon.scene_files import bake_field
from tests.recon.conftest import TINY_DRIVE, tiny_config

SMALL = FitConfig(surfels=1200, steps=80)
TENSORS = ("means", "quats", "scales", "opacities", "colors", "reflectivity")


def _tensors(asset: Asset) -> dict[str, torch.Tensor]:
    return {k: getattr(asset, k) for k in TENSORS}


def _yawed(t: dict[str, torch.Tensor], degrees: float) -> dict[str, torch.Tensor]:
    """The tensors turned about z (a mis-oriented asset)."""
    a = math.radians(degrees)
    R = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    q = torch.tensor([math.cos(a / 2), 0.0, 0.0, math.sin(a / 2)])
    w1, x1, y1, z1 = q
    w2, x2, y2, z2 = t["quats"].unbind(-1)
    quats = torch.stack([w1 * w2 - z1 * z2, w1 * x2 - z1 * y2, w1 * y2 + z1 * x2, w1 * z2 + z1 * w2], -1)
    return {**t, "means": t["means"] @ R.T, "quats": quats}


@pytest.fixture(scope="module")
def barrier():
    """The barrier recipe's centred mesh and its asset, built small (1200 surfels, 80 steps)."""
    cls, mesh = load_recipes()["barrier"]
    return mesh.centred(), asset_from_mesh("barrier", cls, mesh, "procedural:barrier", SMALL)


def test_built_asset_renders_like_its_mesh_and_beats_unfitted_and_misoriented(barrier):
    mesh, asset = barrier
    # Views the fit never saw (other azimuths and elevations than the training rings).
    views = ground_truth(mesh, SMALL)
    fitted = evaluate(_tensors(asset), views)
    unfitted = evaluate(initial_tensors(sample_surfels(mesh, SMALL.surfels, SMALL.seed)), views)
    turned = evaluate(_yawed(_tensors(asset), 90.0), views)
    flipped = evaluate(_yawed(_tensors(asset), 180.0), views)
    # Fitted about 26.9 / 28.0 dB, unfitted 22.7 / 25.0, turned or flipped about 16.
    assert fitted["psnr"] > 24.5 and fitted["psnr_2x"] > 26.4, fitted
    assert unfitted["psnr"] < 24.5 and unfitted["psnr_2x"] < 26.4, unfitted
    assert turned["psnr"] < 20.0 and flipped["psnr"] < 20.0, (turned, flipped)
    assert fitted["range_error_m"] < 0.02 and fitted["coverage_iou"] > 0.78, fitted
    assert asset.fit["after"]["psnr"] > asset.fit["before"]["psnr"]


def test_built_asset_lidar_range_matches_the_mesh(barrier):
    mesh, asset = barrier
    lidar = gssim.SpinningLidar(np.linspace(-10, 10, 41), 0.25, min_range=0.5, max_range=30.0)
    rc = MeshRaycaster(mesh)
    for eye in ([-3.0, 4.0, 0.6], [0.0, 6.0, 1.5]):
        T = look_at(np.array(eye), np.zeros(3), "lidar")
        out = gssim.render(asset.surfels(asset.reflectivity[:, None]), lidar, T, backend="cpu")
        dirs = lidar.ray_directions().double().numpy().reshape(-1, 3) @ T[:3, :3].T
        t, face = rc.cast(np.broadcast_to(T[:3, 3], dirs.shape), dirs)
        gt_hit, hit = (face >= 0).reshape(lidar.shape), (out.alpha > 0.5).numpy()
        both = gt_hit & hit
        assert both.sum() > 300
        err = np.abs(out.median_range.numpy()[both] - t.reshape(lidar.shape)[both])
        assert np.median(err) < 0.025 and np.percentile(err, 90) < 0.06, eye
        assert both.sum() / (gt_hit | hit).sum() > 0.8, eye
    # Reflectivity per material: the retroreflective stripes return far more than the steel legs.
    assert float(asset.reflectivity.max()) == pytest.approx(0.9) and float(asset.reflectivity.min()) < 0.1


def test_build_library_writes_assets_with_fit_and_thumbnail_reproducibly(tmp_path):
    cfg = FitConfig(surfels=400, steps=3, image=32, lidar_cells=32)
    built = build_library(tmp_path, only=["traffic_cone"], cfg=cfg, show_progress=False)
    again = build_library(tmp_path / "again", only=["traffic_cone"], cfg=cfg, show_progress=False)
    for k in TENSORS:
        assert torch.equal(getattr(built[0].asset, k), getattr(again[0].asset, k)), k
    assert [b.asset.name for b in built] == ["traffic_cone"] and list_assets(tmp_path) == ["traffic_cone"]
    a = load_asset("traffic_cone", tmp_path)
    assert a.cls == "traffic_cone" and a.source == "procedural:traffic_cone"
    assert a.size == pytest.approx([0.4, 0.4, 0.7], abs=0.01) and a.contact == pytest.approx([0, 0, -0.35], abs=0.01)
    assert set(a.fit) >= {"before", "after", "steps"} and a.fit["steps"] == 3
    assert (tmp_path / "traffic_cone" / "thumbnail.png").stat().st_size > 500
    with pytest.raises(KeyError, match="no recipe for"):
        build_library(tmp_path, only=["spaceship"], show_progress=False)


def test_every_recipe_has_a_known_class_and_sensible_box():
    recipes = load_recipes()
    assert {"sedan", "suv", "truck", "bus", "pedestrian", "cyclist", "traffic_cone", "barrier"} <= set(recipes)
    for name, (cls, mesh) in recipes.items():
        assert cls in CLASSES, name
        lo, hi = mesh.bounds
        assert abs(lo[2]) < 0.03 and np.all(hi - lo > 0.1), name
    with pytest.raises(RecipeError, match="unknown material"):
        recipe_mesh("x", {"parts": [{"shape": "box", "size": [1, 1, 1], "material": "gold"}]}, {})


def _car_y_up() -> trimesh.Trimesh:
    """A car-like mesh in glTF axes (+y up, front facing +z): body, a cabin on top (blue),
    a red nose box at the front."""
    parts = []
    for extents, centre, rgb in (((1.8, 0.8, 4.2), (0, 0.6, 0), (200, 200, 200)),
                                 ((1.6, 0.6, 2.0), (0, 1.3, -0.4), (20, 40, 220)),
                                 ((1.0, 0.3, 0.2), (0, 0.6, 2.2), (230, 10, 10))):
        m = trimesh.creation.box(extents=extents)
        m.apply_translation(centre)
        m.visual.face_colors = np.array([*rgb, 255], np.uint8)
        parts.append(m)
    return trimesh.util.concatenate(parts)


def _cabin_and_nose(asset: Asset) -> tuple[torch.Tensor, torch.Tensor]:
    blue = (asset.colors[:, 2] > 0.6) & (asset.colors[:, 0] < 0.3)
    red = (asset.colors[:, 0] > 0.6) & (asset.colors[:, 2] < 0.3)
    return asset.means[blue].mean(0), asset.means[red].mean(0)


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_import_of_a_y_up_mesh_lands_upright(tmp_path, suffix):
    path = tmp_path / f"car{suffix}"
    _car_y_up().export(path)
    cfg = FitConfig(surfels=600, steps=0)
    # glTF axes are known by spec; the OBJ's are detected from the car's proportions
    # (length along z, height along y) with positive signs, so the front is stated.
    kwargs = {} if suffix == ".glb" else {"forward": "z"}
    asset = import_file(path, "car", cfg=cfg, **kwargs)
    assert asset.name == "car" and asset.cls == "car"
    assert asset.size == pytest.approx([4.4, 1.8, 1.4], abs=0.02)
    assert asset.contact == pytest.approx([0, 0, -0.7], abs=0.01)
    cabin, nose = _cabin_and_nose(asset)
    assert cabin[2] > 0.4 and nose[0] > 1.9 and abs(float(nose[1])) < 0.1
    lo, hi = asset.means.min(0).values, asset.means.max(0).values
    assert torch.allclose((lo + hi) / 2, torch.zeros(3), atol=0.05)
    # Stated axes that put the car on its side give a tall box instead.
    side = import_file(path, "car", name="side", up="x", forward="z", cfg=cfg)
    assert side.size == pytest.approx([4.4, 1.4, 1.8], abs=0.02)


def test_axis_detection_matches_class_proportions():
    rng = np.random.default_rng(0)
    car_y_long_x_up = rng.random((500, 3)) * [1.5, 4.5, 1.9]       # height 1.5 on x, length on y
    assert detect_axes(car_y_long_x_up, "car") == ("x", "y")
    person_y_up = rng.random((500, 3)) * [0.6, 1.75, 0.4]
    assert detect_axes(person_y_up, "pedestrian")[0] == "y"
    assert detect_axes(person_y_up, "other") == ("z", "x")
    # One axis stated: the other is detected among the remaining ones.
    assert detect_axes(car_y_long_x_up, "car", up="-z") == ("-z", "y")
    assert detect_axes(car_y_long_x_up, "car", forward="-x") == ("z", "-x")


def _write_splat_ply(path, means, f_dc, opacity_logit, log_scales, rots) -> None:
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3"]
    data = np.concatenate([means, f_dc, opacity_logit[:, None], log_scales, rots], 1).astype("<f4")
    header = "ply\nformat binary_little_endian 1.0\nelement vertex %d\n" % len(data)
    header += "".join(f"property float {n}\n" for n in names) + "end_header\n"
    path.write_bytes(header.encode() + data.tobytes())


def test_import_of_a_splat_ply_flattens_gaussians_along_their_thinnest_axis(tmp_path):
    a = math.radians(30)
    rots = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [math.cos(a / 2), math.sin(a / 2), 0, 0]])   # last: 30 deg about x
    log_scales = np.log([[0.30, 0.01, 0.20], [0.002, 0.05, 0.10], [0.20, 0.10, 0.001]])
    means = np.array([[1.0, 0.5, 0.0], [-1.0, -0.5, 0.4], [0.2, 0.1, 0.2]])
    f_dc = np.array([[1.0, -1.0, 0.0], [0.0, 0.5, -0.5], [3.0, -3.0, 0.2]])
    logit = np.array([0.0, 2.0, -1.0])
    path = tmp_path / "splat.ply"
    _write_splat_ply(path, means, f_dc, logit, log_scales, rots)
    asset = import_file(path, "car", up="z", forward="x")
    assert len(asset) == 3 and asset.source.startswith("splat:")
    normals = quat_to_rotmat(asset.quats)[:, :, 2]
    expected = [[0, 1, 0], [1, 0, 0], [0, -math.sin(a), math.cos(a)]]
    assert torch.allclose(normals.abs(), torch.tensor(expected, dtype=torch.float32).abs(), atol=1e-5)
    assert torch.allclose(asset.scales, torch.tensor([[0.30, 0.20], [0.10, 0.05], [0.20, 0.10]]), atol=1e-6)
    assert torch.allclose(asset.opacities, torch.sigmoid(torch.tensor(logit, dtype=torch.float32)))
    assert torch.allclose(asset.colors, torch.tensor(np.clip(0.5 + SH_C0 * f_dc, 0, 1), dtype=torch.float32))
    # Centred on the bounds of the means; size from them.
    assert torch.allclose(asset.means, torch.tensor(means - [0.0, 0.0, 0.2], dtype=torch.float32), atol=1e-6)
    assert asset.size == pytest.approx([2.0, 1.0, 0.4])
    # Axes stated for a y-up file: the Gaussians turn with it.
    turned = import_file(path, "car", name="turned", up="y", forward="x")
    assert torch.allclose(turned.means[0], torch.tensor([1.0, 0.2, 0.5]), atol=1e-6)   # (x, -z, y), centred
    n0 = quat_to_rotmat(turned.quats[0])[:, 2]
    assert torch.allclose(n0.abs(), torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)


def test_import_errors_name_the_file(tmp_path):
    with pytest.raises(AssetError, match="unknown class 'spaceship'"):
        import_file(tmp_path / "x.obj", "spaceship")
    with pytest.raises(AssetError, match="no such file"):
        import_file(tmp_path / "missing.glb", "car")
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"this is not a glb file")
    with pytest.raises(AssetError, match="bad.glb: not a readable mesh"):
        import_file(bad, "car")
    points = tmp_path / "points.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((20, 3))).export(points)
    with pytest.raises(AssetError, match="points.ply: the file holds no triangles"):
        import_file(points, "car")
    with pytest.raises(AssetError, match="must be different file axes"):
        import_file(points, "car", up="y", forward="-y")


def test_save_load_round_trip_and_errors(tmp_path, barrier):
    _, asset = barrier
    save_asset(asset, tmp_path)
    back = load_asset("barrier", tmp_path)
    for k in TENSORS:
        assert torch.equal(getattr(back, k), getattr(asset, k)), k
    assert back.fit == asset.fit and back.cls == "barrier" and np.allclose(back.size, asset.size)
    assert write_thumbnail(back, tmp_path).stat().st_size > 500
    with pytest.raises(FileExistsError):
        save_asset(asset, tmp_path)
    with pytest.raises(AssetError, match=r"unknown asset 'sedan2' .*assets: barrier"):
        load_asset("sedan2", tmp_path)
    (tmp_path / "barrier" / "surfels.safetensors").write_bytes(b"garbage")
    with pytest.raises(AssetError, match="barrier.*surfels.safetensors: cannot read"):
        load_asset("barrier", tmp_path)


def test_cli_build_list_and_import_errors(tmp_path, capsys, barrier):
    with pytest.raises(SystemExit) as exit_:
        gssim_main(["assets", "build", "--only", "traffic_cone", "--surfels", "300", "--steps", "2", "--quiet",
                    "--library", str(tmp_path)])
    assert exit_.value.code == 0 and list_assets(tmp_path) == ["traffic_cone"]
    with pytest.raises(SystemExit) as exit_:
        gssim_main(["assets", "build", "--only", "hovercraft", "--library", str(tmp_path)])
    assert exit_.value.code == 2 and "no recipe for ['hovercraft']" in capsys.readouterr().out
    save_asset(barrier[1], tmp_path)
    with pytest.raises(SystemExit) as exit_:
        gssim_main(["assets", "list", "--library", str(tmp_path)])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "barrier" in out and "traffic_cone" in out and "PSNR" in out
    with pytest.raises(SystemExit) as exit_:
        gssim_main(["assets", "import", str(tmp_path / "none.obj"), "--class", "car", "--library", str(tmp_path)])
    assert exit_.value.code == 2 and "no such file" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    """A tiny drive trained for a few steps (its actors are neural fields)."""
    from gssim.recon.train import train
    from gssim.synth.config import config_from_dict
    from gssim.synth.generate import generate_log

    root = tmp_path_factory.mktemp("extract")
    generate_log(config_from_dict(TINY_DRIVE), root / "log", previews=False, show_progress=False)
    train(root / "log", root / "scene", tiny_config(steps=20, densify_from=1000), progress=False)
    return root / "scene"


def test_extract_gives_the_actors_baked_surfels(tiny_scene, tmp_path):
    scene = gssim.load_scene(tiny_scene)
    actors = [n for n in scene.nodes if n.kind == "actor"]
    assert actors
    node = actors[0]
    asset = extract_actor(tiny_scene, node.id, name="extracted")
    baked = bake_field(node.field, scene.appearance.embedding(None).detach())
    with torch.no_grad():
        dec = baked.decode(torch.arange(baked.n_rows), None)
    assert len(asset) == len(dec)
    assert torch.allclose(asset.means, dec.means, atol=1e-6)
    assert torch.allclose(asset.scales, dec.scales, atol=1e-6)
    assert torch.allclose(asset.opacities, dec.opacities, atol=1e-6)
    assert torch.allclose(asset.colors, (0.5 + SH_C0 * dec.sh[:, 0]).clamp(0, 1), atol=1e-6)
    assert asset.cls == node.cls and np.allclose(asset.size, node.size)
    assert asset.contact == pytest.approx([0, 0, -node.size[2] / 2])
    assert 0 <= float(asset.reflectivity.min()) and float(asset.reflectivity.max()) <= 1
    assert asset.source == f"scene:{tiny_scene}#{node.id}"
    save_asset(asset, tmp_path)
    assert load_asset("extracted", tmp_path).cls == node.cls
    with pytest.raises(AssetError, match=rf"no actor 'car_99'; actors are .*{node.id}"):
        extract_actor(tiny_scene, "car_99")
    with pytest.raises(SystemExit) as exit_:
        gssim_main(["assets", "extract", str(tiny_scene), "car_99", "--library", str(tmp_path)])
    assert exit_.value.code == 2
    with pytest.raises(AssetError, match="not a readable scene"):
        extract_actor(tmp_path / "nowhere", node.id)
