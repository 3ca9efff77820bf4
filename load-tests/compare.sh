#!/usr/bin/env bash
# Side by side: coursechat against two peer servers implementing the same slice of the contract
# (load-tests/peers/: Node.js socket.io 4.8 and Rust socketioxide 0.18, both in memory), under
# the same coursechat-load runs. For every offered rate, each server is started fresh and driven
# with rate/5 student/tutor pairs (5 msg/s per student, 32-byte content). Recorded per row, from
# the generator's --json summary: delivered/s, send→deliver p99, and the server process's CPU
# time (utime + stime from /proc/<pid>/stat, sampled at the start and end of the measurement
# window) per delivered message. Then RSS per idle connected socket: two generator processes
# open N1, then N2 sockets in total with no sends to speak of, and the server's RSS growth is
# divided by the socket difference. Prints one markdown table (ratios against coursechat) and
# writes load-tests/results/{compare.md,compare.jsonl,p99.svg,cpu.svg}.
#
#   load-tests/compare.sh
#   RATES="2000 8000" DURATION=5 SERVERS="coursechat node" load-tests/compare.sh
#   CLUSTER=1 load-tests/compare.sh
#
# CLUSTER=1: each server as two nodes sharing one Redis (coursechat with CHAT_REDIS_URL and
# CHAT_MONGODB_URL, the peers with REDIS_URL), a private redis-server per row (appendonly yes,
# appendfsync always, data in the run's temporary directory) and the generator's sockets
# alternating between the nodes so that each chat's student and tutor are on different nodes and
# every delivery crosses Redis. Recorded per row, over the measurement window: delivered/s,
# p99, the CPU time of both nodes per delivery, Redis µs per message (the `usec` of INFO
# commandstats summed over all commands, which counts a script's nested commands twice: once in
# the EVALSHA, once under their own names), the Redis server's own CPU per message (INFO cpu,
# used_cpu_user + used_cpu_sys), Redis commands per message (the sum of `calls`), and the cores
# used. Writes load-tests/results/{cluster.md,cluster.jsonl} (not the single-node files); no RSS
# rows. coursechat needs a MongoDB: CHAT_TEST_MONGODB_URL if set, else one started for the run
# with scripts/mongodb-for-tests (under Wine, ~0.4 core, in "other"); each row gets its own
# database (compare-<run>-<rate>, left behind on a MongoDB you gave). RATES defaults to
# "1000 4000" there.
#
# Env: RATES (2000 8000 16000), DURATION (10, seconds measured), WARMUP (2), SERVERS (coursechat
# node socketioxide), RSS_SOCKETS ("1000 9000": the two socket counts; empty skips it),
# CONNECT_RATE (1000 sockets/s), RESULTS (load-tests/results), SKIP_BUILD (1: use what is built),
# COURSECHAT_BIN (target/release/coursechat), COURSECHAT_DATA (parent of coursechat's data dirs,
# e.g. /dev/shm to see what the disk's syncs cost; default: the run's temporary directory),
# CLUSTER (0; 1: the cluster mode above).
# Needs: cargo, node 20 + npm (for the Node peer), python3; redis-server and redis-cli for
# CLUSTER=1. Runs from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${CLUSTER:-0}
if [[ $cluster == 1 ]]; then default_rates="1000 4000"; else default_rates="2000 8000 16000"; fi
read -r -a rates <<<"${RATES:-$default_rates}"
read -r -a servers <<<"${SERVERS:-coursechat node socketioxide}"
read -r -a rss_sockets <<<"${RSS_SOCKETS-1000 9000}"
duration=${DURATION:-10} warmup=${WARMUP:-2} connect_rate=${CONNECT_RATE:-1000}
results=${RESULTS:-load-tests/results}
load=target/release/coursechat-load
coursechat_bin=${COURSECHAT_BIN:-target/release/coursechat}
sio_dir="load-tests/peers/socketioxide"
sio_bin=$sio_dir/target/release/peer-socketioxide
export CHAT_JWT_SECRET=compare-secret RUST_LOG=warn
tick=$(getconf CLK_TCK)
# Each generator process connects from its own loopback address, so sockets left in TIME_WAIT by
# one row never take the ephemeral ports of the next.
next_source=10

