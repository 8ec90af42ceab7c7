"""`gssim serve SCENE --grpc-port P --token T` in its own process: the gRPC service comes
up beside HTTP on the same sessions, needs the token, and serves a step."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from gssim.client import Client
from gssim.client_grpc import GrpcClient, GrpcError
from tests.server.scenes import free_port, write_scene_and_library

ROOT = Path(__file__).resolve().parents[2]


def test_gssim_serve_grpc_port(tmp_path):
    scene_dir, library = write_scene_and_library(tmp_path)
    http_port, grpc_port = free_port(), free_port()
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "gssim.cli", "serve", str(scene_dir), "--library", str(library),
                             "--port", str(http_port), "--grpc-port", str(grpc_port), "--token", "tok"],
                            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=log, stderr=log)
    try:
        with GrpcClient(f"127.0.0.1:{grpc_port}", token="tok", timeout=5.0) as c:
            deadline = time.monotonic() + 120
            while True:
                try:
                    assert c.health().scenes == 1
                    break
                except GrpcError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        pytest.fail(f"gssim serve did not come up:\n{log.read()[-3000:]}")
                    time.sleep(0.2)
            c.timeout = 60.0
            with c.session("edit", sensors=[{"id": "cam"}]) as s:
                with s.stream() as st:
                    assert st.step(0.1).frames["cam"]["color"].shape == (40, 64, 3)
                with Client(f"http://127.0.0.1:{http_port}", token="tok") as http:
                    assert http.metrics().steps == 1, "HTTP and gRPC share one session layer"
            with GrpcClient(f"127.0.0.1:{grpc_port}", token="wrong") as bad:
                with pytest.raises(GrpcError) as info:
                    bad.scenes()
                assert info.value.grpc_code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
