# tistudio: two commands matter. `make demo` runs the main job on the embedded default; `make test` runs the suite.
# Both build what they need on a fresh clone: .venv with pinned dependencies (torch 2.13.0 CPU: the pin is
# installed first so nothing ever resolves a CUDA build), the buf CLI from npm, protobuf stubs and tiny models.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf
MODELS := models
PY_SOURCES := services clients tests bench deploy protos/generate.py conftest.py
PYTEST_ARGS ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-slow venv protos protos-check lint deploy-check models lock clean bench-caption bench-train bench-preview bench-toyworld

demo: $(VENV)/.installed models
	$(PY) -m tistudio_client.demo --models $(MODELS) --out demo-out

test: $(VENV)/.installed models lint deploy-check
	$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

# Checks too slow for `make test` (and GPU checks, which skip themselves where no CUDA device is present).
test-slow: $(VENV)/.installed models
	$(PY) -m pytest -m "slow or gpu" $(PYTEST_ARGS)

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# package.json pins buf exactly and buf pins its platform binary; no lock file, because npm 11's `npm ci` rejects
# a lock that records only this platform's optional binary.
$(BUF): package.json
	npm install --no-audit --no-fund --no-package-lock --loglevel=error
	touch $@

# Regenerate the committed stubs after editing a .proto.
protos: $(VENV)/.installed
	$(PY) protos/generate.py

# buf lint (STANDARD rules) and the stub drift check.
protos-check: $(VENV)/.installed $(BUF)
	$(BUF) lint
	$(PY) protos/generate.py --check

# ruff (rules and formatting in pyproject.toml), buf lint, and the stub drift check.
lint: $(VENV)/.installed protos-check
	$(PY) -m ruff check $(PY_SOURCES)
	$(PY) -m ruff format --check $(PY_SOURCES)

# Renders every kustomization under deploy/k8s (kubectl kustomize) and validates it offline: Kubernetes 1.32 schemas
# (strict), the CRDs we use, the deployment contract, and docs/metrics.md and docs/configuration.md against the code.
deploy-check: $(VENV)/.installed
	$(PY) deploy/check.py

# Deterministic tiny SD1.x, BLIP and CLIP models with random weights, in the real save_pretrained layouts.
models: $(VENV)/.installed
	$(PY) -m services.common.models.tiny --out $(MODELS)

# Caption throughput and p50/p95 latency at 1, 4 and 16 clients, batching on vs off, on a BLIP-base-shaped model
# with random weights (built once into .cache/bench). Not part of `make test`. Extra flags: BENCH_CAPTION_ARGS=...
bench-caption: $(VENV)/.installed
	$(PY) -m services.caption.bench --json .cache/bench/caption.json $(BENCH_CAPTION_ARGS)

# Trainer samples/s and peak memory: our engine vs a re-implementation of diffusers' textual_inversion.py per-step
# work on the tiny model (CPU), and an SD1.5-shaped model at 512 px bf16, batch 1/8/32, with MFU where a CUDA GPU is
# present; then the multi-job table: 1/4/16 jobs (CUDA: 1/8/16) one after another vs batched on one model.
# Not part of `make test`. Extra flags: BENCH_TRAIN_ARGS=... (e.g. --only-jobs)
bench-train: $(VENV)/.installed models
	$(PY) -m services.trainer.bench --json .cache/bench/train.json $(BENCH_TRAIN_ARGS)

# Preview service overhead vs the diffusers pipeline called directly (tiny and SD1.5-shaped models), and the
# embedding swap time. Not part of `make test`. Extra flags: BENCH_PREVIEW_ARGS=...
bench-preview: $(VENV)/.installed models
	$(PY) -m services.preview.bench --json .cache/bench/preview.json $(BENCH_PREVIEW_ARGS)

# The toy world's learning test at full length: an embedding trained through the services on a pink heart, judged
# over 64 seeds per check, with the fidelity curve over the savepoints and the progress contact sheet. Writes
# bench/results/toy-learning.{json,png}. Extra flags: BENCH_TOYWORLD_ARGS=...
bench-toyworld: $(VENV)/.installed
	$(PY) -m bench.toy_learning --out bench/results $(BENCH_TOYWORLD_ARGS)

# Re-pin every transitive dependency after changing requirements.txt.
lock: $(VENV)/.installed
	{ echo "# Full lock of requirements.txt (pip freeze, torch as 2.13.0 CPU). Regenerate with \`make lock\`."; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/'; } > constraints.txt

clean:
	rm -rf $(VENV) node_modules $(MODELS) demo-out .pytest_cache
