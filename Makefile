# The two commands of README.md. Both do their own set-up in ./.venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) artifacts/smoke
