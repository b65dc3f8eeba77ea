#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) once, in the new environment, after envs/qsmvbm.yaml is built:
# install the workflow's own package, qsmvbm, from this checkout (editable, no dependencies: the
# environment file pins them), so that the rules' scripts import it as an installed package.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python -m pip install --no-deps --no-build-isolation --editable "$repo"
