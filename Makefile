# scvi-causal: every target sets itself up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU wheel of torch that lies on these machines' disk: installed before the package so that
# pip never pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?=
# test processes (pytest-xdist), one per core of the 2-core CI machine; each file stays on one
# process (module fixtures are trained once) and each process uses one torch thread
PYTEST_WORKERS ?= 2
# headless plotting for the demo, tests and benchmarks
export MPLBACKEND ?= Agg

.PHONY: setup demo test lint docs bench bench-sim bench-diagnose bench-fewshot bench-counterfactual bench-real bench-images bench-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m scvi_causal.demo --output demo_output

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tutorials
	$(VENV)/bin/ruff format --check src tests benchmarks tutorials
	$(PY) -m pytest --doctest-modules -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) src tests

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tutorials
	$(VENV)/bin/ruff format --check src tests benchmarks tutorials

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

bench-sim: $(STAMP)
	$(PY) -m benchmarks.simulated.run --protocols svae --update
	$(PY) -m benchmarks.simulated.run --protocols default --out benchmarks/simulated/default_protocol
	$(PY) -m benchmarks.summary

bench-diagnose: $(STAMP)
	$(PY) -m benchmarks.simulated.diagnose --update
	$(PY) -m benchmarks.simulated.diagnose --method dense --update
	$(PY) -m benchmarks.summary

bench-fewshot: $(STAMP)
	$(PY) -m benchmarks.simulated.fewshot --update
	$(PY) -m benchmarks.summary

bench-counterfactual: $(STAMP)
	$(PY) -m benchmarks.counterfactual.run --workers 2 --update
	$(PY) -m benchmarks.summary

bench-real: $(STAMP)
	$(PY) -m benchmarks.real.run --workers 2 --threads 1 --update
	$(PY) -m benchmarks.summary

bench-images: $(STAMP)
	$(PY) -m benchmarks.images.run --update
	$(PY) -m benchmarks.summary

bench-scale: $(STAMP)
	$(PY) -m benchmarks.scale.run --update
	$(PY) -m benchmarks.scale.time_to_quality --update
	$(PY) -m benchmarks.summary

bench: bench-sim bench-fewshot bench-counterfactual bench-real bench-images bench-scale

clean:
	rm -rf $(VENV) demo_output docs/_build
