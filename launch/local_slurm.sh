#!/bin/bash
# A real SLURM on this machine: munged, slurmctld and N slurmd "nodes" (Debian's slurm-wlm + munge; `make slurm`
# installs them). Try the cluster path here before a real cluster:
#
#   make slurm                                   # apt-get install slurm-wlm munge (once; root)
#   launch/local_slurm.sh start                  # prints `export SLURM_CONF=...`: run it, then sbatch / srun / squeue
#   sbatch --nodes=2 --ntasks-per-node=1 --gpus-per-node=0 --cpus-per-task=1 launch/sbatch_train.sh strategy=ddp
#   launch/local_slurm.sh status                 # daemons, nodes, queue
#   launch/local_slurm.sh stop                   # ends exactly the daemons it started (pid files)
#
# Config, state, spool, logs and pid files live in one dir: $CLIKA_SLURM_DIR, default $CLIKA_CACHE/slurm
# (.cache/slurm). Nodes: CLIKA_SLURM_NODES (default 2), named clika-n1..N, each 1 CPU, NodeHostname = this host,
# NodeAddr 127.0.0.1, own port / spool / log (%n); the names are added to /etc/hosts (Lightning's SLURM
# environment uses the first node's name as the rendezvous address). No cgroups (proctrack/linuxproc,
# task/none), no accounting daemon (sacct is unavailable; squeue / scontrol show job work). Ports come from a
# hash of the dir, so clusters in different dirs do not collide. Root only (slurmd runs jobs as their user).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${CLIKA_SLURM_DIR:-${CLIKA_CACHE:-$ROOT/.cache}/slurm}
NODES=${CLIKA_SLURM_NODES:-2}
PREFIX=clika-n
HOST=$(hostname -s)
CONF=$DIR/slurm.conf
SOCK=$DIR/munge/munge.socket.2
BASE=$(( 17000 + ($(printf '%s' "$DIR" | cksum | cut -d' ' -f1) % 400) * 8 ))   # controller, then one per node
CTLD_PORT=$BASE
NODE_LIST="${PREFIX}[1-$NODES]"
[[ $NODES -eq 1 ]] && NODE_LIST="${PREFIX}1"

die() { echo "local_slurm: $*" >&2; exit 1; }
alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
pidfiles() { echo "$DIR/run/munged.pid" "$DIR/run/slurmctld.pid"; for i in $(seq 1 "$NODES"); do echo "$DIR/run/slurmd-$PREFIX$i.pid"; done; }

write_conf() {
  mkdir -p "$DIR"/{munge,run,log,state,spool}
  chmod 700 "$DIR/munge"
  cat > "$CONF" <<EOF
# Written by launch/local_slurm.sh: a local SLURM cluster of $NODES virtual nodes on $HOST.
ClusterName=clika-local
SlurmctldHost=$HOST
SlurmctldAddr=127.0.0.1
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$SOCK,cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MinJobAge=600
KillWait=30
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
NodeName=$NODE_LIST NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((BASE + 1))-$((BASE + NODES)) CPUs=1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

hosts_entry() {  # the node names must resolve (127.0.0.1): rendezvous addresses are node names
  local missing=()
  for i in $(seq 1 "$NODES"); do getent hosts "$PREFIX$i" >/dev/null || missing+=("$PREFIX$i"); done
  [[ ${#missing[@]} -eq 0 ]] || echo "127.0.0.1 ${missing[*]}  # launch/local_slurm.sh" >> /etc/hosts
}

status() {
  local up=0 f
  for f in $(pidfiles); do
    if alive "$f"; then up=$((up + 1)); echo "running  $(basename "$f" .pid) (pid $(cat "$f"))"
    else echo "stopped  $(basename "$f" .pid)"; fi
  done
  if [[ $up -eq $((NODES + 2)) ]]; then
    SLURM_CONF=$CONF sinfo -h -o '%P %D %T %N' 2>/dev/null | sed 's/^/nodes    /' || true
    echo "export SLURM_CONF=$CONF"
    return 0
  fi
  return 1
}

start() {
  [[ $(id -u) -eq 0 ]] || die "needs root (slurmd runs jobs as their submitting user); on a shared machine ask for a cluster"
  for b in munged slurmctld slurmd sbatch; do
    command -v "$b" >/dev/null || die "$b not found: run \`make slurm\` (apt-get install slurm-wlm munge)"
  done
  if status >/dev/null 2>&1; then echo "local_slurm: already running ($DIR)"; echo "export SLURM_CONF=$CONF"; return 0; fi
  stop >/dev/null 2>&1 || true   # a partial start: end what is left of it
  write_conf
  hosts_entry
  [[ -s "$DIR/munge/munge.key" ]] || mungekey --create --keyfile="$DIR/munge/munge.key" >/dev/null
  chmod 600 "$DIR/munge/munge.key"
  munged --force --socket="$SOCK" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/run/munged.pid" \
         --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" 2>>"$DIR/log/munged.log" \
    || die "munged did not start (see $DIR/log/munged.log)"
  export SLURM_CONF=$CONF
  slurmctld -c -f "$CONF" || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
  for i in $(seq 1 "$NODES"); do
    slurmd -f "$CONF" -N "$PREFIX$i" || die "slurmd $PREFIX$i did not start (see $DIR/log/slurmd-$PREFIX$i.log)"
  done
  local t
  for t in $(seq 1 60); do   # bounded: 30 s for every node to register idle
    [[ $(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l) -eq $NODES ]] && break
    sleep 0.5
  done
  [[ $(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l) -eq $NODES ]] \
    || die "nodes did not come up within 30 s: $(sinfo -h -N -o '%N %T' 2>&1 | tr '\n' ' ')(logs in $DIR/log)"
  echo "local_slurm: $NODES nodes up ($NODE_LIST on $HOST, controller port $CTLD_PORT, state in $DIR)"
  echo "export SLURM_CONF=$CONF"
}

stop() {
  local f pid t
  # slurmd first (they end their job steps), then the controller, then munge
  for f in $(pidfiles | tac); do
    alive "$f" || { rm -f "$f"; continue; }
    pid=$(cat "$f")
    kill -TERM "$pid"
    for t in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$f"
  done
  echo "local_slurm: stopped ($DIR)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 {start|stop|status|env}" >&2; exit 2 ;;
esac
