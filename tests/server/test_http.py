"""The FastAPI app in-process (TestClient): every endpoint, the WebSocket stream, the
bearer token, body limits, and a 4xx ``ErrorInfo`` naming what is wrong for every
malformed request."""
from __future__ import annotations

import io

import msgpack
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gssim.sim.messages import StepResult, unpack
from gssim.sim.session import Limits, SessionManager
from server.app import create_app
from tests.data.conftest import pose
from tests.server.scenes import CAR_POSE, rig_request, write_scene_and_library

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_scene_and_library(tmp_path_factory.mktemp("http"))


@pytest.fixture()
def manager(paths):
    return SessionManager([paths[0]], library=paths[1], limits=Limits(max_request_bytes=64 * 1024))


@pytest.fixture()
def client(manager):
    with TestClient(create_app(manager, token=TOKEN), raise_server_exceptions=False, headers=AUTH) as c:
        yield c


def open_session(client, sensors=None, **kw) -> str:
    resp = client.post("/sessions", json={"scene": "edit", "sensors": sensors or rig_request(), **kw})
    assert resp.status_code == 201, resp.text
    return resp.json()["session_id"]


def decode(result: dict) -> dict:
    """JSON StepResult -> {sensor: {name: array}}."""
    if isinstance(result, (str, bytes)):
        res = StepResult.model_validate_json(result)
    else:
        res = StepResult.model_validate(result)
    return {sid: {k: a.numpy() for k, a in f.arrays.items()} for sid, f in res.frames.items()}


