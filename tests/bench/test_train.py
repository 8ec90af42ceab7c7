"""`gssim bench train` measures a training step and the two shortcuts against their references."""
import json
import re

from gssim.bench.train import run
from gssim.synth.config import config_from_dict
from gssim.synth.generate import generate_log
from tests.recon.conftest import TINY_DRIVE, tiny_config


def test_bench_train_reports_phases_and_ratios(tmp_path):
    generate_log(config_from_dict(TINY_DRIVE), tmp_path / "log", previews=False, show_progress=False)
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps(tiny_config().to_dict()))
    lines = run(tmp_path / "log", str(preset), warm_steps=2, repeats=1)
    text = "\n".join(lines)
    assert re.search(r"camera step \(cam_front, 64x36, \d+ surfels in view\): \d+ ms", text)
    assert re.search(r"LiDAR step .* slice/whole time [\d.]+", text)
    agree = float(re.search(r"values agree to ([\d.e+-]+)", text).group(1))
    assert agree < 1e-5, "the banded SSIM is the same SSIM as the convolution"
