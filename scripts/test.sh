#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need, type-checks, runs vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npx tsc --noEmit -p .
npx vitest run
