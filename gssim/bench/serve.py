"""`gssim bench serve SCENE`: the simulation server end to end over loopback.

Starts `gssim serve SCENE` (a real uvicorn in its own process) on 127.0.0.1, opens a
session with one camera re-sized to 640x360 (PNG) and one 32-beam, 1024-column spinning
LiDAR (points), and measures

1. the step latency of one client over the WebSocket stream, from request to decoded
   arrays (p50, p99), against the same render + encoding called in this process (the
   reference, measured first, with the server not yet started);
2. N clients (default 4) stepping their own sessions for S seconds (default 60): steps,
   errors and the server's resident memory over time.

Targets: p50 <= 100 ms, p99 <= 200 ms; no errors and no memory growth under load.
SCENE is a scene folder (`gssim train LOG --out SCENE --preset demo`, then `gssim bake
SCENE` for explicit surfels).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

TARGET_P50_MS, TARGET_P99_MS = 100.0, 200.0


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MiB), from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def rig(sensors: list, width: int, height: int, lidar_cols: int, encoding: str) -> list[dict]:
    """The benchmark rig from the scene's sensor listing: its first camera re-sized, and a
    VLP-32C-style LiDAR at the scene LiDAR's mount (or 1.8 m over the ego origin)."""
    cams = [s for s in sensors if s.type == "camera"]
    if not cams:
        raise SystemExit("bench serve: the scene has no camera")
    lidars = [s for s in sensors if s.type == "lidar"]
    mount = lidars[0].T_ego_sensor if lidars else [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.8], [0, 0, 0, 1]]
    return [{"id": "camera", "from_sensor": cams[0].id, "width": width, "height": height, "encoding": encoding},
            {"id": "lidar", "lidar_preset": "vlp-32c", "T_ego_sensor": mount, "outputs": ["points"],
             "lidar_overrides": {"azimuth_resolution_deg": 360.0 / lidar_cols}}]


def step_times(time_range, n: int, dt: float = 0.1) -> list[float]:
    t0, t1 = time_range
    span = max(t1 - t0, 1e-6)
    return [t0 + (i * dt) % span for i in range(n)]


def percentiles(ms: list[float]) -> dict:
    v = np.asarray(ms)
    return {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)), "max": float(v.max()),
            "n": len(ms)}


def reference(scene_dir: str, args: argparse.Namespace) -> tuple[dict, list[dict], tuple, bool]:
    """The benchmark steps in this process (SessionManager render + encode, no transport):
    (ms percentiles, the rig, the scene's time range, whether every node is baked)."""
    from gssim.sim.messages import OpenSessionRequest, SensorRequest, StepRequest
    from gssim.sim.session import SessionManager
    manager = SessionManager([scene_dir])
    scene_id, loaded = next(iter(manager.scenes.items()))
    rig_req = rig(manager.list_sensors(scene_id), args.width, args.height, args.lidar_cols, args.encoding)
    sid = manager.open(OpenSessionRequest(scene=scene_id, sensors=[SensorRequest(**r) for r in rig_req])).session_id
    time_range = loaded.scene.time_range
    times = step_times(time_range, args.steps + 2)
    ms = []

    def steps() -> None:
        for i, t in enumerate(times):
            t0 = time.perf_counter()
            manager.step(sid, StepRequest(t=t))
            if i >= 2:               # after two warm-up steps
                ms.append((time.perf_counter() - t0) * 1e3)

    # In a worker thread, as the server renders (OpenMP under load behaves differently
    # in the main thread).
    worker = threading.Thread(target=steps)
    worker.start()
    worker.join()
    if len(ms) != len(times) - 2:
        raise SystemExit("bench serve: the in-process reference failed (see the log above)")
    baked = all(n.field.kind == "explicit" for n in loaded.scene.nodes)
    return percentiles(ms), rig_req, time_range, baked


class ServerProcess:
    """`gssim serve SCENE` on 127.0.0.1 at a free port, its log in a temporary file."""

    def __init__(self, scene_dir: str, start_timeout_s: float = 600.0) -> None:
        import httpx
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="gssim-serve-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "gssim.cli", "serve", scene_dir, "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={k: v for k, v in os.environ.items() if k != "GSSIM_TOKEN"})
        deadline = time.monotonic() + start_timeout_s
        while True:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"bench serve: the server exited ({self.proc.returncode}):\n{self.log.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("bench serve: the server did not come up")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def latency(url: str, scene_id: str, rig_req: list[dict], time_range, steps: int) -> tuple[dict, dict]:
    """One client's stream: round-trip ms (request to decoded arrays) and the server's own ms."""
    from gssim.client import Client
    with Client(url) as c, c.session(scene_id, sensors=rig_req) as s, s.stream() as st:
        times = step_times(time_range, steps + 3)
        for t in times[:3]:
            st.step(t)
        rtt, server = [], []
        for t in times[3:]:
            t0 = time.perf_counter()
            out = st.step(t)
            rtt.append((time.perf_counter() - t0) * 1e3)
            server.append(out.render_ms + out.encode_ms)
        shapes = {k: {n: list(a.shape) for n, a in f.arrays.items()} for k, f in out.frames.items()}
    return percentiles(rtt), {**percentiles(server), "shapes": shapes}


