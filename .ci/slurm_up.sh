#!/usr/bin/env bash
# Single-node SLURM on localhost for the slurm-profile test (Debian 12 packages, no systemd).
# munge + slurmctld + slurmd started by hand, a `cpu` and a `gpu` partition, a fake typed gres/gpu
# (gpu:ci_gpu:1, File=/dev/null) so that GPU requests (with a GPU type) are accepted and scheduled, a node
# feature `ci_feat` for constraints, and memory enforcement (OverMemoryKill) so that a job over its --mem is
# killed as a real cluster would. Idempotent; a changed slurm.conf restarts the daemons. PIDs in /run/slurm-ci.
set -euo pipefail
NODE=localhost
PIDDIR=/run/slurm-ci
LOG=/var/log/slurm

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

pkgs="munge slurmctld slurmd slurm-client"
if [ "$(dpkg-query -W -f='${Status}\n' $pkgs 2>/dev/null | grep -c 'install ok installed' || true)" -ne 4 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
mkdir -p "$PIDDIR" /run/munge /run/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd "$LOG" /etc/slurm
chown munge:munge /run/munge
chown slurm:slurm /run/slurm /var/lib/slurm/slurmctld "$LOG"

[ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key; }
if ! alive "$PIDDIR/munged.pid"; then
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$PIDDIR/munged.pid"
fi

hw=$(slurmd -C | head -1)
mem=$(( $(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hw") * 85 / 100 ))
nodeline=$(sed -e "s/^NodeName=[^ ]*/NodeName=$NODE/" -e "s/RealMemory=[0-9]*/RealMemory=$mem/" <<<"$hw")
new_conf=$(cat <<CONF
ClusterName=ci
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=3600
SchedulerParameters=sched_interval=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
GresTypes=gpu
$nodeline Gres=gpu:ci_gpu:1 Features=ci_feat State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
CONF
)
new_gres=$(printf 'AutoDetect=off\nNodeName=%s Name=gpu Type=ci_gpu File=/dev/null Count=1' "$NODE")
if [ "$new_conf" != "$(cat /etc/slurm/slurm.conf 2>/dev/null)" ] || [ "$new_gres" != "$(cat /etc/slurm/gres.conf 2>/dev/null)" ]; then
  for d in slurmd slurmctld; do alive "$PIDDIR/$d.pid" && kill "$(cat "$PIDDIR/$d.pid")" && sleep 1; rm -f "$PIDDIR/$d.pid"; done
  rm -rf /var/lib/slurm/slurmctld/* /var/lib/slurm/slurmd/*
fi
printf '%s\n' "$new_conf" > /etc/slurm/slurm.conf
printf '%s\n' "$new_gres" > /etc/slurm/gres.conf

if ! alive "$PIDDIR/slurmctld.pid"; then
  rm -f /run/slurm/slurmctld.pid
  /usr/sbin/slurmctld
  for _ in $(seq 100); do [ -s /run/slurm/slurmctld.pid ] && scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
  cp /run/slurm/slurmctld.pid "$PIDDIR/slurmctld.pid"
fi
if ! alive "$PIDDIR/slurmd.pid"; then
  rm -f /run/slurm/slurmd.pid
  /usr/sbin/slurmd -N "$NODE"
  for _ in $(seq 100); do [ -s /run/slurm/slurmd.pid ] && break; sleep 0.1; done
  cp /run/slurm/slurmd.pid "$PIDDIR/slurmd.pid"
fi
for _ in $(seq 150); do
  st=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -1)
  case "$st" in
    idle|mixed|allocated) break ;;
    drain*|inval*) scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
  esac
  sleep 0.2
done
[ "$(srun -N1 -n1 -t 1 /bin/true && echo ok)" = ok ] || { echo "slurm smoke test failed"; tail -20 $LOG/*.log; exit 1; }
sinfo
