"""The gRPC service over a real server on 127.0.0.1 (a free port) and a real channel:
every call, the stream, the bearer token, a status naming what is wrong for every bad
request, cancellation, two sessions at once; frames equal ``scene.render`` and the HTTP
face's results for the same request.  Also: the checked-in generated code is what the
proto gives, and the proto mirrors the session layer's messages."""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gssim.client_grpc import GrpcClient, GrpcError, GrpcStream
from gssim.sim import messages
from gssim.sim.messages import StepResult
from gssim.sim.proto import GENERATED, PROTO, generate
from gssim.sim.proto import sensor_service_pb2 as pb
from gssim.sim.proto.convert import to_proto
from gssim.sim.session import Limits, SessionManager
from server.app import create_app
from server.grpc_service import serve_grpc
from tests.data.conftest import pose
from tests.server.scenes import CAR_POSE, assert_frames_equal, rig_request, write_scene_and_library

TOKEN = "s3cret"
BAD_POSE = [[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_scene_and_library(tmp_path_factory.mktemp("grpc"))


@pytest.fixture(scope="module")
def manager(paths):
    m = SessionManager([paths[0]], library=paths[1], limits=Limits(max_request_bytes=64 * 1024, max_inserted=2))
    yield m
    m.close_all()


@pytest.fixture(scope="module")
def server(manager):
    srv = serve_grpc(manager, 0, host="127.0.0.1")
    yield srv
    srv.stop(None)


@pytest.fixture(scope="module")
def client(server):
    with GrpcClient(f"127.0.0.1:{server.port}", timeout=60.0) as c:
        yield c


@pytest.fixture(scope="module")
def stub(client):
    return client.stub


def arrays(result: StepResult) -> dict:
    return {sid: {k: a.numpy() for k, a in f.arrays.items()} for sid, f in result.frames.items()}


def refused(call, grpc_code: grpc.StatusCode, *words: str) -> grpc.RpcError:
    """``call()`` fails with ``grpc_code`` and a message holding every word."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    exc = info.value
    assert exc.code() == grpc_code, exc.details()
    for w in words:
        assert w in exc.details(), exc.details()
    return exc


# ------------------------------------------------------------------------- the protocol
def test_checked_in_code_is_what_the_proto_generates(tmp_path):
    for path in generate(tmp_path):
        checked_in = PROTO.with_name(path.name)
        assert path.read_bytes() == checked_in.read_bytes(), \
            f"{checked_in.name} is stale; regenerate with `python -m gssim.sim.proto`"
    assert sorted(p.name for p in generate(tmp_path)) == sorted(GENERATED)


def test_proto_mirrors_the_session_messages():
    models = [m for m in vars(messages).values()
              if isinstance(m, type) and issubclass(m, messages.Message) and m not in (messages.Message,
                                                                                       messages.ErrorInfo)]
    assert len(models) >= 18
    for model in models:
        proto_fields = set(getattr(pb, model.__name__).DESCRIPTOR.fields_by_name)
        missing, extra = set(model.model_fields) - proto_fields, proto_fields - set(model.model_fields)
        assert not missing, f"{model.__name__}: proto lacks {missing}"
        assert extra <= {"session_id"}, f"{model.__name__}: proto has fields the model lacks: {extra}"


# ------------------------------------------------------------------------------- calls
def test_listings_equal_the_session_layer(client, manager):
    assert client.health().status == "ok"
    assert client.scenes() == manager.list_scenes()
    assert client.scene("edit") == manager.scene_info("edit")
    assert client.sensors("edit") == manager.list_sensors("edit")
    assert client.assets() == manager.list_assets()
    cam = [s for s in client.sensors("edit") if s.id == "cam"][0]
    assert (cam.type, cam.rows, cam.cols, cam.entry["width"]) == ("camera", 40, 64, 64)
    assert isinstance(cam.entry["width"], int), "whole numbers of a Struct read back as ints"


def test_step_equals_scene_render_and_the_http_face(client, manager):
    T_ego = pose(1.0, 0.0, 0.0, 0.05)
    actors = [{"id": "car_1", "T_world_object": CAR_POSE}]
    with client.session("edit", sensors=rig_request()) as s:
        assert client.session_info(s.id) == s.info
        assert [x.id for x in s.info.sensors] == ["cam", "lidar"]
        result = client.step_result(s.id, 0.7, T_world_ego=T_ego, actors=actors, labels=True)
        assert (result.session_id, result.step, result.t) == (s.id, 1, 0.7)
        ref = manager.scenes["edit"].scene.render(0.7, T_world_ego=T_ego, actors={"car_1": CAR_POSE})
        assert_frames_equal(arrays(result), ref)
        assert {"instance", "semantic"} <= set(result.frames["cam"].arrays)
        assert any(i["id"] == "car_1" for i in result.frames["cam"].labels["instances"])
        closed = s.close()
    assert closed.steps == 1
    # The same request over HTTP gives the same frames, labels and bytes.
    with TestClient(create_app(manager)) as http:
        sid = http.post("/sessions", json={"scene": "edit", "sensors": rig_request()}).json()["session_id"]
        body = {"t": 0.7, "T_world_ego": T_ego.tolist(), "labels": True,
                "actors": [{"id": "car_1", "T_world_object": CAR_POSE.tolist()}]}
        via_http = StepResult.model_validate_json(http.post(f"/sessions/{sid}/step", json=body).content)
        http.delete(f"/sessions/{sid}")
    assert via_http.frames == result.frames


def test_new_sensors_inserted_assets_and_hidden_actors(client, manager):
    """A re-sized camera, a camera the log never had (JPEG), a LiDAR preset with overrides;
    an inserted asset and a hidden actor: the gRPC frames equal the session layer's."""
    roof = pose(0.0, 0.0, 1.9).tolist()
    cam_mount = [[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]]
    rig = [{"id": "cam_small", "from_sensor": "cam", "width": 32, "outputs": ["color", "depth"]},
           {"id": "wide", "entry": {"type": "camera", "model": "pinhole", "width": 48, "height": 24, "fx": 20.0,
                                    "fy": 20.0, "cx": 24.0, "cy": 12.0}, "T_ego_sensor": cam_mount,
            "encoding": "jpeg", "jpeg_quality": 80},
           {"id": "roof", "lidar_preset": "vlp-32c", "lidar_overrides": {"azimuth_resolution_deg": 4.0,
                                                                          "max_range": 60.0},
            "T_ego_sensor": roof, "outputs": ["points", "range", "drop_prob"]}]
    step = {"t": 0.4, "actors": [{"id": "car_1", "hidden": True},
                                 {"id": "mine", "asset": "red_box", "T_world_object": pose(9.0, -3.5, 0.75)}],
            "seed": 3}
    info = client.open("edit", sensors=rig, timeout_s=30.0)
    assert [(x.id, x.rows, x.cols) for x in info.sensors][:2] == [("cam_small", 20, 32), ("wide", 24, 48)]
    assert info.timeout_s == 30.0
    result = client.step_result(info.session_id, **step)
    direct = manager.open(messages.OpenSessionRequest.model_validate({"scene": "edit", "sensors": rig}))
    expected = manager.step(direct.session_id, messages.StepRequest.model_validate(
        {**step, "actors": [{**a, "T_world_object": a["T_world_object"].tolist()} if "asset" in a else a
                            for a in step["actors"]]}))
    assert result.frames == expected.frames
    assert result.frames["wide"].image.format == "jpeg" and result.frames["roof"].arrays["range"].shape[1] == 90
    for sid in (info.session_id, direct.session_id):
        manager.close(sid)


def test_stream_steps_in_order_and_equal_unary_steps(client):
    requests = [dict(t=0.1 * k, actors=[{"id": "car_1", "T_world_object": pose(10.0 + k, 1.0, 0.75)}])
                for k in range(4)]
    with client.session("edit", sensors=rig_request()) as s:
        with s.stream() as st:
            streamed = [st.step_result(**r) for r in requests]
        assert [r.step for r in streamed] == [1, 2, 3, 4]
        for r, got in zip(requests, streamed):
            assert client.step_result(s.id, **r).frames == got.frames
        out = s.step(0.2)
        assert out.frames["cam"]["color"].dtype == np.float32 and out.frames["lidar"]["points"].shape[1] == 6


def test_close_and_unknown_sessions(client, stub):
    s = client.session("edit", sensors=[{"id": "cam"}])
    assert client.close(s.id).steps == 0
    for call in (lambda: client.close(s.id), lambda: client.step(s.id, 0.1), lambda: client.session_info(s.id)):
        with pytest.raises(GrpcError) as info:
            call()
        assert (info.value.grpc_code, info.value.code, info.value.status) == (grpc.StatusCode.NOT_FOUND, "not_found",
                                                                              404)
        assert s.id in info.value.detail


def test_metrics_count_steps_frames_and_errors(client, manager):
    before = client.metrics()
    with client.session("edit", sensors=rig_request()) as s:
        s.step(0.1)
        s.step(0.2)
        with pytest.raises(GrpcError):
            s.step(0.3, sensors=["nope"])
    after = client.metrics()
    assert after.steps == before.steps + 2 and after.frames_served == before.frames_served + 4
    assert after.frames_by_type["camera"] == before.frames_by_type.get("camera", 0) + 2
    assert after.errors == before.errors + 1
    assert {"p50", "p99"} <= set(after.step_latency_ms) and after == manager.metrics()


# ----------------------------------------------------------------------------- refusals
def test_token(manager):
    srv = serve_grpc(manager, 0, host="127.0.0.1", token=TOKEN)
    try:
        target = f"127.0.0.1:{srv.port}"
        for token in (None, "wrong"):
            with GrpcClient(target, token=token) as c:
                assert c.health().status == "ok", "Health needs no token"
                for call in (c.scenes, c.metrics, lambda: c.open("edit"), lambda: c.step("x", 0.0)):
                    with pytest.raises(GrpcError) as info:
                        call()
                    assert (info.value.grpc_code, info.value.code) == (grpc.StatusCode.UNAUTHENTICATED, "unauthorized")
                    assert "bearer token" in info.value.detail
                with pytest.raises(GrpcError) as info:
                    with GrpcStream(c, "x") as st:
                        st.step(0.0)
                assert info.value.grpc_code == grpc.StatusCode.UNAUTHENTICATED
        with GrpcClient(target, token=TOKEN) as c:
            with c.session("edit", sensors=[{"id": "cam"}]) as s:
                with s.stream() as st:
                    assert st.step(0.1).frames["cam"]["color"].shape == (40, 64, 3)
    finally:
        srv.stop(None)


def _open_raw(stub, **kw):
    return stub.OpenSession(pb.OpenSessionRequest(scene="edit", **kw))


@pytest.mark.parametrize("case", [
    "unknown scene", "unknown sensor", "two sources", "entry without mount", "unknown preset", "bad output",
    "bad encoding", "camera over the pixel limit", "short pose", "not a rotation", "unknown actor", "unknown asset",
    "actor both hidden and posed", "no session id", "request over the size limit", "too many inserted",
])
def test_bad_requests_get_a_status_naming_the_problem(case, client, stub):
    code = grpc.StatusCode
    sid = client.open("edit", sensors=rig_request()).session_id

    def step(**kw):
        return lambda: stub.Step(pb.StepRequest(session_id=sid, **kw))
    identity = pb.Pose(m=np.eye(4).ravel())
    sensor = pb.SensorRequest
    cases = {
        "unknown scene": (lambda: stub.ListSensors(pb.SceneRequest(scene="nope")), code.NOT_FOUND, "nope", "edit"),
        "unknown sensor": (lambda: _open_raw(stub, sensors=[sensor(id="rear")]), code.NOT_FOUND, "rear"),
        "two sources": (lambda: _open_raw(stub, sensors=[sensor(id="x", from_sensor="cam", lidar_preset="vlp-32c")]),
                        code.INVALID_ARGUMENT, "give one of"),
        "entry without mount": (lambda: _open_raw(stub, sensors=[sensor(id="x", lidar_preset="vlp-32c")]),
                                code.INVALID_ARGUMENT, "needs T_ego_sensor"),
        "unknown preset": (lambda: _open_raw(stub, sensors=[sensor(id="x", lidar_preset="hal-9000",
                                                                   T_ego_sensor=identity)]),
                           code.NOT_FOUND, "hal-9000"),
        "bad output": (lambda: _open_raw(stub, sensors=[sensor(id="cam", outputs=["points"])]),
                       code.INVALID_ARGUMENT, "points"),
        "bad encoding": (lambda: _open_raw(stub, sensors=[sensor(id="cam", encoding="gif")]),
                         code.INVALID_ARGUMENT, "encoding"),
        "camera over the pixel limit": (lambda: _open_raw(stub, sensors=[sensor(id="cam", width=20000)]),
                                        code.RESOURCE_EXHAUSTED, "pixels"),
        "short pose": (step(t=0.1, T_world_ego=pb.Pose(m=[1.0] * 12)), code.INVALID_ARGUMENT, "16 values", "12"),
        "not a rotation": (step(t=0.1, T_world_ego=pb.Pose(m=np.ravel(BAD_POSE))), code.INVALID_ARGUMENT,
                           "T_world_ego", "rotation"),
        "unknown actor": (step(t=0.1, actors=[pb.ActorState(id="ghost", hidden=True)]), code.NOT_FOUND, "ghost"),
        "unknown asset": (step(t=0.1, actors=[pb.ActorState(id="a", asset="ufo", T_world_object=identity)]),
                          code.NOT_FOUND, "ufo"),
        "actor both hidden and posed": (step(t=0.1, actors=[pb.ActorState(id="car_1", hidden=True,
                                                                          T_world_object=identity)]),
                                        code.INVALID_ARGUMENT, "exclusive"),
        "no session id": (lambda: stub.Step(pb.StepRequest(t=0.1)), code.INVALID_ARGUMENT, "session_id"),
        "request over the size limit": (step(t=0.1, sensors=["x" * (100 * 1024)]), code.RESOURCE_EXHAUSTED),
        "too many inserted": (step(t=0.1, actors=[pb.ActorState(id=f"a{k}", asset="cube", T_world_object=pb.Pose(
            m=pose(20.0 + 2 * k, 5.0, 0.8).ravel())) for k in range(3)]), code.RESOURCE_EXHAUSTED, "at most 2"),
    }
    call, grpc_code, *words = cases[case]
    exc = refused(call, grpc_code, *words)
    if case != "request over the size limit":       # refused by grpc itself before the service
        assert dict(exc.trailing_metadata())["gssim-error"] in ("invalid", "not_found", "limit")
    if case != "too many inserted":                 # see test_a_refused_insert_leaves_the_session_serving
        assert client.step(sid, 0.1).frames["cam"]["color"].shape == (40, 64, 3), "the session still serves"
    client.close(sid)


def test_a_refused_insert_leaves_the_session_serving(client):
    with client.session("edit", sensors=[{"id": "cam"}]) as s:
        actors = [{"id": f"a{k}", "asset": "cube", "T_world_object": pose(20.0 + 2 * k, 5.0, 0.8)} for k in range(3)]
        with pytest.raises(GrpcError) as info:
            s.step(0.1, actors=actors)
        assert info.value.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert s.step(0.1).frames["cam"]["color"].shape == (40, 64, 3)


def test_a_bad_stream_request_ends_that_stream_only(client, stub):
    with client.session("edit", sensors=[{"id": "cam"}]) as s, client.session("edit", sensors=[{"id": "cam"}]) as o:
        bad_streams = {"another session on the stream": ([pb.StepRequest(session_id=s.id, t=0.1),
                                                          pb.StepRequest(session_id=o.id, t=0.2)],
                                                         "open another stream"),
                       "t not finite": ([pb.StepRequest(session_id=s.id, t=0.1), pb.StepRequest(t=float("nan"))],
                                        "finite"),
                       "no session id": ([pb.StepRequest(t=0.1)], "session_id")}
        for name, (requests, words) in bad_streams.items():
            responses = stub.StepStream(iter(requests))
            if len(requests) == 2:
                assert next(responses).step >= 1, name
            refused(lambda: next(responses), grpc.StatusCode.INVALID_ARGUMENT, words)
        assert s.step(0.2).step == 3 and o.step(0.2).step == 1, "both sessions stay open"


# ------------------------------------------------------------------- concurrency, cancel
def test_cancelling_a_stream_does_not_disturb_others(client, manager):
    with client.session("edit", sensors=rig_request()) as a, client.session("edit", sensors=rig_request()) as b:
        sa, sb = a.stream(), b.stream()
        first = sb.step_result(0.1)
        sa.step(0.1)
        errors_before = manager.metrics().errors
        in_flight = threading.Thread(target=lambda: pytest.raises(GrpcError, sa.step, 0.2))
        in_flight.start()                                   # a step in flight, then the client goes away
        time.sleep(0.02)
        sa.cancel()
        in_flight.join(60)
        with pytest.raises(GrpcError) as info:
            sa.step(0.3)
        assert info.value.grpc_code == grpc.StatusCode.CANCELLED
        again = [sb.step_result(0.1) for _ in range(3)]
        assert all(r.frames == first.frames for r in again), "the other stream goes on, frames unchanged"
        sb.close()
        assert a.step(0.4).frames["cam"]["color"].shape == (40, 64, 3), "the cancelled stream's session stays open"
        assert manager.metrics().errors == errors_before, "a cancel is no server error"
        assert client.health().sessions == len(manager.sessions)


def test_cancelled_streams_free_their_workers(manager):
    """With two workers, cancelled streams (six, one after another) leave room for new calls."""
    srv = serve_grpc(manager, 0, host="127.0.0.1", max_workers=2)
    try:
        with GrpcClient(f"127.0.0.1:{srv.port}") as c, c.session("edit", sensors=[{"id": "cam", "width": 16}]) as s:
            for _ in range(6):
                st = s.stream()
                st.step(0.1)
                st.cancel()
            with s.stream() as st:
                assert st.step(0.2).frames["cam"]["color"].shape == (10, 16, 3)
            busy = [s.stream(), s.stream()]                 # both workers held: the next call is refused
            for st in busy:
                st.step(0.1)
            with pytest.raises(GrpcError) as info:
                c.health()
            assert info.value.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
            for st in busy:
                st.close()
    finally:
        srv.stop(None)


def test_two_sessions_step_at_once(client):
    rigs = {"full": rig_request(), "small": [{"id": "cam", "width": 32, "encoding": "raw"}]}
    ts = [0.1, 0.5, 0.9]
    with client.session("edit", sensors=rigs["full"]) as a, client.session("edit", sensors=rigs["small"]) as b:
        reference = {k: [client.step_result(s.id, t).frames for t in ts] for k, s in (("full", a), ("small", b))}
        got: dict = {}
        errors: list = []

        def run(name, session):
            try:
                with session.stream() as st:
                    got[name] = [st.step_result(t).frames for t in ts]
            except Exception as exc:  # surfaced below
                errors.append(exc)
        threads = [threading.Thread(target=run, args=args) for args in (("full", a), ("small", b))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors and got == reference


def test_idle_sessions_expire(paths):
    now = [0.0]
    m = SessionManager([paths[0]], library=paths[1], clock=lambda: now[0])
    srv = serve_grpc(m, 0, host="127.0.0.1")
    try:
        with GrpcClient(f"127.0.0.1:{srv.port}") as c:
            sid = c.open("edit", sensors=[{"id": "cam"}], timeout_s=5.0).session_id
            now[0] = 4.0
            c.step(sid, 0.1)
            now[0] = 10.0
            with pytest.raises(GrpcError) as info:
                c.step(sid, 0.1)
            assert info.value.grpc_code == grpc.StatusCode.NOT_FOUND and "expired" in info.value.detail
            assert c.metrics().sessions_expired == 1
    finally:
        srv.stop(None)


def test_raw_stub_and_proto_messages(stub):
    """Any gRPC client (no gssim helper): plain stubs and proto messages."""
    sid = stub.OpenSession(to_proto(messages.OpenSessionRequest(scene="edit"))).session_id
    result = stub.Step(pb.StepRequest(session_id=sid, t=0.5, sensors=["lidar"]))
    assert list(result.frames) == ["lidar"]
    points = result.frames["lidar"].arrays["points"]
    assert points.dtype == "<f4" and points.shape[1] == 6 and len(points.data) == 4 * 6 * points.shape[0]
    assert stub.CloseSession(pb.SessionRequest(session_id=sid)).steps == 1
    assert isinstance(to_proto(messages.Health(scenes=1, sessions=0, uptime_s=1.0)), pb.Health)
