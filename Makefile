# Two commands for a newcomer:  `make demo` (the main job)  and  `make test` (the test suite).
# torch is pinned and installed *before* edgekit so pip never resolves an unpinned (CUDA) torch.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN := torch==2.13.0
DEMO_OUT ?= demo-out

.PHONY: venv demo test lint bench clean

$(BIN)/.edgekit-installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e ".[all,test]"
	touch $@

venv: $(BIN)/.edgekit-installed

demo: venv
	$(BIN)/edgekit run recipes/lenet-digits-cpu-int8.toml -o $(DEMO_OUT)

test: venv
	$(BIN)/ruff check edgekit tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .import_linter_cache
