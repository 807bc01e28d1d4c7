#!/usr/bin/env node
// Thin launcher: the compiled CLI lives in dist/ (`npm run build`, run by `npm start`).
import '../dist/src/cli/entry.js';
