#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the sweep tests (test/sweep-run.test.ts) and for trying
# `langneurons sweep run --executor slurm` without a cluster. Needs root and Debian's packages:
#   apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
# Usage: scripts/slurm-local.sh up     start munged, slurmctld and slurmd (a clean controller state: job ids from 1)
#        scripts/slurm-local.sh down   cancel every job, then stop the three daemons this script started
#        scripts/slurm-local.sh status
# No systemd and no cgroups are assumed (containers, CI): package scripts cannot start services, so the daemons are
# started here, with process tracking by /proc (proctrack/linuxproc) and no task plugin. The pitfalls the settings
# below avoid: without DefMemPerCPU a job takes the whole node's memory and jobs run one at a time; a job depending on a
# failed one stays pending unless kill_invalid_depend; an impossible request stays pending unless EnforcePartLimits=ALL;
# the default scheduler waits seconds per job (batch_sched_delay=0, sched_interval=1, bf_interval=1 start a trivial job
# in ~1 s); a requeued job waits for the credential lifetime (cred_expire=10).
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
RUN=/run/langneurons-slurm

need() { command -v "$1" >/dev/null 2>&1 || { echo "slurm-local: $1 not found; install: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge" >&2; exit 1; }; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_config() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' | head -1)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
  mkdir -p "$CONF_DIR"
  cat >"$CONF_DIR/slurm.conf" <<CONF
# Written by langneurons scripts/slurm-local.sh: a single-node cluster without cgroups or accounting.
ClusterName=langneurons-local
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=${STATE}
SlurmdSpoolDir=${SPOOL}
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=${LOGS}/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
DependencyParameters=kill_invalid_depend
EnforcePartLimits=ALL
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

up() {
  need munged; need slurmctld; need slurmd; need sinfo
  mkdir -p "$RUN" "$STATE" "$SPOOL" "$LOGS"
  if alive "$RUN/slurmctld.pid" && alive "$RUN/slurmd.pid" && sinfo >/dev/null 2>&1; then echo "slurm-local: already up"; return; fi
  # munge: its socket folder and key, the daemon as the munge user
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  fi
  if ! alive /run/munge/munged.pid; then runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid; cp /run/munge/munged.pid "$RUN/munged.pid"; fi
  write_config
  alive "$RUN/slurmctld.pid" || slurmctld -c || { echo "slurm-local: slurmctld did not start; see $LOGS/slurmctld.log" >&2; exit 1; }
  alive "$RUN/slurmd.pid" || slurmd || { echo "slurm-local: slurmd did not start; see $LOGS/slurmd.log" >&2; tail -5 "$LOGS/slurmd.log" >&2; exit 1; }
  for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle|mixed|allocated) echo "slurm-local: up ($(sinfo -h -o '%P %D node(s) %c CPUs %m MB' | head -1))"; return;; esac
    sleep 0.5
  done
  echo "slurm-local: the node did not become idle (state '${state:-none}'); see $LOGS/slurmctld.log and $LOGS/slurmd.log" >&2
  exit 1
}

down() {
  # Running jobs survive a stopped slurmd: cancel them first and wait for the queue to empty.
  if sinfo >/dev/null 2>&1; then
    scancel --full --quiet $(squeue -h -o %A | sort -u) 2>/dev/null || true
    for _ in $(seq 1 40); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for d in slurmd slurmctld munged; do
    if alive "$RUN/$d.pid"; then
      pid=$(cat "$RUN/$d.pid"); kill "$pid"
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
    rm -f "$RUN/$d.pid"
  done
  echo "slurm-local: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo && squeue ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
