#!/usr/bin/env bash
# Runs the Node.js compatibility + contract suites against a coursechat binary.
# COURSECHAT_BIN: the binary to test (default: ../../target/debug/coursechat relative to this script).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${COURSECHAT_BIN:-$here/../../target/debug/coursechat}"
case "$bin" in /*) ;; *) bin="$(pwd)/$bin" ;; esac
if [ ! -x "$bin" ]; then
  echo "coursechat binary not found or not executable: $bin" >&2
  exit 2
fi
export COURSECHAT_BIN="$bin"
cd "$here" || exit 2
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund || exit $?
fi
npm test
exit $?
