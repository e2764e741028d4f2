# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv on first
# use and are fast the second time (the install is redone only when setup.cfg changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint broker clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,llm]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/inspector demo --frames 12

test: $(STAMP) broker
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

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

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