def test_listings(client, manager):
    assert client.get("/health").json()["status"] == "ok"
    scenes = client.get("/scenes").json()["scenes"]
    assert [s["id"] for s in scenes] == ["edit"]
    assert {s["id"] for s in scenes[0]["sensors"]} == {"cam", "lidar"}
    assert [a["id"] for a in scenes[0]["actors"]] == ["car_1"]
    one = client.get("/scenes/edit").json()
    assert one["time_range"] == [0.0, 2.0] and one["sessions"] == 0
    sensors = client.get("/scenes/edit/sensors").json()["sensors"]
    cam = [s for s in sensors if s["id"] == "cam"][0]
    assert (cam["type"], cam["rows"], cam["cols"], cam["entry"]["fx"]) == ("camera", 40, 64, 40.0)
    assert len(cam["T_ego_sensor"]) == 4
    assert {a["id"] for a in client.get("/assets").json()["assets"]} == {"red_box", "cube"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/sessions", "/sessions/{session_id}/step", "/scenes/{scene}/sensors", "/metrics"} <= set(paths)


def test_open_step_close(client, manager):
    sid = open_session(client)
    info = client.get(f"/sessions/{sid}").json()
    assert [s["id"] for s in info["sensors"]] == ["cam", "lidar"]
    scene = manager.scenes["edit"].scene
    T_ego = pose(1.0, 0.0, 0.0, 0.05)
    body = {"t": 0.7, "T_world_ego": T_ego.tolist(),
            "actors": [{"id": "car_1", "T_world_object": CAR_POSE.tolist()}]}
    resp = client.post(f"/sessions/{sid}/step", json=body)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    out = decode(resp.content)
    ref = scene.render(0.7, T_world_ego=T_ego, actors={"car_1": CAR_POSE})
    np.testing.assert_array_equal(out["cam"]["color"], ref["cam"].color.numpy())
    np.testing.assert_array_equal(out["cam"]["depth"], ref["cam"].depth.numpy())
    np.testing.assert_array_equal(out["lidar"]["points"], ref["lidar"].points.numpy())
    # msgpack answer of the same step
    resp = client.post(f"/sessions/{sid}/step", json=body, headers={"Accept": "application/msgpack"})
    assert resp.headers["content-type"] == "application/msgpack"
    out2 = decode(unpack(resp.content))
    np.testing.assert_array_equal(out2["lidar"]["points"], out["lidar"]["points"])
    assert client.get("/scenes/edit").json()["sessions"] == 1
    assert client.delete(f"/sessions/{sid}").json() == {"session_id": sid, "steps": 2}
    resp = client.post(f"/sessions/{sid}/step", json={"t": 0.0})
    assert resp.status_code == 404 and sid in resp.json()["detail"]


def test_png_labels_and_inserted_asset(client):
    from PIL import Image
    sid = open_session(client, [{"id": "cam"}, {"id": "lidar"}])
    resp = client.post(f"/sessions/{sid}/step", json={
        "t": 0.5, "labels": True,
        "actors": [{"id": "mine", "asset": "cube", "T_world_object": pose(8.0, 0.0, 0.5).tolist()},
                   {"id": "car_1", "hidden": True}]})
    assert resp.status_code == 200, resp.text
    res = StepResult.model_validate_json(resp.content)
    img = res.frames["cam"].image
    assert img.format == "png" and np.asarray(Image.open(io.BytesIO(img.data))).shape == (40, 64, 3)
    ids = [i["id"] for i in res.frames["cam"].labels["instances"]]
    assert ids == ["mine"]                  # the hidden car has no label
    assert res.frames["cam"].arrays["instance"].numpy().shape == (40, 64)


def test_metrics(client):
    sid = open_session(client)
    for i in range(3):
        assert client.post(f"/sessions/{sid}/step", json={"t": 0.1 * i}).status_code == 200
    client.post(f"/sessions/{sid}/step", json={"t": "soon"})
    m = client.get("/metrics").json()
    assert m["steps"] == 3 and m["frames_served"] == 6 and m["errors"] == 1
    assert set(m["step_latency_ms"]) >= {"p50", "p90", "p99", "max"}


def test_auth(manager):
    with TestClient(create_app(manager, token=TOKEN)) as c:
        assert c.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            resp = c.get("/scenes", headers=headers)
            assert resp.status_code == 401 and "bearer token" in resp.json()["detail"]
            assert resp.headers["www-authenticate"] == "Bearer"
        assert c.post("/sessions", json={"scene": "edit"}).status_code == 401
        assert c.get("/scenes", headers=AUTH).status_code == 200
        from starlette.websockets import WebSocketDisconnect
        sid = c.post("/sessions", json={"scene": "edit"}, headers=AUTH).json()["session_id"]
        with pytest.raises(WebSocketDisconnect) as err:
            with c.websocket_connect(f"/sessions/{sid}/stream") as ws:
                ws.receive_bytes()
        assert err.value.code == 4401
        with c.websocket_connect(f"/sessions/{sid}/stream?token={TOKEN}") as ws:
            ws.send_bytes(msgpack.packb({"t": 0.1}))
            assert unpack(ws.receive_bytes())["step"] == 1
    with TestClient(create_app(manager)) as open_app:           # no token: open
        assert open_app.get("/scenes").status_code == 200


BAD_OPEN = [
    ({"scene": "nowhere"}, 404, ["nowhere", "edit"]),
    ({"scene": "edit", "sensors": [{"id": "radar"}]}, 404, ["radar", "cam"]),
    ({"scene": "edit", "sensors": [{"id": "c", "from_sensor": "cam", "width": 9000, "height": 9000}]}, 413,
     ["pixels", "limit"]),
    ({"scene": "edit", "sensors": [{"id": "l", "lidar_preset": "vlp-32c"}]}, 422, ["T_ego_sensor"]),
    ({"scene": "edit", "sensors": [{"id": "l", "lidar_preset": "vlp-32c", "T_ego_sensor": np.eye(4).tolist(),
                                    "lidar_overrides": {"azimuth_resolution_deg": 0.01}}]}, 413, ["rays"]),
    ({"scene": "edit", "sensors": [{"id": "c", "from_sensor": "cam", "encoding": "bmp"}]}, 422, ["encoding"]),
    ({"scene": "edit", "sensors": [{"id": "bad id!"}]}, 422, ["sensors.0.id"]),
    ({"scene": "edit", "colour": "red"}, 422, ["colour", "not permitted"]),
    ({"sensors": []}, 422, ["scene", "required"]),
    ({"scene": "edit", "timeout_s": -1}, 422, ["timeout_s"]),
]


@pytest.mark.parametrize("body, status, words", BAD_OPEN)
def test_bad_open_requests(client, body, status, words):
    resp = client.post("/sessions", json=body)
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    for w in words:
        assert w in detail, detail


BAD_STEP = [
    ({"t": 0.0, "T_world_ego": [[1, 0, 0, 0]]}, 422, ["T_world_ego", "4x4"]),
    ({"t": 0.0, "T_world_ego": np.diag([1.0, 1, -1, 1]).tolist()}, 422, ["rotation"]),
    ({"t": "later"}, 422, ["t:"]),
    ({}, 422, ["t:", "required"]),
    ({"t": 0.0, "actors": [{"id": "car_1"}]}, 422, ["car_1", "T_world_object or hidden"]),
    ({"t": 0.0, "actors": [{"id": "ghost", "hidden": True}]}, 404, ["ghost"]),
    ({"t": 0.0, "actors": [{"id": "x", "asset": "unicorn", "T_world_object": np.eye(4).tolist()}]}, 404,
     ["unicorn", "cube"]),
    ({"t": 0.0, "sensors": ["radar"]}, 404, ["radar"]),
    ({"t": 0.0, "sensors": []}, 422, ["empty"]),
    ({"t": 0.0, "T_world_ego_end": np.eye(4).tolist()}, 422, ["T_world_ego_end needs T_world_ego"]),
]


@pytest.mark.parametrize("body, status, words", BAD_STEP)
def test_bad_step_requests(client, body, status, words):
    sid = open_session(client)
    resp = client.post(f"/sessions/{sid}/step", json=body)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] in {"invalid", "not_found"}
    for w in words:
        assert w in resp.json()["detail"], resp.json()["detail"]


