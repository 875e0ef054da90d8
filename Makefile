# scvi-causal: every target sets itself up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# CPU wheel of torch that lies on these machines' disk: installed before the package so that
# pip never pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
PYTEST_ARGS ?=
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
	$(PY) -m pytest --doctest-modules $(PYTEST_ARGS) src tests

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tutorials

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

bench-sim: $(STAMP)
	$(PY) benchmarks/simulated/run.py

bench-diagnose: $(STAMP)
	$(PY) benchmarks/simulated/diagnose.py --out benchmarks/simulated/diagnosis/spike_slab
	$(PY) benchmarks/simulated/diagnose.py --method dense --out benchmarks/simulated/diagnosis/dense

bench-fewshot: $(STAMP)
	$(PY) benchmarks/simulated/fewshot.py

bench-counterfactual: $(STAMP)
	$(PY) benchmarks/counterfactual/run.py --workers 2 --out benchmarks/counterfactual

bench-real: $(STAMP)
	$(PY) benchmarks/real/run.py --workers 2 --threads 1

bench-images: $(STAMP)
	$(PY) benchmarks/images/run.py

bench-scale: $(STAMP)
	$(PY) benchmarks/scale/run.py
	$(PY) benchmarks/scale/time_to_quality.py

bench: bench-sim bench-fewshot bench-counterfactual bench-real bench-images bench-scale

clean:
	rm -rf $(VENV) demo_output docs/_build
