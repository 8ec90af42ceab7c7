"""Scenes to and from their folder (format version 1), and baking.

``save_scene`` writes ``scene.json``, ``nodes/<n>.safetensors`` (a node's field: rows
and decoder weights) and ``scene.safetensors`` (appearance, sky, LiDAR decoders)
atomically through :mod:`gssim.recon.scene_io`; ``load_scene`` reads them back,
rebuilding every module from its stored config and checking every tensor's name and
shape against it.  ``bake`` evaluates the neural decoders into explicit surfels.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch

import gssim
from gssim.data.poses import PoseTrack
from gssim.data.schema import parse_sensor
from gssim.recon.appearance import Appearance, Sky
from gssim.recon.fields import ExplicitField, Field, field_from_config
from gssim.recon.scene import Node, Scene, SensorSpec
from gssim.recon.scene_io import SceneFormatError, read_scene_folder, write_scene_folder
from gssim.render.lidar_returns import LidarReturnDecoder

log = logging.getLogger(__name__)

SCENE_TENSORS = "scene.safetensors"


def _node_file(i: int, nid: str) -> str:
    return f"nodes/{i:04d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', nid)[:64]}.safetensors"


def _track_json(track: PoseTrack, key: str) -> list[dict]:
    return [{"t": float(t), key: T.tolist()} for t, T in zip(track.times, track.poses)]


def scene_to_json(scene: Scene, with_baked: bool = False) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """(scene.json content, {file: tensors}) of a scene; ``with_baked`` adds each neural
    node's decoded explicit surfels (mean appearance) under ``baked/``."""
    nodes, files = [], {}
    emb = scene.appearance.embedding(None).detach()
    for i, node in enumerate(scene.nodes):
        rel = _node_file(i, node.id)
        entry = {"id": node.id, "kind": node.kind, "class": node.cls, "field": node.field.config(),
                 "rows": node.field.n_rows, "tensors": rel}
        if with_baked and node.field.kind != "explicit":
            baked = bake_field(node.field, emb)
            entry.update({"baked": "baked/" + rel[len("nodes/"):], "baked_field": baked.config(),
                          "baked_rows": baked.n_rows})
            files[entry["baked"]] = baked.tensors()
        if node.size is not None:
            entry["size"] = [float(x) for x in node.size]
        if node.track is not None:
            entry["track"] = _track_json(node.track, "T_world_object")
        nodes.append(entry)
        files[rel] = node.field.tensors()
    scene_state = {f"appearance.{k}": v for k, v in scene.appearance.state_dict().items()}
    scene_state.update({f"sky.{k}": v for k, v in scene.sky.state_dict().items()})
    scene_state.update({f"lidar_decoders.{k}": v for k, v in scene.lidar_decoders.state_dict().items()})
    files[SCENE_TENSORS] = {k: v.detach().contiguous() for k, v in scene_state.items()}
    d = {
        "name": scene.name,
        "source_log": scene.meta.get("source_log"),
        "sensors": {sid: {**s.entry, "T_ego_sensor": np.asarray(s.T_ego_sensor).tolist()}
                    for sid, s in scene.sensors.items()},
        "ego_track": _track_json(scene.ego_track, "T_world_ego"),
        "nodes": nodes,
        "tensors": SCENE_TENSORS,
        "sky": {"height": scene.sky.texture.shape[1], "width": scene.sky.texture.shape[2]},
        "appearance": {"cameras": scene.appearance.camera_ids, "dim": scene.appearance.dim},
        "lidar_decoders": {k: {"in_channels": m.in_channels, "hidden": m.mlp[0].out_features,
                               "max_range": m.max_range} for k, m in scene.lidar_decoders.items()},
        "model": scene.meta.get("model", {}),
        "training": scene.meta.get("training", {}),
        "edits": scene.meta.get("edits", []),
        "versions": {"gssim": gssim.__version__, "torch": torch.__version__.split("+")[0]},
    }
    return d, files


def save_scene(scene: Scene, path, with_baked: bool = False) -> Path:
    """Write ``scene`` to the folder ``path`` atomically (replacing a previous scene);
    ``with_baked`` also stores explicit surfels of every neural node for fast serving."""
    d, files = scene_to_json(scene, with_baked)
    out = write_scene_folder(path, d, files)
    log.info("saved scene %s (%d nodes) to %s", scene.name, len(scene.nodes), out)
    return out


def _load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, file: str,
                 scene: str) -> None:
    """Copy tensors into a module, naming any missing, extra or mis-shaped tensor."""
    expected = module.state_dict()
    have = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    for name, ref in expected.items():
        if name not in have:
            raise SceneFormatError("missing", file, f"tensor '{prefix}{name}'", scene)
        got = have[name]
        if tuple(got.shape) != tuple(ref.shape):
            raise SceneFormatError(f"expected shape {tuple(ref.shape)}, got {tuple(got.shape)}", file,
                                   f"tensor '{prefix}{name}'", scene)
        if got.dtype != ref.dtype:
            raise SceneFormatError(f"expected {ref.dtype}, got {got.dtype}", file, f"tensor '{prefix}{name}'", scene)
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise SceneFormatError("contains NaN or inf", file, f"tensor '{prefix}{name}'", scene)
    extra = sorted(set(have) - set(expected))
    if extra:
        raise SceneFormatError(f"unexpected tensors {extra[:5]}", file, None, scene)
    module.load_state_dict(have)


