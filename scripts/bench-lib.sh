# Shared helpers of scripts/bench-backup and scripts/bench-restore (sourced, not run).
#
# Environment:
#   BENCH_DIR   work directory (default /tmp/d1vault-bench): the generated database, dumps, stores
#   BENCH_ROWS  rows in the generated database (default 3500000: a D1-format dump of about 1.15 GB)
#   BENCH_D1VAULT  a prebuilt d1vault binary to measure instead of building target/release/d1vault
# Needs: sqlite3, zstd, curl, jq, GNU time (/usr/bin/time). Generated data is never committed.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/d1vault-bench}
BENCH_ROWS=${BENCH_ROWS:-3500000}
MIN_DUMP_BYTES=$((1024 * 1024 * 1024))
D1VAULT=${BENCH_D1VAULT:-$REPO/target/release/d1vault}
EMULATOR="$REPO/target/release/d1-emulator"
ACCOUNT_ID=0123456789abcdef0123456789abcdef
API_TOKEN=test-token

die() { echo "${0##*/}: $*" >&2; exit 1; }

need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install $tool)"
    done
    [ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
}

# Builds the release binaries named (cargo does nothing when they are fresh).
build_release() {
    local args=() bin
    for bin in "$@"; do
        [ "$bin" = d1vault ] && [ -n "${BENCH_D1VAULT:-}" ] && continue
        args+=(--bin "$bin")
    done
    [ ${#args[@]} -gt 0 ] || return 0
    echo "== building (release): ${args[*]}" >&2
    (cd "$REPO" && CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2} cargo build --release --quiet --workspace "${args[@]}")
}

# Creates $BENCH_DIR/d1/bench.sqlite with $BENCH_ROWS rows, unless it exists with that many.
generate_database() {
    local db="$BENCH_DIR/d1/bench.sqlite"
    mkdir -p "$BENCH_DIR/d1"
    if [ -f "$db" ] && [ "$(sqlite3 "$db" 'SELECT count(*) FROM events' 2>/dev/null)" = "$BENCH_ROWS" ]; then
        return
    fi
    echo "== generating $db ($BENCH_ROWS rows)" >&2
    rm -f "$db"
    sed "s/:rows/$BENCH_ROWS/" "$REPO/scripts/bench-gen.sql" | sqlite3 "$db"
}

# Runs "$@" under GNU time; sets TIME_WALL (seconds) and TIME_RSS_KIB from its report in $TIME_LOG.
timed() {
    TIME_LOG=$(mktemp "$BENCH_DIR/time.XXXXXX")
    /usr/bin/time -v -o "$TIME_LOG" "$@"
    TIME_WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$TIME_LOG")
    TIME_RSS_KIB=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$TIME_LOG")
    TIME_CPU=$(awk -F': ' '/User time|System time/ { s += $2 } END { printf "%.2f", s }' "$TIME_LOG")
    rm -f "$TIME_LOG"
}

# Seconds since the epoch with nanoseconds, for timing shell functions.
now() { date +%s.%N; }

# a / b with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

load_average() { cut -d' ' -f1-3 /proc/loadavg; }
