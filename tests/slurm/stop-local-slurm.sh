#!/usr/bin/env bash
# Stop the daemons started by start-local-slurm.sh (by their pid files; munged last).
STATE=${1:-/var/tmp/qsmvbm-slurm}
for d in slurmd slurmctld; do
  if [ -s "$STATE/$d.pid" ]; then kill "$(cat "$STATE/$d.pid")" 2>/dev/null || true; fi
done
sleep 1
pkill -x slurmd 2>/dev/null || true
pkill -x slurmctld 2>/dev/null || true
if [ -s /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true; fi
exit 0
