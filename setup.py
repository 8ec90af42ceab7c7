"""Build of gssim and its native extension gssim._C (CPU always; CUDA when available)."""
import glob
import os

from setuptools import find_packages, setup
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))
EXT = os.path.join("cuda_ext")

# -O3 and what the compiler can vectorise for any x86-64; no -march=native in a shipped build.
CXX_FLAGS = ["-O3", "-fopenmp", "-std=c++17", "-fno-math-errno", "-fno-trapping-math"]
sources = [os.path.join(EXT, "bindings.cpp"), os.path.join(EXT, "prepare_bindings.cpp")] + sorted(glob.glob(os.path.join(EXT, "cpu", "*.cpp")))
cuda_sources = sorted(glob.glob(os.path.join(EXT, "cuda", "*.cu")))
include_dirs = [os.path.join(HERE, EXT, "include"), os.path.join(HERE, EXT)]

import torch  # noqa: E402  (build-time dependency)

with_cuda = bool(cuda_sources) and cpp_extension.CUDA_HOME is not None and torch.version.cuda is not None
if with_cuda:
    ext = cpp_extension.CUDAExtension(
        "gssim._C", sources + cuda_sources, include_dirs=include_dirs, define_macros=[("GSSIM_WITH_CUDA", "1")],
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": ["-O3", "--use_fast_math", "-std=c++17"]},
        extra_link_args=["-fopenmp"])
else:
    ext = cpp_extension.CppExtension("gssim._C", sources, include_dirs=include_dirs,
                                     extra_compile_args=CXX_FLAGS, extra_link_args=["-fopenmp"])

setup(
    name="gssim",
    version="0.1.0",
    description="Driving-scene sensor simulation with 2D Gaussian splatting",
    packages=find_packages(include=["gssim", "gssim.*", "server", "server.*"]),
    package_data={"gssim": ["sensors/*.json", "sim/proto/*.proto"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",          # install the build you want first (CPU: torch==2.13.0)
        "numpy>=1.26",
        "pillow>=10",
        "rich>=13",
        "safetensors>=0.4",
        "trimesh==5.2.0",
        "open3d-cpu==0.20.0",
        "scipy>=1.11",
        "matplotlib>=3.8",
    ],
    extras_require={
        # Dataset converters (`gssim convert`): nuScenes through its devkit (which needs
        # numpy < 2, hence the plyfile release that still supports numpy 1.x). pyarrow is the
        # Arrow release libsumo's wheel bundles (23): two Arrow releases in one process clash.
        "datasets": ["nuscenes-devkit==1.2.0", "pyarrow==23.0.1", "pandas==3.0.6"],
        # `gssim bench render` peer: gsplat's 2DGS torch path on the CPU (its CUDA ops are never built).
        "bench": ["gsplat==1.5.3"],
        # `gssim serve`: the HTTP/WebSocket and gRPC sensor server and its client.
        "serve": ["fastapi==0.163.2", "uvicorn==0.54.0", "httpx==0.28.1", "msgpack==1.2.4", "websockets==17.4",
                  "grpcio==1.85.1", "grpcio-tools==1.85.1"],
        # Closed loop and batch runs: SUMO traffic (its binaries come with the wheels) and Ray.
        "sim": ["eclipse-sumo==1.28.0", "libsumo==1.28.0", "ray==2.60.0"],
        "test": ["pytest>=8", "scikit-image>=0.22", "plyfile==1.0.3", "nuscenes-devkit==1.2.0", "pyarrow==23.0.1",
                 "pandas==3.0.6", "gsplat==1.5.3", "fastapi==0.163.2", "uvicorn==0.54.0", "httpx==0.28.1",
                 "msgpack==1.2.4", "websockets==17.4", "grpcio==1.85.1", "grpcio-tools==1.85.1",
                 "eclipse-sumo==1.28.0", "libsumo==1.28.0", "ray==2.60.0"],
    },
    entry_points={"console_scripts": ["gssim=gssim.cli:main"]},
    ext_modules=[ext],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
