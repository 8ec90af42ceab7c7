"""Python client of the gssim simulation server (``gssim serve``), sync and async.

>>> from gssim.client import Client
>>> with Client("http://127.0.0.1:8000", token=None) as c:
...     c.scenes(), c.sensors("town"), c.assets()
...     with c.session("town", sensors=[{"id": "cam_front", "width": 640, "height": 360},
...                                     {"id": "roof", "lidar_preset": "vlp-32c", "T_ego_sensor": T}]) as s:
...         out = s.step(0.5, actors=[{"id": "car_3", "hidden": True}])      # HTTP (msgpack)
...         out.frames["cam_front"]["color"]      # (H, W, 3) uint8 (float32 with encoding="raw")
...         out.frames["roof"]["points"]          # (M, 6) float32
...         with s.stream() as st:                # WebSocket, msgpack frames
...             out = st.step(0.6)

``AsyncClient`` has the same calls as coroutines (``async with c.session(...) as s``,
``await s.step(...)``, ``async with s.stream() as st``).  A refused call raises
``ServerError`` (status, code, detail); a request malformed before it leaves raises
pydantic's ``ValidationError``.  Streams send frames uncompressed (images are encoded).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gssim.sim.messages import (ERROR_STATUS, AssetInfo, CloseResult, Health, Metrics, OpenSessionRequest,
                                SceneInfo, SensorInfo, SessionInfo, StepRequest, StepResult, pack, unpack)

MSGPACK = "application/msgpack"


class ServerError(RuntimeError):
    """A call the server refused: HTTP ``status`` (or WebSocket close code), ``code``, ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


@dataclass
class Frame:
    """One sensor's decoded output: ``arrays`` by name (``color`` decoded from PNG/JPEG
    to (H, W, 3) uint8; ``points`` (M, 6); ``depth``, ``range``, labels' ``instance`` ...)."""

    sensor: str
    type: str
    T_world_sensor: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict | None = None

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise KeyError(f"sensor {self.sensor!r} returned no {name!r}; it has {sorted(self.arrays)} "
                           f"(ask for outputs in the rig)")
        return self.arrays[name]


@dataclass
class StepOutput:
    step: int
    t: float
    frames: dict[str, Frame]
    render_ms: float
    encode_ms: float


def decode_step(result: StepResult) -> StepOutput:
    """A StepResult with images and arrays decoded to numpy."""
    from PIL import Image
    frames = {}
    for sid, f in result.frames.items():
        arrays = {k: a.numpy() for k, a in f.arrays.items()}
        if f.image is not None:
            arrays["color"] = np.asarray(Image.open(io.BytesIO(f.image.data)).convert("RGB"))
        frames[sid] = Frame(f.sensor, f.type, np.asarray(f.T_world_sensor), arrays, f.labels)
    return StepOutput(result.step, result.t, frames, result.render_ms, result.encode_ms)


def _step_request(t, T_world_ego=None, actors=None, sensors=None, labels=False, seed=None,
                  T_world_ego_end=None) -> StepRequest:
    pose = (lambda T: None if T is None else np.asarray(T, np.float64).tolist())
    return StepRequest(t=t, T_world_ego=pose(T_world_ego), T_world_ego_end=pose(T_world_ego_end),
                       actors=[_actor(a) for a in actors or []], sensors=sensors, labels=labels, seed=seed)


def _actor(a) -> dict:
    if isinstance(a, dict) and a.get("T_world_object") is not None:
        return {**a, "T_world_object": np.asarray(a["T_world_object"], np.float64).tolist()}
    return a


def _open_request(scene: str, sensors, timeout_s) -> dict:
    req = OpenSessionRequest(scene=scene, sensors=sensors, timeout_s=timeout_s)
    return req.model_dump(mode="json", exclude_none=True)


def _raise_for(resp) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        code, detail = body.get("error", "error"), body.get("detail", resp.text)
    except ValueError:
        code, detail = "error", resp.text
    raise ServerError(resp.status_code, code, detail)


def _ws_url(base: str, session_id: str) -> str:
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest.rstrip('/')}/sessions/{session_id}/stream"