def _field_of(entry: dict, tensors: dict[str, torch.Tensor], file: str, where: str, scene: str) -> Field:
    cfg = entry.get("field")
    rows = entry.get("rows")
    if not isinstance(cfg, dict):
        raise SceneFormatError("missing or not an object", "scene.json", f"{where}.field", scene)
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise SceneFormatError(f"expected a row count >= 0, got {rows!r}", "scene.json", f"{where}.rows", scene)
    try:
        fld = field_from_config(cfg, rows)
    except (TypeError, ValueError) as exc:
        raise SceneFormatError(f"bad field config ({exc})", "scene.json", f"{where}.field", scene) from None
    _load_module(fld, tensors, "", file, scene)
    return fld


def load_scene(path, baked: bool = False) -> Scene:
    """Read a scene folder; with ``baked`` use each node's baked explicit surfels where
    present.  Raises SceneFormatError naming the file and field of any problem."""
    scene = str(path)
    d, tensors = read_scene_folder(path)
    sensors = {}
    for sid, entry in d["sensors"].items():
        e = parse_sensor(sid, entry)
        sensors[sid] = SensorSpec(sid, e.type, e.sensor, e.T_ego_sensor,
                                  {k: v for k, v in entry.items() if k != "T_ego_sensor"})
    ego = d["ego_track"]
    ego_track = PoseTrack([p["t"] for p in ego], [p["T_world_ego"] for p in ego], name="ego_track")
    nodes = []
    for i, entry in enumerate(d["nodes"]):
        where = f"nodes[{i}]"
        key = "baked" if baked and "baked" in entry else "tensors"
        rel = entry[key]
        if key == "baked":
            fld = _field_of({"field": entry.get("baked_field"), "rows": entry.get("baked_rows")}, tensors[rel],
                            rel, where, scene)
        else:
            fld = _field_of(entry, tensors[rel], rel, where, scene)
        track = None
        if "track" in entry:
            tr = entry["track"]
            track = PoseTrack([p["t"] for p in tr], [p["T_world_object"] for p in tr], name=f"{where}.track")
        size = np.asarray(entry["size"], np.float64) if "size" in entry else None
        nodes.append(Node(entry["id"], entry["kind"], fld, entry.get("class", entry["kind"]), size, track))
    scene_rel = d.get("tensors")
    if scene_rel not in tensors:
        raise SceneFormatError("missing: the scene-level tensor file", "scene.json", "tensors", scene)
    st = tensors[scene_rel]
    app = d.get("appearance") or {}
    sky_cfg = d.get("sky") or {}
    try:
        appearance = Appearance(list(app["cameras"]), int(app["dim"]))
        sky = Sky(int(sky_cfg["height"]), int(sky_cfg["width"]))
        decoders = {k: LidarReturnDecoder(int(c["in_channels"]), int(c["hidden"]), float(c["max_range"]))
                    for k, c in (d.get("lidar_decoders") or {}).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise SceneFormatError(f"bad appearance, sky or lidar_decoders config ({exc})", "scene.json", None,
                               scene) from None
    for prefix, module in (("appearance.", appearance), ("sky.", sky)):
        _load_module(module, st, prefix, scene_rel, scene)
    holder = torch.nn.ModuleDict(decoders)
    _load_module(holder, st, "lidar_decoders.", scene_rel, scene)
    meta = {k: d.get(k) for k in ("name", "source_log", "model", "training", "edits", "versions")}
    return Scene(sensors, ego_track, nodes, appearance, sky, dict(holder.items()), meta)


def bake_field(fld: Field, appearance: torch.Tensor | None) -> ExplicitField:
    """Explicit surfels equal to what ``fld`` decodes for an appearance embedding (E,)."""
    with torch.no_grad():
        dec = fld.decode(torch.arange(fld.n_rows), appearance)
        out = ExplicitField(len(dec), sh_degree=fld.sh_degree, lidar_channels=fld.lidar_channels)
        out.means.copy_(dec.means)
        out.quats.copy_(dec.quats)
        out.log_scales.copy_(dec.scales.log())
        out.opacity_logits.copy_(torch.logit(dec.opacities.double()).float())
        out.sh.copy_(dec.sh)
        out.lidar.copy_(dec.lidar)
    return out


def bake_scene(scene: Scene, camera_id: str | None = None) -> Scene:
    """A copy of the scene whose neural nodes are explicit surfels decoded with the
    appearance of ``camera_id`` (None: the mean appearance of the log's cameras)."""
    emb = scene.appearance.embedding(camera_id).detach()
    nodes = [Node(n.id, n.kind, bake_field(n.field, emb) if n.field.kind != "explicit" else n.field, n.cls,
                  n.size, n.track) for n in scene.nodes]
    meta = dict(scene.meta)
    meta["baked_appearance"] = camera_id
    return Scene(scene.sensors, scene.ego_track, nodes, scene.appearance, scene.sky, dict(scene.lidar_decoders),
                 meta)