def load(url: str, scene_id: str, rig_req: list[dict], time_range, clients: int, seconds: float, pid: int) -> dict:
    """``clients`` threads stepping their own sessions for ``seconds``; RSS sampled each second."""
    from gssim.client import Client
    counts = [0] * clients
    errors: list[str] = []
    stop = threading.Event()

    def worker(k: int) -> None:
        try:
            with Client(url) as c, c.session(scene_id, sensors=rig_req) as s, s.stream() as st:
                i = k
                while not stop.is_set():
                    try:
                        st.step(step_times(time_range, i + 1)[-1])
                        counts[k] += 1
                    except Exception as exc:        # noqa: BLE001  (counted, the run goes on)
                        errors.append(f"client {k}: {exc}")
                        if len(errors) > 100:
                            return
                    i += clients
        except Exception as exc:                    # noqa: BLE001
            errors.append(f"client {k}: {exc}")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    rss = [(0.0, rss_mb(pid))]
    start = time.monotonic()
    for th in threads:
        th.start()
    while time.monotonic() - start < seconds:
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - start))))
        rss.append((time.monotonic() - start, rss_mb(pid)))
    stop.set()
    for th in threads:
        th.join(120)
    elapsed = time.monotonic() - start
    t = np.array([r[0] for r in rss])
    m = np.array([r[1] for r in rss])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], m[half], 1)[0] * 60) if half.sum() >= 3 else 0.0
    return {"clients": clients, "seconds": elapsed, "steps": sum(counts), "steps_per_s": sum(counts) / elapsed,
            "errors": len(errors), "first_errors": errors[:5], "rss_start_mb": float(m[0]),
            "rss_after_warmup_mb": float(m[min(len(m) - 1, max(1, len(m) // 5))]), "rss_end_mb": float(m[-1]),
            "rss_max_mb": float(m.max()), "rss_slope_second_half_mb_per_min": slope}


def run(args: argparse.Namespace) -> dict:
    from gssim.client import Client
    scene_dir = str(Path(args.scene).resolve())
    in_process, rig_req, time_range, baked = reference(scene_dir, args)
    report = {"scene": scene_dir, "baked": baked, "rig": f"camera {args.width}x{args.height} {args.encoding}, "
              f"lidar 32x{args.lidar_cols} points", "cpu_count": os.cpu_count(), "in_process_ms": in_process}
    server = ServerProcess(scene_dir)
    try:
        with Client(server.url) as c:
            scene_id = c.scenes()[0].id
        report["loopback_ms"], report["server_step_ms"] = latency(server.url, scene_id, rig_req, time_range,
                                                                  args.steps)
        report["load"] = load(server.url, scene_id, rig_req, time_range, args.clients, args.seconds, server.proc.pid)
        with Client(server.url) as c:
            report["server_metrics"] = c.metrics().model_dump()
    finally:
        server.stop()
    lp = report["loopback_ms"]
    report["ratio_loopback_over_in_process_p50"] = lp["p50"] / in_process["p50"]
    report["targets"] = {"p50_ok": lp["p50"] <= TARGET_P50_MS, "p99_ok": lp["p99"] <= TARGET_P99_MS,
                         "no_errors": report["load"]["errors"] == 0}
    return report


def print_report(r: dict) -> None:
    lp, ip, ld = r["loopback_ms"], r["in_process_ms"], r["load"]
    print(f"scene {r['scene']} ({'baked' if r['baked'] else 'not baked'}), rig: {r['rig']}, {r['cpu_count']} CPUs")
    print(f"in process (render + encode, reference): p50 {ip['p50']:.1f} ms  p99 {ip['p99']:.1f} ms  (n={ip['n']})")
    print(f"loopback WebSocket step, request to decoded arrays: p50 {lp['p50']:.1f} ms  p99 {lp['p99']:.1f} ms  "
          f"max {lp['max']:.1f} ms  (n={lp['n']}; target p50 <= {TARGET_P50_MS:g}, p99 <= {TARGET_P99_MS:g}: "
          f"{'met' if r['targets']['p50_ok'] and r['targets']['p99_ok'] else 'NOT met'})")
    sp = r["server_step_ms"]
    print(f"  of which the server's render + encode: p50 {sp['p50']:.1f} ms  p99 {sp['p99']:.1f} ms")
    print(f"ratio loopback / in process (p50): {r['ratio_loopback_over_in_process_p50']:.2f}")
    print(f"{ld['clients']} clients for {ld['seconds']:.0f} s: {ld['steps']} steps ({ld['steps_per_s']:.1f}/s), "
          f"{ld['errors']} errors; server RSS {ld['rss_start_mb']:.0f} -> {ld['rss_after_warmup_mb']:.0f} (warm) -> "
          f"{ld['rss_end_mb']:.0f} MiB (max {ld['rss_max_mb']:.0f}), second-half slope "
          f"{ld['rss_slope_second_half_mb_per_min']:+.1f} MiB/min")
    lat = r["server_metrics"]["step_latency_ms"]
    if lat:
        print(f"server-side step (render + encode) over all steps: p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms")
    for e in ld["first_errors"]:
        print(f"  error: {e}")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("serve", help="server step latency over loopback and a multi-client soak",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scene", help="scene folder (baked for fast serving: `gssim bake SCENE`)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--lidar-cols", type=int, default=1024, help="LiDAR columns (32 beams, VLP-32C elevations)")
    p.add_argument("--encoding", choices=["png", "jpeg", "raw"], default="png")
    p.add_argument("--steps", type=int, default=100, help="timed steps of the latency phase")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the multi-client phase")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import logging
    logging.getLogger("httpx").setLevel(logging.WARNING)      # one line per request otherwise
    report = run(args)
    print_report(report)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if report["targets"]["no_errors"] else 1

