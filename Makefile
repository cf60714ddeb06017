# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTRAS := plot,flower,attack,cma,nevergrad,bbob,tensorboard,progress,dev
export OPENBLAS_NUM_THREADS ?= 1
export FLWR_TELEMETRY_ENABLED = 0
export FLWR_DISABLE_UPDATE_CHECK = 1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION = 1

.PHONY: install demo test test-fast bench lint proto-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)

## The main job: FZooS against the baselines on the embedded default problem
## (quadratic, d=300, N=5 clients, C=0.5), every method (CMA-ES on the server included) at
## the same budget of 25 000 client queries; prints a table, writes a plot. Reruns replace it.
demo: $(STAMP)
	$(BIN)/fedzoo compare --problem quadratic --dim 300 --clients 5 --heterogeneity 0.5 \
		--budget 25000 --local-steps 10 --seed 0 \
		--methods fzoos,fedzo,fedprox,scaffold1,scaffold2,fedcma --out runs/demo --overwrite

## The whole suite, end-to-end tests with real processes included.
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python simulations/benchmarks/synthetic.py --out runs/bench-synthetic
	$(BIN)/python simulations/benchmarks/scaling.py

lint: $(STAMP)
	$(BIN)/ruff check fedzoo fedzoo_attack fedzoo_server fedzoo_client fedzoo_oracle fedzoo_launch fedzoo_cli proto tests simulations

proto-check: $(STAMP)
	$(BIN)/python proto/generate.py --check

clean:
	rm -rf $(VENV) runs .pytest_cache
