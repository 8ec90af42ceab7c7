"""Edit operations on a scene: insert an asset, remove, replace, move or retime an actor.

An edit is a JSON object with an ``op``; a list of them is applied in order
(``apply_edits``) to a copy of the scene, never to the scene given::

    {"op": "insert", "asset": "sedan", "id": "new_car",          # id optional
     "trajectory": {...}, "shadow": true}                         # shadow optional (default true)
    {"op": "remove", "actor": "car_3"}
    {"op": "replace", "actor": "car_3", "asset": "van", "fit": false}
    {"op": "move", "actor": "car_3", "offset": [dx, dy]}          # or "trajectory": {...}
    {"op": "retime", "actor": "car_3", "shift": 0.5, "scale": 1.0}

Trajectories (world frame, metres, seconds, headings in degrees from +x towards +y):

    {"at": {"x", "y", "heading_deg"}, "from"?: t, "to"?: t}      # standing still (default: whole scene)
    {"poses": [{"t", "x", "y", "heading_deg"?}, ...]}             # timed poses; heading along the motion if left out
    {"path": [[x, y], ...], "speed": v, "start_time"?: t}         # drives the polyline, heading along it,
                                                                  # until its end or the end of the scene

Every object placed by an edit (inserted, replaced, moved) is snapped to the road: at
each track sample the height of the background's near-horizontal surfels under the
object's footprint (opacity-weighted median, within [-3, +1] m of the ego's height
nearest that place; the footprint grown by 1 then 2.5 m where the road under it was
never seen, as under a parked car) is where the object's contact point goes.  ``replace`` keeps the
actor's track (x, y, heading; the height is snapped again) and the asset's own size
unless ``"fit": true``, which scales the asset uniformly to the actor box's length.
``move`` and ``retime`` change the track of an actor or an inserted asset.

An inserted asset becomes a node of kind "asset": an ``ExplicitField`` holding its
surfels (colours as degree-0 SH; dimmed where the scene's geometry hides the sun from the
object at the track's first pose) followed by its shadow surfels (``gssim.edit.shadow``).
``"shadow": false`` leaves out both the cast shadow and the dimming.
Its LiDAR feature channels are fitted at insert time so that the scene's own LiDAR
decoders, fed those features (alpha 1) over a grid of incidence cosines and ranges,
return intensity = reflectivity * cos(incidence) (the return model of the synthetic
logs) and no drop.  Shadow surfels take the LiDAR features of the road under them, so
LiDAR does not see the shadow.

Removing, replacing, moving or retiming an actor leaves a hole where it was: the edit
records the old box (grown by ``HOLE_MARGIN``) and track, and ``edited_region`` renders
a per-pixel mask of holes and of inserted objects (with their shadows) for a frame, with
the scene's occlusion.  The applied edits (with what was derived: node, heights, hole,
surfel counts, light) are appended to ``scene.meta["edits"]`` and saved in scene.json.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from gssim.core.surfels import Surfels
from gssim.core.transforms import quat_to_rotmat
from gssim.data.poses import PoseTrack
from gssim.edit.assets import DEFAULT_LIBRARY, Asset, AssetError, load_asset
from gssim.edit.shadow import Light, estimate_light, relight_colors, shadow_surfels, sun_visibility
from gssim.recon.fields import SH_C0, ExplicitField, normal_to_quat
from gssim.recon.scene import Node, Scene
from gssim.render import render as render_surfels

log = logging.getLogger(__name__)

OPS = {"insert": ("asset", "id", "trajectory", "shadow"), "remove": ("actor",),
       "replace": ("actor", "asset", "fit", "shadow"), "move": ("actor", "offset", "trajectory"),
       "retime": ("actor", "shift", "scale")}                 # op: the fields it takes (besides "op")
DERIVED = ("node", "ground_z", "surfels", "light", "sun_visibility", "contact", "hole", "scale")   # added when applied
PATH_DT = 0.05            # s, sampling of path trajectories
HOLE_MARGIN = 0.3         # m added on every side of a vacated box
GROUND_WINDOW = (-3.0, 1.0)
FOOTPRINT_GROW = (0.0, 1.0, 2.5)   # m: the footprint, then wider rings when the road under it is unseen
MASK_WEIGHT = 0.05        # a cell is in an edited region when that region's blending weight exceeds it


class EditError(ValueError):
    """A bad edit: names the edit (index and op) and what is wrong."""


def _where(i: int, e) -> str:
    op = e.get("op") if isinstance(e, dict) else None
    return f"edit {i} ({op})" if isinstance(op, str) else f"edit {i}"


# ------------------------------------------------------------------ reading edit files
def load_edits(path: str | os.PathLike) -> list[dict]:
    """Edits of a JSON file: a list of edits, or {"edits": [...]}."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EditError(f"edit file {path}: cannot read it ({exc})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EditError(f"edit file {path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if isinstance(d, dict) and "edits" in d:
        d = d["edits"]
    if not isinstance(d, list):
        raise EditError(f"edit file {path}: expected a list of edits (or {{\"edits\": [...]}}), "
                        f"got {type(d).__name__}")
    return d


def _field(e: dict, key: str, kind: str, where: str, default=...):
    """e[key] checked against ``kind`` ("number", "string", "bool", "list", "object")."""
    if key not in e:
        if default is ...:
            raise EditError(f"{where}: missing field {key!r}")
        return default
    v = e[key]
    ok = {"number": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x),
          "string": lambda x: isinstance(x, str) and x != "",
          "bool": lambda x: isinstance(x, bool),
          "list": lambda x: isinstance(x, list),
          "object": lambda x: isinstance(x, dict)}[kind](v)
    if not ok:
        raise EditError(f"{where}: field {key!r} must be a {'finite number' if kind == 'number' else kind}, "
                        f"got {v!r}")
    return float(v) if kind == "number" else v