note() { echo "[compare] $*" >&2; }

for s in "${servers[@]}"; do
  case $s in coursechat | node | socketioxide) ;; *) note "unknown server $s (coursechat node socketioxide)"; exit 2 ;; esac
done
wants() { [[ " ${servers[*]} " == *" $1 "* ]]; }

if ! ulimit -n 20000 2>/dev/null; then
  note "warning: cannot raise the open-file limit to 20000 (now $(ulimit -n)); big rows may fail"
fi

# --- build -------------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  note "building coursechat and coursechat-load (release)"
  cargo build --release --workspace --quiet
  if wants socketioxide; then
    note "building the socketioxide peer (release, its own target dir)"
    cargo build --release --quiet --manifest-path "$sio_dir/Cargo.toml" --target-dir "$sio_dir/target"
  fi
  if wants node && [[ ! -d load-tests/peers/node/node_modules/@socket.io/redis-adapter ]]; then
    note "installing the Node peer's packages (npm ci)"
    (cd load-tests/peers/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi

mkdir -p "$results"
work=$(mktemp -d)
rows=$work/rows.jsonl
: >"$rows"
server_pid="" gen_pids=() data_dirs=() node_pids=() redis_pid="" mongo_started=""
cleanup() {
  for p in "${gen_pids[@]}" $server_pid "${node_pids[@]}" $redis_pid; do kill "$p" 2>/dev/null || true; done
  if [[ -n $mongo_started ]]; then scripts/mongodb-for-tests stop "$mongo_started" >/dev/null 2>&1 || true; fi
  rm -rf "$work" "${data_dirs[@]}"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }

# Sleeps until the Unix time $1 (fractions allowed); at once when it is past.
sleep_until() {
  local d
  d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", d < 0 ? 0 : d }')
  sleep "$d"
}

# Waits until file $1 has a line matching $2, while process $3 lives, at most $4 seconds.
wait_for() {
  local file=$1 pattern=$2 pid=$3 deadline
  deadline=$(awk -v n="$(now)" -v t="$4" 'BEGIN { printf "%.0f", n + t }')
  until grep -q "$pattern" "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 1
    (($(date +%s) < deadline)) || return 1
    sleep 0.02
  done
}

# utime + stime of process $1, in clock ticks (the fields after the parenthesised name); -1 once
# it is gone (a small run's generator can finish right at the end of its window).
cpu_ticks() { { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null || echo; } | awk '{ print NF ? $12 + $13 : -1 }'; }

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# Busy clock ticks of the whole machine (user nice system irq softirq steal), to tell how much
# else ran during a window: this machine is shared.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# Starts server $1 on port $2 with data dir $3; sets server_pid.
start_server() {
  local name=$1 port=$2 dir=$3
  case $name in
    coursechat)
      local data="$dir/data"
      if [[ -n ${COURSECHAT_DATA:-} ]]; then
        data=$(mktemp -d -p "$COURSECHAT_DATA")
        data_dirs+=("$data")
      fi
      "$coursechat_bin" serve --addr "127.0.0.1:$port" --data-dir "$data" >"$dir/server.log" 2>&1 &
      ;;
    node) node load-tests/peers/node/server.js --port "$port" >"$dir/server.log" 2>&1 & ;;
    socketioxide) "$sio_bin" --port "$port" >"$dir/server.log" 2>&1 & ;;
  esac
  server_pid=$!
  if ! wait_for "$dir/server.log" "listening on" "$server_pid" 20; then
    note "$name did not start:"
    cat "$dir/server.log" >&2
    exit 1
  fi
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# Starts a generator process: label, then its arguments; sets gen_pid, output in $work/<label>.*.
start_load() {
  local label=$1
  shift
  "$load" --source-ip "127.0.0.$next_source" --progress 0 --json "$@" >"$work/$label.json" 2>"$work/$label.err" &
  gen_pid=$!
  gen_pids+=("$gen_pid")
  next_source=$((next_source + 1))
}

