# The project's pipeline.  `make report` is the main job, `make test` the check.
# Both set everything up themselves on a fresh Debian machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests use (installed when missing and we are root): fio, and postgresql for
# pg_test_fsync (Debian's postgresql-<version> ships it in /usr/lib/postgresql/<version>/bin).
SYSTEM_PACKAGES := fio postgresql

.PHONY: all report test test-package test-notebooks bench-overhead clean distclean system-deps

all: report

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

system-deps:
	bash .ci/system-deps $(SYSTEM_PACKAGES)

test: system-deps $(STAMP)
	$(PY) -m pytest tests

bench-overhead: $(STAMP)
	$(PY) benchmarks/overhead.py

clean:
	rm -rf build .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV)
