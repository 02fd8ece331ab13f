# Two commands for a fresh clone (see README): `make demo` and `make test`.
# Each creates .venv if needed and installs the package with torch pinned by constraints.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.talkinghead-installed

.PHONY: demo test install bench clean

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	# the optional mediapipe backend, tested too: 0.10.21 is the last release that ships its model, and
	# its declared dependencies would downgrade numpy, so it goes in without them (see docs/cli.md)
	$(PY) -m pip install -q -c constraints.txt --no-deps mediapipe==0.10.21 "protobuf<5" absl-py attrs flatbuffers
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/talkinghead demo -o demo.mp4

test: $(STAMP)
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) benchmarks/run.py -o benchmarks/results

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
