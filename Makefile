# The project's pipeline.  `make report` is the main job, `make test` the check.
# Both set everything up themselves on a fresh Debian machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# In a conda environment (environment.yml), use its python and skip the venv:
#   make report PY=python STAMP=      make test PY=python STAMP=
PYABS = $(if $(findstring /,$(PY)),$(abspath $(PY)),$(PY))
# Debian packages the tests use (installed when missing and we are root):
# - the storage lab: mkfs for xfs and btrfs (ext4's comes with the base system), libfuse 3 for the
#   power-cut FUSE filesystem (mfusepy loads libfuse3.so.3), losetup and mount;
# - the peers: fio, and postgresql for pg_test_fsync (in /usr/lib/postgresql/<version>/bin);
# - the real databases: postgresql's server (initdb, postgres) and redis-server, started by us, never as services.
SYSTEM_PACKAGES := xfsprogs btrfs-progs fuse3 libfuse3-3 mount fio postgresql redis-server

# make report PROFILE=quick            a faster, rougher study
# make report DATASET=data/NAME [CRASH_DATASET=data/CRASH] [PEERS_DATASET=data/PEERS] [LOAD_DATASET=data/LOAD]
#             [REALDB_DATASET=data/REALDB] [REALDB_CRASH_DATASET=data/REALDB-CRASH]
#                                      render existing datasets, measure nothing
PROFILE ?= standard
# make test NEIGHBOUR=1                 the tests with another process writing and fdatasync-ing on their disk
#                                       throughout, as on a machine that is not idle
NEIGHBOUR ?=
DATASET ?=
CRASH_DATASET ?=
PEERS_DATASET ?=
LOAD_DATASET ?=
REALDB_DATASET ?=
REALDB_CRASH_DATASET ?=

.PHONY: all report test test-package test-notebooks bench-overhead bench-loop clean distclean system-deps

all: report

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[test]'  # compat: a .pth, no import hook, no warning
	touch $@

system-deps:
	bash .ci/system-deps $(SYSTEM_PACKAGES)

report: system-deps $(STAMP)
	$(PY) -m fsyncstudy report --profile $(PROFILE) $(if $(DATASET),--dataset $(DATASET)) $(if $(CRASH_DATASET),--crash-dataset $(CRASH_DATASET)) $(if $(PEERS_DATASET),--peers-dataset $(PEERS_DATASET)) $(if $(LOAD_DATASET),--load-dataset $(LOAD_DATASET)) $(if $(REALDB_DATASET),--realdb-dataset $(REALDB_DATASET)) $(if $(REALDB_CRASH_DATASET),--realdb-crash-dataset $(REALDB_CRASH_DATASET))

test: system-deps $(STAMP)
	FSYNCSTUDY_TEST_NEIGHBOUR=$(NEIGHBOUR) $(PY) -m pytest -n 2 --dist loadfile tests
	cd notebooks && PYDEVD_DISABLE_FILE_VALIDATION=1 $(PYABS) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -n 2 --dist loadfile .

bench-overhead: $(STAMP)
	$(PY) benchmarks/overhead.py

bench-loop: $(STAMP)
	$(PY) benchmarks/loop_cost.py

# runs/ (your measured datasets) is left alone
clean:
	rm -rf build reports .pytest_cache .hypothesis

distclean: clean
	rm -rf $(VENV)