# ------------------------------------------------------------------ geometry helpers
def _yaw_pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = [x, y, z]
    return T


def _track_json(track: PoseTrack) -> list[dict]:
    return [{"t": float(t), "T_world_object": T.tolist()} for t, T in zip(track.times, track.poses)]


def _sample_times(a: PoseTrack, b: PoseTrack | None = None) -> np.ndarray:
    lo, hi = a.t_start, a.t_end
    if b is not None:
        lo, hi = max(lo, b.t_start), min(hi, b.t_end)
    if hi < lo:
        return np.zeros(0)
    n = int(math.ceil((hi - lo) / 0.1)) + 1
    return np.unique(np.concatenate([np.linspace(lo, hi, max(n, 1)), a.times[(a.times >= lo) & (a.times <= hi)]]))


def footprint_corners(T: np.ndarray, size, shrink: float = 1.0) -> np.ndarray:
    """(4, 2) xy corners of the footprint of a box of ``size`` at pose ``T`` (scaled by ``shrink``)."""
    h = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]]) * (np.asarray(size[:2], np.float64) * shrink / 2)
    return h @ T[:2, :2].T + T[:2, 3]


def footprints_overlap(Ta: np.ndarray, size_a, Tb: np.ndarray, size_b, shrink: float = 1.0) -> bool:
    """Whether two boxes' footprints (yaw-rotated xy rectangles, scaled by ``shrink``) overlap
    (separating axes)."""
    ca, cb = footprint_corners(Ta, size_a, shrink), footprint_corners(Tb, size_b, shrink)
    for T in (Ta, Tb):
        for axis in (T[:2, 0], T[:2, 1]):
            pa, pb = ca @ axis, cb @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def first_overlap(track_a: PoseTrack, size_a, track_b: PoseTrack, size_b) -> float | None:
    """First time (s) at which two boxes' footprints overlap, or None."""
    times = _sample_times(track_a, track_b)
    if not len(times):
        return None
    Pa, Pb = track_a.at(times), track_b.at(times)
    for t, Ta, Tb in zip(times, Pa, Pb):
        if footprints_overlap(Ta, size_a, Tb, size_b, shrink=0.98):
            return float(t)
    return None


