#!/usr/bin/env bash
# Runs fuzz_image_parser for a fixed time from a seed corpus made on the spot:
# a gcc-built static PIE, the .tme images teemate packs and signs from it, and
# an enclave.toml. Crashes are kept in ARTIFACT_DIR; the corpus is temporary.
#
# usage: run_fuzz.sh FUZZER TEEMATE TINY_ELF ARTIFACT_DIR SECONDS
set -euo pipefail
FUZZER=$1 TEEMATE=$2 ELF=$3 ARTIFACTS=$4 SECONDS_TO_RUN=$5

work=$(mktemp -d /tmp/teemate-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$ARTIFACTS"
cp "$ELF" "$work/corpus/elf"
printf '[enclave]\nheap_size = "64K"\nstack_size = "8K"\ntcs_count = 1\ndebug = true\n' \
  > "$work/corpus/toml"
"$TEEMATE" pack --config "$work/corpus/toml" --elf "$ELF" -o "$work/corpus/unsigned.tme" >/dev/null
"$TEEMATE" keygen "$work/key.pem" >/dev/null
"$TEEMATE" sign --key "$work/key.pem" "$work/corpus/unsigned.tme" -o "$work/corpus/signed.tme" >/dev/null

"$FUZZER" -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$ARTIFACTS/" "$work/corpus"
