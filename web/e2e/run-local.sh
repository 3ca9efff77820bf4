#!/bin/sh
# Builds the client, starts a throw-away `coursechat serve --demo` on a fresh data dir, runs the
# e2e suite against it (restart test included) and stops the server.
#
#   COURSECHAT_BIN=/path/to/coursechat npm run e2e:local
set -eu
cd "$(dirname "$0")/.."
npm run build
E2E_DATA_DIR=${E2E_DATA_DIR:-$(mktemp -d /tmp/coursechat-e2e.XXXXXX)}
E2E_PORT=${E2E_PORT:-18391}
export E2E_DATA_DIR E2E_PORT
sh e2e/server.sh start
trap 'sh e2e/server.sh stop' EXIT INT TERM
export E2E_BASE_URL="http://127.0.0.1:$E2E_PORT"
export E2E_RESTART_CMD="sh e2e/server.sh restart"
export E2E_JWT_SECRET="$(cat "$E2E_DATA_DIR/demo-jwt-secret")"
node --test e2e/chat.test.mjs
