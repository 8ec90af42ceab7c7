"""Build of gssim and its native extension gssim._C (CPU always; CUDA when available)."""
import glob
import os

from setuptools import find_packages, setup
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))
EXT = os.path.join("cuda_ext")

# -O3 and what the compiler can vectorise for any x86-64; no -march=native in a shipped build.
CXX_FLAGS = ["-O3", "-fopenmp", "-std=c++17", "-fno-math-errno", "-fno-trapping-math"]
# CUDA: Ampere (A100, A10/3090), Ada (L4/4090) and Hopper (H100/H200) device code, plus
# Hopper PTX for later GPUs; host code called from device code is an error.
CUDA_ARCHS = ("80", "86", "89", "90")
NVCC_FLAGS = ["-O3", "-std=c++17", "--Werror", "cross-execution-space-call"] + [
    f"-gencode=arch=compute_{a},code=sm_{a}" for a in CUDA_ARCHS] + ["-gencode=arch=compute_90,code=compute_90"]
sources = [os.path.join(EXT, "bindings.cpp"), os.path.join(EXT, "prepare_bindings.cpp")] + sorted(
    glob.glob(os.path.join(EXT, "cpu", "*.cpp")))
cuda_sources = [os.path.join(EXT, "cuda_bindings.cpp")] + sorted(glob.glob(os.path.join(EXT, "cuda", "*.cu")))
include_dirs = [os.path.join(HERE, EXT, "include"), os.path.join(HERE, EXT)]

import torch  # noqa: E402  (build-time dependency)


def cuda_build() -> tuple[bool, str]:
    """Whether to build the CUDA backend, and why not."""
    if os.environ.get("GSSIM_CUDA", "auto") == "0":
        return False, "GSSIM_CUDA=0"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is a CPU build (install a CUDA build of torch first)"
    if cpp_extension.CUDA_HOME is None:
        return False, "no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)"
    return True, ""


with_cuda, why_not = cuda_build()
if with_cuda:
    print(f"gssim: building the CPU and CUDA backends (sm_{', sm_'.join(CUDA_ARCHS)}; CUDA {torch.version.cuda})")
    ext = cpp_extension.CUDAExtension(
        "gssim._C", sources + cuda_sources, include_dirs=include_dirs, define_macros=[("GSSIM_WITH_CUDA", "1")],
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS}, extra_link_args=["-fopenmp"])
else:
    print(f"gssim: building the CPU backend only: {why_not}")
    if os.environ.get("GSSIM_CUDA") == "1":
        raise SystemExit(f"gssim: GSSIM_CUDA=1 but the CUDA backend cannot be built: {why_not}")
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
        # `gssim harmonizer`, `gssim harmonize`, `gssim expand`: the diffusion harmonizer.
        "harmonize": ["diffusers==0.42.1"],
        "test": ["pytest>=8", "ninja>=1.11", "scikit-image>=0.22", "plyfile==1.0.3", "nuscenes-devkit==1.2.0", "pyarrow==23.0.1",
                 "pandas==3.0.6", "gsplat==1.5.3", "fastapi==0.163.2", "uvicorn==0.54.0", "httpx==0.28.1",
                 "msgpack==1.2.4", "websockets==17.4", "grpcio==1.85.1", "grpcio-tools==1.85.1",
                 "eclipse-sumo==1.28.0", "libsumo==1.28.0", "ray==2.60.0", "diffusers==0.42.1"],
    },
    entry_points={"console_scripts": ["gssim=gssim.cli:main"]},
    ext_modules=[ext],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
