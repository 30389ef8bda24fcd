#!/bin/bash
cd /tmp/abrepo
for i in 1 2 3 4; do
  for mode in cfg flag; do
    if [ $mode = flag ]; then export XLA_FLAGS=--xla_force_host_platform_device_count=2; else unset XLA_FLAGS; fi
    PYTHONPATH=/tmp/abrepo timeout 300 /work/main/.venv/bin/python experiments/benchmark.py --json > /tmp/speed/h_${mode}_$i.json 2>/tmp/speed/h_${mode}_$i.err
    echo "$(date +%T) $mode $i rc=$? $(python3 -c "import json;d=json.load(open('/tmp/speed/h_${mode}_$i.json'));print(round(d['train_images_per_second']),round(d['eval_images_per_second']))" 2>/dev/null)"
  done
done