# One row: server $1 at $2 msg/s.
run_rate() {
  local name=$1 rate=$2 dir port pairs label t c0 c1 t0 t1 g0=0 g1=0 m0=0 m1=0 cpu_window=1
  dir=$(mktemp -d -p "$work") port=$(free_port) pairs=$((rate / 5)) label="$name-$rate"
  start_server "$name" "$port" "$dir"
  local c_start
  c_start=$(cpu_ticks "$server_pid")
  note "$name at $rate msg/s: $pairs pairs, $((2 * pairs)) sockets"
  start_load "$label" --url "http://127.0.0.1:$port" --pairs "$pairs" --rate "$rate" --content-size 32 \
    --duration "$duration" --warmup "$warmup" --connect-rate "$connect_rate"
  # The generator starts sending 0.2 s after it prints that every socket is connected, and
  # measures from `warmup` seconds later: sample the server's CPU on those instants.
  if wait_for "$work/$label.err" "sockets connected" "$gen_pid" 300; then
    t=$(now)
    sleep_until "$(awk -v t="$t" -v w="$warmup" 'BEGIN { printf "%.3f", t + 0.2 + w }')"
    c0=$(cpu_ticks "$server_pid") g0=$(cpu_ticks "$gen_pid") m0=$(machine_ticks) t0=$(now)
    sleep_until "$(awk -v t="$t" -v w="$warmup" -v d="$duration" 'BEGIN { printf "%.3f", t + 0.2 + w + d }')"
    c1=$(cpu_ticks "$server_pid") g1=$(cpu_ticks "$gen_pid") m1=$(machine_ticks) t1=$(now)
  else
    cpu_window=0
  fi
  wait "$gen_pid" || true
  if ((cpu_window == 0)); then
    # No connect line (the run failed early): the whole run's CPU, marked as such.
    c0=$c_start c1=$(cpu_ticks "$server_pid") t0=0 t1=0
  fi
  stop_server
  python3 load-tests/peers/report.py row --server "$name" --rate "$rate" --pairs "$pairs" \
    --summary "$work/$label.json" --stderr "$work/$label.err" --cpu-ticks "$((c1 - c0))" --tick "$tick" \
    --cpu-seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" --cpu-window "$cpu_window" \
    --load-ticks "$((g1 < 0 ? -1 : g1 - g0))" --other-ticks "$((g1 < 0 ? -1 : m1 - m0 - (c1 - c0) - (g1 - g0)))" \
    >>"$rows"
}

# RSS per idle connected socket for server $1: N1 sockets from one generator process, then
# N2 - N1 more from a second one; both send one message in all (the rate cannot be 0).
run_rss() {
  local name=$1 n1=${rss_sockets[0]} n2=${rss_sockets[1]} dir port prefix r0 r1 r2 r3 a b
  dir=$(mktemp -d -p "$work") port=$(free_port) prefix="rss$RANDOM"
  start_server "$name" "$port" "$dir"
  sleep 1
  r0=$(rss_kb "$server_pid")
  note "$name: RSS with $n1, then $n2 idle sockets"
  local common=(--url "http://127.0.0.1:$port" --prefix "$prefix" --rate 0.01 --warmup 0 --duration 600
    --connect-rate "$connect_rate")
  start_load "$name-rss-a" "${common[@]}" --shard 0 --pairs $((n1 / 2))
  a=$gen_pid
  wait_for "$work/$name-rss-a.err" "sockets connected" "$a" 300 || { note "rss: first process failed"; cat "$work/$name-rss-a.err" >&2; exit 1; }
  sleep 3
  r1=$(rss_kb "$server_pid")
  start_load "$name-rss-b" "${common[@]}" --shard 1 --pairs $(((n2 - n1) / 2))
  b=$gen_pid
  wait_for "$work/$name-rss-b.err" "fixtures ready" "$b" 300 || { note "rss: second process failed"; cat "$work/$name-rss-b.err" >&2; exit 1; }
  r2=$(rss_kb "$server_pid")
  wait_for "$work/$name-rss-b.err" "sockets connected" "$b" 300 || { note "rss: second process failed"; cat "$work/$name-rss-b.err" >&2; exit 1; }
  sleep 3
  r3=$(rss_kb "$server_pid")
  local connected_a connected_b
  connected_a=$(sed -n 's/.* \([0-9]*\)\/[0-9]* sockets connected.*/\1/p' "$work/$name-rss-a.err")
  connected_b=$(sed -n 's/.* \([0-9]*\)\/[0-9]* sockets connected.*/\1/p' "$work/$name-rss-b.err")
  kill "$a" "$b" 2>/dev/null || true
  wait "$a" "$b" 2>/dev/null || true
  stop_server
  python3 load-tests/peers/report.py rss --server "$name" --rss-kb "$r0" "$r1" "$r2" "$r3" \
    --sockets "$connected_a" "$((connected_a + connected_b))" >>"$rows"
}

