# Two entry points (see README): `make demo` and `make test`. Both bootstrap `.venv` themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.mvgd-installed

# Per-run DDS isolation for the tests: loopback only, and a domain id derived from the PID.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements.txt
	$(VPY) -m pip install --quiet --no-deps -e .
	@touch $@

test: $(STAMP)
	$(VPY) -m pytest -q test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache report runs
