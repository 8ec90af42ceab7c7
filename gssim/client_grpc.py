"""Python client of the gssim gRPC sensor service (``gssim serve --grpc-port``), with the
calls and results of the HTTP client (``gssim.client``).

>>> from gssim.client_grpc import GrpcClient
>>> with GrpcClient("127.0.0.1:50051", token=None) as c:
...     c.scenes(), c.sensors("town"), c.assets()
...     with c.session("town", sensors=[{"id": "cam_front", "width": 640, "height": 360}]) as s:
...         out = s.step(0.5, actors=[{"id": "car_3", "hidden": True}])     # unary Step
...         out.frames["cam_front"]["color"]          # (H, W, 3) uint8
...         with s.stream() as st:                    # bidirectional StepStream
...             out = st.step(0.6)

A refused call raises ``GrpcError`` (a ``gssim.client.ServerError`` with the HTTP status
of the same refusal, the session layer's ``code`` and the gRPC ``grpc_code``).
"""
from __future__ import annotations

import queue
from typing import Any, Iterator

import grpc
import numpy as np

from gssim.client import ServerError, StepOutput, decode_step
from gssim.sim.messages import (ERROR_STATUS, AssetInfo, CloseResult, Health, Metrics, OpenSessionRequest,
                                SceneInfo, SensorInfo, SessionInfo, StepRequest, StepResult)
from gssim.sim.proto import sensor_service_pb2 as pb
from gssim.sim.proto import sensor_service_pb2_grpc as pb_grpc
from gssim.sim.proto.convert import from_proto, to_proto

CODES = {grpc.StatusCode.INVALID_ARGUMENT: "invalid", grpc.StatusCode.NOT_FOUND: "not_found",
         grpc.StatusCode.RESOURCE_EXHAUSTED: "limit", grpc.StatusCode.UNAUTHENTICATED: "unauthorized"}


class GrpcError(ServerError):
    """A call the gRPC service refused (or a transport failure): ``grpc_code`` beside
    ``status``, ``code`` and ``detail``."""

    def __init__(self, grpc_code: grpc.StatusCode, code: str, detail: str) -> None:
        super().__init__(ERROR_STATUS.get(code, 503), code, detail)
        self.grpc_code = grpc_code


def _error(exc: grpc.RpcError) -> GrpcError:
    trailing = dict(exc.trailing_metadata() or ())
    code = trailing.get("gssim-error") or CODES.get(exc.code(), exc.code().name.lower())
    return GrpcError(exc.code(), code, exc.details() or "")


