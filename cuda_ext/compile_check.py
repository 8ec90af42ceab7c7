"""Compile-only check of the CUDA backend on a machine without a GPU (CI runs it).

Every ``cuda_ext/cuda/*.cu`` is compiled with nvcc for sm_80 and sm_90 (device code for
both, warnings about host code called from device code are errors), and the CUDA torch
bindings are syntax-checked against torch's CUDA headers.  nvcc comes from a CUDA toolkit
or from the ``nvidia-cuda-nvcc``, ``-runtime`` and ``-cccl`` wheels (CUDA 13) installed
into a folder (``make cuda-check`` does that):

    python cuda_ext/compile_check.py [--tools FOLDER]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXT = ROOT / "cuda_ext"
ARCHS = ("80", "90")
# setup.py builds with these flags (and more architectures).
NVCC_FLAGS = ["-O3", "-std=c++17", "--Werror", "cross-execution-space-call"]


def find_toolkit(tools: Path | None) -> tuple[Path, list[Path]]:
    """nvcc and the include folders (runtime headers, CUB) of a toolkit or of the wheels."""
    if tools is not None:
        cu = tools / "nvidia" / "cu13"
        nvcc = cu / "bin" / "nvcc"
        if not nvcc.is_file():
            sys.exit(f"compile_check: no nvcc in {cu / 'bin'}; install the nvidia-cuda-nvcc, nvidia-cuda-runtime "
                     f"and nvidia-cuda-cccl wheels (CUDA 13) with `pip install --target {tools} ...`")
        return nvcc, [cu / "include", cu / "include" / "cccl"]
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = Path(home) / "bin" / "nvcc" if home else Path(shutil.which("nvcc") or "")
    if not nvcc.is_file():
        sys.exit("compile_check: no CUDA toolkit found (set CUDA_HOME, put nvcc on PATH, or pass --tools FOLDER)")
    return nvcc, [nvcc.parent.parent / "include"]


def run(cmd: list[str], what: str) -> None:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit(f"compile_check: {what} failed")
    print(f"  ok  {what} ({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", type=Path, help="folder the CUDA 13 nvcc/runtime/cccl wheels are installed in")
    args = parser.parse_args()
    nvcc, includes = find_toolkit(args.tools.resolve() if args.tools else None)
    inc = [f"-I{p}" for p in [EXT / "include", EXT, *includes]]
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in ARCHS]
    env_path = f"{nvcc.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["PATH"] = env_path  # nvcc finds its own helpers (cudafe++, ptxas) beside it
    sources = sorted((EXT / "cuda").glob("*.cu"))
    if not sources:
        sys.exit("compile_check: no .cu sources in cuda_ext/cuda")
    print(f"compile_check: {nvcc} for sm_{', sm_'.join(ARCHS)}")
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            run([str(nvcc), "-c", *NVCC_FLAGS, *gencode, *inc, str(src), "-o", str(Path(tmp) / (src.stem + ".o"))],
                f"nvcc {src.relative_to(ROOT)}")
        import torch.utils.cpp_extension as ce  # the bindings need torch's headers (CUDA ones included)
        torch_inc = [f"-I{p}" for p in ce.include_paths()]
        # A CPU build of torch ships c10/cuda's headers without the one its CMake generates.
        macros = Path(tmp) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        if not any((Path(p) / "c10/cuda/impl/cuda_cmake_macros.h").is_file() for p in ce.include_paths()):
            macros.parent.mkdir(parents=True)
            macros.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
            torch_inc.append(f"-I{tmp}")
        py_inc = f"-I{sysconfig.get_paths()['include']}"
        cxx = os.environ.get("CXX", "c++")
        run([cxx, "-fsyntax-only", "-std=c++17", "-DTORCH_EXTENSION_NAME=_C", "-DTORCH_API_INCLUDE_EXTENSION_H",
             *inc, *torch_inc, py_inc, str(EXT / "cuda_bindings.cpp")], "c++ cuda_ext/cuda_bindings.cpp")
    print("compile_check: every CUDA source compiles")


if __name__ == "__main__":
    main()
