"""The server over a real uvicorn on 127.0.0.1 with the Python client (sync and async):
the whole API, two sessions stepping at once on one scene, a client vanishing mid-stream
while another keeps stepping, the token, and idle sessions expiring (bounded loops)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from gssim.client import AsyncClient, Client, ServerError
from gssim.sim.session import SessionManager
from server.app import create_app
from tests.data.conftest import pose
from tests.server.scenes import CAR_POSE, assert_frames_equal, live_server, rig_request, write_scene_and_library


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    scene_dir, library = write_scene_and_library(tmp_path_factory.mktemp("live"))
    manager = SessionManager([scene_dir], library=library)
    with live_server(create_app(manager, token="tok", reap_every_s=0.05)) as url:
        yield url, manager


def test_sync_client_over_uvicorn(served):
    url, manager = served
    scene = manager.scenes["edit"].scene
    with Client(url, token="tok") as c:
        assert c.health().status == "ok"
        assert [s.id for s in c.scenes()] == ["edit"] and c.scene("edit").actors[0].id == "car_1"
        assert {s.id for s in c.sensors("edit")} == {"cam", "lidar"}
        assert {a.id for a in c.assets()} == {"red_box", "cube"}
        with c.session("edit", sensors=rig_request()) as s:
            out = s.step(0.6, T_world_ego=pose(0.5), actors=[{"id": "car_1", "T_world_object": CAR_POSE}])
            assert_frames_equal(out.frames, scene.render(0.6, T_world_ego=pose(0.5), actors={"car_1": CAR_POSE}))
            with s.stream() as st:
                for i in range(3):
                    out = st.step(0.1 * i)
                    assert out.step == 2 + i
                    assert_frames_equal(out.frames, scene.render(0.1 * i))
                with pytest.raises(ServerError) as err:
                    st.step(0.0, sensors=["radar"])
                assert err.value.status == 404 and "radar" in err.value.detail
                assert st.step(0.0).step == 5                  # the stream goes on
            with pytest.raises(ServerError) as err:
                s.step(0.0, actors=[{"id": "ghost", "hidden": True}])
            assert err.value.status == 404 and "ghost" in err.value.detail
        with c.session("edit", sensors=[{"id": "cam"}, {"id": "roof", "lidar_preset": "vlp-32c", "T_ego_sensor":
                                                         pose(z=2.0).tolist(), "lidar_overrides":
                                                         {"azimuth_resolution_deg": 360 / 128}}]) as s:
            out = s.step(0.3)
            assert out.frames["cam"]["color"].shape == (40, 64, 3) and out.frames["cam"]["color"].dtype == np.uint8
            assert out.frames["roof"]["points"].shape[1] == 6
            with pytest.raises(KeyError, match="depth"):
                out.frames["cam"]["depth"]
        assert c.metrics().steps >= 5
        with pytest.raises(ServerError) as err:
            c.open("nowhere")
        assert err.value.status == 404 and "nowhere" in err.value.detail
    with Client(url) as anonymous:
        with pytest.raises(ServerError) as err:
            anonymous.scenes()
        assert err.value.status == 401
        from gssim.client import Stream
        with Client(url, token="tok") as c, c.session("edit") as s:
            with pytest.raises(ServerError) as err:
                Stream(anonymous, s.id).step(0.0)
            assert err.value.status == 401


def test_two_async_sessions_at_once(served):
    url, manager = served
    scene = manager.scenes["edit"].scene

    async def drive(c: AsyncClient, k: int):
        outs = []
        async with c.session("edit", sensors=rig_request()) as s:
            async with s.stream() as st:
                for i in range(4):
                    actors = [{"id": "car_1", "hidden": True}] if k else []
                    outs.append((await st.step(0.1 * i + k, actors=actors)).frames)
            outs.append((await s.step(0.5 + k)).frames)
        return outs

    async def main():
        async with AsyncClient(url, token="tok") as c:
            assert (await c.health()).status == "ok" and len(await c.scenes()) == 1
            return await asyncio.gather(drive(c, 0), drive(c, 1))

    results = asyncio.run(main())
    for k, outs in enumerate(results):
        for i, frames in enumerate(outs[:4]):
            assert_frames_equal(frames, scene.render(0.1 * i + k, actors={"car_1": None} if k else {}))
        assert_frames_equal(outs[4], scene.render(0.5 + k))
    assert manager.health().sessions == 0


def test_disconnect_mid_stream_does_not_disturb_others(served):
    from websockets.sync.client import connect

    from gssim.sim.messages import StepRequest, pack
    url, manager = served
    scene = manager.scenes["edit"].scene
    with Client(url, token="tok") as c:
        a = c.open("edit", sensors=rig_request()).session_id
        with c.session("edit", sensors=rig_request()) as b:
            with b.stream() as st:
                st.step(0.0)
                for k in range(3):
                    # a's client asks for a frame and vanishes before reading it
                    ws = connect(url.replace("http", "ws") + f"/sessions/{a}/stream",
                                 additional_headers={"Authorization": "Bearer tok"}, legacy=True)
                    ws.send(pack(StepRequest(t=0.1 * k)))
                    ws.socket.close()
                    out = st.step(0.2 * k)
                    assert_frames_equal(out.frames, scene.render(0.2 * k))
            time.sleep(0.2)
            assert c.health().status == "ok"
            out = c.step(a, 0.3)                     # a's session survives its client
            assert_frames_equal(out.frames, scene.render(0.3))
        c.close(a)


def test_idle_session_expires(served):
    url, manager = served
    with Client(url, token="tok") as c:
        sid = c.open("edit", timeout_s=0.2).session_id
        deadline = time.monotonic() + 10
        while sid in manager.sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ServerError) as err:
            c.step(sid, 0.0)
        assert err.value.status == 404 and "expired" in err.value.detail
