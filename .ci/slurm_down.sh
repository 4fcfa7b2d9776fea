#!/usr/bin/env bash
# Stop the daemons started by slurm_up.sh, by their recorded PIDs.
set -uo pipefail
for d in slurmd slurmctld munged; do
  f=/run/slurm-ci/$d.pid
  [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
  rm -f "$f"
done
true