def _plain(value: Any) -> Any:
    """numpy poses (and anything nested) as lists, for the pydantic messages."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def step_request(session_id: str, t: float, **kw) -> pb.StepRequest:
    """A proto StepRequest validated as the HTTP one (``kw``: T_world_ego, T_world_ego_end,
    actors, sensors, labels, seed; poses as 4x4 arrays or nested lists)."""
    message = to_proto(StepRequest.model_validate({"t": t, **_plain(kw)}))
    message.session_id = session_id
    return message


class GrpcClient:
    """Calls of the sensor service over one channel (``target``: "host:port")."""

    def __init__(self, target: str = "127.0.0.1:50051", token: str | None = None, timeout: float = 60.0) -> None:
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)])
        self.stub = pb_grpc.SensorServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        self.timeout = timeout

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *exc) -> None:
        self.channel.close()

    def _call(self, method: str, request):
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def health(self) -> Health:
        return from_proto(self._call("Health", pb.HealthRequest()), Health)

    def metrics(self) -> Metrics:
        return from_proto(self._call("Metrics", pb.MetricsRequest()), Metrics)

    def scenes(self) -> list[SceneInfo]:
        return [from_proto(s, SceneInfo) for s in self._call("ListScenes", pb.ListScenesRequest()).scenes]

    def scene(self, scene: str) -> SceneInfo:
        return from_proto(self._call("GetScene", pb.SceneRequest(scene=scene)), SceneInfo)

    def sensors(self, scene: str) -> list[SensorInfo]:
        return [from_proto(s, SensorInfo) for s in self._call("ListSensors", pb.SceneRequest(scene=scene)).sensors]

    def assets(self) -> list[AssetInfo]:
        return [from_proto(a, AssetInfo) for a in self._call("ListAssets", pb.ListAssetsRequest()).assets]

    def open(self, scene: str, sensors: list | None = None, timeout_s: float | None = None) -> SessionInfo:
        req = OpenSessionRequest.model_validate(_plain({"scene": scene, "sensors": sensors, "timeout_s": timeout_s}))
        return from_proto(self._call("OpenSession", to_proto(req)), SessionInfo)

    def session_info(self, session_id: str) -> SessionInfo:
        return from_proto(self._call("GetSession", pb.SessionRequest(session_id=session_id)), SessionInfo)

    def step_result(self, session_id: str, t: float, **kw) -> StepResult:
        """The step's ``StepResult`` as sent (encoded images, raw array bytes)."""
        return from_proto(self._call("Step", step_request(session_id, t, **kw)), StepResult)

    def step(self, session_id: str, t: float, **kw) -> StepOutput:
        """One step, decoded to numpy (see ``gssim.client.Frame``)."""
        return decode_step(self.step_result(session_id, t, **kw))

    def close(self, session_id: str) -> CloseResult:
        return from_proto(self._call("CloseSession", pb.SessionRequest(session_id=session_id)), CloseResult)

    def session(self, scene: str, sensors: list | None = None, timeout_s: float | None = None) -> "GrpcSession":
        """Open a session (closed when the ``with`` block ends)."""
        return GrpcSession(self, self.open(scene, sensors, timeout_s))


class GrpcSession:
    """An open session: ``step``, ``stream`` and ``close``."""

    def __init__(self, client: GrpcClient, info: SessionInfo) -> None:
        self.client, self.info, self.id = client, info, info.session_id

    def __enter__(self) -> "GrpcSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step(self, t: float, **kw) -> StepOutput:
        return self.client.step(self.id, t, **kw)

    def stream(self) -> "GrpcStream":
        return GrpcStream(self.client, self.id)

    def close(self) -> CloseResult | None:
        """Close the session (None when the server no longer has it)."""
        try:
            return self.client.close(self.id)
        except GrpcError as exc:
            if exc.code == "not_found":
                return None
            raise


class GrpcStream:
    """One StepStream call: each ``step`` sends a request and waits for its result.
    ``cancel`` (or leaving the ``with`` block) ends the call; the session stays open."""

    _END = object()

    def __init__(self, client: GrpcClient, session_id: str) -> None:
        self.session_id = session_id
        self._requests: queue.Queue = queue.Queue()
        self._call = client.stub.StepStream(self._request_iter(), metadata=client.metadata)

    def _request_iter(self) -> Iterator[pb.StepRequest]:
        while (item := self._requests.get()) is not self._END:
            yield item

    def __enter__(self) -> "GrpcStream":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()

    def step_result(self, t: float, **kw) -> StepResult:
        self._requests.put(step_request(self.session_id, t, **kw))
        try:
            return from_proto(next(self._call), StepResult)
        except grpc.RpcError as exc:
            raise _error(exc) from None
        except StopIteration:
            raise GrpcError(grpc.StatusCode.UNAVAILABLE, "closed", "the stream ended") from None

    def step(self, t: float, **kw) -> StepOutput:
        return decode_step(self.step_result(t, **kw))

    def cancel(self) -> None:
        """End the call at once (the server's handler stops; the session stays open)."""
        self._call.cancel()

    def close(self) -> None:
        """Half-close the request stream and wait for the server to end the call."""
        self._requests.put(self._END)
        if self._call.done():
            return
        try:
            for _ in self._call:
                pass
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _error(exc) from None
