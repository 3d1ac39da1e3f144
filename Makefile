# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench clean

venv: $(STAMP)

# torch resolves to the local 2.14.1 build here; nuscenes-devkit pins numpy<2 but its point-cloud
# readers (used only as the tests' independent reference) work with numpy 2, so it goes in
# without its dependency pins.
# On x86-64 '.[all]' brings onnxruntime-openvino. Both builds write the same `onnxruntime` module,
# so a venv made before this holds the plain one: remove both and let the install put one back.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ "$$(uname -m)" = x86_64 ] && $(PY) -m pip show -q onnxruntime >/dev/null 2>&1; then \
		$(PY) -m pip uninstall -q -y onnxruntime onnxruntime-openvino; fi
	$(PY) -m pip install -q -e '.[all]'
	$(PY) -m pip install -q --no-deps 'nuscenes-devkit==1.2.0'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m xdrcdepth_ros demo

test: $(STAMP)
	$(PY) -m pytest -q test

bench: $(STAMP)
	$(PY) bench/bench_geometry.py
	$(PY) -m xdrcdepth_ros bench

clean:
	rm -rf $(VENV) build install log demo_output .pytest_cache
