#!/usr/bin/env bash
# Training images/s (all models together) of K seeds per program, 1 device (2 threads) vs one CPU
# device per core; benchmark defaults otherwise (article CNN, batch 128, 10 steps per call).
set -u
for spec in "1 1 loop" "2 1 loop" "1 2 loop" "2 2 loop" "1 4 loop" "2 4 loop" "1 8 loop" "2 8 loop" "1 2 vmap" "2 2 vmap" "1 1 loop" "2 1 loop"; do
  set -- $spec
  flags=""; [ "$1" = 2 ] && flags="--xla_force_host_platform_device_count=2"
  echo "== devices $1, seeds_per_program $2, model_axis $3"
  XLA_FLAGS=$flags python -m jaxrec benchmark --seeds_per_program "$2" --model_axis "$3" --windows 3 --eval_examples 2000 2>&1 | grep -v "^WARNING\|^W1\|^I1"
done
