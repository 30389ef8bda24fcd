#!/bin/bash
# usage: ab.sh ROUNDS label=XLA_FLAGS... ; prints label train eval per run, with torch each round
cd /work/main
R=$1; shift
for i in $(seq $R); do
  t=$(~/torchpeer/bin/python ../shared/tools/peer_torch_seed_cnn.py 128 40 | grep images_per_s | cut -d= -f2)
  echo "$(date +%H:%M:%S) round $i torch $t"
  for spec in "$@"; do
    label=${spec%%=*}; rest=${spec#*=}
    flags=${rest%%|*}; args=""; [[ "$rest" == *"|"* ]] && args=${rest#*|}
    XLA_FLAGS="$flags" .venv/bin/python experiments/benchmark.py --json $args > /tmp/speed/out.json 2>/tmp/speed/err.txt
    python3 -c "
import json; d=json.load(open('/tmp/speed/out.json')); print('$(date +%H:%M:%S) round $i $label', round(d['train_images_per_second']), round(d['eval_images_per_second']), d['num_devices'])"
  done
done
