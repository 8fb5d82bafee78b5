# The two commands of README.md. Both do their own set-up in ./.venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-e2e install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch; a bare `torch` would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,report]'
	touch $(STAMP)

install: $(STAMP)

# the main job on the embedded default: tiny local backbone, bundled sample, CPU
demo: $(STAMP)
	$(BIN)/relex sweep jobs/smoke.py --overwrite
	$(BIN)/relex leaderboard artifacts/smoke
	$(BIN)/relex report artifacts/smoke --html artifacts/smoke/report.html

# the suite without the end-to-end tests (marked slow): every module, technique, command and error
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# the end-to-end tests: real sweeps on Ray (kill and resume, retries, budgets, search, workers),
# a `ray start` cluster, the GPU benchmark on the CPU, and README's commands run as written
test-e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) artifacts/smoke