class Ground:
    """The road under objects: near-horizontal, fairly opaque background surfels (world frame).

    xyz (N, 3) float64, weight (N,) opacities, lidar (N, C) their LiDAR features.
    """

    def __init__(self, scene: Scene) -> None:
        parts = []
        with torch.no_grad():
            for node in scene.nodes:
                if node.kind != "background" or node.field.n_rows == 0:
                    continue
                dec = node.field.decode(torch.arange(node.field.n_rows), None)
                nz = quat_to_rotmat(dec.quats)[:, 2, 2].abs()
                keep = (nz > 0.85) & (dec.opacities > 0.2)
                parts.append((dec.means[keep], dec.opacities[keep], dec.lidar[keep]))
        if not parts:
            raise EditError(f"scene {scene.name!r} has no background node to place objects on")
        self.xyz = torch.cat([p[0] for p in parts]).double()
        self.weight = torch.cat([p[1] for p in parts]).double()
        self.lidar = torch.cat([p[2] for p in parts]).float()
        self.ego = scene.ego_track.poses[:, :3, 3]

    def footprint(self, T: np.ndarray, size, contact, grow: float = 0.0) -> torch.Tensor:
        """Indices of ground surfels under the footprint of a box of ``size`` (grown by
        ``grow`` metres on every side) whose contact point (object frame) is at ``T``
        applied to ``contact``, within the height window."""
        c = T[:3, :3] @ np.asarray(contact) + T[:3, 3]
        z_ref = self.ego[np.argmin(np.linalg.norm(self.ego[:, :2] - c[:2], axis=1)), 2]
        d = self.xyz[:, :2] - torch.as_tensor(c[:2])
        R2 = torch.as_tensor(T[:2, :2])
        local = d @ R2                     # object-frame x, y of each surfel relative to the contact point
        half = torch.as_tensor(np.maximum(np.asarray(size[:2], np.float64) / 2, 0.5) + grow)
        dz = self.xyz[:, 2] - z_ref
        ok = (local.abs() <= half).all(1) & (dz >= GROUND_WINDOW[0]) & (dz <= GROUND_WINDOW[1])
        return torch.nonzero(ok).squeeze(1)

    def height(self, T: np.ndarray, size, contact) -> float | None:
        """Opacity-weighted median height of the road under the footprint, None if there is
        none.  Where the footprint itself holds too little road (under a parked car the
        road was never seen), the footprint is grown by up to FOOTPRINT_GROW metres."""
        for grow in FOOTPRINT_GROW:
            idx = self.footprint(T, size, contact, grow)
            if idx.numel() >= 3:
                break
        else:
            return None
        z, w = self.xyz[idx, 2], self.weight[idx]
        order = torch.argsort(z)
        cw = torch.cumsum(w[order], 0)
        return float(z[order][int(torch.searchsorted(cw, cw[-1] / 2).clamp(max=len(z) - 1))])


# ------------------------------------------------------------------ trajectories
def _heading(e: dict, key: str, where: str) -> float | None:
    v = _field(e, key, "number", where, None)
    return None if v is None else math.radians(v)


