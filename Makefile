# The two commands a person needs: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-fast clean-demo docs

setup:
	@bash scripts/setup_env.sh

demo: setup
	@bash scripts/demo.sh

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow" tests

clean-demo:
	rm -rf runs/demo

# The docs site from docs/ (mkdocs.yml): installs the docs extra into .venv when missing, then a strict
# build (a broken link or API reference fails) into site/ (git-ignored). `$(VENV)/bin/mkdocs serve` to browse.
docs:
	@[ -x "$(PY)" ] || bash scripts/setup_env.sh
	@$(PY) -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null || \
		$(PY) -m pip --isolated --disable-pip-version-check install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
