# Each of these sets everything up on a fresh machine, then runs:
#   make test   create .venv with the pinned stack, then run the whole test suite
#   make demo   same setup, then segment the bundled images with CLIP ViT-B/16
#   make webui  same setup plus Gradio, then serve the web demo (WEBUI_ARGS=--clip-path ...)
# TORCH selects the torch build (default: 2.13.0; here pip takes the local CPU wheel).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sfp-installed
WEBUI_STAMP := $(VENV)/.sfp-webui-installed

.PHONY: setup test demo webui lint clean

$(STAMP): pyproject.toml setup.py sfp_mmcv_ops.pth requirements.txt requirements-test.txt requirements-reference.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/reference-libs \
		-r requirements-reference.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

$(WEBUI_STAMP): $(STAMP) requirements-webui.txt
	$(PY) -m pip install --quiet -r requirements-webui.txt
	touch $(WEBUI_STAMP)

test: $(STAMP) $(WEBUI_STAMP)
	$(PY) -m pytest tests

demo: $(STAMP)
	$(PY) tools/demo.py demo/images --vocab voc21 --clip-path ViT-B/16 --out-dir demo_outputs

webui: $(WEBUI_STAMP)
	$(PY) tools/webui.py $(WEBUI_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
