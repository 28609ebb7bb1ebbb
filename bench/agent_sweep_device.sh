#!/usr/bin/env bash
# The device run behind docs/results.md's 9,200-episode sweep: play agent-success plan parts
# (bench/agent_sweep.py plan) on a lent machine, each part under its own time limit, and pack the
# results into $OUT/sweep.tar (the device tool returns few files).
#
#   bash bench/agent_sweep_device.sh p1:140 p2:140 p3:140 p4:140     # parts in $PLANS/p1 ... with limits (s)
#
# $PLANS (default .gpu) holds the plan folders; wheels the machine lacks go in .whl/ (installed with
# --no-index: the machine reaches no registry). WORKERS, SLOTS, DEVICE as for `agent_sweep.py play`.
set -u
PLANS=${PLANS:-.gpu}
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi -L; nproc; python3 --version
python3 -c "import crafter, pydantic, torch, goalcraft.evaluation.agent_success; print('imports ok', torch.__version__, torch.cuda.is_available())" || exit 4
mkdir -p "$OUT/res"
for part in "$@"; do
  name=${part%%:*}; limit=${part##*:}
  echo "== $name (limit ${limit}s) $(date +%T)"
  timeout -k 10 "$limit" python3 bench/agent_sweep.py play "$PLANS/$name" --workers "${WORKERS:-15}" --slots "${SLOTS:-240}" \
    --device "${DEVICE:-cuda}" --results "$OUT/res/$name/results.jsonl" > "$OUT/res/$name.log" 2>&1
  echo "rc $? $(date +%T)"; tail -2 "$OUT/res/$name.log"
done
tar -C "$OUT" -cf "$OUT/sweep.tar" res && rm -rf "$OUT/res"