def parse_trajectory(traj, where: str, time_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(times (K,), poses (K, 4, 4) with z = 0) of a trajectory spec; EditError on bad input."""
    t0, t1 = time_range
    eps = 1e-6
    if not isinstance(traj, dict):
        raise EditError(f"{where}: trajectory must be an object, got {type(traj).__name__}")
    forms = [k for k in ("at", "poses", "path") if k in traj]
    if len(forms) != 1:
        raise EditError(f"{where}: trajectory needs exactly one of 'at', 'poses' or 'path', got {sorted(traj)}")
    form = forms[0]
    w = f"{where}: trajectory.{form}"
    if form == "at":
        at = _field(traj, "at", "object", where)
        x, y = _field(at, "x", "number", w), _field(at, "y", "number", w)
        yaw = _heading(at, "heading_deg", w) or 0.0
        a, b = _field(traj, "from", "number", where, t0), _field(traj, "to", "number", where, t1)
        if not (t0 - eps <= a < b <= t1 + eps):
            raise EditError(f"{where}: trajectory time span [{a}, {b}] is outside the scene's time range "
                            f"[{t0}, {t1}] (or empty)")
        return np.array([a, b]), np.stack([_yaw_pose(x, y, 0.0, yaw)] * 2)
    if form == "poses":
        poses = _field(traj, "poses", "list", where)
        if not poses:
            raise EditError(f"{where}: trajectory.poses is empty")
        ts, xy, yaws = [], [], []
        for k, p in enumerate(poses):
            wk = f"{w}[{k}]"
            if not isinstance(p, dict):
                raise EditError(f"{wk}: expected an object with t, x, y, got {p!r}")
            ts.append(_field(p, "t", "number", wk))
            xy.append((_field(p, "x", "number", wk), _field(p, "y", "number", wk)))
            yaws.append(_heading(p, "heading_deg", wk))
        ts, xy = np.array(ts), np.array(xy)
        if np.any(np.diff(ts) <= 0):
            raise EditError(f"{w}: times must be strictly increasing, got {ts.tolist()}")
        if ts[0] < t0 - eps or ts[-1] > t1 + eps:
            raise EditError(f"{where}: trajectory times [{ts[0]}, {ts[-1]}] are outside the scene's time range "
                            f"[{t0}, {t1}]")
        if len(ts) == 1:
            raise EditError(f"{w}: a single pose has no duration; use {{\"at\": ...}} for an object standing still")
        for k in range(len(ts)):
            if yaws[k] is None:
                a, b = max(k - 1, 0), min(k + 1, len(ts) - 1)
                d = xy[b] - xy[a]
                if np.linalg.norm(d) < 1e-6:
                    raise EditError(f"{w}[{k}]: no heading_deg and no motion to take it from")
                yaws[k] = math.atan2(d[1], d[0])
        return ts, np.stack([_yaw_pose(x, y, 0.0, yaw) for (x, y), yaw in zip(xy, yaws)])
    path = _field(traj, "path", "list", where)
    pts = []
    for k, p in enumerate(path):
        if (not isinstance(p, list) or len(p) != 2 or
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)):
            raise EditError(f"{w}[{k}]: expected [x, y] (two finite numbers), got {p!r}")
        pts.append(p)
    pts = np.asarray(pts, np.float64)
    if len(pts) < 2:
        raise EditError(f"{w}: needs at least two points")
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    if np.any(seg < 1e-6):
        raise EditError(f"{w}: consecutive points must differ")
    speed = _field(traj, "speed", "number", where)
    if speed <= 0:
        raise EditError(f"{where}: trajectory.speed must be > 0 m/s, got {speed}")
    start = _field(traj, "start_time", "number", where, t0)
    if not (t0 - eps <= start < t1):
        raise EditError(f"{where}: trajectory.start_time {start} is outside the scene's time range [{t0}, {t1})")
    s_cum = np.concatenate([[0.0], np.cumsum(seg)])
    end = min(start + s_cum[-1] / speed, t1)
    ts = np.unique(np.concatenate([np.arange(start, end, PATH_DT), [end]]))
    s = (ts - start) * speed
    k = np.clip(np.searchsorted(s_cum, s, side="right") - 1, 0, len(seg) - 1)
    u = ((s - s_cum[k]) / seg[k])[:, None]
    xy = pts[k] * (1 - u) + pts[k + 1] * u
    d = pts[k + 1] - pts[k]
    yaw = np.arctan2(d[:, 1], d[:, 0])
    return ts, np.stack([_yaw_pose(x, y, 0.0, a) for (x, y), a in zip(xy, yaw)])


def snap_track(ground: Ground, times: np.ndarray, poses: np.ndarray, size, contact, where: str,
               name: str) -> tuple[PoseTrack, list[float]]:
    """The track with every pose's height set so the contact point rests on the road, and
    the [lowest, highest] road height found under it."""
    poses = poses.copy()
    zs = []
    for k, T in enumerate(poses):
        z = ground.height(T, size, contact)
        if z is None:
            raise EditError(f"{where}: at t={times[k]:.3f} the object at (x={T[0, 3]:.2f}, y={T[1, 3]:.2f}) is off "
                            f"the scene's extent (no road surface of the background under its footprint)")
        poses[k, 2, 3] += z - (T[:3, :3] @ np.asarray(contact) + T[:3, 3])[2]
        zs.append(z)
    return PoseTrack(times, poses, name=name), [float(min(zs)), float(max(zs))]


# ------------------------------------------------------------------ assets as nodes
def fit_lidar_features(decoders, reflectivity: torch.Tensor, channels: int, steps: int = 300) -> torch.Tensor:
    """LiDAR feature channels (N, C) for surfels of reflectivity (N,) such that every
    decoder gives intensity = reflectivity * cos(incidence) and no drop at alpha 1.
    One feature vector per reflectivity level (quantised to 1/50)."""
    levels = (reflectivity.clamp(0, 1) * 50).round()
    uniq, inv = torch.unique(levels, return_inverse=True)
    refl = uniq / 50
    decoders = list(decoders)
    if not decoders:
        return torch.zeros(len(reflectivity), channels)
    max_range = min(d.max_range for d in decoders)
    cos = torch.linspace(0.15, 1.0, 8)
    rng = torch.linspace(2.0, 0.8 * max_range, 8)
    C, R = torch.meshgrid(cos, rng, indexing="ij")
    C, R = C.reshape(-1), R.reshape(-1)
    feats = torch.zeros(len(uniq), channels, requires_grad=True)
    opt = torch.optim.Adam([feats], lr=0.1)
    target = refl[:, None] * C[None]
    ones = torch.ones(len(uniq), C.numel())
    for dec in decoders:
        dec.requires_grad_(False)
    try:
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.0
            f = feats[:, None, :].expand(-1, C.numel(), -1)
            for dec in decoders:
                inten, drop = dec(f, ones, C[None].expand_as(ones), R[None].expand_as(ones))
                loss = loss + ((inten - target) ** 2).mean() + torch.relu(drop - 0.1).mean()
            loss.backward()
            opt.step()
    finally:
        for dec in decoders:
            dec.requires_grad_(True)
    log.debug("LiDAR feature fit: %d reflectivity levels, final loss %.5f", len(uniq), float(loss.detach()))
    return feats.detach()[inv]


def scale_asset(asset: Asset, k: float) -> Asset:
    """The asset scaled uniformly by k."""
    return replace(asset, size=asset.size * k, contact=asset.contact * k, means=asset.means * k,
                   scales=asset.scales * k)


@dataclass
class AssetNodeParts:
    """Surfel counts of an asset node: ``object`` rows, then ``shadow`` rows; and the sun
    visibility its colours were dimmed for."""

    object: int
    shadow: int
    sun_visibility: float


def asset_node(scene: Scene, asset: Asset, nid: str, track: PoseTrack, ground: Ground, light: Light | None
               ) -> tuple[Node, AssetNodeParts]:
    """A node of kind "asset": the asset's surfels, then (when ``light``) its shadow; with a
    light, its colours are dimmed for the scene's shadow at the track's first pose."""
    channels = scene._lidar_channels()
    lidar = fit_lidar_features(scene.lidar_decoders.values(), asset.reflectivity, channels)
    means, quats, scales, opac = asset.means, asset.quats, asset.scales, asset.opacities
    colors = asset.colors
    n_shadow, visibility = 0, 1.0
    if light is not None:
        R0 = track.poses[0][:3, :3]
        visibility = sun_visibility(scene, track.poses[0], asset.size, light, track.t_start)
        colors = relight_colors(colors, quat_to_rotmat(quats)[:, :, 2], R0.T @ light.direction, light.strength,
                                visibility)
        sm, sq, ss, so = shadow_surfels(asset.means, asset.opacities, asset.size, asset.contact,
                                        R0.T @ light.direction, light.strength)
        n_shadow = len(sm)
        idx = ground.footprint(track.poses[0], asset.size, asset.contact)
        road = ground.lidar[idx].median(0).values if idx.numel() else torch.zeros(channels)
        means, quats = torch.cat([means, sm]), torch.cat([quats, sq])
        scales, opac = torch.cat([scales, ss]), torch.cat([opac, so])
        colors = torch.cat([colors, torch.zeros(n_shadow, 3)])
        lidar = torch.cat([lidar, road.expand(n_shadow, channels)])
    fld = ExplicitField(len(means), sh_degree=0, lidar_channels=channels)
    with torch.no_grad():
        fld.means.copy_(means)
        fld.quats.copy_(quats)
        fld.log_scales.copy_(scales.clamp(min=1e-6).log())
        fld.opacity_logits.copy_(torch.logit(opac.double().clamp(1e-4, 1 - 1e-4)).float())
        fld.sh[:, 0].copy_((colors - 0.5) / SH_C0)
        fld.lidar.copy_(lidar)
    node = Node(nid, "asset", fld, asset.cls, np.asarray(asset.size, np.float64).copy(), track)
    return node, AssetNodeParts(len(asset), n_shadow, visibility)


# ------------------------------------------------------------------ applying edits
class _Editor:
    """State while a list of edits is applied to a copy of a scene."""

    def __init__(self, scene: Scene, library) -> None:
        self.scene = scene
        self.library = library
        self.nodes = list(scene.nodes)
        self.meta = copy.deepcopy(scene.meta)
        self.meta["edits"] = list(self.meta.get("edits") or [])
        self._ground: Ground | None = None
        self._light: Light | None = None

    @property
    def ground(self) -> Ground:
        if self._ground is None:
            self._ground = Ground(self.scene)
        return self._ground

    @property
    def light(self) -> Light:
        if self._light is None:
            self._light = estimate_light(self.scene)
        return self._light

    def index(self, nid, where: str) -> int:
        for i, n in enumerate(self.nodes):
            if n.id == nid:
                if n.kind == "background":
                    raise EditError(f"{where}: {nid!r} is the background, not an actor")
                return i
        actors = [n.id for n in self.nodes if n.kind != "background"]
        raise EditError(f"{where}: unknown actor {nid!r}; actors are {actors}")

    def asset(self, e: dict, where: str) -> Asset:
        try:
            return load_asset(_field(e, "asset", "string", where), self.library)
        except AssetError as exc:
            raise EditError(f"{where}: {exc}") from None

    def check_overlap(self, node: Node, where: str) -> None:
        for other in self.nodes:
            if other is node or other.track is None or other.size is None:
                continue
            t = first_overlap(node.track, node.size, other.track, other.size)
            if t is not None:
                raise EditError(f"{where}: {node.id!r} overlaps {other.id!r} ({other.kind}) at t={t:.2f} s")

    def hole(self, node: Node) -> dict:
        l, w, h = (float(v) for v in node.size)
        return {"size": [l + 2 * HOLE_MARGIN, w + 2 * HOLE_MARGIN, h + HOLE_MARGIN], "track": _track_json(node.track)}

    def new_id(self, base: str) -> str:
        ids = {n.id for n in self.nodes}
        k = 0
        while f"{base}_{k}" in ids:
            k += 1
        return f"{base}_{k}"

    def place(self, e: dict, where: str, size, contact, name: str) -> tuple[PoseTrack, list[float]]:
        """The snapped track of the edit's "trajectory"."""
        times, poses = parse_trajectory(_field(e, "trajectory", "object", where), where, self.scene.time_range)
        return snap_track(self.ground, times, poses, size, contact, where, name)

    def apply(self, i: int, e) -> None:
        where = _where(i, e)
        if not isinstance(e, dict):
            raise EditError(f"{where}: expected an object with an 'op', got {type(e).__name__}")
        op = _field(e, "op", "string", where)
        if op not in OPS:
            raise EditError(f"{where}: unknown op {op!r}; expected one of {list(OPS)}")
        unknown = sorted(set(e) - {"op", *OPS[op], *DERIVED})
        if unknown:
            raise EditError(f"{where}: unknown fields {unknown}; {op} takes {list(OPS[op])}")
        record = copy.deepcopy(e)
        getattr(self, f"_{op}")(e, where, record)
        self.meta["edits"].append(record)

    def _shadow(self, e: dict, where: str) -> Light | None:
        return self.light if _field(e, "shadow", "bool", where, True) else None

    def _insert(self, e: dict, where: str, record: dict) -> None:
        asset = self.asset(e, where)
        nid = _field(e, "id", "string", where, None) or self.new_id(asset.name)
        if any(n.id == nid for n in self.nodes):
            raise EditError(f"{where}: a node with id {nid!r} already exists")
        track, zs = self.place(e, where, asset.size, asset.contact, f"{nid} track")
        light = self._shadow(e, where)
        node, parts = asset_node(self.scene, asset, nid, track, self.ground, light)
        self.check_overlap(node, where)
        self.nodes.append(node)
        record.update(node=nid, ground_z=zs, surfels={"object": parts.object, "shadow": parts.shadow},
                      light=None if light is None else light.to_dict(), sun_visibility=parts.sun_visibility,
                      contact=[float(v) for v in asset.contact])

    def _remove(self, e: dict, where: str, record: dict) -> None:
        i = self.index(_field(e, "actor", "string", where), where)
        node = self.nodes.pop(i)
        record.update(hole=self.hole(node))

    def _replace(self, e: dict, where: str, record: dict) -> None:
        i = self.index(_field(e, "actor", "string", where), where)
        old = self.nodes[i]
        asset = self.asset(e, where)
        k = 1.0
        if _field(e, "fit", "bool", where, False) and old.size is not None:
            k = float(old.size[0]) / float(asset.size[0])
            asset = scale_asset(asset, k)
        track, zs = snap_track(self.ground, old.track.times, old.track.poses.copy(), asset.size, asset.contact,
                               where, f"{old.id} track")
        light = self._shadow(e, where)
        node, parts = asset_node(self.scene, asset, old.id, track, self.ground, light)
        self.nodes[i] = node
        self.check_overlap(node, where)
        record.update(node=old.id, ground_z=zs, surfels={"object": parts.object, "shadow": parts.shadow},
                      light=None if light is None else light.to_dict(), sun_visibility=parts.sun_visibility,
                      hole=self.hole(old), scale=k,
                      contact=[float(v) for v in asset.contact])

    def _contact(self, node: Node) -> np.ndarray:
        """Contact point of a node: its asset's (from the edit that made it) or its box bottom."""
        for r in reversed(self.meta["edits"]):
            if isinstance(r, dict) and r.get("node") == node.id and "contact" in r:
                return np.asarray(r["contact"], np.float64)
        return np.array([0.0, 0.0, -float(node.size[2]) / 2])

    def _move(self, e: dict, where: str, record: dict) -> None:
        i = self.index(_field(e, "actor", "string", where), where)
        old = self.nodes[i]
        if ("offset" in e) == ("trajectory" in e):
            raise EditError(f"{where}: give exactly one of 'offset' ([dx, dy]) or 'trajectory'")
        contact = self._contact(old)
        if "offset" in e:
            off = _field(e, "offset", "list", where)
            if len(off) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                                        math.isfinite(v) for v in off):
                raise EditError(f"{where}: 'offset' must be [dx, dy] (metres), got {off!r}")
            poses = old.track.poses.copy()
            poses[:, :2, 3] += np.asarray(off, np.float64)
            track, zs = snap_track(self.ground, old.track.times, poses, old.size, contact, where,
                                   f"{old.id} track")
        else:
            track, zs = self.place(e, where, old.size, contact, f"{old.id} track")
        node = replace(old, track=track)
        self.nodes[i] = node
        self.check_overlap(node, where)
        record.update(node=old.id, ground_z=zs, hole=self.hole(old))

    def _retime(self, e: dict, where: str, record: dict) -> None:
        i = self.index(_field(e, "actor", "string", where), where)
        old = self.nodes[i]
        shift = _field(e, "shift", "number", where, 0.0)
        scale = _field(e, "scale", "number", where, 1.0)
        if scale <= 0:
            raise EditError(f"{where}: 'scale' must be > 0, got {scale}")
        t_ref = old.track.t_start
        times = t_ref + scale * (old.track.times - t_ref) + shift
        t0, t1 = self.scene.time_range
        if times[-1] < t0 or times[0] > t1:
            raise EditError(f"{where}: the retimed track [{times[0]:.3f}, {times[-1]:.3f}] is outside the scene's "
                            f"time range [{t0}, {t1}]")
        node = replace(old, track=PoseTrack(times, old.track.poses, name=f"{old.id} track"))
        self.nodes[i] = node
        self.check_overlap(node, where)
        record.update(node=old.id, hole=self.hole(old))


