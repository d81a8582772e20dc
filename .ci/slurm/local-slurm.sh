#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for tests (Debian 12 packages:
# Slurm 22.05, munge, MariaDB + slurmdbd so that `sacct` works as on real
# clusters). Run as root; no systemd needed.
#
#   .ci/slurm/local-slurm.sh install   # apt packages (skipped when present)
#   .ci/slurm/local-slurm.sh start     # configs + daemons; idempotent
#   .ci/slurm/local-slurm.sh stop      # stop exactly the daemons it started, by PID
#   .ci/slurm/local-slurm.sh status
#
# Everything lives under $PRUNELENS_SLURM_DIR (default /tmp/prunelens-slurm)
# except the apt packages and the symlink /etc/slurm/slurm.conf: the
# jobstep plugin strips SLURM_CONF from the job's environment, so the inner
# `srun` must find the config at Slurm's compiled-in path.
# The cluster: partition `debug` (default), accounts `root` and `prunelens`
# (user root in both), AccountingStorageEnforce=associations, no GPUs.
set -euo pipefail

W=${PRUNELENS_SLURM_DIR:-/tmp/prunelens-slurm}
H=$(hostname -s)
export SLURM_CONF="$W/etc/slurm.conf"
export MYSQL_UNIX_PORT="$W/mysql-run/mysqld.sock"   # our MariaDB, not the system's
TIMEOUT=${PRUNELENS_SLURM_TIMEOUT:-60}                 # seconds, per wait
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)

die() { echo "local-slurm: $*" >&2; exit 1; }
log() { echo "local-slurm: $*" >&2; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (daemons run as root, munge and mysql)"; }

installed() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
}

do_install() {
  need_root
  if installed; then log "packages already installed"; return 0; fi
  command -v apt-get >/dev/null || die "apt-get not found: install ${PACKAGES[*]} by hand"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the packages' init scripts from starting system daemons (we start
  # our own, on our own sockets); restore any existing policy afterwards.
  local policy=/usr/sbin/policy-rc.d added=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; added=1; fi
  local rc=0
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; } || rc=$?
  [ "$added" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || die "apt-get failed (rc $rc): are the Debian package mirrors reachable?"
}

# --- processes, by PID file (checked against the expected program name)
pid_of() {  # pidfile name -> prints the PID if it is alive and is `name`
  local f=$1 name=$2 p
  [ -s "$f" ] || return 1
  p=$(tr -dc 0-9 < "$f")
  [ -n "$p" ] && [ -r "/proc/$p/comm" ] || return 1
  # comm is truncated to 15 characters
  [ "$(cat "/proc/$p/comm")" = "${name:0:15}" ] || return 1
  echo "$p"
}

waitfor() {  # description command... : poll until the command succeeds
  local what=$1; shift
  local end=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || die "timeout after ${TIMEOUT}s waiting for $what (logs: $W/log)"
    sleep 0.3
  done
}

stop_pidfile() {
  local f=$1 name=$2 p
  p=$(pid_of "$f" "$name") || { rm -f "$f"; return 0; }
  log "stopping $name (PID $p)"
  kill "$p"
  local end=$((SECONDS + TIMEOUT))
  while kill -0 "$p" 2>/dev/null; do
    if [ $SECONDS -ge $end ]; then log "$name (PID $p) ignored SIGTERM; SIGKILL"; kill -9 "$p" 2>/dev/null || true; break; fi
    sleep 0.3
  done
  rm -f "$f"
}

write_configs() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p "$W"/{etc,log,run,state/ctld,state/d,munge,mysql,mysql-run}
  chown munge:munge "$W/munge"; chmod 0711 "$W/munge"   # munged wants o+x on its socket dir
  chown mysql:mysql "$W/mysql" "$W/mysql-run"
  [ -s "$W/munge/munge.key" ] || runuser -u munge -- mungekey --create --keyfile="$W/munge/munge.key"
  cat > "$W/etc/slurm.conf.new" <<CONF
# Written by .ci/slurm/local-slurm.sh: one node on 127.0.0.1 (no DNS needed),
# accounting through slurmdbd.
ClusterName=prunelens
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$W/munge/munge.socket.2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$W/state/ctld
SlurmdSpoolDir=$W/state/d
SlurmctldPidFile=$W/run/slurmctld.pid
SlurmdPidFile=$W/run/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
# the slurmdbd connection takes its munge socket from here, not from AuthInfo
AccountingStoragePass=$W/munge/munge.socket.2
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=300
KillWait=10
MpiDefault=none
MailProg=/bin/true
NodeName=$H NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
  # only replace a changed config (a running slurmctld would see a mismatch)
  if ! cmp -s "$W/etc/slurm.conf.new" "$W/etc/slurm.conf"; then
    mv "$W/etc/slurm.conf.new" "$W/etc/slurm.conf"
  else
    rm "$W/etc/slurm.conf.new"
  fi
  cat > "$W/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$W/munge/munge.socket.2
