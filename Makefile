# Fresh Debian machine as root: `make test` and `make demo` do all the set-up themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
APT_PACKAGES := fluidsynth fluid-soundfont-gm timgm6mb-soundfont jackd2 libportaudio2 libsndfile1
# The CPU build of torch; a GPU user installs the CUDA build of the same version first
# (see README), and pip then keeps it.
TORCH := torch==2.13.0

.PHONY: setup apt test demo morph-demo bench fuzz clean

setup: $(VENV)/.installed

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: setup.py | apt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e '.[dev]'
	touch $@

test: apt setup
	$(PY) -m pytest -q tests

demo: apt setup
	$(PY) -m singsynth render examples/demo.mid -o out/demo.wav -f

# A held chord whose timbre the mod wheel sweeps from flute to overdrive guitar (presets/morph.yaml).
morph-demo: apt setup
	$(PY) -m singsynth render examples/morph.mid --preset morph -o out/morph.wav -f

bench: apt setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# The fuzz cases of tests/test_fuzz.py for as long as asked: make fuzz MINUTES=60
MINUTES ?= 10
fuzz: apt setup
	$(PY) benchmarks/fuzz.py --minutes $(MINUTES)

clean:
	rm -rf $(VENV) out *.egg-info