def apply_edits(scene: Scene, edits: list, library: str | os.PathLike = DEFAULT_LIBRARY) -> Scene:
    """A new scene: ``scene`` with ``edits`` applied in order (``scene`` is not changed).
    Raises EditError naming the edit (index and op) of the first bad one."""
    if not isinstance(edits, list):
        raise EditError(f"edits must be a list, got {type(edits).__name__}")
    ed = _Editor(scene, library)
    for i, e in enumerate(edits):
        ed.apply(i, e)
    return Scene(scene.sensors, scene.ego_track, ed.nodes, scene.appearance, scene.sky, dict(scene.lidar_decoders),
                 ed.meta)


def edit_scene(source: str | os.PathLike, edits: list | str | os.PathLike, out: str | os.PathLike,
               library: str | os.PathLike = DEFAULT_LIBRARY) -> Scene:
    """Load the scene folder ``source``, apply ``edits`` (a list or an edit file), write the
    result atomically to ``out`` (never the source folder).  Returns the edited scene."""
    from gssim.recon.scene_files import load_scene, save_scene

    src, dst = Path(source).resolve(), Path(out).resolve()
    if dst == src or src in dst.parents:
        raise EditError(f"--out {out} must not be the source scene {source} or inside it")
    if not isinstance(edits, list):
        edits = load_edits(edits)
    scene = apply_edits(load_scene(source), edits, library)
    save_scene(scene, dst)
    return scene


