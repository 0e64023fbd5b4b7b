#!/usr/bin/env bash
# A real single-node Slurm cluster (Debian's packages) for CI and local tests of slurm/*.sbatch.
#
#   eval "$(scripts/slurm-cluster.sh start)"   # install if missing, start, wait until the node is idle
#   scripts/slurm-cluster.sh status            # exit 0 when it is up (prints the export line)
#   scripts/slurm-cluster.sh stop              # stop every daemon this script started
#   scripts/slurm-cluster.sh clean             # stop, then delete the state directory
#
# Needs root (daemons, apt). `start` is idempotent: daemons already running are left alone.
# Only the export line goes to stdout; progress goes to stderr.
#
# Knobs (environment):
#   PARC_SLURM_DIR         state, config, logs, pid files          (default /tmp/parc-slurm)
#   PARC_SLURM_ACCOUNTING  1: mariadb + slurmdbd, so sacct and submitit see real job states;
#                          0: no accounting (faster start, but finished jobs read UNKNOWN) (default 1)
#   PARC_SLURM_TIMEOUT     seconds to wait for each daemon / the idle node        (default 60)
#   PARC_SLURM_CTLD_PORT   slurmctld's port; PARC_SLURM_SLURMD_PORT slurmd's; PARC_SLURM_DBD_PORT slurmdbd's;
#   PARC_SLURM_DB_PORT     mariadb's (on 127.0.0.1: slurmdbd connects over TCP). Unset: Slurm's (MariaDB's)
#                          standard port when it is free, else a free one; set: that port, or an error naming
#                          who holds it. The ports in use are kept in $PARC_SLURM_DIR/etc/ports.
# `start` and `status` succeed only when every daemon is the one this script started (its pid file), is
# listening on its own port, and answers (scontrol ping, sinfo): another cluster on the machine never counts.
set -euo pipefail

DIR=${PARC_SLURM_DIR:-/tmp/parc-slurm}
ACCOUNTING=${PARC_SLURM_ACCOUNTING:-1}
TIMEOUT=${PARC_SLURM_TIMEOUT:-60}
CONF=$DIR/etc/slurm.conf
RUN=$DIR/run
PORTS=$DIR/etc/ports
HOST=$(hostname -s)

CANNOT_INSTALL=3  # exit code when packages are missing and cannot be installed (tests skip on it)

log() { echo "slurm-cluster: $*" >&2; }
die() { echo "error: $*" >&2; exit "${2:-1}"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds (no fixed sleeps elsewhere)
wait_for() {
    local seconds=$1 what=$2
    local deadline=$((SECONDS + seconds))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s; see $DIR/log/"
        sleep 0.3
    done
}

# alive PIDFILE: the process named in PIDFILE exists
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- ports ---------------------------------------------------------------------------------------------
listener() { ss -Hltnp "sport = :$1" 2>/dev/null | head -1; }  # the socket listening on port $1, if any
holder() { listener "$1" | grep -o 'users:(("[^"]*",pid=[0-9]*' | sed -E 's/users:\(\("([^"]*)",pid=([0-9]*)/\1 (pid \2)/'; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# choose_port DAEMON GIVEN STANDARD: GIVEN if free (else an error naming its holder), STANDARD if free, else any free
choose_port() {
    local daemon=$1 given=$2 standard=$3
    if [[ -n $given ]]; then
        [[ -z $(listener "$given") ]] || die "port $given for $daemon is taken by $(holder "$given" || echo 'another process'): unset its PARC_SLURM_*_PORT or choose a free one"
        echo "$given"
    elif [[ -z $(listener "$standard") ]]; then
        echo "$standard"
    else
        log "port $standard for $daemon is taken by $(holder "$standard" || echo 'another process'); using a free one"
        free_port
    fi
}

# Our daemons keep the ports they started with; new ones get free ports.
choose_ports() {
    if [[ -s $PORTS ]] && { alive "$RUN/slurmctld.pid" || alive "$RUN/slurmd.pid" || alive "$RUN/slurmdbd.pid" || alive "$RUN/mariadbd.pid"; }; then
        # shellcheck disable=SC1090
        source "$PORTS"
        return
    fi
    mkdir -p "$DIR/etc"
    CTLD_PORT=$(choose_port slurmctld "${PARC_SLURM_CTLD_PORT:-}" 6817)
    SLURMD_PORT=$(choose_port slurmd "${PARC_SLURM_SLURMD_PORT:-}" 6818)
    DBD_PORT=$(choose_port slurmdbd "${PARC_SLURM_DBD_PORT:-}" 6819)
    DB_PORT=$(choose_port mariadbd "${PARC_SLURM_DB_PORT:-}" 3306)
    printf 'CTLD_PORT=%s\nSLURMD_PORT=%s\nDBD_PORT=%s\nDB_PORT=%s\n' "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT" >"$PORTS"
}

# ours NAME PORT: NAME runs from our pid file and is the process listening on PORT
ours() { alive "$RUN/$1.pid" && listener "$2" | grep -q "pid=$(cat "$RUN/$1.pid"),"; }

verify() {  # every daemon ours, on its port, answering; else say which one is not, and fail
    local name port
    for name in slurmctld slurmd ${ACCOUNTING_DAEMONS:-}; do
        case $name in slurmctld) port=$CTLD_PORT ;; slurmd) port=$SLURMD_PORT ;; slurmdbd) port=$DBD_PORT ;; mariadbd) port=$DB_PORT ;; esac
        if ! alive "$RUN/$name.pid"; then
            die "$name is not running (it exited; see $DIR/log/$name.log)"
        fi
        ours "$name" "$port" || die "$name (pid $(cat "$RUN/$name.pid")) is not listening on its port $port (held by: $(holder "$port" || echo nobody)); see $DIR/log/$name.log"
    done
    SLURM_CONF=$CONF scontrol ping 2>/dev/null | grep -q "is UP" || die "scontrol ping: slurmctld on port $CTLD_PORT does not answer"
    node_up || die "sinfo: the node of this cluster is not up ($(SLURM_CONF=$CONF sinfo -h -o %T 2>&1 | head -1))"
}

