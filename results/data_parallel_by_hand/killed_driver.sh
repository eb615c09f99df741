#!/bin/bash
# kill the driver of a data-parallel study after epoch 1, then resume it
cd "$(dirname "$0")/../.."  # the repository root
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
EXP=/tmp/killed_driver/exp; mkdir -p /tmp/killed_driver; rm -rf $EXP
setsid .venv/bin/python -m er_tune.cli tune results/data_parallel_by_hand/killed_driver_study.yaml --storage $EXP > /tmp/killed_driver/run1.txt 2>&1 &
PID=$!
for i in $(seq 1 600); do
  sleep 1
  if grep -ls '"epoch": 1' $EXP/replicate/*/result.json >/dev/null 2>&1; then break; fi
done
echo "killing after $i s"; ls -la $EXP/replicate/*/ 
kill -9 -- -$PID; sleep 3; sleep 3
.venv/bin/python -m er_tune.cli tune results/data_parallel_by_hand/killed_driver_study.yaml --storage $EXP > /tmp/killed_driver/run2.txt 2>&1
echo "resume exit $?"
for t in $EXP/replicate/*/; do echo $t; ls -la $t; cat $t/result.json | cut -c1-200; done
for t in $EXP/replicate/*/; do .venv/bin/python -c "
import json
print([(d['epoch'], d['training_iteration'], d.get('stop_reason')) for d in map(json.loads, open('$t/result.json'))])"; ls $t $t/data_parallel; done
