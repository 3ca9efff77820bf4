#!/bin/sh
# Starts, stops or restarts a local `coursechat serve --demo` for the e2e suite.
#
#   e2e/server.sh start|stop|restart
#
# Settings (environment):
#   COURSECHAT_BIN   the server binary       (default: ../target/debug/coursechat from web/)
#   E2E_PORT         port on 127.0.0.1       (default: 18391)
#   E2E_DATA_DIR     data dir, kept across restarts so messages and the demo secret survive
#                    (default: /tmp/coursechat-e2e)
#   E2E_WEB_DIR      built client to serve   (default: web/dist)
#
# `restart` returns once the new server answers /healthz, so it can be E2E_RESTART_CMD.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
WEB=$(cd "$HERE/.." && pwd)
BIN=${COURSECHAT_BIN:-$WEB/../target/debug/coursechat}
PORT=${E2E_PORT:-18391}
DATA=${E2E_DATA_DIR:-/tmp/coursechat-e2e}
WEBDIR=${E2E_WEB_DIR:-$WEB/dist}
PIDFILE=$DATA/server.pid
LOG=$DATA/server.log

start() {
  mkdir -p "$DATA"
  if [ -f "$PIDFILE" ] && ours "$(cat "$PIDFILE")"; then
    echo "already running (pid $(cat "$PIDFILE"))"
    return 0
  fi
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
    echo "something else already answers on port $PORT; choose another E2E_PORT" >&2
    return 1
  fi
  nohup "$BIN" serve --demo --addr "127.0.0.1:$PORT" --data-dir "$DATA" --web-dir "$WEBDIR" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  i=0
  while [ $i -lt 100 ]; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "coursechat exited; see $LOG" >&2
      tail -20 "$LOG" >&2 || true
      rm -f "$PIDFILE"
      return 1
    fi
    if curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
      echo "coursechat up on http://127.0.0.1:$PORT (pid $(cat "$PIDFILE"), log $LOG)"
      return 0
    fi
    i=$((i + 1))
    sleep 0.1
  done
  echo "coursechat did not answer /healthz within 10 s; see $LOG" >&2
  return 1
}

# True when $1 is the server this script started (not a reused pid).
ours() {
  kill -0 "$1" 2>/dev/null && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "--data-dir $DATA"
}

stop() {
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    if ours "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      i=0
      while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do
        i=$((i + 1))
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  *) echo "usage: $0 start|stop|restart" >&2; exit 2 ;;
esac
