# shqip-av: every target runs from the repository root; ROOT is the dataset root.
VENV    ?= .venv
PY      := $(VENV)/bin/python
ROOT    ?= data
WORKERS ?= 2
# Model files: a folder with face_landmarker.task etc. (in this workplace, ../shared/models)
SHARED_MODELS := $(abspath ../shared/models)
export SHQIP_AV_MODELS ?= $(if $(wildcard $(SHARED_MODELS)/face_landmarker.task),$(SHARED_MODELS),)

ACCELERATE := $(VENV)/bin/accelerate launch --num_machines 1 --dynamo_backend no --mixed_precision no
ASR_CONFIG ?= train/configs/whisper-small-sq.yaml
# models to compare with `make evaluate-asr` (comma-separated ids or folders)
ASR_MODELS ?= openai/whisper-small,$(ROOT)/runs/asr/whisper-small-sq
DEMO := $(ROOT)/demo
TINY := $(DEMO)/models/whisper-tiny-sq

REPO ?=

.PHONY: app realpool realpool-judge realpool-mouths train-mouth-shape train-generator-real lint install doctor sample collect filter shard dataset demo asr-demo train-asr train-expert expert-demo train-generator generator-demo dub-demo evaluate-asr cards publish test bench clean-demo

install:
	bash scripts/install.sh

doctor:
	$(PY) -m shqip_av.doctor

# The embedded default: self-made consented sample clips + their sources.yaml
sample:
	$(PY) -m collect.sample --root $(ROOT)

collect:
	$(PY) -m collect --root $(ROOT)

# TRANSCRIPTS=<Whisper id, folder or runs/asr/<name>> turns on language ID, caption checks and pseudo-labels;
# SYNC=<a trained judge or expert: runs/lipsync/<name>> replaces the training-free sync score
# (make realpool-judge trains one on real footage: SYNC=data/realpool/runs/lipsync/judge)
TRANSCRIPTS ?=
SYNC ?=
filter:
	$(PY) -m filter --root $(ROOT) --workers $(WORKERS) $(if $(TRANSCRIPTS),transcripts.model=$(TRANSCRIPTS)) \
		$(if $(SYNC),sync.method=$(SYNC))

shard:
	$(PY) -m filter.shard --root $(ROOT)

# collect → filter → shard, then a summary and the review page (ROOT/cards/review/index.html)
dataset: collect filter shard
	$(PY) -m filter.report --root $(ROOT) --html

# Whisper fine-tuning (one process; for several GPUs: accelerate launch --multi_gpu --num_processes N -m train.asr)
train-asr:
	$(ACCELERATE) --num_processes 1 -m train.asr --config $(ASR_CONFIG) data.root=$(ROOT)

# the sync expert; filter uses it with sync.method=$(ROOT)/runs/lipsync/<name>
EXPERT_CONFIG ?= train/configs/expert-tiny.yaml
train-expert:
	$(ACCELERATE) --num_processes 1 -m train.lipsync.expert --config $(EXPERT_CONFIG) data.root=$(ROOT)

# a tiny sync expert trained on the demo shards, then scored on them (LSE-D/LSE-C, aligned vs. shifted;
# in-sample: the demo's speakers all fall in train, so 20 % of its samples are held out for validation)
expert-demo:
	$(ACCELERATE) --num_processes 1 -m train.lipsync.expert --config train/configs/expert-tiny.yaml data.root=$(DEMO)
	$(PY) -m train.lipsync.evaluate --expert $(DEMO)/runs/lipsync/expert-tiny --root $(DEMO) --split train

# the lip-sync generator; its sync loss needs a trained expert (make train-expert)
GENERATOR_CONFIG ?= train/configs/generator-tiny.yaml
train-generator:
	$(ACCELERATE) --num_processes 1 -m train.lipsync --config $(GENERATOR_CONFIG) data.root=$(ROOT) loss.expert=$(ROOT)/runs/lipsync/expert-tiny

# the tiny generator trained on the demo shards, scored, and one sample re-voiced with another
# speaker's sentence (runs/lipsync/generator-tiny/revoice/revoiced.mp4, side by side)
GEN_DEMO := $(DEMO)/runs/lipsync/generator-tiny
generator-demo:
	$(ACCELERATE) --num_processes 1 -m train.lipsync --config train/configs/generator-tiny.yaml data.root=$(DEMO) loss.expert=$(DEMO)/runs/lipsync/expert-tiny
	$(PY) -m train.lipsync.evaluate --generator $(GEN_DEMO) --expert $(DEMO)/runs/lipsync/expert-tiny --root $(DEMO) --split train --max-samples 4 --out $(GEN_DEMO)/eval
	$(PY) -m train.lipsync.revoice --generator $(GEN_DEMO) --root $(DEMO)
	$(PY) -m cards model --root $(DEMO) --run $(GEN_DEMO)