def _stream_result(data: bytes) -> StepOutput:
    body = unpack(data)
    if isinstance(body, dict) and "error" in body and "frames" not in body:
        raise ServerError(ERROR_STATUS.get(body["error"], 400), body["error"], body.get("detail", ""))
    return decode_step(StepResult.model_validate(body))


def _closed(exc) -> ServerError:
    """A WebSocket closed by the server (code 4000 + HTTP status) as a ServerError."""
    rcvd = getattr(exc, "rcvd", None)
    code, reason = (rcvd.code, rcvd.reason) if rcvd is not None else (1006, "connection lost")
    status = code - 4000 if 4000 <= code < 5000 else 503
    name = {v: k for k, v in ERROR_STATUS.items()}.get(status, "closed")
    return ServerError(status, name, reason or f"stream closed (code {code})")


# ------------------------------------------------------------------------------- sync
class Client:
    """Blocking client over httpx (HTTP) and websockets (stream)."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 60.0) -> None:
        import httpx
        self.url, self.token = url.rstrip("/"), token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close_client()

    def close_client(self) -> None:
        self.http.close()

    def _get(self, path: str) -> Any:
        resp = self.http.get(path)
        _raise_for(resp)
        return resp.json()

    def health(self) -> Health:
        return Health.model_validate(self._get("/health"))

    def metrics(self) -> Metrics:
        return Metrics.model_validate(self._get("/metrics"))

    def scenes(self) -> list[SceneInfo]:
        return [SceneInfo.model_validate(s) for s in self._get("/scenes")["scenes"]]

    def scene(self, scene: str) -> SceneInfo:
        return SceneInfo.model_validate(self._get(f"/scenes/{scene}"))

    def sensors(self, scene: str) -> list[SensorInfo]:
        return [SensorInfo.model_validate(s) for s in self._get(f"/scenes/{scene}/sensors")["sensors"]]

    def assets(self) -> list[AssetInfo]:
        return [AssetInfo.model_validate(a) for a in self._get("/assets")["assets"]]

    def open(self, scene: str, sensors: list | None = None, timeout_s: float | None = None) -> SessionInfo:
        resp = self.http.post("/sessions", json=_open_request(scene, sensors, timeout_s))
        _raise_for(resp)
        return SessionInfo.model_validate(resp.json())

    def step(self, session_id: str, t: float, **kw) -> StepOutput:
        """One step over HTTP (keywords: T_world_ego, T_world_ego_end, actors, sensors, labels, seed)."""
        req = _step_request(t, **kw)
        resp = self.http.post(f"/sessions/{session_id}/step", content=req.model_dump_json(exclude_none=True),
                              headers={"Content-Type": "application/json", "Accept": MSGPACK})
        _raise_for(resp)
        return decode_step(StepResult.model_validate(unpack(resp.content)))

    def close(self, session_id: str) -> CloseResult:
        resp = self.http.delete(f"/sessions/{session_id}")
        _raise_for(resp)
        return CloseResult.model_validate(resp.json())

    def session(self, scene: str, sensors: list | None = None, timeout_s: float | None = None) -> "ClientSession":
        return ClientSession(self, self.open(scene, sensors, timeout_s))


class ClientSession:
    """An open session; closes at the end of a ``with`` block."""

    def __init__(self, client: Client, info: SessionInfo) -> None:
        self.client, self.info, self.id = client, info, info.session_id

    def __enter__(self) -> "ClientSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step(self, t: float, **kw) -> StepOutput:
        return self.client.step(self.id, t, **kw)

    def stream(self) -> "Stream":
        return Stream(self.client, self.id)

    def close(self) -> CloseResult | None:
        try:
            return self.client.close(self.id)
        except ServerError as err:
            if err.status != 404:       # already closed or expired: nothing to do
                raise
            return None


class Stream:
    """The WebSocket step loop of a session (msgpack frames)."""

    def __init__(self, client: Client, session_id: str) -> None:
        from websockets.sync.client import connect
        self.ws = connect(_ws_url(client.url, session_id), additional_headers=client.headers, max_size=None,
                          compression=None, legacy=True)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step(self, t: float, **kw) -> StepOutput:
        from websockets.exceptions import ConnectionClosed
        try:
            self.ws.send(pack(_step_request(t, **kw)))
            data = self.ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        return _stream_result(data)

    def close(self) -> None:
        self.ws.close()


# ------------------------------------------------------------------------------ async
class AsyncClient:
    """The same calls as ``Client``, as coroutines over httpx.AsyncClient and websockets."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, timeout: float = 60.0) -> None:
        import httpx
        self.url, self.token = url.rstrip("/"), token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close_client()

    async def close_client(self) -> None:
        await self.http.aclose()

    async def _get(self, path: str) -> Any:
        resp = await self.http.get(path)
        _raise_for(resp)
        return resp.json()

    async def health(self) -> Health:
        return Health.model_validate(await self._get("/health"))

    async def metrics(self) -> Metrics:
        return Metrics.model_validate(await self._get("/metrics"))

    async def scenes(self) -> list[SceneInfo]:
        return [SceneInfo.model_validate(s) for s in (await self._get("/scenes"))["scenes"]]

    async def scene(self, scene: str) -> SceneInfo:
        return SceneInfo.model_validate(await self._get(f"/scenes/{scene}"))

    async def sensors(self, scene: str) -> list[SensorInfo]:
        return [SensorInfo.model_validate(s) for s in (await self._get(f"/scenes/{scene}/sensors"))["sensors"]]

    async def assets(self) -> list[AssetInfo]:
        return [AssetInfo.model_validate(a) for a in (await self._get("/assets"))["assets"]]

    async def open(self, scene: str, sensors: list | None = None, timeout_s: float | None = None) -> SessionInfo:
        resp = await self.http.post("/sessions", json=_open_request(scene, sensors, timeout_s))
        _raise_for(resp)
        return SessionInfo.model_validate(resp.json())

    async def step(self, session_id: str, t: float, **kw) -> StepOutput:
        req = _step_request(t, **kw)
        resp = await self.http.post(f"/sessions/{session_id}/step", content=req.model_dump_json(exclude_none=True),
                                    headers={"Content-Type": "application/json", "Accept": MSGPACK})
        _raise_for(resp)
        return decode_step(StepResult.model_validate(unpack(resp.content)))

    async def close(self, session_id: str) -> CloseResult:
        resp = await self.http.delete(f"/sessions/{session_id}")
        _raise_for(resp)
        return CloseResult.model_validate(resp.json())

    def session(self, scene: str, sensors: list | None = None, timeout_s: float | None = None) -> "AsyncClientSession":
        return AsyncClientSession(self, scene, sensors, timeout_s)


