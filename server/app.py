"""The FastAPI face of the session layer (``gssim.sim.session``).

HTTP (JSON; binary fields base64; ``Accept: application/msgpack`` for a msgpack step result):

    GET    /health                      Health (no token needed)
    GET    /metrics                     Metrics: steps, frames served, step latency percentiles
    GET    /scenes                      SceneList
    GET    /scenes/{scene}              SceneInfo
    GET    /scenes/{scene}/sensors      SensorList
    GET    /assets                      AssetList
    POST   /sessions                    OpenSessionRequest -> SessionInfo
    GET    /sessions/{id}               SessionInfo
    POST   /sessions/{id}/step          StepRequest -> StepResult
    DELETE /sessions/{id}               CloseResult
    WS     /sessions/{id}/stream        msgpack StepRequest frames -> msgpack StepResult
                                        (or ErrorInfo) frames, one per request

Every error is an ``ErrorInfo`` JSON body with a 4xx status naming what is wrong (5xx only
for a server fault, without internals).  With a token, every call but /health needs
``Authorization: Bearer TOKEN`` (the WebSocket also accepts ``?token=``).
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging

from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gssim.sim.messages import (AssetList, CloseResult, ErrorInfo, Health, Metrics, OpenSessionRequest, SceneInfo,
                                SceneList, SensorList, SessionInfo, StepRequest, StepResult, pack, unpack)
from gssim.sim.session import SessionError, SessionManager

log = logging.getLogger(__name__)
MSGPACK = "application/msgpack"
ERRORS = {401: {"model": ErrorInfo}, 404: {"model": ErrorInfo}, 413: {"model": ErrorInfo}, 422: {"model": ErrorInfo}}


def error_response(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(ErrorInfo(error=code, detail=detail).model_dump(), status_code=status, headers=headers)


def validation_detail(errors) -> str:
    """pydantic errors as one line: ``where: message; ...``."""
    parts = []
    for e in errors:
        if e.get("type") == "json_invalid":
            parts.append(f"body: not valid JSON ({(e.get('ctx') or {}).get('error', 'decode error')})")
            continue
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class BodyLimit:
    """ASGI middleware: HTTP request bodies over ``max_bytes`` get 413 before the app reads them."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(scope, receive, send, int(length))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._reject(scope, receive, send, size)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _reject(self, scope, receive, send, size: int):
        resp = error_response(413, "limit", f"request body of {size}+ bytes exceeds the server limit of "
                                           f"{self.max_bytes} bytes")
        await resp(scope, receive, send)


