"""Glance images of a log: a contact sheet of the cameras and a bird's-eye LiDAR view."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from gssim.data.reader import Log


def contact_sheet(log: Log, n_frames: int = 3, max_width: int = 320) -> Image.Image:
    """Grid image: rows = frames (first, middle, last, ...), columns = cameras."""
    cams = log.camera_ids
    if not cams or not log.frames:
        raise ValueError(f"log {log.name!r} has no camera frames for a contact sheet")
    picks = sorted(set(np.linspace(0, len(log.frames) - 1, min(n_frames, len(log.frames))).round().astype(int)))
    tiles = {}
    cell_w, cell_h = 0, 0
    for i in picks:
        for sid in cams:
            if sid not in log.frames[i].cameras:
                continue
            im = Image.fromarray(log.image(i, sid))
            if im.width > max_width:
                im = im.resize((max_width, round(im.height * max_width / im.width)), Image.BILINEAR)
            tiles[(i, sid)] = im
            cell_w, cell_h = max(cell_w, im.width), max(cell_h, im.height)
    label_h, pad = 14, 4
    sheet = Image.new("RGB", (len(cams) * (cell_w + pad) + pad, len(picks) * (cell_h + label_h + pad) + pad),
                      (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    for r, i in enumerate(picks):
        for c, sid in enumerate(cams):
            x, y = pad + c * (cell_w + pad), pad + r * (cell_h + label_h + pad)
            draw.text((x + 2, y), f"{sid}  frame {log.frames[i].index}  t={log.frames[i].t:.2f}s", fill=(230, 230, 230))
            if (i, sid) in tiles:
                sheet.paste(tiles[(i, sid)], (x, y + label_h))
    return sheet


def lidar_birds_eye(log: Log, sid: str | None = None, size: int = 800, metres: float = 120.0) -> Image.Image:
    """Top view of all LiDAR returns in the world frame, coloured by height, with the ego
    path (white) and actor boxes at the middle frame (orange)."""
    if sid is None:
        if not log.lidar_ids:
            raise ValueError(f"log {log.name!r} has no LiDAR")
        sid = log.lidar_ids[0]
    pts = [log.lidar_points_world(i, sid) for i, f in enumerate(log.frames) if sid in f.lidars]
    if not pts:
        raise ValueError(f"log {log.name!r} has no frames of LiDAR {sid!r}")
    P = np.concatenate(pts)
    ego = np.array([f.T_world_ego[:3, 3] for f in log.frames])
    centre = ego.mean(0)[:2]
    scale = size / metres

    def pix(xy: np.ndarray) -> np.ndarray:  # world x up the image, y to the left
        return np.stack([size / 2 - (xy[:, 1] - centre[1]) * scale, size / 2 - (xy[:, 0] - centre[0]) * scale], 1)

    img = np.zeros((size, size, 3), np.uint8)
    uv = np.floor(pix(P[:, :2])).astype(int)
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < size) & (uv[:, 1] >= 0) & (uv[:, 1] < size)
    z = np.clip((P[ok, 2] + 0.5) / 8.0, 0, 1)
    col = np.stack([255 * z, 255 * (1 - np.abs(z - 0.5) * 2) * 0.8 + 50, 255 * (1 - z)], 1).astype(np.uint8)
    order = np.argsort(P[ok, 2])
    img[uv[ok][order, 1], uv[ok][order, 0]] = col[order]
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    draw.line([tuple(p) for p in pix(ego[:, :2])], fill=(255, 255, 255), width=2)
    t_mid = log.frames[len(log.frames) // 2].t
    for b in log.actor_boxes_at(t_mid):
        c = b.corners()[[0, 2, 6, 4, 0], :2]
        draw.line([tuple(p) for p in pix(c)], fill=(255, 150, 0), width=1)
    draw.text((6, 6), f"{log.name}: {sid}, {len(P)} returns, {len(log.frames)} frames, {metres:g} m wide",
              fill=(255, 255, 255))
    return im