# --- cluster mode (CLUSTER=1) -------------------------------------------------------------------

# Starts a private redis-server for one row, its data in dir $1; sets redis_pid and redis_port.
start_redis() {
  local dir=$1/redis
  mkdir -p "$dir"
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
    --dir "$dir" --logfile "$dir/redis.log" &
  redis_pid=$!
  for _ in $(seq 100); do
    [[ $(redis-cli -p "$redis_port" ping 2>/dev/null) == PONG ]] && return 0
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.05
  done
  note "redis-server did not start:"
  cat "$dir/redis.log" >&2
  exit 1
}

stop_redis() {
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=""
}

# The counters a row divides by its messages: every command's calls and usec, and Redis's CPU.
redis_counters() {
  { redis-cli -p "$redis_port" info commandstats; redis-cli -p "$redis_port" info cpu; } | tr -d '\r' >"$1"
}

# `$1` (a MongoDB URL) naming database $2 instead of whatever it named.
with_database() {
  local url=$1 db=$2 scheme rest hosts query=""
  scheme=${url%%://*} rest=${url#*://}
  hosts=${rest%%/*}
  [[ $url == *\?* ]] && query="?${url#*\?}"
  echo "$scheme://$hosts/$db$query"
}

# Starts node $3 (1 or 2) of server $1 on port $2, with the row's dir $4 and database name $5;
# appends its pid to node_pids.
start_node() {
  local name=$1 port=$2 i=$3 dir=$4 db=$5 redis_url="redis://127.0.0.1:$redis_port" log=$4/node-$3.log
  case $name in
    coursechat)
      local data="$dir/node-$i-data"
      if [[ -n ${COURSECHAT_DATA:-} ]]; then
        data=$(mktemp -d -p "$COURSECHAT_DATA")
        data_dirs+=("$data")
      fi
      CHAT_REDIS_URL=$redis_url CHAT_MONGODB_URL=$(with_database "$mongo_url" "$db") CHAT_NODE_ID="node-$i" \
        CHAT_DRAIN_SECONDS=1 "$coursechat_bin" serve --addr "127.0.0.1:$port" --data-dir "$data" >"$log" 2>&1 &
      ;;
    node) REDIS_URL=$redis_url node load-tests/peers/node/server.js --port "$port" >"$log" 2>&1 & ;;
    socketioxide) REDIS_URL=$redis_url "$sio_bin" --port "$port" >"$log" 2>&1 & ;;
  esac
  local pid=$!
  node_pids+=("$pid")
  if ! wait_for "$log" "listening on" "$pid" 60; then
    note "$name node $i did not start:"
    cat "$log" >&2
    exit 1
  fi
}

stop_nodes() {
  local p
  for p in "${node_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${node_pids[@]}"; do
    for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  node_pids=()
}

# utime + stime of every node, in clock ticks; -1 when one is gone.
nodes_ticks() {
  local total=0 p t
  for p in "${node_pids[@]}"; do
    t=$(cpu_ticks "$p")
    ((t < 0)) && { echo -1; return; }
    total=$((total + t))
  done
  echo "$total"
}

# One cluster row: server $1 at $2 msg/s, two nodes on a fresh Redis.
run_cluster_rate() {
  local name=$1 rate=$2 dir pairs label t c0 c1 g0=0 g1=0 m0=0 m1=0 r0=0 r1=0 t0 t1 cpu_window=1 p1 p2
  dir=$(mktemp -d -p "$work") pairs=$((rate / 5)) label="cluster-$name-$rate"
  start_redis "$dir"
  p1=$(free_port) p2=$(free_port)
  while [[ $p2 == "$p1" ]]; do p2=$(free_port); done
  start_node "$name" "$p1" 1 "$dir" "compare-$run_id-$rate"
  start_node "$name" "$p2" 2 "$dir" "compare-$run_id-$rate"
  local c_start
  c_start=$(nodes_ticks)
  note "$name (2 nodes, redis :$redis_port) at $rate msg/s: $pairs pairs, $((2 * pairs)) sockets"
  start_load "$label" --url "http://127.0.0.1:$p1,http://127.0.0.1:$p2" --pairs "$pairs" --rate "$rate" \
    --content-size 32 --duration "$duration" --warmup "$warmup" --connect-rate "$connect_rate"
  if wait_for "$work/$label.err" "sockets connected" "$gen_pid" 300; then
    t=$(now)
    sleep_until "$(awk -v t="$t" -v w="$warmup" 'BEGIN { printf "%.3f", t + 0.2 + w }')"
    c0=$(nodes_ticks) g0=$(cpu_ticks "$gen_pid") r0=$(cpu_ticks "$redis_pid") m0=$(machine_ticks) t0=$(now)
    redis_counters "$dir/redis-before.txt"
    sleep_until "$(awk -v t="$t" -v w="$warmup" -v d="$duration" 'BEGIN { printf "%.3f", t + 0.2 + w + d }')"
    c1=$(nodes_ticks) g1=$(cpu_ticks "$gen_pid") r1=$(cpu_ticks "$redis_pid") m1=$(machine_ticks) t1=$(now)
    redis_counters "$dir/redis-after.txt"
  else
    cpu_window=0
    redis_counters "$dir/redis-before.txt"
    cp "$dir/redis-before.txt" "$dir/redis-after.txt"
  fi
  wait "$gen_pid" || true
  if ((cpu_window == 0)); then
    c0=$c_start c1=$(nodes_ticks) t0=0 t1=0
  fi
  stop_nodes
  stop_redis
  local other=-1
  ((g1 >= 0)) && other=$((m1 - m0 - (c1 - c0) - (g1 - g0) - (r1 - r0)))
  python3 load-tests/peers/report.py cluster-row --server "$name" --rate "$rate" --pairs "$pairs" \
    --summary "$work/$label.json" --stderr "$work/$label.err" --cpu-ticks "$((c1 - c0))" --tick "$tick" \
    --cpu-seconds "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" --cpu-window "$cpu_window" \
    --load-ticks "$((g1 < 0 ? -1 : g1 - g0))" --other-ticks "$other" --redis-ticks "$((r1 - r0))" \
    --redis-before "$dir/redis-before.txt" --redis-after "$dir/redis-after.txt" >>"$rows"
}

if [[ $cluster == 1 ]]; then
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { note "CLUSTER=1 needs redis-server and redis-cli"; exit 2; }
  run_id=$(date +%s)
  mongo_url=""
  if wants coursechat; then
    if [[ -n ${CHAT_TEST_MONGODB_URL:-} ]]; then
      mongo_url=$CHAT_TEST_MONGODB_URL
    else
      note "starting a MongoDB for coursechat (scripts/mongodb-for-tests)"
      mongo_url=$(scripts/mongodb-for-tests start)
      mongo_started=$mongo_url
    fi
  fi
  for rate in "${rates[@]}"; do
    for name in "${servers[@]}"; do
      run_cluster_rate "$name" "$rate"
    done
  done
  cp "$rows" "$results/cluster.jsonl"
  python3 load-tests/peers/report.py cluster-render --rows "$results/cluster.jsonl" --out "$results" \
    --command "CLUSTER=1 RATES=\"${rates[*]}\" DURATION=$duration WARMUP=$warmup SERVERS=\"${servers[*]}\" load-tests/compare.sh"
  exit 0
fi

# --- single-node mode ----------------------------------------------------------------------------

for rate in "${rates[@]}"; do
  for name in "${servers[@]}"; do
    run_rate "$name" "$rate"
  done
done
if ((${#rss_sockets[@]} == 2)); then
  for name in "${servers[@]}"; do
    run_rss "$name"
  done
fi

cp "$rows" "$results/compare.jsonl"
python3 load-tests/peers/report.py render --rows "$results/compare.jsonl" --out "$results" \
  --command "RATES=\"${rates[*]}\" DURATION=$duration WARMUP=$warmup SERVERS=\"${servers[*]}\" RSS_SOCKETS=\"${rss_sockets[*]}\" load-tests/compare.sh"
