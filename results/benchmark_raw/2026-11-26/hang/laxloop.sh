#!/bin/bash
cd ${REPO:-/work/main}
for i in $(seq ${N:-6}); do
  timeout 300 /work/main/.venv/bin/python -X faulthandler experiments/benchmark.py --json --image_conv lax > /tmp/speed/lx_$i.json 2>/tmp/speed/lx_$i.err
  rc=$?
  echo "$(date +%T) $i rc=$rc $(python3 -c "import json;d=json.load(open('/tmp/speed/lx_$i.json'));print(round(d['train_images_per_second']),round(d['eval_images_per_second']))" 2>/dev/null)"
done
