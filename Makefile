# One-command set-up on a fresh Debian machine with Python 3.11:
#   make demo   system libraries, virtual environment, native build, then the demo
#   make test   the same set-up (with pytest), then the test suite
#   make cuda-check   compile every CUDA source with nvcc (no GPU needed; CI runs it)
PYTHON ?= python3.11
VENV := .venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test system cuda-check

demo: $(VENV)/.installed
	$(VENV)/bin/gssim demo --out out/demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q tests

# nvcc, the CUDA runtime headers and CUB from NVIDIA's CUDA 13 wheels, into .cuda-tools/.
CUDA_TOOLS := .cuda-tools
cuda-check: $(VENV)/.installed
	@[ -x $(CUDA_TOOLS)/nvidia/cu13/bin/nvcc ] || $(VENV)/bin/pip install -q --target $(CUDA_TOOLS) \
	  nvidia-cuda-nvcc==13.5.37 nvidia-cuda-runtime==13.5.37 nvidia-cuda-cccl==13.3.5.0.6
	$(VENV)/bin/python cuda_ext/compile_check.py --tools $(CUDA_TOOLS)

# Debian packages: libusb (open3d loads it at import), venv support for $(PYTHON), a compiler.
system:
	@missing=""; \
	ldconfig -p | grep -q libusb-1.0.so.0 || missing="$$missing libusb-1.0-0"; \
	$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3.11-venv"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# CPU torch first (an unpinned torch would pull a multi-GB CUDA build), then the package
# with its native extension.  GPU users install their own torch build before this.
$(VENV)/.installed: setup.py | system
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q --no-build-isolation -e '.[test]'
	touch $@
