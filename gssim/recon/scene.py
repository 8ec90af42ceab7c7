"""A reconstructed scene: nodes of surfel fields (the background and one per actor moving
along its box track), the sky, per-camera appearance and LiDAR return decoders, with
the sensors and ego trajectory of the log it came from.

>>> scene = gssim.load_scene("out/scene")
>>> frames = scene.render(0.5, sensors=["cam_front", "lidar_top"])
>>> frames["cam_front"].color, frames["lidar_top"].points

Every render goes through ``gssim.render`` on the composed surfels of all nodes at the
time asked (background + each actor moved rigidly), so cameras and LiDAR agree.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from gssim.core.surfels import Surfels
from gssim.core.transforms import rotmat_to_quat
from gssim.data.poses import PoseTrack
from gssim.recon.appearance import Appearance, Sky
from gssim.recon.fields import Decoded, Field, quat_multiply, sh_to_rgb
from gssim.render import render as render_surfels
from gssim.render.culling import CELL_DIAGONAL, filter_reach
from gssim.render.lidar_returns import LidarReturnDecoder, to_point_cloud
from gssim.render.pipeline import build_rays

Tensor = torch.Tensor
log = logging.getLogger(__name__)

NODE_KINDS = ("background", "actor", "asset")


@dataclass
class SensorSpec:
    """A sensor of the scene's rig: the gssim sensor (ray grid), its mounting pose
    T_ego_sensor (4, 4) float64 and its log-format entry."""

    id: str
    type: str
    sensor: object
    T_ego_sensor: np.ndarray
    entry: dict


@dataclass
class Node:
    """A scene node: a surfel field in its own frame.  The background's frame is the
    world; an actor's is its box (origin at the centre, x forward, z up), posed by
    ``track`` (T_world_object over time)."""

    id: str
    kind: str
    field: Field
    cls: str = "background"
    size: np.ndarray | None = None
    track: PoseTrack | None = None

    def pose_at(self, t: float) -> np.ndarray | None:
        """T_world_object (4, 4) at t, None when the track does not cover t (or for the background)."""
        if self.track is None:
            return None
        return self.track.at(t) if self.track.covers(t) else None


@dataclass
class CameraFrame:
    """A rendered camera image: color (H, W, 3), depth (camera z), median_depth, alpha
    (H, W), normal (H, W, 3) world frame."""

    color: Tensor
    depth: Tensor
    median_depth: Tensor
    alpha: Tensor
    normal: Tensor


@dataclass
class LidarFrame:
    """A rendered LiDAR sweep: points (M, 6) in the log layout (x, y, z in the sensor frame
    at the sweep start, intensity, beam, time offset); range, median_range, alpha,
    intensity, drop_prob (B, A); normal (B, A, 3)."""

    points: Tensor
    range: Tensor
    median_range: Tensor
    alpha: Tensor
    intensity: Tensor
    drop_prob: Tensor
    normal: Tensor


@dataclass
class Composed:
    """Surfels of all nodes at one time, in the world frame, and where each came from:
    parts holds (node, decoded surfels in the node frame, rows in view, distance of each
    surfel to the sensor)."""

    surfels: Surfels
    parts: list[tuple[Node, Decoded, Tensor, Tensor]] = field(default_factory=list)


def readout_duration(sensor) -> float:
    """Seconds from a sensor's first to last cell: a LiDAR's sweep, a camera's rolling-shutter readout."""
    return float(getattr(sensor, "sweep_duration_s", getattr(sensor, "rolling_shutter_s", 0.0)))


def _sensor_frame_points(T_world_sensor: np.ndarray, points: Tensor) -> Tensor:
    T = torch.as_tensor(T_world_sensor, dtype=torch.float32)
    return (points - T[:3, 3]) @ T[:3, :3]