install_packages() {
    local pkgs=(slurmctld slurmd slurm-client munge)
    [[ $ACCOUNTING == 1 ]] && pkgs+=(slurmdbd slurm-wlm-mysql-plugin mariadb-server mariadb-client)
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them" $CANNOT_INSTALL
    log "installing ${missing[*]} (log: $DIR/log/apt.log)"
    mkdir -p "$DIR/log"
    # Try without `apt-get update` first (fast when the lists are fresh); postinst scripts that try
    # to start services without systemd only print noise, hence the log file.
    {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || {
            apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
        }
    } >"$DIR/log/apt.log" 2>&1 || { tail -5 "$DIR/log/apt.log" >&2; die "could not install ${missing[*]}" $CANNOT_INSTALL; }
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    mkdir -p "$RUN" && touch "$RUN/.munge-ours"
    wait_for "$TIMEOUT" munged bash -c 'munge -n | unmunge'
}

CONFIG_CHANGED=0
install_if_changed() {  # install_if_changed NEW TARGET: replace TARGET by NEW only when they differ
    if cmp -s "$1" "$2"; then rm -f "$1"; else mv "$1" "$2"; CONFIG_CHANGED=1; fi
}

write_config() {
    mkdir -p "$DIR"/{etc,run,state,spool,log}
    # The node line comes from the hardware; RealMemory ~90% so jobs cannot starve the machine.
    local node mem
    node=$(slurmd -C | head -1 | sed -E 's/ RealMemory=[0-9]+//; s/ UpTime=.*//')
    mem=$(slurmd -C | sed -nE 's/.*RealMemory=([0-9]+).*/\1/p')
    mem=$((mem * 9 / 10))
    local storage="accounting_storage/none"
    [[ $ACCOUNTING == 1 ]] && storage="accounting_storage/slurmdbd"
    local tmp=$CONF.tmp
    cat >"$tmp" <<EOF
# Written by scripts/slurm-cluster.sh; settings shown to work without systemd or cgroups.
ClusterName=parc-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# Requeued jobs restart after ~25 s instead of ~120 s (the job credential must expire first).
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=$storage
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MailProg=/bin/true
KillWait=10
MinJobAge=600
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# A job in 'high' preempts (requeues) jobs in 'debug', after their --signal: a real preemption.
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
$node RealMemory=$mem NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1 GraceTime=20
PartitionName=high  Nodes=ALL Default=NO  MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
    install_if_changed "$tmp" "$CONF"
    if [[ $ACCOUNTING == 1 ]]; then
        # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF, which must be 600 and SlurmUser's.
        cat >"$tmp" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
        chmod 600 "$tmp"
        install_if_changed "$tmp" "$DIR/etc/slurmdbd.conf"
    fi
}

