#!/usr/bin/env bash
# examples/kvstore end to end, built against a fresh install of the SDK as
# an outside project: two processes attached to teemated's warm enclave fill
# one table at the same time; a third reads both halves and counts them with
# enclave threads; the table is saved to its protected file (no plaintext on
# disk), and a new enclave after a daemon restart loads it back. A flipped
# bit in the file is refused.
#
#   kvstore_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
src=$(realpath "$2")
work=$(mktemp -d /tmp/teemate-kvstore-test.XXXXXX)
daemon=
cleanup() {
  [[ -n $daemon ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [[ -f $work/daemon.log ]] && tail -20 "$work/daemon.log" >&2; exit 1; }

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "install"; }
cmake -S "$src/examples/kvstore" -B "$work/k" -DCMAKE_PREFIX_PATH="$prefix" >"$work/build.log" 2>&1 &&
  cmake --build "$work/k" >>"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "building examples/kvstore"; }
kv="$work/k/kvstore"
image="$work/k/kvstore.tme"

export TEEMATE_SOCKET=$work/teemated.sock
start_daemon() {
  "$prefix/bin/teemated" --socket "$TEEMATE_SOCKET" --state-dir "$work/state" >>"$work/daemon.log" 2>&1 &
  daemon=$!
  for _ in $(seq 100); do [[ -S $TEEMATE_SOCKET ]] && return 0; sleep 0.1; done
  fail "teemated did not start"
}
stop_daemon() {
  kill "$daemon"
  wait "$daemon" || true
  daemon=
  rm -f "$TEEMATE_SOCKET"
}

run=$work/run
mkdir -p "$run/data"
cd "$run"
start_daemon

# Two attached processes at once, each filling its half.
"$kv" --shared "$image" fill a 150 >"$work/a.out" 2>&1 &
pa=$!
"$kv" --shared "$image" fill b 150 >"$work/b.out" 2>&1 &
pb=$!
wait "$pa" || { cat "$work/a.out"; fail "process a"; }
wait "$pb" || { cat "$work/b.out"; fail "process b"; }

# A third process sees both halves (shared memory outlives its writers).
[[ $("$kv" --shared "$image" get a7) == "value-a7" ]] || fail "a7 not seen by another process"
[[ $("$kv" --shared "$image" get b149) == "value-b149" ]] || fail "b149 not seen by another process"
one=$("$kv" --shared "$image" stats 1) || fail "stats 1"
three=$("$kv" --shared "$image" stats 3) || fail "stats 3"
[[ $one == "300 entries, "* ]] || fail "stats: $one"
[[ $one == "$three" ]] || fail "threads disagree: '$one' vs '$three'"
"$kv" --shared "$image" put secret-key TOP-SECRET-VALUE >/dev/null || fail "put"
[[ $("$kv" --shared "$image" del a0) == "deleted" ]] || fail "del"
if "$kv" --shared "$image" get a0 >/dev/null; then fail "a0 still there after del"; fi
set +e
bad=$("$kv" --shared "$image" put "" x 2>&1)
rc=$?
set -e
[[ $rc -ne 0 && $bad == *"application error 400"* ]] || fail "an empty key must be an application error 400: $bad"

saved=$("$kv" --shared "$image" save) || fail "save"
[[ $saved == "saved "* ]] || fail "save: $saved"
[[ -s data/kv.db ]] || fail "no data/kv.db"
if grep -q "TOP-SECRET-VALUE" data/kv.db || grep -q "value-b149" data/kv.db; then
  fail "plaintext in the protected file"
fi

# A new enclave (daemon restarted) loads the saved table.
stop_daemon
start_daemon
[[ $("$kv" --shared "$image" get secret-key) == "TOP-SECRET-VALUE" ]] || fail "not loaded back after a restart"
[[ $("$kv" --shared "$image" stats 2) == "300 entries, "* ]] || fail "entries after a restart"

# A tampered file is refused, never read as data.
stop_daemon
printf '\x01' | dd of=data/kv.db bs=1 seek=5000 conv=notrunc status=none
start_daemon
set +e
bad=$("$kv" --shared "$image" get secret-key 2>&1)
rc=$?
set -e
[[ $rc -ne 0 && $bad == *"application error 500"* ]] || fail "a tampered table must be refused: $bad"
echo "kvstore ok"
