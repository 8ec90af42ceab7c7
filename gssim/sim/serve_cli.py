"""`gssim serve SCENE_DIR... --host 127.0.0.1 --port 8000 [--token T] [--grpc-port P]`:
the HTTP/WebSocket server (``server.app``) and, with ``--grpc-port``, the gRPC service
(``server.grpc_service.serve_grpc(manager, port, host=, token=)`` -> a started
``grpc.Server``) on the same session manager."""
from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve sensor frames of scenes over HTTP/WebSocket (and gRPC)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scenes", nargs="+", metavar="SCENE_DIR", help="scene folders, served under their folder names")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=os.environ.get("GSSIM_TOKEN"),
                   help="bearer token every call needs (default: $GSSIM_TOKEN; none: open)")
    p.add_argument("--grpc-port", type=int, default=None, help="also serve the gRPC service on this port")
    p.add_argument("--library", default=None, help="asset library folder (default: the bundled one)")
    p.add_argument("--backend", default="auto", help="render backend: auto, cpu, cuda, torch")
    p.add_argument("--session-timeout", type=float, default=300.0, help="idle seconds before a session closes")
    p.add_argument("--max-sessions", type=int, default=64)
    p.set_defaults(func=run)


def build_manager(args):
    from gssim.edit.assets import DEFAULT_LIBRARY
    from gssim.sim.session import Limits, SessionManager
    limits = Limits(default_timeout_s=args.session_timeout, max_sessions=args.max_sessions)
    return SessionManager(args.scenes, library=args.library or DEFAULT_LIBRARY, limits=limits, backend=args.backend)


def run(args) -> int:
    import uvicorn

    from server.app import create_app
    manager = build_manager(args)
    token = args.token or None          # an empty token is no token
    grpc_server = None
    if args.grpc_port is not None:
        from server.grpc_service import serve_grpc
        grpc_server = serve_grpc(manager, args.grpc_port, host=args.host, token=token)
        log.info("gRPC service on %s:%d", args.host, args.grpc_port)
    try:
        uvicorn.run(create_app(manager, token=token), host=args.host, port=args.port, log_level="info")
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=1.0)
        manager.close_all()
    return 0
