#!/usr/bin/env bash
# Fetch the raw Debian and PyPI packages that `bioprune build-resources` extracts data from.
# Usage: workflow_scripts/fetch_raw.sh RAW_DIR   (needs apt-get (root) and pip; about 1 GB on disk)
set -euo pipefail
RAW=${1:?usage: fetch_raw.sh RAW_DIR}
PY=${PYTHON:-python3}
mkdir -p "$RAW"/{deb,x,pip,fa}
cd "$RAW"
if ! command -v blastdbcmd >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ncbi-blast+ >/dev/null
fi
(cd deb && apt-get download -qq ncbi-rrna-data infernal optimir metastudent-data)
for f in deb/*.deb; do n=$(basename "$f"); n=${n%%_*}; mkdir -p "x/$n"; dpkg -x "$f" "x/$n"; done
"$PY" -m pip download -q --no-deps -d pip rna-tools==3.28 mimseq==1.3.11
unzip -q -o pip/rna_tools-3.28-*.whl 'rna_tools/tools/rna_alignment/test_data/*' -d x/rna_tools
unzip -q -o pip/mimseq-1.3.11-*.whl 'mimseq/data/*' -d x/mimseq
D=x/ncbi-rrna-data/usr/share/ncbi/data
blastdbcmd -db $D/Combined16SrRNA -entry all -outfmt '%f' > fa/ncbi_combined_rrna.fa
M=x/metastudent-data/usr/share/metastudent-data/dataset_201401
for o in MFO BPO CCO; do blastdbcmd -db $M/$o/goasp.fasta -entry all -outfmt '%f' > fa/swissprot2014_$o.fa; done
ls -l fa deb pip > versions.txt
dpkg-deb -f deb/ncbi-rrna-data_*.deb Package Version >> versions.txt
echo "raw data ready in $RAW"
