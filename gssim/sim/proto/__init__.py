"""The gRPC sensor service's protocol: ``sensor_service.proto`` and the Python modules
generated from it (checked in, so installing gssim needs no protoc and an installed copy
always matches its proto; ``tests/server/test_grpc.py`` checks that regenerating gives
the same files).  After editing the proto, regenerate with the pinned grpcio-tools::

    python -m gssim.sim.proto

``convert`` turns these messages into the session layer's pydantic messages and back.
"""
from __future__ import annotations

from pathlib import Path

PROTO = Path(__file__).with_name("sensor_service.proto")
GENERATED = ("sensor_service_pb2.py", "sensor_service_pb2.pyi", "sensor_service_pb2_grpc.py")


def generate(out_root: str | Path) -> list[Path]:
    """Run protoc (grpcio-tools) on the proto, writing the generated modules under
    ``out_root`` at the package path (``out_root/gssim/sim/proto/``); their paths."""
    from grpc_tools import protoc

    root = PROTO.parents[3]
    out_root = Path(out_root)
    include = Path(protoc.__file__).with_name("_proto")
    args = ["protoc", f"-I{root}", f"-I{include}", f"--python_out={out_root}", f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}", str(PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
    return [out_root / PROTO.parent.relative_to(root) / name for name in GENERATED]
