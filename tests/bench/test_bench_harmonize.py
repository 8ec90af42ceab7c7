"""`gssim bench harmonize` on a tiny frame: it reports what it timed."""
import json

import pytest

from gssim.cli import main


def test_bench_harmonize_reports_seconds_and_the_ratio(tmp_path):
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as done:
        main(["bench", "harmonize", "--width", "48", "--height", "32", "--repeats", "1", "--ref-steps", "3",
              "--json", str(out)])
    assert done.value.code == 0
    r = json.loads(out.read_text())
    assert r["frame"] == [48, 32] and r["steps"] == 1 and r["reference_steps"] == 3
    assert r["seconds_per_frame"] > 0 and r["ratio"] == pytest.approx(r["reference_seconds_per_frame"] /
                                                                         r["seconds_per_frame"])
    with pytest.raises(SystemExit) as done:
        main(["bench", "harmonize", "--model", str(tmp_path / "none")])
    assert done.value.code == 2
