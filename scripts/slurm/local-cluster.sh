#!/usr/bin/env bash
# A one-machine Slurm cluster for fedimpute's Slurm tests and benchmarks, from Debian's packages
# (slurm-wlm, munge): munged, slurmctld and slurmd run in the foreground as children of this
# script's background processes, with every file (key, config, state, logs, sockets) in DIR and
# every port on 127.0.0.1. No systemd, nothing under /etc is touched.
#
#   scripts/slurm/local-cluster.sh start DIR   # prints the SLURM_CONF to export
#   scripts/slurm/local-cluster.sh stop DIR
#
# Clients (sbatch, squeue, scontrol, scancel) find the cluster through SLURM_CONF=DIR/slurm.conf.
# Finished jobs are listed, one line each, in DIR/jobcomp.log (Slurm's jobcomp/filetxt), which
# stands in for `sacct`: sacct needs slurmdbd and a MariaDB server, which this script does not run.
set -euo pipefail
cmd=${1:?usage: local-cluster.sh start|stop DIR}
DIR=${2:?usage: local-cluster.sh start|stop DIR}
log() { printf '[local-cluster] %s\n' "$*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

stop() {
  for d in slurmd slurmctld munged; do
    if [ -s "$DIR/$d.pid" ]; then
      kill -TERM "$(cat "$DIR/$d.pid")" 2>/dev/null || true
    fi
  done
  for _ in $(seq 1 50); do
    alive=0
    for d in slurmd slurmctld munged; do
      [ -s "$DIR/$d.pid" ] && kill -0 "$(cat "$DIR/$d.pid")" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for d in slurmd slurmctld munged; do
    [ -s "$DIR/$d.pid" ] && kill -KILL "$(cat "$DIR/$d.pid")" 2>/dev/null || true
    rm -f "$DIR/$d.pid"
  done
}

case "$cmd" in
  stop) stop; log "stopped"; exit 0 ;;
  start) ;;
  *) echo "usage: local-cluster.sh start|stop DIR" >&2; exit 2 ;;
esac

for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { log "$tool not found: run scripts/install-deps.sh (it installs Debian's slurm-wlm and munge)"; exit 1; }
done
mkdir -p "$DIR"/{state,spool,munge}
DIR=$(cd "$DIR" && pwd)
chmod 0700 "$DIR/munge"
# A fresh key per cluster; munged refuses a key others can read.
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$DIR/munge/munge.key"
munged --foreground --force --socket="$DIR/munge/munge.sock" --key-file="$DIR/munge/munge.key" \
  --log-file="$DIR/munge/munged.log" --pid-file="$DIR/munged.pid.munge" --seed-file="$DIR/munge/seed" \
  >"$DIR/munged.out" 2>&1 &
echo $! > "$DIR/munged.pid"
for _ in $(seq 1 100); do [ -S "$DIR/munge/munge.sock" ] && break; sleep 0.05; done
[ -S "$DIR/munge/munge.sock" ] || { log "munged did not start: $(cat "$DIR/munged.out" "$DIR/munge/munged.log" 2>/dev/null)"; stop; exit 1; }

HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
cat > "$DIR/slurm.conf" <<CONF
ClusterName=fedimpute-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
SlurmctldPidFile=$DIR/slurmctld.pid.slurm
SlurmdPidFile=$DIR/slurmd.pid.slurm
SlurmdSpoolDir=$DIR/spool
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$DIR/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" >"$DIR/slurmctld.out" 2>&1 &
echo $! > "$DIR/slurmctld.pid"
slurmd -D -f "$SLURM_CONF" >"$DIR/slurmd.out" 2>&1 &
echo $! > "$DIR/slurmd.pid"
for _ in $(seq 1 200); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    log "up: $CPUS CPUs, $MEM_MB MB on $HOST"
    echo "$SLURM_CONF"
    exit 0
  fi
  sleep 0.1
done
log "the cluster did not come up; slurmctld: $(tail -3 "$DIR/slurmctld.log" 2>/dev/null); slurmd: $(tail -3 "$DIR/slurmd.log" 2>/dev/null)"
stop
exit 1
