"""The sensor showcase renders every sensor of a preset to PNGs with visible content."""
import json

import numpy as np
from PIL import Image

from gssim.showcase import run_showcase


def test_demo_writes_every_sensor(tmp_path):
    preset = {
        "surfels": {"generator": "street", "n": 3000, "seed": 0},
        "ego": {"x": 2.0, "height": 1.6, "speed_mps": 10.0},
        "cameras": {
            "pinhole": {"model": "pinhole", "width": 64, "height": 36, "fx": 40, "fy": 40, "cx": 32, "cy": 18},
            "fisheye": {"model": "fisheye", "width": 64, "height": 36, "fx": 15, "fy": 15, "cx": 32, "cy": 18,
                        "distortion": [0.03, 0.0, 0.0, 0.0]},
        },
        "lidar": {"preset": "vlp-32c", "height": 1.9},
    }
    path = tmp_path / "preset.json"
    path.write_text(json.dumps(preset))
    written = run_showcase(path, tmp_path / "out", backend="cpu")
    names = {p.name for p in written}
    assert {"pinhole_color.png", "fisheye_depth.png", "lidar_range.png", "lidar_birds_eye.png",
            "cameras_side_by_side.png"} <= names
    color = np.asarray(Image.open(tmp_path / "out" / "pinhole_color.png"))
    assert color.shape == (36, 64, 3) and color.std() > 10       # street, not a flat background
    sheet = np.asarray(Image.open(tmp_path / "out" / "cameras_side_by_side.png"))
    assert sheet.shape == (3 * 36, 2 * 64, 3)
    bev = np.asarray(Image.open(tmp_path / "out" / "lidar_birds_eye.png"))
    assert (bev.sum(-1) > 0).sum() > 100                          # returns were plotted