def test_malformed_bodies_and_routes(client):
    sid = open_session(client)
    resp = client.post(f"/sessions/{sid}/step", content=b'{"t": 0.', headers={"Content-Type": "application/json"})
    assert resp.status_code == 422 and "not valid JSON" in resp.json()["detail"]
    big = b'{"t": 0.0, "pad": "' + b"x" * 100_000 + b'"}'
    resp = client.post(f"/sessions/{sid}/step", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and "limit" in resp.json()["detail"]
    resp = client.post("/sessions/nope/step", json={"t": 0.0})
    assert resp.status_code == 404 and "nope" in resp.json()["detail"]
    resp = client.get("/nowhere")
    assert resp.status_code == 404 and "/nowhere" in resp.json()["detail"]
    assert client.put("/sessions").status_code == 405
    assert client.get("/scenes/nowhere").status_code == 404


def test_websocket_stream(client, manager):
    from starlette.websockets import WebSocketDisconnect
    sid = open_session(client)
    scene = manager.scenes["edit"].scene
    with client.websocket_connect(f"/sessions/{sid}/stream") as ws:
        for i in range(3):
            ws.send_bytes(msgpack.packb({"t": 0.2 * i, "actors": [{"id": "car_1", "hidden": True}]}))
            out = decode(unpack(ws.receive_bytes()))
            ref = scene.render(0.2 * i, actors={"car_1": None})
            np.testing.assert_array_equal(out["lidar"]["points"], ref["lidar"].points.numpy())
        for bad, word in ((b"\xc1\x00", "msgpack"), (msgpack.packb({"t": 0, "sensors": ["radar"]}), "radar"),
                          (msgpack.packb({"when": 1}), "when"), (b"x" * 70_000, "limit")):
            ws.send_bytes(bad)
            err = unpack(ws.receive_bytes())
            assert set(err) == {"error", "detail"} and word in err["detail"], err
        ws.send_bytes(msgpack.packb({"t": 0.1}))          # the stream survives bad frames
        assert unpack(ws.receive_bytes())["step"] == 4
    with pytest.raises(WebSocketDisconnect) as exc:
        with client.websocket_connect("/sessions/nope/stream") as ws:
            ws.receive_bytes()
    assert exc.value.code == 4404
