#!/usr/bin/env bash
# The seed studies of results/seed_studies.md, on CIFAR-10 with the article's settings (10 epochs).
#   bash experiments/seed_studies_cifar10.sh DATA [RESULTS]
# DATA: the CIFAR-10 image folder (or cifar10 for TFDS). Each study resumes where it stopped, so
# rerunning the script after an interruption continues; finished studies are only re-summarised.
# Studies 2 and 3 run with one CPU device per core (2 here): 1.5x faster on this 2-core machine;
# the device count changes float rounding only (docs/reproducibility.md).
set -euo pipefail
DATA=${1:?usage: seed_studies_cifar10.sh DATA [RESULTS]}
OUT=${2:-results}
study() {  # study NAME FLAGS...: one study, its log appended to OUT/NAME.log; retried if XLA aborts it
  local name=$1; shift
  local log="$OUT/$name.log"  # beside the workdir: a study refuses a folder that holds files of its own
  mkdir -p "$OUT"
  for attempt in 1 2 3 4 5; do
    status=0
    python -m jaxrec study --dataset "$DATA" --progress false --workdir "$OUT/$name" "$@" >> "$log" 2>&1 || status=$?
    case $status in
      0) return 0 ;;
      2|130|143)  # bad input, or stopped on purpose: the log's last line says which, and the console should too
        echo "$name: $(tail -n 1 "$log")" >&2
        return $status ;;
      *) echo "$(date +%T) attempt $attempt ended with status $status; resuming" >> "$log" ;;
    esac
  done
  echo "$name: ended with an error 5 times; its log: $log" >&2
  return 1
}
# 1. Ten seeds, every source varied, no augmentation (the article's run), one device.
study study_cifar10_all --seeds 0-9 --vary all
# 2. Variance by source, with augmentation: each source alone (seeds 1-5, the others at seed 0), then all.
# Four times, while another heavy job shared the cores, one device of the 2-device program never reached
# an all-reduce and the program sat idle (a deadlock in XLA:CPU, not a slow thread). XLA aborts such
# a program after --xla_cpu_collective_call_terminate_timeout_seconds (default 40); 120 s leaves
# room for a slow thread, and study() resumes the study from its last checkpoint. (The cause, two
# collectives in flight holding every worker thread, was fixed on 2026-11-26: docs/troubleshooting.md.
# The flags are kept so that the command is the one that made these results.)
export XLA_FLAGS="--xla_force_host_platform_device_count=$(nproc) --xla_cpu_collective_call_terminate_timeout_seconds=120"
study study_cifar10_aug_all --augment --seeds 0-4 --vary all
study study_cifar10_aug_init --augment --seeds 1-5 --vary init
study study_cifar10_aug_order --augment --seeds 1-5 --vary order
study study_cifar10_aug_augment --augment --seeds 1-5 --vary augment
python experiments/variance_by_source.py "$OUT"/study_cifar10_aug_{init,order,augment,all} \
  --plot "$OUT/variance_by_source.png" | grep "^|" > "$OUT/variance_by_source.md"
# 3. Augmentation on vs off: study 2's "all" against study 1.
python experiments/compare_studies.py "$OUT/study_cifar10_aug_all" "$OUT/study_cifar10_all" | tee "$OUT/augment_on_vs_off.txt"
