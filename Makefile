# shqip-av: every target runs from the repository root; ROOT is the dataset root.
VENV    ?= .venv
PY      := $(VENV)/bin/python
ROOT    ?= data
WORKERS ?= 2
# Model files: a folder with face_landmarker.task etc. (in this workplace, ../shared/models)
SHARED_MODELS := $(abspath ../shared/models)
export SHQIP_AV_MODELS ?= $(if $(wildcard $(SHARED_MODELS)/face_landmarker.task),$(SHARED_MODELS),)

.PHONY: install doctor sample collect filter shard dataset demo test bench clean-demo

install:
	bash scripts/install.sh

doctor:
	$(PY) -m shqip_av.doctor

# The embedded default: self-made consented sample clips + their sources.yaml
sample:
	$(PY) -m collect.sample --root $(ROOT)

collect:
	$(PY) -m collect --root $(ROOT)

filter:
	$(PY) -m filter --root $(ROOT) --workers $(WORKERS)

shard:
	$(PY) -m filter.shard --root $(ROOT)

# collect → filter → shard, then a summary
dataset: collect filter shard
	$(PY) -m filter.report --root $(ROOT)

demo:
	$(PY) -m collect.sample --root $(ROOT)/demo
	$(MAKE) --no-print-directory dataset ROOT=$(ROOT)/demo

test:
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYANNOTE_METRICS_ENABLED=0 $(PY) -m pytest -q

bench:
	$(PY) bench/filter_throughput.py

clean-demo:
	rm -rf $(ROOT)/demo