class AsyncClientSession:
    """``async with client.session(...) as s``: opens on entry, closes on exit."""

    def __init__(self, client: AsyncClient, scene: str, sensors, timeout_s) -> None:
        self.client, self._args = client, (scene, sensors, timeout_s)
        self.info: SessionInfo | None = None
        self.id: str | None = None

    async def __aenter__(self) -> "AsyncClientSession":
        self.info = await self.client.open(*self._args)
        self.id = self.info.session_id
        return self

    async def __aexit__(self, *_) -> None:
        try:
            await self.client.close(self.id)
        except ServerError as err:
            if err.status != 404:       # already closed or expired: nothing to do
                raise

    async def step(self, t: float, **kw) -> StepOutput:
        return await self.client.step(self.id, t, **kw)

    def stream(self) -> "AsyncStream":
        return AsyncStream(self.client, self.id)


class AsyncStream:
    """``async with session.stream() as st: await st.step(t)``."""

    def __init__(self, client: AsyncClient, session_id: str) -> None:
        self.url, self.headers = _ws_url(client.url, session_id), client.headers
        self.ws = None

    async def __aenter__(self) -> "AsyncStream":
        from websockets.asyncio.client import connect
        self.ws = await connect(self.url, additional_headers=self.headers, max_size=None, compression=None)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()

    async def step(self, t: float, **kw) -> StepOutput:
        from websockets.exceptions import ConnectionClosed
        try:
            await self.ws.send(pack(_step_request(t, **kw)))
            data = await self.ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None
        return _stream_result(data)
