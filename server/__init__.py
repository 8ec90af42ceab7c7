"""The gssim simulation server: a FastAPI app (``server.app.create_app``) over the
transport-free session layer ``gssim.sim.session``; run it with ``gssim serve``."""
from server.app import create_app

__all__ = ["create_app"]
