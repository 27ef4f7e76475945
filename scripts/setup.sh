#!/usr/bin/env bash
# Installs the npm packages (exact versions from package-lock.json) and builds the lingc bundle.
# onnxruntime-node's install step would download a CUDA provider from an unreachable host; the CPU
# library ships inside the package, so its download is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip
npm ci --no-audit --no-fund --loglevel=error
node scripts/build.mjs