def create_app(manager: SessionManager, token: str | None = None, reap_every_s: float = 1.0) -> FastAPI:
    """The FastAPI app over ``manager``; ``token``: the bearer token every call needs."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async def reaper():
            while True:
                await asyncio.sleep(reap_every_s)
                manager.reap()
        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(title="gssim simulation server", version="1",
                  description="Sensor frames of reconstructed driving scenes, step by step.", lifespan=lifespan)
    app.state.manager = manager
    app.add_middleware(BodyLimit, max_bytes=manager.limits.max_request_bytes)

    def token_ok(value: str | None) -> bool:
        return token is None or (value is not None and hmac.compare_digest(value.encode(), token.encode()))

    def auth(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if not token_ok(value.strip() if scheme.lower() == "bearer" else None):
            raise SessionError("unauthorized", "missing or wrong bearer token (Authorization: Bearer TOKEN)")

    @app.exception_handler(SessionError)
    async def _session_error(request: Request, exc: SessionError):
        manager.note_error()
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthorized" else None
        return error_response(exc.status, exc.code, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        manager.note_error()
        return error_response(422, "invalid", validation_detail(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        manager.note_error()
        code = {404: "not_found", 405: "invalid"}.get(exc.status_code, "invalid")
        detail = exc.detail if exc.status_code != 404 else f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, code, str(detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        manager.note_error()
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the server log")

    protected = [Depends(auth)]

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return manager.health()

    @app.get("/metrics", response_model=Metrics, dependencies=protected, responses=ERRORS)
    def metrics() -> Metrics:
        return manager.metrics()

    @app.get("/scenes", response_model=SceneList, dependencies=protected, responses=ERRORS)
    def scenes() -> SceneList:
        return SceneList(scenes=manager.list_scenes())

    @app.get("/scenes/{scene}", response_model=SceneInfo, dependencies=protected, responses=ERRORS)
    def scene(scene: str) -> SceneInfo:
        return manager.scene_info(scene)

    @app.get("/scenes/{scene}/sensors", response_model=SensorList, dependencies=protected, responses=ERRORS)
    def sensors(scene: str) -> SensorList:
        return SensorList(scene=scene, sensors=manager.list_sensors(scene))

    @app.get("/assets", response_model=AssetList, dependencies=protected, responses=ERRORS)
    def assets() -> AssetList:
        return AssetList(assets=manager.list_assets())

    @app.post("/sessions", response_model=SessionInfo, status_code=201, dependencies=protected, responses=ERRORS)
    def open_session(req: OpenSessionRequest) -> SessionInfo:
        return manager.open(req)

    @app.get("/sessions/{session_id}", response_model=SessionInfo, dependencies=protected, responses=ERRORS)
    def get_session(session_id: str) -> SessionInfo:
        return manager.session(session_id).info()

    @app.post("/sessions/{session_id}/step", response_model=StepResult, dependencies=protected,
              responses={**ERRORS, 200: {"content": {MSGPACK: {}}}})
    def step(session_id: str, req: StepRequest, request: Request):
        result = manager.step(session_id, req)
        if MSGPACK in request.headers.get("accept", ""):
            return Response(pack(result), media_type=MSGPACK)
        return Response(result.model_dump_json(), media_type="application/json")

    @app.delete("/sessions/{session_id}", response_model=CloseResult, dependencies=protected, responses=ERRORS)
    def close(session_id: str) -> CloseResult:
        return manager.close(session_id)

    @app.websocket("/sessions/{session_id}/stream")
    async def stream(ws: WebSocket, session_id: str):
        header = ws.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        given = value.strip() if scheme.lower() == "bearer" else ws.query_params.get("token")
        await ws.accept()
        if not token_ok(given):    # refused after the handshake, so the client reads the reason
            manager.note_error()
            await ws.close(code=4401, reason="missing or wrong bearer token")
            return
        try:
            manager.session(session_id)
        except SessionError as exc:
            manager.note_error()
            await ws.close(code=4000 + exc.status, reason=exc.detail[:120])
            return
        try:
            while True:
                data = await ws.receive_bytes()
                await ws.send_bytes(await run_in_threadpool(_stream_step, manager, session_id, data))
        except WebSocketDisconnect:
            log.info("stream of session %s: client disconnected", session_id)

    return app


def _stream_step(manager: SessionManager, session_id: str, data: bytes) -> bytes:
    """One WebSocket step: a msgpack StepResult, or a msgpack ErrorInfo naming what is wrong."""
    try:
        if len(data) > manager.limits.max_request_bytes:
            raise SessionError("limit", f"frame of {len(data)} bytes exceeds the server limit of "
                                        f"{manager.limits.max_request_bytes} bytes")
        try:
            req = StepRequest.model_validate(unpack(data))
        except ValidationError as exc:
            raise SessionError("invalid", validation_detail(exc.errors())) from None
        except Exception as exc:   # not msgpack at all
            raise SessionError("invalid", f"frame is not a msgpack StepRequest ({type(exc).__name__})") from None
        return pack(manager.step(session_id, req))
    except SessionError as exc:
        manager.note_error()
        return pack(ErrorInfo(error=exc.code, detail=exc.detail))
    except Exception as exc:
        manager.note_error()
        log.exception("internal error in the stream of session %s", session_id)
        return pack(ErrorInfo(error="internal", detail=f"internal error ({type(exc).__name__}); see the server log"))
