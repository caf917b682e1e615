#!/usr/bin/env bash
# Runs fuzz_daemon_requests for a fixed time from a seed corpus of valid
# requests of every kind (the first byte of each seed: bit 0 = send hello
# first, bit 1 = attach the image's descriptor). Crashes are kept in ARTIFACT_DIR; the corpus is temporary. The
# daemon's own log goes nowhere (-close_fd_mask=2); libFuzzer's report stays.
#
# usage: run_fuzz_daemon.sh FUZZER IMAGE ARTIFACT_DIR SECONDS
set -euo pipefail
FUZZER=$1 IMAGE=$2 ARTIFACTS=$3 SECONDS_TO_RUN=$4

work=$(mktemp -d /tmp/teemate-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$ARTIFACTS"
IMAGE=$(realpath "$IMAGE")
n=0
seed() { n=$((n + 1)); printf '\003%s' "$1" > "$work/corpus/seed$n"; }
seed '{"v":1,"op":"hello","client":"x"}'
seed '{"v":1,"op":"list"}'
seed '{"v":1,"op":"load","image":"'"$IMAGE"'"}'
seed '{"v":1,"op":"load","image":"'"$IMAGE"'","new":false}'
seed '{"v":1,"op":"attach","enclave":1,"tcs":1}'
seed '{"v":1,"op":"attach","mrenclave":"0000000000000000000000000000000000000000000000000000000000000000"}'
seed '{"v":1,"op":"lease","tcs":1}'
seed '{"v":1,"op":"release","tcs":[0]}'
seed '{"v":1,"op":"detach","enclave":1}'

TEEMATE_FUZZ_IMAGE=$IMAGE "$FUZZER" -max_total_time="$SECONDS_TO_RUN" -timeout=20 -rss_limit_mb=4096 -max_len=4096 \
  -close_fd_mask=2 -print_final_stats=1 -artifact_prefix="$ARTIFACTS/" "$work/corpus"
