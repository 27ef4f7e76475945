#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need (system packages for
# WebGPU and the browser test, npm packages), type-checks, builds, runs vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-system-deps.sh
./scripts/setup.sh
npx tsc --noEmit -p .
npx vitest run