class Scene(nn.Module):
    """A reconstructed scene (see the module docstring).

    sensors: {id: SensorSpec}; ego_track: PoseTrack of T_world_ego; nodes: list of Node;
    appearance: per-camera embeddings and exposure; sky; lidar_decoders: {lidar id:
    LidarReturnDecoder}; meta: name, source_log, model config, edits, versions.
    """

    def __init__(self, sensors: dict[str, SensorSpec], ego_track: PoseTrack, nodes: list[Node],
                 appearance: Appearance, sky: Sky, lidar_decoders: dict[str, LidarReturnDecoder],
                 meta: dict | None = None) -> None:
        super().__init__()
        self.sensors = sensors
        self.ego_track = ego_track
        self.nodes = nodes
        self.fields = nn.ModuleList([n.field for n in nodes])
        self.appearance = appearance
        self.sky = sky
        self.lidar_decoders = nn.ModuleDict(lidar_decoders)
        self.meta = dict(meta or {})

    # --- what the scene holds ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.get("name", "scene")

    @property
    def time_range(self) -> tuple[float, float]:
        return self.ego_track.t_start, self.ego_track.t_end

    def node(self, nid: str) -> Node:
        for n in self.nodes:
            if n.id == nid:
                return n
        raise KeyError(f"scene {self.name!r} has no node {nid!r}; nodes are {[n.id for n in self.nodes]}")

    def set_nodes(self, nodes: list[Node]) -> None:
        """Replace the node list (edits, baking)."""
        self.nodes = list(nodes)
        self.fields = nn.ModuleList([n.field for n in self.nodes])

    def sensor_pose(self, sid: str, t: float, T_world_ego=None) -> np.ndarray:
        """T_world_sensor (4, 4) float64 at t (the recorded ego pose unless given)."""
        spec = self._spec(sid)
        T_ego = self.ego_track.at(t, clamp=True) if T_world_ego is None else np.asarray(T_world_ego, np.float64)
        return T_ego @ spec.T_ego_sensor

    def _spec(self, sid: str) -> SensorSpec:
        if sid not in self.sensors:
            raise KeyError(f"scene {self.name!r} has no sensor {sid!r}; sensors are {sorted(self.sensors)}")
        return self.sensors[sid]

    def _readout_poses(self, sid: str, t: float, T_world_ego, T_world_ego_end) -> tuple[np.ndarray, np.ndarray | None]:
        """Start and end poses of a sensor's readout (None for an instant sensor)."""
        spec = self._spec(sid)
        T0 = self.sensor_pose(sid, t, T_world_ego)
        sensor = spec.sensor
        if sensor.is_instant:
            return T0, None
        duration = readout_duration(sensor)
        if T_world_ego_end is not None:
            return T0, np.asarray(T_world_ego_end, np.float64) @ spec.T_ego_sensor
        if T_world_ego is not None:   # a pose given without its end: the sensor holds still
            return T0, T0
        return T0, self.ego_track.at(t + duration, extrapolate=True) @ spec.T_ego_sensor

    # --- composing surfels ------------------------------------------------------------
    @staticmethod
    def _node_time(node: Node, sensor, t: float, T0: np.ndarray, fractions: Tensor | None) -> float:
        """Time at which a moving sensor's readout sees the node's centre; ``fractions`` are
        the sensor's cell fractions (None for a readout that does not move: t)."""
        if fractions is None or node.track is None or not node.track.covers(t):
            return t
        duration = readout_duration(sensor)
        centre = torch.as_tensor(node.track.at(t)[:3, 3], dtype=torch.float32)[None]
        uv, ok = sensor.project(_sensor_frame_points(T0, centre))
        if not bool(ok[0]) or not torch.isfinite(uv).all():
            return t
        col = int(uv[0, 0].clamp(0, sensor.cols - 1))
        row = int(uv[0, 1].clamp(0, sensor.rows - 1))
        frac = float(fractions[row, col])
        t_seen = t + frac * duration
        return t_seen if node.track.covers(t_seen) else t

    @staticmethod
    def _visible_rows(fld: Field, sensor, T_node_sensor: Tensor, half_fov: float | None,
                      sector: tuple[float, float] | None = None, reach: float = 0.0,
                      frustum: tuple[float, float, float, float, float] | None = None) -> Tensor:
        """Rows of a field whose extent can reach the sensor's field of view (indices):
        within range, within ``half_fov`` (rad) of a camera's optical axis, within the
        camera's ``frustum`` when given, and within an azimuth ``sector`` (centre, half
        width; rad) when given.  ``reach`` (m) grows every extent by how far the sensor
        moves over its readout (angles: ``half_fov`` and the sector already include how
        far it turns).  frustum: (x_lo, x_hi, y_lo, y_hi, turn): the bounds of x/z and y/z
        over the camera's rays, and how far (rad) it turns over its readout."""
        with torch.no_grad():
            c = fld.centres().detach()
            r = fld.extent() + reach
            p = (c - T_node_sensor[:3, 3]) @ T_node_sensor[:3, :3]          # sensor frame
            dist = p.norm(dim=-1)
            ok = (dist - r <= sensor.t_max) & (dist + r >= sensor.t_min)
            if half_fov is not None:
                # Angle between the optical axis and the centre, less the angular radius.
                ang = torch.acos((p[:, 2] / dist.clamp(min=1e-9)).clamp(-1, 1))
                half = torch.asin((r / dist.clamp(min=1e-9)).clamp(max=1.0))
                ok &= (ang - half <= half_fov + 1e-3) | (dist <= r)
            if frustum is not None:
                # Distance of each centre beyond the four side planes x/z = x_lo, ... (through
                # the camera centre); a turn moves a point by at most dist * turn.
                x_lo, x_hi, y_lo, y_hi, turn = frustum
                r_eff = r + dist * turn + 1e-3
                for axis, bound, sign in ((0, x_lo, -1.0), (0, x_hi, 1.0), (1, y_lo, -1.0), (1, y_hi, 1.0)):
                    beyond = sign * (p[:, axis] - bound * p[:, 2]) / math.sqrt(1.0 + bound * bound)
                    ok &= beyond <= r_eff
            if sector is not None:
                off = torch.remainder(torch.atan2(p[:, 1], p[:, 0]) - sector[0] + np.pi, 2 * np.pi) - np.pi
                half = torch.asin((r / dist.clamp(min=1e-9)).clamp(max=1.0))
                ok &= (off.abs() - half <= sector[1]) | (dist <= r)
            return torch.nonzero(ok).squeeze(1)

    def compose(self, t: float, sensor_id: str | None, T_world_sensor: np.ndarray,
                T_world_sensor_end: np.ndarray | None = None, sensor=None, actors: dict | None = None,
                channels: str = "rgb", appearance: Tensor | None = None,
                azimuth_sector: tuple[float, float] | None = None) -> Composed:
        """World-frame surfels of every node at t, culled to what ``sensor`` can see.

        channels: "rgb" (colour, view-dependent from the sensor position), "rgb+depth"
        (colour, distance and squared distance to the sensor, for the distortion loss) or
        "lidar" (the LiDAR feature channels).  actors: {id: T_world_object (4, 4) or None to hide}.
        azimuth_sector: (centre, half width) radians in the sensor frame: keep only what
        lies in that slice of azimuth (training renders part of a LiDAR sweep this way).
        """
        sensor = sensor if sensor is not None else self._spec(sensor_id).sensor
        actors = actors or {}
        known = {n.id for n in self.nodes}
        unknown = sorted(set(actors) - known)
        if unknown:
            raise KeyError(f"scene {self.name!r}: no actors {unknown}; nodes are {sorted(known)}")
        if appearance is None and channels != "lidar":
            appearance = self.appearance.embedding(sensor_id)
        origin = torch.as_tensor(np.asarray(T_world_sensor)[:3, 3], dtype=torch.float32)
        # A moving readout (rolling shutter, sweep) widens the view by its motion.
        reach = turn = 0.0
        fractions = None
        if T_world_sensor_end is not None:
            fractions = sensor.cell_fractions()      # once per render, for every actor's timing
            T0, T1 = np.asarray(T_world_sensor), np.asarray(T_world_sensor_end)
            reach = float(np.linalg.norm(T1[:3, 3] - T0[:3, 3]))
            turn = float(np.arccos(np.clip((np.trace(T0[:3, :3].T @ T1[:3, :3]) - 1) / 2, -1, 1)))
        # Widest angle between a camera's optical axis and any of its rays.
        half_fov = frustum = None
        if getattr(sensor, "kind", "camera") == "camera":
            dirs = sensor.ray_directions()
            half_fov = float(np.arccos(float(dirs[..., 2].min()))) + turn
            if float(dirs[..., 2].min()) > 1e-3:      # every ray looks forward: four side planes
                tan = (dirs[..., :2] / dirs[..., 2:3]).double()
                # Widened by the reach of the renderer's screen-space low-pass filter (in
                # cells, at opacity 1) times the largest step between neighbouring rays.
                step = max(float((tan[:, 1:] - tan[:, :-1]).abs().max()) if tan.shape[1] > 1 else 0.0,
                           float((tan[1:] - tan[:-1]).abs().max()) if tan.shape[0] > 1 else 0.0)
                m = float(filter_reach(torch.ones(()))) * CELL_DIAGONAL * step
                frustum = (float(tan[..., 0].min()) - m, float(tan[..., 0].max()) + m,
                           float(tan[..., 1].min()) - m, float(tan[..., 1].max()) + m, turn)
        if azimuth_sector is not None:
            azimuth_sector = (azimuth_sector[0], azimuth_sector[1] + turn)
        parts, pieces = [], []
        for node in self.nodes:
            if node.id in actors:
                T_wo = None if actors[node.id] is None else np.asarray(actors[node.id], np.float64)
                if T_wo is None:
                    continue
            elif node.track is None:
                T_wo = np.eye(4)
            else:
                T_wo = node.pose_at(self._node_time(node, sensor, t, T_world_sensor, fractions))
                if T_wo is None:
                    continue
            if node.field.n_rows == 0:
                continue
            T_wo_t = torch.as_tensor(T_wo, dtype=torch.float32)
            T_node_sensor = torch.linalg.solve(T_wo_t, torch.as_tensor(T_world_sensor, dtype=torch.float32))
            rows = self._visible_rows(node.field, sensor, T_node_sensor, half_fov, azimuth_sector, reach,
                                      frustum)
            if rows.numel() == 0:
                continue
            dec = node.field.decode(rows, appearance)
            if len(dec) == 0:
                continue
            R, tr = T_wo_t[:3, :3], T_wo_t[:3, 3]
            means = dec.means @ R.T + tr
            if node.track is None:
                quats = dec.quats
            else:
                q_obj = rotmat_to_quat(R[None])[0]
                quats = quat_multiply(q_obj.expand_as(dec.quats), dec.quats)
            view = means - origin
            dist = view.norm(dim=-1, keepdim=True).clamp(min=1e-6)
            if channels == "lidar":
                feats = dec.lidar
            else:
                dirs_local = (view / dist) @ R            # view direction in the node frame
                feats = sh_to_rgb(dec.sh, dirs_local)
                if channels == "rgb+depth":
                    feats = torch.cat([feats, dist, dist * dist], 1)
            pieces.append((means, quats, dec.scales, dec.opacities, feats))
            parts.append((node, dec, rows, dist.detach()[:, 0]))
        if not pieces:
            C = {"rgb": 3, "rgb+depth": 5}.get(channels, self._lidar_channels())
            z = torch.zeros
            surfels = Surfels(z(0, 3), z(0, 4), z(0, 2), z(0), z(0, C))
        else:
            surfels = Surfels(*(torch.cat([p[i] for p in pieces]) for i in range(5)))
        return Composed(surfels, parts)

    def _lidar_channels(self) -> int:
        return self.nodes[0].field.lidar_channels if self.nodes else 1

    # --- rendering --------------------------------------------------------------------
    def render_camera(self, sid: str, t: float, T_world_ego=None, T_world_ego_end=None, actors=None,
                      backend: str = "auto", sensor=None, channels: str = "rgb",
                      appearance_id: str | None = "auto", T0=None, T1=None) -> tuple[CameraFrame, Composed, object]:
        """Camera render with sky and colour correction; returns the frame, the composed
        surfels and the raw ``gssim.render`` output (depth channels for training)."""
        if sensor is None:
            sensor = self._spec(sid).sensor
        if T0 is None:
            T0, T1 = self._readout_poses(sid, t, T_world_ego, T_world_ego_end)
        app_id = sid if appearance_id == "auto" else appearance_id
        comp = self.compose(t, app_id, T0, T1, sensor=sensor, actors=actors, channels=channels,
                            appearance=self.appearance.embedding(app_id))
        out = render_surfels(comp.surfels, sensor, T0, T1, backend=backend)
        dirs = build_rays(sensor, T0, T1).rays_d.reshape(sensor.rows, sensor.cols, 3)
        rgb = out.color[..., :3] + (1 - out.alpha)[..., None] * self.sky(dirs)
        rgb = self.appearance.correct(rgb, app_id)
        frame = CameraFrame(color=rgb, depth=out.depth, median_depth=out.median_depth, alpha=out.alpha,
                            normal=out.normal)
        return frame, comp, out

    def render_lidar(self, sid: str, t: float, T_world_ego=None, T_world_ego_end=None, actors=None,
                     backend: str = "auto", sensor=None, seed: int | None = None, T0=None, T1=None,
                     decoder_id: str | None = None) -> tuple[LidarFrame, Composed, object]:
        """LiDAR sweep: range images, intensity and drop probability from the LiDAR decoder,
        and the point cloud at the median range (drops by threshold 0.5, or sampled when
        ``seed`` is given)."""
        if sensor is None:
            sensor = self._spec(sid).sensor
        if T0 is None:
            T0, T1 = self._readout_poses(sid, t, T_world_ego, T_world_ego_end)
        comp = self.compose(t, sid, T0, T1, sensor=sensor, actors=actors, channels="lidar")
        out = render_surfels(comp.surfels, sensor, T0, T1, backend=backend)
        dec_key = decoder_id or (sid if sid in self.lidar_decoders else next(iter(self.lidar_decoders)))
        dirs = build_rays(sensor, T0, T1).rays_d.reshape(sensor.rows, sensor.cols, 3)
        cos_inc = (-(out.normal * dirs).sum(-1)).clamp(0, 1)
        intensity, drop = self.lidar_decoders[dec_key](out.features, out.alpha, cos_inc, out.range)
        # Points at the median range: the surface where transmittance crosses 0.5, not a
        # blend of foreground and background at silhouettes.
        points = to_point_cloud(out, sensor, drop, intensity, seed=seed, use_median=True, T_world_sensor=T0,
                                T_world_sensor_end=T1)
        frame = LidarFrame(points=points, range=out.range, median_range=out.median_range, alpha=out.alpha,
                           intensity=intensity, drop_prob=drop, normal=out.normal)
        return frame, comp, out

    def render(self, t: float, sensors: list[str] | None = None, T_world_ego=None, actors: dict | None = None,
               backend: str = "auto", T_world_ego_end=None, seed: int | None = None) -> dict:
        """Frames of the given sensors (default: all) at time t.

        T_world_ego: (4, 4) ego pose (default: the recorded pose at t); T_world_ego_end:
        its pose at the end of a rolling-shutter readout or LiDAR sweep (default: the
        recorded one when T_world_ego is not given, else the sensor holds still).
        actors: {actor id: T_world_object (4, 4), or None to hide it}.
        Returns {sensor id: CameraFrame or LidarFrame} (no gradients).
        """
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"Scene.render: t must be finite, got {t}")
        sensors = list(self.sensors) if sensors is None else list(sensors)
        frames = {}
        with torch.no_grad():
            for sid in sensors:
                spec = self._spec(sid)
                if spec.type == "camera":
                    frames[sid] = self.render_camera(sid, t, T_world_ego, T_world_ego_end, actors, backend)[0]
                else:
                    frames[sid] = self.render_lidar(sid, t, T_world_ego, T_world_ego_end, actors, backend,
                                                    seed=seed)[0]
        return frames

    # --- files --------------------------------------------------------------------------
    def save(self, path, with_baked: bool = False) -> None:
        """Write the scene folder atomically (see ``gssim.recon.scene_files``)."""
        from gssim.recon.scene_files import save_scene
        save_scene(self, path, with_baked)

