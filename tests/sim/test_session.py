"""The transport-free session layer: frames equal ``Scene.render`` for the same inputs,
rigs (subsets, re-sized and new sensors), actor states (move, hide, insert), labels,
refusals that name what is wrong, sessions sharing a scene from threads, timeouts and
metrics."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from gssim.sim.messages import ActorState, OpenSessionRequest, SensorRequest, StepRequest
from gssim.sim.session import Limits, SessionError, SessionManager
from tests.data.conftest import pose
from tests.server.scenes import CAR_POSE, write_scene_and_library


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_scene_and_library(tmp_path_factory.mktemp("session"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def manager(paths):
    return SessionManager([paths[0]], library=paths[1], clock=Clock())


def raw_rig() -> list[SensorRequest]:
    return [SensorRequest(id="cam", encoding="raw", outputs=["color", "depth", "alpha"]),
            SensorRequest(id="lidar", outputs=["points", "range", "intensity"])]


def arrays(result) -> dict:
    return {sid: {k: a.numpy() for k, a in f.arrays.items()} for sid, f in result.frames.items()}


def assert_equal_render(out: dict, ref: dict) -> None:
    for sid, f in ref.items():
        for name, value in out[sid].items():
            if hasattr(f, name):
                np.testing.assert_array_equal(value, getattr(f, name).numpy(), err_msg=f"{sid}.{name}")


def test_frames_equal_scene_render(manager):
    scene = manager.scenes["edit"].scene
    sid = manager.open(OpenSessionRequest(scene="edit", sensors=raw_rig())).session_id
    T_ego = pose(1.0, 0.5, 0.0, 0.1)
    cases = [(StepRequest(t=0.4), {}),
             (StepRequest(t=0.8, T_world_ego=T_ego.tolist()), {}),
             (StepRequest(t=1.0, actors=[ActorState(id="car_1", hidden=True)]), {"car_1": None}),
             (StepRequest(t=1.0, actors=[ActorState(id="car_1", T_world_object=CAR_POSE.tolist())]),
              {"car_1": CAR_POSE})]
    for i, (req, actors) in enumerate(cases):
        result = manager.step(sid, req)
        assert result.step == i + 1 and set(result.frames) == {"cam", "lidar"}
        ref = scene.render(req.t, T_world_ego=None if req.T_world_ego is None else T_ego, actors=actors)
        assert_equal_render(arrays(result), ref)
    # The hidden car changes the picture: the comparison is not vacuous.
    a = arrays(manager.step(sid, cases[2][0]))["cam"]["color"]
    b = arrays(manager.step(sid, StepRequest(t=1.0)))["cam"]["color"]
    assert np.abs(a - b).max() > 0.1


def test_png_and_jpeg_encode_the_rendered_color(manager):
    from PIL import Image
    import io
    sid = manager.open(OpenSessionRequest(scene="edit", sensors=[
        SensorRequest(id="cam"), SensorRequest(id="cam_jpeg", from_sensor="cam", encoding="jpeg")])).session_id
    result = manager.step(sid, StepRequest(t=0.5))
    ref = (np.clip(manager.scenes["edit"].scene.render(0.5, ["cam"])["cam"].color.numpy(), 0, 1) * 255 + 0.5)
    png = np.asarray(Image.open(io.BytesIO(result.frames["cam"].image.data)))
    np.testing.assert_array_equal(png, ref.astype(np.uint8))
    jpg = np.asarray(Image.open(io.BytesIO(result.frames["cam_jpeg"].image.data))).astype(float)
    assert result.frames["cam_jpeg"].image.format == "jpeg" and np.abs(jpg - ref).mean() < 8


def test_rig_resized_and_new_sensors(manager):
    mount = pose(0.0, 0.0, 2.0)
    info = manager.open(OpenSessionRequest(scene="edit", sensors=[
        SensorRequest(id="cam_small", from_sensor="cam", width=32),
        SensorRequest(id="side", entry={"type": "camera", "model": "pinhole", "width": 48, "height": 32, "fx": 30.0,
                                        "fy": 30.0, "cx": 24.0, "cy": 16.0},
                      T_ego_sensor=[[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1]],
                      outputs=["color", "depth"], encoding="raw"),
        SensorRequest(id="roof", lidar_preset="vlp-32c", lidar_overrides={"azimuth_resolution_deg": 360 / 256},
                      T_ego_sensor=mount.tolist(), outputs=["points", "range"])]))
    shapes = {s.id: (s.rows, s.cols) for s in info.sensors}
    assert shapes == {"cam_small": (20, 32), "side": (32, 48), "roof": (32, 256)}
    result = manager.step(info.session_id, StepRequest(t=0.5))
    assert (result.frames["cam_small"].image.width, result.frames["cam_small"].image.height) == (32, 20)
    roof = arrays(result)["roof"]
    assert roof["range"].shape == (32, 256) and roof["points"].shape[1] == 6 and len(roof["points"]) > 100
    assert arrays(result)["side"]["depth"].max() > 0
    # A subset of the rig per step.
    assert set(manager.step(info.session_id, StepRequest(t=0.5, sensors=["roof"])).frames) == {"roof"}


def test_inserted_asset_shows_moves_and_hides(manager):
    scene = manager.scenes["edit"].scene
    sid = manager.open(OpenSessionRequest(scene="edit", sensors=raw_rig())).session_id
    place = pose(9.0, -1.0, 0.75)
    ins = ActorState(id="mine", asset="red_box", T_world_object=place.tolist())
    shown = manager.step(sid, StepRequest(t=0.5, actors=[ins], labels=True))
    plain = arrays(manager.step(sid, StepRequest(t=0.5)))      # not listed: hidden
    assert_equal_render(plain, scene.render(0.5))
    red = shown.frames["cam"].arrays["color"].numpy()
    assert (red[..., 0] > 0.7).sum() > 20 and (plain["cam"]["color"][..., 0] > 0.7).sum() == 0
    labels = shown.frames["cam"].labels
    mine = [i for i in labels["instances"] if i["id"] == "mine"][0]
    assert mine["cells"] > 20 and mine["box3d_world"]["centre"] == pytest.approx([9.0, -1.0, 0.75])
    inst = shown.frames["lidar"].arrays["point_instance"].numpy()
    assert (inst == mine["instance"]).sum() > 0
    assert len(inst) == len(shown.frames["lidar"].arrays["points"].numpy())
    # The same node is shared: a second insert of the asset in another session reuses it.
    sid2 = manager.open(OpenSessionRequest(scene="edit", sensors=raw_rig())).session_id
    manager.step(sid2, StepRequest(t=0.5, actors=[ActorState(id="other", asset="red_box",
                                                             T_world_object=place.tolist())]))
    f1 = manager.session(sid).inserted["mine"][1].field
    f2 = manager.session(sid2).inserted["other"][1].field
    assert f1 is f2


@pytest.mark.parametrize("rig, code, words", [
    ([SensorRequest(id="nope")], "not_found", ["nope", "cam", "lidar"]),
    ([SensorRequest(id="c", from_sensor="cam", width=100000)], "limit", ["pixels", "limit"]),
    ([SensorRequest(id="l", from_sensor="lidar", width=10)], "invalid", ["LiDAR"]),
    ([SensorRequest(id="l", lidar_preset="nope-9", T_ego_sensor=np.eye(4).tolist())], "not_found", ["nope-9"]),
    ([SensorRequest(id="c", outputs=["points"], from_sensor="cam")], "invalid", ["points", "camera"]),
    ([SensorRequest(id="c", entry={"type": "camera", "model": "pinhole", "width": 10},
                    T_ego_sensor=np.eye(4).tolist())], "invalid", ["sensor 'c'"]),
    ([SensorRequest(id="cam"), SensorRequest(id="cam")], "invalid", ["twice", "cam"]),
])
def test_bad_rigs_are_named(manager, rig, code, words):
    with pytest.raises(SessionError) as err:
        manager.open(OpenSessionRequest(scene="edit", sensors=rig))
    assert err.value.code == code and 400 <= err.value.status < 500
    for w in words:
        assert w in err.value.detail


@pytest.mark.parametrize("req, code, words", [
    (StepRequest(t=0.0, sensors=["x"]), "not_found", ["'x'", "rig"]),
    (StepRequest(t=0.0, actors=[ActorState(id="ghost", hidden=True)]), "not_found", ["ghost", "car_1"]),
    (StepRequest(t=0.0, actors=[ActorState(id="background", hidden=True)]), "invalid", ["background"]),
    (StepRequest(t=0.0, actors=[ActorState(id="car_1", asset="red_box", T_world_object=np.eye(4).tolist())]),
     "invalid", ["car_1", "new id"]),
    (StepRequest(t=0.0, actors=[ActorState(id="x", asset="unicorn", T_world_object=np.eye(4).tolist())]),
     "not_found", ["unicorn", "red_box"]),
])
def test_bad_steps_are_named(manager, req, code, words):
    sid = manager.open(OpenSessionRequest(scene="edit")).session_id
    with pytest.raises(SessionError) as err:
        manager.step(sid, req)
    assert err.value.code == code
    for w in words:
        assert w in err.value.detail


def test_message_validation_names_the_field():
    from pydantic import ValidationError
    bad = [lambda: StepRequest(t=float("nan")), lambda: StepRequest(t=0, T_world_ego=[[1, 0], [0, 1]]),
           lambda: StepRequest(t=0, T_world_ego=np.diag([2.0, 1, 1, 1]).tolist()),
           lambda: ActorState(id="a", hidden=True, T_world_object=np.eye(4).tolist()),
           lambda: SensorRequest(id="r", lidar_preset="vlp-32c"),
           lambda: StepRequest(t=0, actors=[ActorState(id="a", hidden=True), ActorState(id="a", hidden=True)])]
    words = ["finite", "4x4", "rotation", "exclusive", "T_ego_sensor", "twice"]
    for make, w in zip(bad, words):
        with pytest.raises(ValidationError, match=w):
            make()


def test_sessions_share_the_scene_and_step_from_threads(manager):
    sids = [manager.open(OpenSessionRequest(scene="edit", sensors=raw_rig())).session_id for _ in range(2)]
    views = [manager.session(s).view for s in sids]
    assert views[0] is views[1] is manager.scenes["edit"].scene      # no copy of the tensors
    results, errors = {}, []

    def run(sid, k):
        try:
            results[sid] = [arrays(manager.step(sid, StepRequest(t=0.1 * (i + k)))) for i in range(4)]
        except Exception as exc:      # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, k)) for k, s in enumerate(sids)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    scene = manager.scenes["edit"].scene
    for k, s in enumerate(sids):
        for i, out in enumerate(results[s]):
            assert_equal_render(out, scene.render(0.1 * (i + k)))


def test_timeouts_and_close(paths):
    clock = Clock()
    manager = SessionManager([paths[0]], library=paths[1], clock=clock, limits=Limits(max_timeout_s=100))
    a = manager.open(OpenSessionRequest(scene="edit", timeout_s=10)).session_id
    b = manager.open(OpenSessionRequest(scene="edit", timeout_s=50)).session_id
    clock.now = 8.0
    manager.step(a, StepRequest(t=0.0))          # a step restarts the idle clock
    clock.now = 17.0
    assert manager.reap() == []
    clock.now = 19.0
    assert manager.reap() == [a]
    with pytest.raises(SessionError, match="closed, expired"):
        manager.step(a, StepRequest(t=0.0))
    assert manager.close(b).steps == 0
    with pytest.raises(SessionError):
        manager.close(b)
    with pytest.raises(SessionError, match="limit"):
        manager.open(OpenSessionRequest(scene="edit", timeout_s=1000))
    m = manager.metrics()
    assert (m.sessions_expired, m.sessions_closed, m.sessions_opened, m.steps) == (1, 1, 2, 1)


def test_metrics_count_frames_and_latency(manager):
    sid = manager.open(OpenSessionRequest(scene="edit")).session_id
    for i in range(3):
        manager.step(sid, StepRequest(t=0.1 * i))
    m = manager.metrics()
    assert m.steps == 3 and m.frames_served == 6 and m.frames_by_type == {"camera": 3, "lidar": 3}
    lat = m.step_latency_ms
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert manager.health().sessions == 1


def test_session_limit(paths):
    manager = SessionManager([paths[0]], library=paths[1], limits=Limits(max_sessions=1))
    manager.open(OpenSessionRequest(scene="edit"))
    with pytest.raises(SessionError, match="limit of 1 sessions"):
        manager.open(OpenSessionRequest(scene="edit"))
