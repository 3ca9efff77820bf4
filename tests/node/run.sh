#!/usr/bin/env bash
# Runs the Node.js compatibility + contract suites against a coursechat binary.
# COURSECHAT_BIN: the binary to test (default: ../../target/debug/coursechat relative to this script).
#
# Cluster mode: COURSECHAT_CLUSTER_NODES=N (2 or more; 1 runs one node of the Redis engine) makes
# every server the suites start N `coursechat serve` processes sharing one Redis key prefix and one
# MongoDB database; sockets and REST calls alternate between the nodes (see helpers.mjs).
#   CHAT_TEST_REDIS_URL    Redis for the nodes (default redis://127.0.0.1:6379)
#   CHAT_TEST_MONGODB_URL  MongoDB for the nodes (each started cluster gets a database of its own);
#                          unset: scripts/mongodb-for-tests starts one for the run and stops it after
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

nodes="${COURSECHAT_CLUSTER_NODES:-}"
if [ -z "$nodes" ] || [ "$nodes" = 0 ]; then
  npm test
  exit $?
fi

case "$nodes" in
  *[!0-9]*) echo "COURSECHAT_CLUSTER_NODES must be a number, got '$nodes'" >&2; exit 2 ;;
esac
redis_url="${CHAT_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
if ! command -v redis-cli >/dev/null 2>&1; then
  echo "cluster mode needs redis-cli (to check Redis and delete each cluster's keys)" >&2
  exit 2
fi
if ! redis-cli -u "$redis_url" PING 2>/dev/null | grep -q PONG; then
  echo "cluster mode: Redis at $redis_url does not answer PING (set CHAT_TEST_REDIS_URL)" >&2
  exit 2
fi
echo "cluster mode: $nodes nodes per server, Redis $redis_url, MongoDB ${CHAT_TEST_MONGODB_URL:-(started by scripts/mongodb-for-tests)}"
if [ -n "${CHAT_TEST_MONGODB_URL:-}" ]; then
  npm test
  exit $?
fi
"$here/../../scripts/mongodb-for-tests" run -- npm test
exit $?