# ------------------------------------------------------------------ edited-region masks
@dataclass
class EditMask:
    """Per-cell masks of a frame, (H, W) bool: ``hole`` (where a removed/moved actor was
    visible), ``inserted`` (inserted objects and their shadows); ``any`` is their union.
    Conservative: a cell counts when the region contributes more than MASK_WEIGHT of its blend."""

    hole: torch.Tensor
    inserted: torch.Tensor

    @property
    def any(self) -> torch.Tensor:
        return self.hole | self.inserted


def box_surfels(T_world_object: np.ndarray, size, spacing: float = 0.15) -> Surfels:
    """Opaque surfels covering the six faces of a box (world frame), features (N, 1) = 1."""
    size = np.asarray(size, np.float64)
    means, normals = [], []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        nu, nv = (max(2, int(math.ceil(size[a] / spacing)) + 1) for a in (u, v))
        gu = np.linspace(-size[u] / 2, size[u] / 2, nu)
        gv = np.linspace(-size[v] / 2, size[v] / 2, nv)
        U, V = np.meshgrid(gu, gv, indexing="ij")
        for sign in (-1, 1):
            p = np.zeros((U.size, 3))
            p[:, u], p[:, v], p[:, axis] = U.ravel(), V.ravel(), sign * size[axis] / 2
            means.append(p)
            n = np.zeros(3)
            n[axis] = sign
            normals.append(np.repeat(n[None], U.size, 0))
    p = np.concatenate(means) @ T_world_object[:3, :3].T + T_world_object[:3, 3]
    n = np.concatenate(normals) @ T_world_object[:3, :3].T
    m = len(p)
    return Surfels(torch.as_tensor(p, dtype=torch.float32), normal_to_quat(torch.as_tensor(n, dtype=torch.float32)),
                   torch.full((m, 2), spacing * 0.7), torch.full((m,), 0.99), torch.ones(m, 1))


