# The README's two commands. Each creates .venv when missing and installs genlab into it, with
# torch pinned by constraints.txt (the tested CPU build; any other torch request here pulls CUDA).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.genlab-installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/genlab train vae --data mnist5k --binarize static --epochs 20 --out runs/demo --force
	$(BIN)/genlab sample runs/demo -n 64 --out runs/demo/samples.png
	$(BIN)/genlab reconstruct runs/demo --out runs/demo/reconstructions.png
	$(BIN)/genlab traverse runs/demo --top 8 --out runs/demo/traverse.png
	$(BIN)/genlab interpolate runs/demo --from 0 --to 1 --out runs/demo/interpolate.png
	$(BIN)/genlab latent runs/demo --out runs/demo/latent.png
	$(BIN)/genlab report runs/demo
	$(BIN)/genlab detect runs/demo --split test --top 32 --out runs/demo/scores.csv --out-grid runs/demo/rare.png \
		--out-hist runs/demo/scores.png --no-progress
	@cat runs/demo/evaluation.json
	@echo "demo run in runs/demo/: open runs/demo/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build src/*.egg-info