evaluate-asr:
	$(PY) -m train.asr.evaluate --root $(ROOT) --model $(ASR_MODELS) --split test

# Real footage for training and measuring on real faces (../shared/testdata, third-party: never
# published; every record carries that restriction and cards publish refuses it and its models).
# speakers.tsv's sync and av_offset columns are the measured truth: collect takes a known offset
# out of the audio, filter measures each other video's offset whole before judging its utterances,
# and the shipped sync thresholds apply, as on any real dataset. Faces may be small: many clips are
# 160-224 px face crops with eyes 30-60 px apart (the generator works at 128).
SPEAKERS ?= $(abspath ../shared/testdata/speakers.tsv)
REALPOOL := $(ROOT)/realpool
REALPOOL_RESTRICTION := third-party test footage: never publish it or anything trained on it
realpool:
	$(PY) -m collect.table --table $(SPEAKERS) --out $(REALPOOL)/sources.yaml --restriction "$(REALPOOL_RESTRICTION)"
	$(PY) -m collect --root $(REALPOOL)
	$(PY) -m filter --root $(REALPOOL) --workers $(WORKERS) quality.min_eye_distance=28
	$(PY) -m filter.shard --root $(REALPOOL) --splits $(SPEAKERS)
	$(PY) -m filter.report --root $(REALPOOL) --html

# The landmark sync judge on the realpool's train speakers (a quarter of them held out to calibrate
# filter's limit; the validation speakers are never read), then its figures on the validation
# speakers beside the training-free score's (bench/sync_validation.py). Filter any dataset with
# it: make dataset SYNC=$(REALPOOL)/runs/lipsync/judge
JUDGE_CONFIG ?= train/configs/judge-realpool.yaml
realpool-judge:
	$(ACCELERATE) --num_processes 1 -m train.lipsync.judge --config $(JUDGE_CONFIG) data.root=$(REALPOOL)
	$(PY) bench/sync_validation.py --table $(SPEAKERS) --judge $(REALPOOL)/runs/lipsync/judge

# A generator that has seen real faces: generator-small.yaml (192 px) on the realpool's train
# speakers, validated on its validation speakers, then continued with the mouth-shape loss
# (generator-small-lips.yaml); a tiny sync expert on the same speakers scores the dubs; then a
# bundle with them (ASR by Hub id: REAL_ASR) to dub real footage with. The base config for a GPU:
# make train-generator-real GENERATOR_REAL_CONFIG=train/configs/generator-base.yaml
GENERATOR_REAL_CONFIG ?= train/configs/generator-small.yaml
GENERATOR_REAL_STAGE1 := $(basename $(notdir $(GENERATOR_REAL_CONFIG)))
GENERATOR_REAL := $(if $(findstring small,$(GENERATOR_REAL_STAGE1)),generator-small-lips,$(GENERATOR_REAL_STAGE1))
REAL_ASR ?= openai/whisper-small
# The realpool's dubbing bundle for CPUs: its mouths retrieved from the speaker's own footage by
# the audio→mouth-shape model trained on its train speakers (exports/realpool-en)
realpool-mouths:
	test -f $(REALPOOL)/runs/lipsync/expert-tiny/expert/config.json || \
		$(ACCELERATE) --num_processes 1 -m train.lipsync.expert --config train/configs/expert-tiny.yaml data.root=$(REALPOOL)
	$(PY) -m train.lipsync.mouth_shape --root $(REALPOOL)
	$(PY) -m export bundle --root $(REALPOOL) --out $(REALPOOL)/exports/realpool-en --asr $(REAL_ASR) \
		--mouth-shape runs/lipsync/mouth-shape --expert runs/lipsync/expert-tiny --tts espeak:en --to en

train-generator-real:
	$(ACCELERATE) --num_processes 1 -m train.lipsync.expert --config train/configs/expert-tiny.yaml data.root=$(REALPOOL)
	$(ACCELERATE) --num_processes 1 -m train.lipsync --config $(GENERATOR_REAL_CONFIG) data.root=$(REALPOOL) \
		$(if $(findstring base,$(GENERATOR_REAL_CONFIG)),loss.expert=$(REALPOOL)/runs/lipsync/expert-tiny)
	$(if $(findstring small,$(GENERATOR_REAL_STAGE1)),$(ACCELERATE) --num_processes 1 -m train.lipsync \
		--config train/configs/generator-small-lips.yaml data.root=$(REALPOOL) \
		model.init=$(REALPOOL)/runs/lipsync/generator-small)
	$(PY) -m export bundle --root $(REALPOOL) --out $(REALPOOL)/exports/realpool-generator-en --asr $(REAL_ASR) \
		--generator runs/lipsync/$(GENERATOR_REAL) --expert runs/lipsync/expert-tiny \
		--tts espeak:en --to en