mysql_ready() { mariadb --socket="$RUN/mysqld.sock" -e 'select 1'; }

start_mariadb() {
    alive "$RUN/mariadbd.pid" && return
    local data=$DIR/mysql
    if [[ ! -d $data/mysql ]]; then
        log "initialising mariadb in $data"
        mkdir -p "$data"
        chown mysql:mysql "$data"
        mariadb-install-db --user=mysql --datadir="$data" --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
    fi
    chown mysql:mysql "$RUN"
    log "starting mariadbd"
    # slurmdbd's plugin connects over TCP, so listen on 127.0.0.1 (only).
    setsid mariadbd --user=mysql --datadir="$data" --socket="$RUN/mysqld.sock" --pid-file="$RUN/mariadbd.pid" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$DIR/log/mariadb.log" \
        --innodb-buffer-pool-size=64M --skip-name-resolve </dev/null >/dev/null 2>&1 &
    wait_for "$TIMEOUT" mariadbd mysql_ready
    mariadb --socket="$RUN/mysqld.sock" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_daemon() {  # start_daemon NAME READY-CHECK...: start NAME unless its pid file names a live process
    local name=$1
    shift
    alive "$RUN/$name.pid" && return
    log "starting $name"
    SLURM_CONF=$CONF "$name" || die "$name failed to start; see $DIR/log/$name.log"
    wait_for "$TIMEOUT" "$name" "$@"
}

node_up() { [[ $(SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null) =~ ^(idle|mixed|allocated|completing) ]]; }
node_idle() { [[ $(SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null) == idle ]]; }

start() {
    [[ $(id -u) == 0 ]] || die "scripts/slurm-cluster.sh start needs root (it installs packages and starts daemons)"
    local t0=$SECONDS
    install_packages
    start_munge
    choose_ports
    write_config
    if [[ $ACCOUNTING == 1 ]]; then
        start_mariadb
        start_daemon slurmdbd bash -c "SLURM_CONF=$CONF sacctmgr -n list cluster"
    fi
    start_daemon slurmctld bash -c "SLURM_CONF=$CONF scontrol ping | grep -q UP"
    start_daemon slurmd bash -c "$(declare -f node_up); CONF=$CONF; node_up"
    # Daemons that were already running read a changed slurm.conf only when told to.
    [[ $CONFIG_CHANGED == 1 ]] && SLURM_CONF=$CONF scontrol reconfigure >/dev/null 2>&1 || true
    # A node left 'down' by an earlier unclean stop comes back with ReturnToService=2; make sure.
    if ! node_up; then
        SLURM_CONF=$CONF scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    fi
    wait_for "$TIMEOUT" "an idle node" node_up
    verify
    log "up in $((SECONDS - t0)) s (state in $DIR; slurmctld on port $CTLD_PORT)"
    echo "export SLURM_CONF=$CONF"
}

stop() {
    # Reverse order of start; each by the pid it wrote, so nothing else on the machine is touched.
    local name pid
    for name in slurmd slurmctld slurmdbd mariadbd; do
        alive "$RUN/$name.pid" || continue
        pid=$(cat "$RUN/$name.pid")
        log "stopping $name ($pid)"
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        rm -f "$RUN/$name.pid"
    done
    # munged is shared with anything else using munge on this machine; stop it only if we started it.
    if [[ -s /run/munge/munged.pid && -e $RUN/.munge-ours ]]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f "$RUN/.munge-ours"
    fi
}

status() {
    [[ -s $PORTS ]] || { log "not running (state dir $DIR)"; exit 1; }
    # shellcheck disable=SC1090
    source "$PORTS"
    node_up || { log "not running (state dir $DIR)"; exit 1; }
    verify
    SLURM_CONF=$CONF sinfo >&2
    echo "export SLURM_CONF=$CONF"
}

ACCOUNTING_DAEMONS=""
[[ $ACCOUNTING == 1 ]] && ACCOUNTING_DAEMONS="slurmdbd mariadbd"

case ${1:-} in
    start) start ;;
    stop) stop ;;
    clean) stop; rm -rf "$DIR" ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
esac
