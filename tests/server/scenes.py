"""Tiny served scenes (the hand-made edit-test scene: road, wall, one moving car; a
64x40 camera ``cam`` and a 6-beam LiDAR ``lidar``), an asset library, and a real uvicorn
on 127.0.0.1 at a free port."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

import numpy as np

from gssim.edit.assets import save_asset
from gssim.recon.scene_files import save_scene
from tests.data.conftest import pose
from tests.edit.test_edits import make_asset, make_scene

CAR_POSE = pose(10.0, 1.0, 0.75, 0.3)


def write_scene_and_library(root) -> tuple:
    """(scene folder "edit", asset library with "red_box" and "cube") under ``root``."""
    scene_dir, library = root / "edit", root / "library"
    save_scene(make_scene(), scene_dir)
    save_asset(make_asset(), library)
    save_asset(make_asset("cube", (1.0, 1.0, 1.0), (0.9, 0.9, 0.1), 0.3), library)
    return scene_dir, library


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app, timeout_s: float = 20.0):
    """A real uvicorn serving ``app`` on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


def rig_request() -> list[dict]:
    """The scene's own sensors, raw float32 color so frames compare exactly."""
    return [{"id": "cam", "encoding": "raw", "outputs": ["color", "depth", "alpha"]},
            {"id": "lidar", "outputs": ["points", "range", "intensity"]}]


def assert_frames_equal(frames: dict, ref: dict) -> None:
    """Decoded client/session arrays equal ``scene.render`` frames (tensors)."""
    for sid, f in ref.items():
        for name in ("color", "depth", "alpha", "points", "range", "intensity"):
            if name in frames[sid]:
                np.testing.assert_array_equal(frames[sid][name], getattr(f, name).numpy(), err_msg=f"{sid}.{name}")
