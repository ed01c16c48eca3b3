#!/usr/bin/env bash
# From ../shared/slurm (checked on these machines): a single-node SLURM with fake GPUs for CI.
# Bring up a single-node SLURM (+ optional slurmdbd/MariaDB) on localhost. Run as root.
set -euo pipefail
WITH_DBD=${WITH_DBD:-0}          # 1 = real accounting so `sacct` works
FAKE_GPUS=${FAKE_GPUS:-2}        # 0 = no gres
H=$(hostname -s); NCPU=$(nproc)
MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 8 / 10 ))
export DEBIAN_FRONTEND=noninteractive
PKGS="slurm-wlm munge"; [ "$WITH_DBD" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
apt-get update -qq
apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
# (on a systemd host apt may auto-start units: systemctl stop slurmd slurmctld slurmdbd munge)
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm; chown munge:munge /run/munge
ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
[ "$WITH_DBD" = 1 ] && ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux"
GRES=""; NODEGRES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
  for i in $(seq 0 $((FAKE_GPUS-1))); do [ -e /dev/fakegpu$i ] || mknod /dev/fakegpu$i c 1 3; done
  GRES="GresTypes=gpu"; NODEGRES="Gres=gpu:$FAKE_GPUS"
  printf 'AutoDetect=off\nNodeName=%s Name=gpu File=/dev/fakegpu[0-%d]\n' "$H" $((FAKE_GPUS-1)) > /etc/slurm/gres.conf
fi
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=$H
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
MinJobAge=300
DefMemPerCPU=1000
$ACCT
$GRES
NodeName=$H CPUs=$NCPU RealMemory=$MEM $NODEGRES State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
runuser -u munge -- /usr/sbin/munged
for i in $(seq 20); do munge -n >/dev/null 2>&1 && break; sleep 0.5; done
if [ "$WITH_DBD" = 1 ]; then
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  nohup /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid >/var/log/slurm/mariadb.log 2>&1 &
  for i in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.5; done
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat > /etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf
  /usr/sbin/slurmdbd
  for i in $(seq 60); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -i add cluster ci >/dev/null || true
fi
/usr/sbin/slurmctld
/usr/sbin/slurmd
for i in $(seq 60); do [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 1; done
sinfo
srun -t 1 hostname