demo:
	$(PY) -m collect.sample --root $(DEMO)
	$(MAKE) --no-print-directory dataset ROOT=$(DEMO)
	$(MAKE) --no-print-directory asr-demo
	$(MAKE) --no-print-directory expert-demo
	$(MAKE) --no-print-directory train-mouth-shape ROOT=$(DEMO)
	$(MAKE) --no-print-directory cards ROOT=$(DEMO) RUN=runs/asr/tiny-demo
	$(MAKE) --no-print-directory dub-demo

# the audio→mouth-shape model (DESIGN.md §8.1): the dub's mouths are then the speaker's own,
# retrieved (a bundle built with --mouth-shape); about 30 s of CPU
train-mouth-shape:
	$(PY) -m train.lipsync.mouth_shape --root $(ROOT)

# one sample clip dubbed into English: the demo's Whisper recognizes it, the English .srt shipped
# with the sample is the translation, espeak-ng speaks it, the demo's generator lip-syncs it
# (demo/dubs/speaker_a_01/: the .mp4, its .srt and report.json)
DUB_CLIP ?= speaker_a_01
dub-demo:
	$(PY) -m export bundle --root $(DEMO) --out $(DEMO)/exports/demo-en --asr runs/asr/tiny-demo \
		--mouth-shape runs/lipsync/mouth-shape --expert runs/lipsync/expert-tiny --tts espeak:en --to en
	$(PY) -m export dub $(DEMO)/incoming/sample/$(DUB_CLIP).mp4 --bundle $(DEMO)/exports/demo-en --to en \
		--translation $(DEMO)/incoming/sample/$(DUB_CLIP).en.srt --out $(DEMO)/dubs/$(DUB_CLIP)

# the dubbing app on the demo's bundle (make demo first): http://127.0.0.1:7860
APP_BUNDLE ?= $(DEMO)/exports/demo-en
app:
	$(PY) -m export app --bundle $(APP_BUNDLE)

# dataset card (and, with RUN=runs/asr/<name>, its model card)
cards:
	$(PY) -m cards dataset --root $(ROOT) $(if $(REPO),--repo $(REPO))
	$(if $(RUN),$(PY) -m cards model --root $(ROOT) --run $(RUN))

# publish the dataset to the Hub: make publish REPO=user/name [DRY=1]
publish:
	$(PY) -m cards publish --root $(ROOT) --repo $(REPO) $(if $(DRY),--dry-run)

# A tiny random Whisper (no weights can be downloaded offline) fine-tuned with LoRA on the sample;
# prints WER before and after. The demo is offline by nature, hence HF_*_OFFLINE.
asr-demo:
	test -f $(TINY)/config.json || $(PY) -m train.asr.tiny --out $(TINY) --root $(DEMO)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(ACCELERATE) --num_processes 1 -m train.asr \
		--config train/configs/tiny-demo.yaml data.root=$(DEMO) model.name_or_path=$(TINY)

# ruff (lint and format check) and "does every file compile on the minimum Python" (the venv's):
# CI runs this before the tests
LINT_PATHS ?= bench cards collect export filter scripts shqip_av tests train
lint:
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m compileall -q $(LINT_PATHS) > /dev/null

test:
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYANNOTE_METRICS_ENABLED=0 $(PY) -m pytest -q

bench:
	$(PY) bench/filter_throughput.py
	$(PY) bench/asr_throughput.py
	$(PY) bench/transcripts_throughput.py
	$(PY) bench/recognize_throughput.py --utterances 8 --batches 1,8 --max-new-tokens 32
	$(PY) bench/filter_memory.py
	$(PY) bench/expert_throughput.py
	$(PY) bench/generator_throughput.py
	$(PY) bench/dub_throughput.py
	$(PY) bench/paste_back.py
	$(PY) bench/sync_validation.py --table $(SPEAKERS) --judge $(REALPOOL)/runs/lipsync/judge
	$(PY) bench/clip_offsets.py --root $(REALPOOL) --table $(SPEAKERS)
	$(PY) bench/dub_quality.py --generator $(REALPOOL)/runs/lipsync/$(GENERATOR_REAL) \
		$(if $(wildcard $(REALPOOL)/exports/realpool-generator-en),--bundle $(REALPOOL)/exports/realpool-generator-en)

clean-demo:
	rm -rf $(ROOT)/demo
