#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests of `workflow-deeplabcut submit`.
#
#   bash scripts/slurm-local.sh install      # Debian's slurm-wlm and munge (apt), when missing
#   bash scripts/slurm-local.sh start DIR    # write DIR/slurm.conf, start munged, slurmctld, slurmd
#   bash scripts/slurm-local.sh stop DIR     # stop the daemons started in DIR (by their PIDs)
#
# The cluster's configuration lives in DIR (clients find it through SLURM_CONF=DIR/slurm.conf),
# so an existing /etc/slurm is left alone; its daemons listen on WDLC_SLURMCTLD_PORT and
# WDLC_SLURMD_PORT (default 16817 and 16818), not SLURM's own ports. It has two partitions:
#   debug   this machine (all its CPUs, two GPUs declared over /dev/null-like files: SLURM hands
#           them out and sets CUDA_VISIBLE_DEVICES, with no real GPU behind them);
#   remote  this machine and a second node that never answers (address 192.0.2.1, TEST-NET):
#           jobs there could land on another machine, so `submit` must refuse a configuration
#           that only this machine can reach.
# Recipe: ../shared/notes/slurm.md (SLURM 22.05 as root; no cgroup.conf; no accounting daemon).
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    echo "SLURM $(slurmctld -V | cut -d' ' -f2) and munge are installed"
    return
  fi
  echo "installing Debian's slurm-wlm and munge"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq slurm-wlm munge >/dev/null
}

start() {
  local dir=$1 host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  mkdir -p "$dir"/spool "$dir"/state "$dir"/log "$dir"/gpu
  # Character devices with /dev/null's numbers: SLURM only schedules GPUs backed by devices.
  for i in 0 1; do [ -c "$dir/gpu/nvidia$i" ] || as_root mknod "$dir/gpu/nvidia$i" c 1 3; done
  cat > "$dir"/slurm.conf <<CONF
ClusterName=wdlctest
SlurmctldHost=$host
SlurmctldPort=${WDLC_SLURMCTLD_PORT:-16817}
SlurmdPort=${WDLC_SLURMD_PORT:-16818}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdSpoolDir=$dir/spool
StateSaveLocation=$dir/state
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmUser=root
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
MinJobAge=3600
KillWait=10
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
NodeName=wdlc-remote-node NodeAddr=192.0.2.1 CPUs=2 RealMemory=1000 State=DOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=remote Nodes=$host,wdlc-remote-node MaxTime=INFINITE State=UP
CONF
  cat > "$dir"/gres.conf <<CONF
NodeName=$host Name=gpu File=$dir/gpu/nvidia[0-1]
CONF
  if ! pgrep -x munged >/dev/null; then
    as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
    as_root chown munge /run/munge /var/log/munge /var/lib/munge
    as_root su -s /bin/sh munge -c /usr/sbin/munged
  fi
  export SLURM_CONF=$dir/slurm.conf
  as_root env SLURM_CONF="$SLURM_CONF" slurmctld
  as_root env SLURM_CONF="$SLURM_CONF" slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -p debug -o %t 2>/dev/null | grep -qx idle; then
      echo "SLURM cluster up: SLURM_CONF=$SLURM_CONF"
      return
    fi
    sleep 1
  done
  echo "the SLURM node did not become idle; logs in $dir/log" >&2
  tail -n 20 "$dir"/log/*.log >&2 || true
  exit 1
}

stop() {
  local dir=$1 pid
  # Jobs still running would leave their slurmstepd behind once slurmd is gone.
  SLURM_CONF=$dir/slurm.conf scancel --user="$(id -un)" 2>/dev/null && sleep 2 || true
  for name in slurmd slurmctld; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      as_root kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
  done
  for pid in $(pgrep -x slurmstepd || true); do
    if as_root grep -qz "^SLURM_CONF=$dir/slurm.conf$" "/proc/$pid/environ" 2>/dev/null; then
      as_root pkill -KILL -P "$pid" 2>/dev/null || true
      as_root kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?a folder for the cluster state}" ;;
  stop) stop "${2:?the folder given to start}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
