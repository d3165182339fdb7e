#!/usr/bin/env bash
# The benchmark suite (make bench) and the Redis comparison (make bench-redis): starts its own
# parleyd (and redis-server) on 127.0.0.1 with temp data dirs, stops them on any exit, and
# prints one table of measured figures and ratios.

# usage: bench/run.sh suite|redis [BUILD_DIR]
# Scale with BENCH_EVENTS (ingest and limit runs), BENCH_MESSAGE_EVENTS (message mode),
# BENCH_QUERY_EVENTS (the store the queries read), BENCH_QUERIES (requests per op) and
# BENCH_QUERY_WARMUP (untimed requests of the same op before them).
set -euo pipefail

what=${1:-suite}
build=${2:-build}
pb=$build/parley-bench
pd=$build/parleyd
events=${BENCH_EVENTS:-1000000}
msg_events=${BENCH_MESSAGE_EVENTS:-$((events / 10))}
query_events=${BENCH_QUERY_EVENTS:-10000000}
queries=${BENCH_QUERIES:-5000}
warmup=${BENCH_QUERY_WARMUP:-2000}
cores=$(nproc 2>/dev/null || echo "?")

for f in "$pb" "$pd"; do
  [ -x "$f" ] || { echo "run.sh: $f is missing; run make first" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/parley-bench.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 1; }

# A field of the closing JSON line of a parley-bench run: json NAME KEY
json() { sed -n 's/.*"'"$2"'":\([^,}]*\).*/\1/p' "$tmp/$1.out" | tail -1; }

# bench NAME ARGS...: runs parley-bench, keeps its output in $tmp/NAME.out, echoes the
# human-readable part to stderr.
bench() {
  local name=$1
  shift
  log "  parley-bench $*"
  if ! "$pb" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"; then
    cat "$tmp/$name.err" "$tmp/$name.out" >&2
    die "parley-bench $1 failed"
  fi
  { grep -v '^{' "$tmp/$name.out" || true; } | sed 's/^/    /' >&2
}

# CPU time parleyd has used so far, in clock ticks (utime + stime).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pd_pid/stat"; }
# pd_bench NAME ARGS...: bench, and parleyd's CPU seconds over it into $tmp/NAME.cpu.
pd_bench() {
  local c0 c1
  c0=$(cpu_ticks)
  bench "$@"
  c1=$(cpu_ticks)
  awk -v t="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }' > "$tmp/$1.cpu"
}
# "12.3 us/event, 45% of a core": cpu_per NAME [EXTRA]; EXTRA untimed requests (a warm-up)
# used CPU too, without adding to the run's seconds.
cpu_per() {
  awk -v c="$(cat "$tmp/$1.cpu")" -v n="$(json "$1" events)" -v s="$(json "$1" seconds)" \
    -v x="${2:-0}" \
    'BEGIN { printf "%.1f us/event, %.0f%% of a core", 1e6 * c / (n + x), 100 * c * n / (n + x) / s }'
}

# kB of a /proc/PID/status field: status_kb PID FIELD
status_kb() { sed -n "s/^$2:[[:space:]]*\\([0-9]*\\).*/\\1/p" "/proc/$1/status" 2>/dev/null; }

# start_parleyd DIR SYNC: sets pd_pid, pd_ingest, pd_query.
start_parleyd() {
  local dir=$1 sync=$2 i
  "$pd" --data-dir "$dir" --sync "$sync" --listen 127.0.0.1:0 --query-listen 127.0.0.1:0 \
    --http-listen none --log-level info 2> "$dir.log" &
  pd_pid=$!
  pids+=("$pd_pid")
  for i in $(seq 300); do
    grep -q ' ready: ' "$dir.log" 2>/dev/null && break
    kill -0 "$pd_pid" 2>/dev/null || { cat "$dir.log" >&2; die "parleyd exited"; }
    sleep 0.1
  done
  grep -q ' ready: ' "$dir.log" || { cat "$dir.log" >&2; die "parleyd is not ready"; }
  pd_ingest=$(sed -n 's/.* ready: ingest \([^ ]*\) .*/\1/p' "$dir.log")
  pd_query=$(sed -n 's/.* ready: .* query \([^ ]*\) .*/\1/p' "$dir.log")
  # The kernel keeps a peak for the whole RSS only (VmHWM, which counts the LMDB map's
  # file pages too), so the anonymous part (heap, stacks) is sampled for its peak. Only
  # shell builtins run in the loop (read on a FIFO that never has data is the 100 ms
  # sleep): a process started ten times a second took a core from the queries being timed
  # often enough to show in their p99.
  [ -p "$tmp/tick" ] || mkfifo "$tmp/tick"
  (
    exec 3<> "$tmp/tick"
    peak=0
    while kill -0 "$pd_pid" 2>/dev/null; do
      a=
      while read -r k v _; do
        if [ "$k" = RssAnon: ]; then a=$v; break; fi
      done < "/proc/$pd_pid/status" 2>/dev/null || true
      if [ -n "$a" ] && [ "$a" -gt "$peak" ]; then
        peak=$a
        echo "$peak" > "$dir.anon"
      fi
      read -r -t 0.1 -u 3 _ || true
    done
  ) &
  pids+=("$!")
}

