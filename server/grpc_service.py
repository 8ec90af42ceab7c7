"""The gRPC face of the session layer (``gssim.sim.session``): the service of
``gssim/sim/proto/sensor_service.proto``, with the same calls, messages and rules as the
HTTP API (``server.app``).

>>> server = serve_grpc(manager, 50051, host="127.0.0.1", token=None)   # started
>>> server.port                      # the bound port (a free one when asked for 0)
>>> server.stop(grace=1.0)

Requests are converted to the session layer's pydantic messages (``gssim.sim.proto.
convert``), so they are validated exactly as over HTTP.  Every refused call ends with a
status and a message naming what is wrong: the session layer's codes map to
INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED (limits; requests over
``Limits.max_request_bytes`` too) and UNAUTHENTICATED (with a token, every call but
Health needs metadata ``authorization: Bearer TOKEN``); the code itself is in the
trailing metadata ``gssim-error``.  A client cancelling a call or stream only ends its
own handler; its session stays open.
"""
from __future__ import annotations

import hmac
import logging
from concurrent import futures
from typing import Callable, Iterator, TypeVar

import grpc
from pydantic import ValidationError

from gssim.sim.messages import OpenSessionRequest, StepRequest
from gssim.sim.proto import sensor_service_pb2 as pb
from gssim.sim.proto import sensor_service_pb2_grpc as pb_grpc
from gssim.sim.proto.convert import ProtoFieldError, from_proto, to_proto
from gssim.sim.session import SessionError, SessionManager
from server.app import validation_detail

log = logging.getLogger(__name__)
T = TypeVar("T")

STATUS = {"invalid": grpc.StatusCode.INVALID_ARGUMENT, "not_found": grpc.StatusCode.NOT_FOUND,
          "expired": grpc.StatusCode.NOT_FOUND, "limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
          "unauthorized": grpc.StatusCode.UNAUTHENTICATED, "internal": grpc.StatusCode.INTERNAL}
ERROR_KEY = "gssim-error"
OPEN_METHODS = ("Health",)


class SensorService(pb_grpc.SensorServiceServicer):
    """``SensorService`` over a ``SessionManager``; ``token``: the bearer token calls need."""

    def __init__(self, manager: SessionManager, token: str | None = None) -> None:
        self.manager, self.token = manager, token

    # --- the one place requests are checked and errors become statuses ------------------
    def _authorize(self, context: grpc.ServicerContext) -> None:
        if self.token is None:
            return
        header = dict(context.invocation_metadata()).get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), self.token.encode()):
            raise SessionError("unauthorized", "missing or wrong bearer token (metadata authorization: Bearer TOKEN)")

    def _run(self, context: grpc.ServicerContext, method: str, call: Callable[[], T]) -> T:
        """``call()`` after the token check; a refusal aborts the RPC with its status."""
        try:
            if method not in OPEN_METHODS:
                self._authorize(context)
            return call()
        except SessionError as exc:
            code, detail = exc.code, exc.detail
        except ValidationError as exc:
            code, detail = "invalid", validation_detail(exc.errors())
        except ProtoFieldError as exc:
            code, detail = "invalid", str(exc)
        except Exception as exc:  # a server fault: logged here, no internals sent
            log.exception("internal error in gRPC %s", method)
            code, detail = "internal", f"internal error ({type(exc).__name__}); see the server log"
        self.manager.note_error()
        context.set_trailing_metadata(((ERROR_KEY, code),))
        context.abort(STATUS.get(code, grpc.StatusCode.INTERNAL), detail)

    # --- listings -------------------------------------------------------------------------
    def ListScenes(self, request, context):
        return self._run(context, "ListScenes",
                         lambda: pb.SceneList(scenes=[to_proto(s) for s in self.manager.list_scenes()]))

    def GetScene(self, request, context):
        return self._run(context, "GetScene", lambda: to_proto(self.manager.scene_info(request.scene)))

    def ListSensors(self, request, context):
        return self._run(context, "ListSensors", lambda: pb.SensorList(
            scene=request.scene, sensors=[to_proto(s) for s in self.manager.list_sensors(request.scene)]))

    def ListAssets(self, request, context):
        return self._run(context, "ListAssets",
                         lambda: pb.AssetList(assets=[to_proto(a) for a in self.manager.list_assets()]))

    # --- sessions -----------------------------------------------------------------------
    def OpenSession(self, request, context):
        return self._run(context, "OpenSession",
                         lambda: to_proto(self.manager.open(from_proto(request, OpenSessionRequest))))

    def GetSession(self, request, context):
        return self._run(context, "GetSession", lambda: to_proto(self.manager.session(request.session_id).info()))

    def Step(self, request, context):
        return self._run(context, "Step", lambda: self._step(request.session_id, request))

    def _step(self, session_id: str, request: pb.StepRequest) -> pb.StepResult:
        if not session_id:
            raise SessionError("invalid", "session_id: required (the id OpenSession returned)")
        if request.session_id and request.session_id != session_id:
            raise SessionError("invalid", f"session_id: this stream steps session {session_id}, not "
                                          f"{request.session_id}; open another stream")
        return to_proto(self.manager.step(session_id, from_proto(request, StepRequest)))

    def StepStream(self, request_iterator: Iterator[pb.StepRequest], context) -> Iterator[pb.StepResult]:
        self._run(context, "StepStream", lambda: None)
        session_id = ""
        for request in request_iterator:
            session_id = session_id or request.session_id
            yield self._run(context, "StepStream", lambda: self._step(session_id, request))

    def CloseSession(self, request, context):
        return self._run(context, "CloseSession", lambda: to_proto(self.manager.close(request.session_id)))

    # --- health and metrics -----------------------------------------------------------
    def Health(self, request, context):
        return self._run(context, "Health", lambda: to_proto(self.manager.health()))

    def Metrics(self, request, context):
        return self._run(context, "Metrics", lambda: to_proto(self.manager.metrics()))


def serve_grpc(manager: SessionManager, port: int, host: str = "127.0.0.1", token: str | None = None,
               max_workers: int | None = None) -> grpc.Server:
    """Start the gRPC service on ``host:port`` (0: a free port) over ``manager``; the
    started server, with the bound port as ``server.port``.  ``max_workers`` (default:
    the session limit + 8) bounds the calls and streams served at once (an open stream
    holds one); calls beyond it get RESOURCE_EXHAUSTED."""
    max_workers = max_workers or manager.limits.max_sessions + 8
    options = [("grpc.max_receive_message_length", manager.limits.max_request_bytes),
               ("grpc.max_send_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gssim-grpc"),
                         options=options, maximum_concurrent_rpcs=max_workers)
    pb_grpc.add_SensorServiceServicer_to_server(SensorService(manager, token), server)
    bound = server.add_insecure_port(f"{host}:{port}")      # RuntimeError when taken
    server.start()
    server.port = bound
    log.info("gRPC sensor service on %s:%d", host, bound)
    return server
