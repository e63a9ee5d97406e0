# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# --compile-bytecode: uv, unlike pip, leaves packages uncompiled, and where PYTHONDONTWRITEBYTECODE is set (as in
# CI here) every process would then re-compile Ray, MLflow and Great Expectations on import: 2-2.5x slower imports
# in every stage, Ray worker and test subprocess.
# constraints.txt pins torch==X as PyPI serves it (on Linux its CUDA build, gigabytes with NVIDIA's libraries), and
# under PEP 440 that pin also admits the CPU build X+cpu, a local version that ranks higher. uv reads none of pip's
# settings, so pip's find-links (PIP_FIND_LINKS, or pip's config) are handed on: where they hold X+cpu, as on this
# machine, the same one uv call installs it (pip took 26 s for torch alone) and nothing of CUDA is downloaded. uv's
# own variables pass through, e.g. UV_EXTRA_INDEX_URL for PyTorch's CPU index (README, set-up).
FIND_LINKS := $(strip $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)))
INSTALL := $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt \
	$(foreach links,$(FIND_LINKS),--find-links $(links))
export PATH := $(BIN):$(PATH)

.PHONY: setup run test test-unit bench docs-images clean stack-up stack-down

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@bash infra/local/install-system-packages.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip only for uv itself; uv, several times faster, for everything else under the same pins
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv
	$(INSTALL) -e ".[worker,pipeline,test]"
	@# The references the tests and benchmarks compare with, without their dependencies: clean-fid's resize
	@# (tests/unit/test_inception.py; its dependencies name torchvision, whose wheels require a torch build of
	@# their own) and pythae (bench/quality.py and its quick mode in make test; its dependencies name the Python
	@# 3.6 `dataclasses` backport, which shadows the standard library: Prefect's server fails to start with it).
	$(INSTALL) --no-deps clean-fid==0.1.35 pythae==0.1.2
	@touch $@

# Runs the whole DVC pipeline on the embedded default dataset (scikit-learn digits).
run: setup
	@test -f data/raw/digits.manifest.json || genp data import digits
	dvc repro
	@echo "Results: 'dvc metrics show', reports/, and the MLflow run above (its 'MLflow:' line): start"
	@echo "  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1"
	@echo "  and open that link: it opens the run in MLflow's model-training view"

test: setup
	pytest

test-unit: setup
	pytest -m "not integration"

# The pictures of README.md and docs/ from real runs on this machine (about 25 minutes on 2 cores).
docs-images: setup
	python docs/make_images.py

# Every benchmark, then the results section of docs/benchmarks.md from what they wrote (several hours on 2 cores).
bench: setup
	python -m bench.train_throughput
	python -m bench.profile_epoch
	python -m bench.quality
	python -m bench.quality fashion-mnist --precision bf16 --output bench/results/quality_bf16.json
	python -m bench.quality fashion-mnist --families vae --vae-prior-components 10 --output bench/results/quality_prior.json
	python -m bench.gap_profile
	python -m bench.tune_efficiency
	python -m bench.tune_soak
	python -m bench.stack_load
	python -m bench.scale
	python -m bench.feedback
	python -m bench.make_test
	python -m bench.report

# Prefect server, MLflow server, Ray head and the deployments' serve process, on 127.0.0.1.
stack-up: setup
	python infra/local/stack.py up

stack-down:
	$(BIN)/python infra/local/stack.py down

clean:
	rm -rf data/prepared models reports metrics ray_results mlartifacts mlflow.db runs
