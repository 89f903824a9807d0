# auoms-py developer entry points. Run as root on Debian 12:
#   make run    run the agent in the foreground on the shipped defaults
#   make test   install what the tests need (apt packages included) and run them
#   make dist   wheel and sdist in dist/;  make deb [DEB_REVISION=N]  the Debian package in dist/ (packaging/)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := auditd rsyslog rsyslog-gnutls libsystemd-dev pkg-config gcc python3-dev python3-venv openssl
PYTEST_ARGS ?=
DEB_REVISION ?= 1

.PHONY: run test deps venv bench clean lint dist deb

# System packages the tests drive for real: auditd (auditctl/ausearch oracles, plugin host), rsyslog (a real
# syslog receiver; rsyslog-gnutls: its TLS listener), libsystemd-dev (builds systemd-python). Installed only when
# one is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,systemd]'
	touch $@

venv: deps $(VENV)/.installed

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

run: venv
	$(VENV)/bin/auoms-py run -c conf/auoms.yaml --foreground

bench: venv
	$(PY) bench/run.py

dist: venv
	rm -f dist/auoms_py-*.whl dist/auoms_py-*.tar.gz dist/auoms-py-*.tar.gz
	$(PY) -m build --outdir dist .

deb: dist
	packaging/build-deb.sh $(DEB_REVISION)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