# stop_parleyd DIR: stops it; writes "VmHWM_kB peak_RssAnon_kB" to DIR.mem.
stop_parleyd() {
  local hwm
  hwm=$(status_kb "$pd_pid" VmHWM)
  kill -TERM "$pd_pid"
  wait "$pd_pid" 2>/dev/null || true
  echo "${hwm:-0} $(cat "$1.anon" 2>/dev/null || echo 0)" > "$1.mem"
}

pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
ms() { awk -v v="$1" 'BEGIN { if (v == "null" || v == "") print "-"; else printf "%.3f ms", v }'; }
count() {
  awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""
    while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
    print s o }'
}
row() { printf '| %-58s | %-34s | %-17s |\n' "$1" "$2" "${3:-}"; }
header() {
  row "$1" "$2" "$3"
  printf '|%s|%s|%s|\n' "$(printf -- '-%.0s' $(seq 60))" "$(printf -- '-%.0s' $(seq 36))" \
    "$(printf -- '-%.0s' $(seq 19))"
}
machine() {
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $cores cores, $(uname -sr)," \
    "load average at start $load0, wall $((SECONDS - t0)) s"
}

# ---- parts both runs share ----

run_limit() {
  log "storage limit: $events records straight into the store, fsync'd commits of 10,000"
  bench limit limit --dir "$tmp/limit" --events "$events" --batch 10000 --sync full
  rm -rf "$tmp/limit"
}

run_packed() {
  log "packed ingest: $events records, 1,000 a message, 4 connections, acks, --sync full"
  start_parleyd "$tmp/packed" full
  pd_bench packed ingest --addr "$pd_ingest" --events "$events" --mode packed --batch 1000 \
    --conns 4 --window 8 --ack
  stop_parleyd "$tmp/packed"
  rm -rf "$tmp/packed"
}

# ---- make bench ----

suite() {
  local op hwm anon v
  log "parley benchmark suite: $cores cores, BENCH_EVENTS=$events" \
    "BENCH_MESSAGE_EVENTS=$msg_events BENCH_QUERY_EVENTS=$query_events BENCH_QUERIES=$queries" \
    "BENCH_QUERY_WARMUP=$warmup"
  run_limit
  run_packed

  # One message in flight per connection, as fluent-logger waits for each ack: the latency
  # is then the daemon's, not a client queue's.
  log "message-mode ingest: $msg_events records, one a message, 64 connections, acks"
  start_parleyd "$tmp/message" full
  pd_bench message ingest --addr "$pd_ingest" --events "$msg_events" --mode message \
    --conns 64 --window 1 --ack
  stop_parleyd "$tmp/message"
  rm -rf "$tmp/message"

  # Ten years of dates, as the query targets are stated for (10M events over 10 years).
  local per_day=$(((query_events + 3652) / 3653))
  log "query store: $query_events records over ten years through the store module (--sync none, untimed)"
  bench qstore limit --dir "$tmp/qstore" --events "$query_events" --batch 10000 --sync none \
    --per-day "$per_day" --quiet
  # The build wrote ~6 GB without fsync: flush it now, untimed, or the kernel's writeback of
  # it runs during the queries and its I/O and CPU show up in their latency.
  log "query store: flushing it to disk (untimed)"
  sync "$tmp/qstore/data.mdb"
  start_parleyd "$tmp/qstore" full
  # Latency over the socket with pipelining off: one connection, one request at a time.
  for op in activity top series pair; do
    log "query $op: $warmup untimed, then $queries timed requests, 1 connection, one outstanding"
    pd_bench "q_$op" query --addr "$pd_query" --op "$op" --n "$queries" --warmup "$warmup" \
      --conns 1
  done
  stop_parleyd "$tmp/qstore"

  hwm=0 anon=0
  for v in packed message qstore; do
    read -r h a < "$tmp/$v.mem"
    [ "$h" -gt "$hwm" ] && hwm=$h
    [ "$a" -gt "$anon" ] && anon=$a
  done

  local limit packed message
  limit=$(json limit events_per_s) packed=$(json packed events_per_s)
  message=$(json message events_per_s)
  echo
  echo "parley benchmark: $(machine)"
  echo
  header "measurement" "figure" "target"
  row "storage limit: in-process commits of 10,000, fsync" "$(count "$limit") ev/s"
  row "  commit CPU; bytes LMDB wrote a record" \
    "$(sed -n 's/.*commit CPU [^(]*(\([^)]*\)).*/\1/p' "$tmp/limit.out"); $(sed -n \
    's/.*at commit: \([0-9]*\) bytes a record.*/\1/p' "$tmp/limit.out") B"
  row "ingest packed: 1,000/msg, 4 conns, acks, fsync" "$(count "$packed") ev/s" \
    ">= 1,000,000 ev/s"
  row "  ratio to the storage limit" "$(pct "$packed" "$limit")" ">= 75%"
  row "  ack latency p50 / p99" "$(ms "$(json packed p50_ms)") / $(ms "$(json packed p99_ms)")"
  row "  parleyd CPU" "$(cpu_per packed)"
  row "ingest message mode: 1/msg, 64 conns x 1 in flight, acks" "$(count "$message") ev/s"
  row "  ratio to the storage limit" "$(pct "$message" "$limit")"
  row "  ack latency p99" "$(ms "$(json message p99_ms)")" "< 10 ms"
  row "  ack latency p50 / p99.9" \
    "$(ms "$(json message p50_ms)") / $(ms "$(json message p999_ms)")"
  row "  parleyd CPU" "$(cpu_per message)"
  for op in activity top series pair; do
    local target label fig
    case $op in
      activity) target="< 0.5 ms" label="activity (window 365)" ;;
      top) target="< 5 ms" label="top (window 30)" ;;
      series) target="< 1 ms" label="series (one institution, a year by day)" ;;
      pair) target="< 1 ms" label="pair (whole range)" ;;
    esac
    row "query $label p99" "$(ms "$(json "q_$op" p99_ms)")" "$target"
    fig="$(ms "$(json "q_$op" p50_ms)") / $(ms "$(json "q_$op" p999_ms)")"
    row "  p50 / p99.9; queries/s (1 conn)" "$fig; $(count "$(json "q_$op" events_per_s)")"
    # CPU time per query does not count time spent waiting for a core, which on a shared
    # machine is most of a high percentile.
    row "  parleyd CPU" "$(cpu_per "q_$op" "$warmup" | sed 's|us/event|us/query|')"
  done
  row "parleyd peak RSS (VmHWM; counts LMDB map pages)" "$(mib "$hwm")"
  row "parleyd peak RssAnon (outside the LMDB map)" "$(mib "$anon")" "< 100 MiB"
  echo
  echo "Queries read a store of $(count "$query_events") events over ten years; each op is timed" \
    "after $(count "$warmup") untimed requests of its own. Closing JSON lines:"
  for v in limit packed message q_activity q_top q_series q_pair; do
    printf '  %-11s %s\n' "$v" "$(tail -1 "$tmp/$v.out")"
  done
}

