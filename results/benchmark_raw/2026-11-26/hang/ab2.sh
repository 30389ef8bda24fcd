#!/bin/bash
# usage: ab2.sh ROUNDS "label|ENV=..|args" ... ; torch first each round; runs from /tmp/abrepo
cd /tmp/abrepo
R=$1; shift
for i in $(seq $R); do
  t=$(~/torchpeer/bin/python /work/shared/tools/peer_torch_seed_cnn.py 128 40 2>/dev/null | grep images_per_s | cut -d= -f2)
  [ -z "$t" ] && t=$(~/torchpeer/bin/python ../../work/shared/tools/peer_torch_seed_cnn.py 128 40 | grep images_per_s | cut -d= -f2)
  echo "$(date +%H:%M:%S) round $i torch $t"
  for spec in "$@"; do
    IFS='|' read -r label envs args <<< "$spec"
    env $envs PYTHONPATH=/tmp/abrepo /work/main/.venv/bin/python experiments/benchmark.py --json $args > /tmp/speed/out2.json 2>/tmp/speed/err_${label}_$i.txt; echo "rc=$?" >> /tmp/speed/err_${label}_$i.txt
    python3 -c "
import json; d=json.load(open('/tmp/speed/out2.json')); print('$(date +%H:%M:%S) round $i $label', round(d['train_images_per_second']), round(d['eval_images_per_second']), d['num_devices'])"
  done
done
