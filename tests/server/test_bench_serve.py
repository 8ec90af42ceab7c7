"""`gssim bench serve` end to end on the tiny scene (a real server process, short phases):
it reports latency percentiles, the soak's steps and errors, and the server's memory."""
from __future__ import annotations

import json

from gssim.cli import build_parser
from tests.server.scenes import write_scene_and_library


def test_bench_serve_runs_and_reports(tmp_path, capsys):
    scene_dir, _ = write_scene_and_library(tmp_path)
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(["bench", "serve", str(scene_dir), "--width", "64", "--height", "36",
                                      "--lidar-cols", "64", "--steps", "4", "--seconds", "1", "--clients", "2",
                                      "--json", str(out)])
    assert args.func(args) == 0
    report = json.loads(out.read_text())
    lp = report["loopback_ms"]
    assert lp["n"] == 4 and 0 < lp["p50"] <= lp["p99"] <= lp["max"]
    shapes = report["server_step_ms"]["shapes"]
    assert shapes["camera"] == {"color": [36, 64, 3]} and shapes["lidar"]["points"][1] == 6
    assert report["load"]["errors"] == 0 and report["load"]["steps"] > 0
    assert report["load"]["rss_end_mb"] > 100
    assert report["server_metrics"]["steps"] == lp["n"] + 3 + report["load"]["steps"]
    text = capsys.readouterr().out
    assert "p50" in text and "2 clients" in text
