#!/usr/bin/env node
// Launcher: source maps on (so provenance in IR dumps names models/*.ts, not the bundle), then the CLI.
process.setSourceMapsEnabled(true);
await import("../dist/lingc.mjs");