def node_of_surfel(parts) -> tuple[list[Node], torch.Tensor, torch.Tensor]:
    """Nodes of a ``Composed`` and, per composed surfel, the index of its node (N,) and its
    row in that node's field (N,)."""
    nodes = [p[0] for p in parts]
    idx = torch.cat([torch.full((len(p[1]),), k, dtype=torch.long) for k, p in enumerate(parts)]) \
        if parts else torch.zeros(0, dtype=torch.long)
    rows = torch.cat([p[1].slot for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
    return nodes, idx, rows


def shadow_rows(scene: Scene) -> dict[str, int]:
    """{asset node id: first shadow row} from the scene's edit records."""
    out = {}
    for r in scene.meta.get("edits") or []:
        if isinstance(r, dict) and "surfels" in r and "node" in r:
            out[r["node"]] = int(r["surfels"]["object"])
    return out


def edited_region(scene: Scene, t: float, sensor_id: str, backend: str = "auto") -> EditMask:
    """Masks of the edited parts of the frame of ``sensor_id`` at t (see ``EditMask``),
    rendered with the scene's own surfels so occluded parts are not marked."""
    T0, T1 = scene._readout_poses(sensor_id, t, None, None)
    sensor = scene._spec(sensor_id).sensor
    with torch.no_grad():
        comp = scene.compose(t, sensor_id, T0, T1, sensor=sensor, channels="lidar")
        nodes, idx, _ = node_of_surfel(comp.parts)
        inserted_nodes = {r.get("node") for r in scene.meta.get("edits") or []
                          if isinstance(r, dict) and r.get("op") in ("insert", "replace")}
        ins = torch.tensor([n.id in inserted_nodes for n in nodes], dtype=torch.bool)
        s = comp.surfels
        feats = torch.zeros(len(s.means), 2)
        if len(idx):
            feats[:, 1] = ins[idx].float()
        pieces = [(s.means, s.quats, s.scales, s.opacities, feats)]
        for r in scene.meta.get("edits") or []:
            hole = r.get("hole") if isinstance(r, dict) else None
            if not hole:
                continue
            tr = PoseTrack([p["t"] for p in hole["track"]], [p["T_world_object"] for p in hole["track"]])
            if not tr.covers(t):
                continue
            b = box_surfels(tr.at(t), hole["size"])
            pieces.append((b.means, b.quats, b.scales, b.opacities,
                           torch.cat([b.features, torch.zeros(len(b.means), 1)], 1)))
        surfels = Surfels(*(torch.cat([p[k] for p in pieces]) for k in range(5)))
        out = render_surfels(surfels, sensor, T0, T1, backend=backend)
    acc = out.color if hasattr(out, "color") else out.features
    return EditMask(hole=acc[..., 0] > MASK_WEIGHT, inserted=acc[..., 1] > MASK_WEIGHT)
