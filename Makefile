# Two entry points (see README): `make demo` and `make test`. Both bootstrap `.venv` themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.mvgd-installed
TF2_MSGS_STAMP := $(VENV)/.tf2_msgs-installed
TF2_MSGS_SRC := $(wildcard third_party/tf2_msgs/*.xml third_party/tf2_msgs/CMakeLists.txt third_party/tf2_msgs/msg/*.msg)

# Per-run DDS isolation for the tests: loopback only, and a domain id derived from the PID.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
# ament_index_python (share dirs, interface packages built into the venv) looks here; a
# sourced ROS distro's own value wins.
export AMENT_PREFIX_PATH ?= $(abspath $(VENV))

.PHONY: venv tf2_msgs test demo bench clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py $(TF2_MSGS_SRC)
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements.txt
	$(MAKE) --no-print-directory tf2_msgs
	$(VPY) -m pip install --quiet --no-deps -e .
	@touch $@

# tf2_msgs has no wheel: build its one message (TFMessage) from third_party/ with the rosidl
# wheels in requirements.txt and install it into the venv (about 7 s; rebuilt only when its
# sources change). cmake comes from the system or, failing that, a pinned wheel.
tf2_msgs: $(TF2_MSGS_STAMP)

$(TF2_MSGS_STAMP): $(TF2_MSGS_SRC)
	@test -x $(VPY) || { echo "tf2_msgs: run 'make venv' first (needs $(VPY))"; exit 1; }
	@command -v cmake >/dev/null || test -x $(VENV)/bin/cmake || $(VPY) -m pip install --quiet cmake==4.4.4
	rm -rf build/tf2_msgs && mkdir -p build
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake -S third_party/tf2_msgs -B build/tf2_msgs \
	  -DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) -DCMAKE_PREFIX_PATH=$(abspath $(VENV)) \
	  -DPython3_EXECUTABLE=$(abspath $(VPY)) -DBUILD_TESTING=OFF > build/tf2_msgs.log 2>&1 \
	  || { cat build/tf2_msgs.log; exit 1; }
	PATH="$(abspath $(VENV))/bin:$$PATH" cmake --build build/tf2_msgs -j2 >> build/tf2_msgs.log 2>&1 \
	  && cmake --install build/tf2_msgs >> build/tf2_msgs.log 2>&1 || { cat build/tf2_msgs.log; exit 1; }
	$(VPY) -c "from tf2_msgs.msg import TFMessage"
	@touch $@

test: $(STAMP)
	$(VPY) -m pytest -q test

# `make demo`: the shipped model on the shipped bags through the real node, report in report/
# (mvgd_ros/demo.py). DEMO_T0 is read when make starts, so the demo's budget covers set-up too.
DEMO_T0 := $(shell date +%s)
demo: $(STAMP)
	$(VPY) -m mvgd_ros.demo --t0 $(DEMO_T0) $(DEMO_ARGS)

# Node latency/throughput and view-count scaling; tables printed, JSON in benchmarks/results/.
bench: $(STAMP)
	$(VPY) benchmarks/bench_node.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache report runs
