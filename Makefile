# Two set-up commands: `make bench` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test install clean gpu-check

$(STAMP): pyproject.toml setup.py requirements-ci.txt $(wildcard padbench/kernels/csrc/*)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(VENV)/bin/padbench run --device cpu --mode both --strategies all
	$(VENV)/bin/asv publish
	$(VENV)/bin/padbench report results --out html/report --dashboard html
	@echo "open: python -m http.server -d html 8000  ->  http://127.0.0.1:8000/ (asv dashboard), http://127.0.0.1:8000/report/ (report)"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# The prepared check for a bare GPU machine (docs/gpu.md): no venv, nothing from the network.
# Settings come from the command line or environment: PYTHON (python3), DRY_RUN=1 (toy sizes on CPU,
# into a temporary folder), RESULTS_DIR, BUDGET_S, LIMIT_<STEP>_S.
gpu-check:
	bash scripts/gpu_check.sh

clean:
	rm -rf $(VENV) html
