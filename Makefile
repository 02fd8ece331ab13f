# Two commands for a fresh clone (see README): `make demo` and `make test`.
# Each creates .venv if needed and installs the package with torch pinned by constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.talkinghead-installed

.PHONY: demo test install browser bench clean

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# --no-compile: pip skips byte-compiling every installed file (the web extra's ~45 packages: 16 s of CPU with
	# it, 10 s without); Python compiles what the tests import, when they import it
	$(PY) -m pip install -q --no-compile -c constraints.txt -e ".[test,web]"
	# the optional mediapipe backend, tested too: 0.10.21 is the last release that ships its model, and
	# its declared dependencies would downgrade numpy, so it goes in without them (see docs/cli.md)
	$(PY) -m pip install -q -c constraints.txt --no-deps mediapipe==0.10.21 "protobuf<5" absl-py attrs flatbuffers
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium and its driver, for the web app's browser test (tests/test_web.py), where apt-get can
# install them (as root); elsewhere, or if apt fails, that test skips and says why
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver (apt-get) for tests/test_web.py"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver >/dev/null; } || echo "apt-get could not install chromium: tests/test_web.py will skip"; \
	fi

demo: $(STAMP)
	$(VENV)/bin/talkinghead demo -o demo.mp4

test: $(STAMP) browser
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) benchmarks/run.py -o benchmarks/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
