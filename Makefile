# The two commands of the README. Each creates .venv and installs what it needs on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/splitopt demo

# one BLAS thread: on 2 cores OpenBLAS's threads make small dot products 300x slower
test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check splitopt formulations benchmarks tests

bench: $(STAMP)
	$(VENV)/bin/splitopt bench --quick

clean:
	rm -rf $(VENV) build *.egg-info