DbdHost=$H
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$W/log/slurmdbd.log
PidFile=$W/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$W/etc/slurmdbd.conf"
  mkdir -p /etc/slurm
  if [ -e /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" != "$W/etc/slurm.conf" ]; then
    [ -L /etc/slurm/slurm.conf ] || die "/etc/slurm/slurm.conf exists and is not ours: is another Slurm installed here?"
  fi
  ln -sfn "$W/etc/slurm.conf" /etc/slurm/slurm.conf
}

ensure_account() {  # name: account with user root in it
  sacctmgr -n -P list account "$1" format=account | grep -qx "$1" ||
    sacctmgr -i add account "$1" Description="prunelens tests" >/dev/null
  sacctmgr -n -P list association user=root account="$1" format=account | grep -qx "$1" ||
    sacctmgr -i add user root account="$1" >/dev/null
}

do_start() {
  need_root
  installed || die "Slurm packages missing: run '$0 install' first"
  write_configs
  if ! pid_of "$W/munge/munged.pid" munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --key-file="$W/munge/munge.key" \
      --socket="$W/munge/munge.socket.2" --pid-file="$W/munge/munged.pid" \
      --log-file="$W/munge/munged.log" --seed-file="$W/munge/munged.seed"
  fi
  waitfor munge munge -S "$W/munge/munge.socket.2" -n
  if ! pid_of "$W/mysql-run/mariadbd.pid" mariadbd >/dev/null; then
    [ -d "$W/mysql/mysql" ] ||
      mariadb-install-db --user=mysql --datadir="$W/mysql" > "$W/log/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed: $W/log/mariadb-install.log"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$W/mysql" \
      --socket="$MYSQL_UNIX_PORT" --pid-file="$W/mysql-run/mariadbd.pid" \
      --log-error="$W/mysql-run/mariadbd.err" --skip-networking \
      --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900 \
      > "$W/log/mariadbd.out" 2>&1 < /dev/null &
  fi
  waitfor MariaDB mariadb --socket="$MYSQL_UNIX_PORT" -e 'select 1'
  pid_of "$W/run/slurmdbd.pid" slurmdbd >/dev/null || /usr/sbin/slurmdbd
  waitfor slurmdbd sacctmgr -n list cluster
  pid_of "$W/run/slurmctld.pid" slurmctld >/dev/null || /usr/sbin/slurmctld
  waitfor slurmctld bash -c "scontrol ping | grep -q UP"
  ensure_account prunelens
  pid_of "$W/run/slurmd.pid" slurmd >/dev/null || /usr/sbin/slurmd
  waitfor "the node to be idle" bash -c "sinfo -h -o %T | grep -Eqx 'idle|mixed|allocated'"
  sinfo
}

do_stop() {
  stop_pidfile "$W/run/slurmd.pid" slurmd
  stop_pidfile "$W/run/slurmctld.pid" slurmctld
  stop_pidfile "$W/run/slurmdbd.pid" slurmdbd
  stop_pidfile "$W/mysql-run/mariadbd.pid" mariadbd
  stop_pidfile "$W/munge/munged.pid" munged
  # the symlink is ours (see write_configs); leave /etc/slurm otherwise alone
  if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$W/etc/slurm.conf" ]; then rm -f /etc/slurm/slurm.conf; fi
}

do_status() {
  local rc=0 f name p
  for f in munge/munged.pid:munged mysql-run/mariadbd.pid:mariadbd run/slurmdbd.pid:slurmdbd \
           run/slurmctld.pid:slurmctld run/slurmd.pid:slurmd; do
    name=${f#*:}; f=$W/${f%%:*}
    if p=$(pid_of "$f" "$name"); then echo "up    $name (PID $p)"; else echo "down  $name"; rc=3; fi
  done
  return $rc
}

case "${1:-}" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) echo "usage: $0 install|start|stop|status   (state in \$PRUNELENS_SLURM_DIR, default /tmp/prunelens-slurm)" >&2; exit 2 ;;
esac