# ---- make bench-redis ----

start_redis() {
  local dir=$1 i
  shift
  mkdir -p "$dir"
  redis_port=$("$pb" free-port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir" --daemonize no \
    --protected-mode yes --logfile "$dir/redis.log" "$@" &
  redis_pid=$!
  pids+=("$redis_pid")
  for i in $(seq 100); do
    redis-cli -p "$redis_port" ping > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$dir/redis.log" >&2
  die "redis-server did not start"
}

stop_redis() {
  kill -TERM "$redis_pid"
  wait "$redis_pid" 2>/dev/null || true
}

redis_suite() {
  local aof mem packed
  command -v redis-server > /dev/null || die "redis-server is missing: make deps-bench"
  "$pb" redis --help > /dev/null 2>&1 ||
    die "parley-bench was built without hiredis: make deps-bench, then make again"
  log "Redis comparison: $cores cores, BENCH_EVENTS=$events"
  run_packed
  log "redis, appendonly yes + appendfsync always: $events events, XADD + 2 HINCRBY each"
  start_redis "$tmp/redis-aof" --save "" --appendonly yes --appendfsync always
  bench redis_aof redis --addr "127.0.0.1:$redis_port" --events "$events" --conns 4 \
    --pipeline 1000
  stop_redis
  rm -rf "$tmp/redis-aof"
  log "redis, persistence off (save \"\", appendonly no)"
  start_redis "$tmp/redis-mem" --save "" --appendonly no
  bench redis_mem redis --addr "127.0.0.1:$redis_port" --events "$events" --conns 4 \
    --pipeline 1000
  stop_redis
  packed=$(json packed events_per_s) aof=$(json redis_aof events_per_s)
  mem=$(json redis_mem events_per_s)
  echo
  echo "parley vs Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'): $(machine)"
  echo
  header "measurement" "events/s" "parley / this"
  row "parley packed ingest: 1,000/msg, 4 conns, acks, fsync" "$(count "$packed")"
  row "redis XADD + 2 HINCRBY, pipelined, appendfsync always" "$(count "$aof")" \
    "$(pct "$packed" "$aof")"
  row "redis XADD + 2 HINCRBY, pipelined, no persistence" "$(count "$mem")" \
    "$(pct "$packed" "$mem")"
  echo
  echo "Closing JSON lines:"
  for v in packed redis_aof redis_mem; do
    printf '  %-10s %s\n' "$v" "$(tail -1 "$tmp/$v.out")"
  done
}

t0=$SECONDS
load0=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
case $what in
  suite) suite ;;
  redis) redis_suite ;;
  *) die "usage: bench/run.sh suite|redis [BUILD_DIR]" ;;
esac
