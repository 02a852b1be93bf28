# shellcheck shell=bash
#
# A replicated PostgreSQL on this machine: one etcd and two or three Patroni
# nodes on 127.0.0.1, with synchronous streaming replication and automatic
# failover. For trying the farm's database failover on one machine and for
# its test; `deploy/` puts the same on separate hosts. Source it after
# scripts/lib/common.sh and scripts/lib/pg.sh.
#
#   ha_find_tools            installs Patroni and etcd with apt-get when missing
#   ha_init DIR BASE N MODE  writes the configuration of N nodes (2 or 3) on the
#                            ports BASE.. (etcd BASE, BASE+1; node k postgres
#                            BASE+2k, its REST API BASE+2k+1); MODE is
#                            `available` or `durable` (see ha_dcs_mode)
#   ha_start DIR             starts what is not running, waits for a leader
#                            and its synchronous standby, creates `chat`
#   ha_stop DIR              stops the nodes (their PostgreSQL cleanly), then etcd
#   ha_kill DIR NODE WHAT    kill -9 of node NODE's `postgres` (its postmaster)
#                            or of its `host` (Patroni and the postmaster)
#   ha_start_node DIR NODE   starts node NODE's Patroni again
#   ha_leader DIR            prints the name of the node holding the leader lock
#   ha_sync DIR              prints the name of the synchronous standby
#   ha_url DIR DB            prints the multi-host URL that follows the primary
#   ha_status DIR            prints `patronictl list`
#
# Everything listens on 127.0.0.1 only and trusts local connections, as the
# single cluster of scripts/run does. As root, Patroni and PostgreSQL run as
# the `postgres` user.

HA_SCOPE=chat

# Installs Patroni and etcd from the distribution when missing. Debian's
# etcd-server would start a system etcd on install where systemd runs; ours
# is started by ha_start on its own ports, so that one is stopped again.
ha_find_tools() {
    pg_need_bin || return 1
    if command -v patroni >/dev/null 2>&1 && command -v etcd >/dev/null 2>&1 &&
        command -v patronictl >/dev/null 2>&1; then
        return 0
    fi
    is_root || { die "Patroni and etcd are not installed; install them (sudo apt-get install patroni etcd-server) or run this as root to let them be installed"; return 1; }
    command -v apt-get >/dev/null 2>&1 || { die "Patroni and etcd are not installed and apt-get is not available"; return 1; }
    say "Patroni and etcd are not installed; installing them with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null || { die "apt-get update failed"; return 1; }
    apt-get install -y -qq --no-install-recommends patroni etcd-server etcd-client </dev/null ||
        { die "apt-get install patroni etcd-server failed"; return 1; }
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        systemctl disable --now etcd.service >/dev/null 2>&1 || true
    fi
}

# Reads DIR/ha.env into HA_BASE, HA_NODES and HA_MODE.
ha_load() {
    local dir=$1
    [[ -f $dir/ha.env ]] || { die "$dir holds no replicated database (no ha.env); start one with: scripts/ha-db start $dir"; return 1; }
    # shellcheck source=/dev/null
    source "$dir/ha.env"
}

ha_pg_port() { printf '%s\n' "$((HA_BASE + 2 * $1))"; }
ha_api_port() { printf '%s\n' "$((HA_BASE + 2 * $1 + 1))"; }

# Prints the dynamic (DCS) settings for MODE.
#
# Both modes replicate synchronously: a commit returns once the standby has
# flushed it, and Patroni promotes only the synchronous standby, so a
# failover loses no acknowledged commit. They differ when the standby is
# gone. `available` (the default) lets the primary go on alone, so the farm
# keeps storing and a message is then on one machine only until the standby
# is back; `durable` (synchronous_mode_strict) blocks every commit until a
# standby is back, so nothing is ever acknowledged from one machine only.
#
# The timings make a failover quick on one machine: the leader lock lives
# 20 s (Patroni's least), a node looks every second, and a crashed primary
# is replaced at once rather than restarted in place.
ha_dcs_mode() {
    local strict=false
    [[ $1 == durable ]] && strict=true
    cat <<EOF
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    master_start_timeout: 0
    synchronous_mode: true
    synchronous_mode_strict: $strict
    synchronous_node_count: 1
EOF
}

# Writes DIR/ha.env, the secrets and each node's patroni.yml, unless DIR
# holds a configuration already (whose ports and mode are then kept).
ha_init() {
    local dir base nodes mode
    dir=$(pg_abspath "$1")
    base=$2
    nodes=$3
    mode=$4
    [[ -f $dir/ha.env ]] && return 0
    [[ $nodes == 2 || $nodes == 3 ]] || { die "a replicated database has 2 or 3 nodes, not $nodes"; return 1; }
    [[ $mode == available || $mode == durable ]] || { die "the mode is available or durable, not $mode"; return 1; }
    if ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1024 || base + 2 * nodes + 1 > 65535)); then
        die "the base port must leave room for $((2 * nodes + 2)) ports: $base"
        return 1
    fi
    ha_find_tools || return 1
    (umask 022 && mkdir -p "$dir") || { die "cannot create $dir"; return 1; }
    chmod 755 "$dir"
    pg_check_reachable "$dir" || return 1
    local replication_password superuser_password rewind_password
    replication_password=$(ha_secret) && superuser_password=$(ha_secret) &&
        rewind_password=$(ha_secret) || return 1
    local node
    for ((node = 1; node <= nodes; node++)); do
        local node_dir=$dir/db$node
        (umask 077 && mkdir -p "$node_dir") || { die "cannot create $node_dir"; return 1; }
        if is_root; then
            chown postgres: "$node_dir" || return 1
        fi
        local socket_dir=$node_dir
        ((${#node_dir} + 20 > 100)) && socket_dir=
        HA_BASE=$base ha_node_config "$node" "$node_dir" "$socket_dir" "$mode" \
            "$replication_password" "$superuser_password" "$rewind_password" \
            >"$node_dir/patroni.yml" || return 1
        chmod 600 "$node_dir/patroni.yml"
        if is_root; then
            chown postgres: "$node_dir/patroni.yml" || return 1
        fi
    done
    printf 'HA_BASE=%s\nHA_NODES=%s\nHA_MODE=%s\n' "$base" "$nodes" "$mode" >"$dir/ha.env"
}

# Prints a random password of 32 hex digits.
ha_secret() {
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' || { die "cannot read /dev/urandom"; return 1; }
}

# Prints node NODE's patroni.yml. HA_BASE is set.
ha_node_config() {
    local node=$1 node_dir=$2 socket_dir=$3 mode=$4
    local pg_port api_port
    pg_port=$(ha_pg_port "$node")
    api_port=$(ha_api_port "$node")
    cat <<EOF
# Node db$node of a replicated database made by scripts/ha-db; secrets inside.
scope: $HA_SCOPE
name: db$node
restapi:
  listen: 127.0.0.1:$api_port
  connect_address: 127.0.0.1:$api_port
etcd3:
  hosts: 127.0.0.1:$HA_BASE
log:
  dir: $node_dir
  file_num: 2
bootstrap:
  dcs:
$(ha_dcs_mode "$mode")
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 300
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $node_dir/data
  bin_dir: $PG_BIN
  pgpass: $node_dir/pgpass
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
  authentication:
    superuser:
      username: postgres
      password: $6
    replication:
      username: replicator
      password: $5
    rewind:
      username: rewind
      password: $7
  parameters:
    unix_socket_directories: '$socket_dir'
EOF
}

# Runs a command in the background as the owner of the nodes, with its pid
# written to PIDFILE, its output to LOG.
ha_spawn() {
    local pidfile=$1 log=$2
    shift 2
    # The shell writes its own pid, then becomes the program: the pid is the
    # program's, not that of runuser. Its script is single-quoted on purpose.
    # shellcheck disable=SC2016
    if is_root; then
        (cd / && exec setsid runuser -u postgres -- sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
            </dev/null >>"$log" 2>&1 &)
    else
        (cd / && exec setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
            </dev/null >>"$log" 2>&1 &)
    fi
}

# True when the pid in PIDFILE runs.
ha_pid_alive() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null
}

# Waits up to SECONDS for the pid in PIDFILE to exist.
ha_wait_pidfile() {
    local pidfile=$1 seconds=$2 attempt
    for ((attempt = 0; attempt < seconds * 10; attempt++)); do
        [[ -s $pidfile ]] && return 0
        sleep 0.1
    done
    return 1
}

# Prints the HTTP status of GET PATH on 127.0.0.1:PORT, or 000 when nothing
# answers within two seconds.
ha_http_status() {
    local port=$1 path=$2 status
    # The inner script is single-quoted on purpose: it gets its values as arguments.
    # shellcheck disable=SC2016
    status=$(timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
        IFS=" " read -r _ code _ <&3 && printf "%s\n" "$code"' "$port" "$path" 2>/dev/null) || status=000
    printf '%s\n' "${status:-000}"
}

# Starts etcd unless it runs; its data, pid and log are in DIR/etcd.
ha_start_etcd() {
    local dir=$1
    local etcd_dir=$dir/etcd
    ha_pid_alive "$etcd_dir/etcd.pid" && return 0
    (umask 077 && mkdir -p "$etcd_dir/data") || { die "cannot create $etcd_dir"; return 1; }
    if is_root; then
        chown -R postgres: "$etcd_dir" || return 1
    fi
    rm -f "$etcd_dir/etcd.pid"
    local client=http://127.0.0.1:$HA_BASE peer=http://127.0.0.1:$((HA_BASE + 1))
    ha_spawn "$etcd_dir/etcd.pid" "$etcd_dir/etcd.log" etcd --name ha --data-dir "$etcd_dir/data" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "ha=$peer" --initial-cluster-state new \
        --initial-cluster-token "$HA_SCOPE-$HA_BASE"
    local attempt
    for ((attempt = 0; attempt < 150; attempt++)); do
        [[ $(ha_http_status "$HA_BASE" /health) == 200 ]] && return 0
        if [[ -s $etcd_dir/etcd.pid ]] && ! ha_pid_alive "$etcd_dir/etcd.pid"; then
            break
        fi
        sleep 0.2
    done
    tail -n 20 "$etcd_dir/etcd.log" >&2
    die "etcd did not come up on 127.0.0.1:$HA_BASE (log: $etcd_dir/etcd.log)"
}

# Starts node NODE's Patroni unless it runs.
ha_start_node() {
    local dir node
    dir=$(pg_abspath "$1")
    node=$2
    ha_load "$dir" || return 1
    ((node >= 1 && node <= HA_NODES)) || { die "there is no node $node (nodes 1 to $HA_NODES)"; return 1; }
    local node_dir=$dir/db$node
    ha_pid_alive "$node_dir/patroni.pid" && return 0
    rm -f "$node_dir/patroni.pid"
    ha_spawn "$node_dir/patroni.pid" "$node_dir/patroni.out" patroni "$node_dir/patroni.yml"
    ha_wait_pidfile "$node_dir/patroni.pid" 10 || { die "Patroni of db$node did not start (log: $node_dir/patroni.out)"; return 1; }
}

# Prints the name of the node whose REST API answers 200 on PATH, if one does.
ha_node_answering() {
    local path=$1 node
    for ((node = 1; node <= HA_NODES; node++)); do
        if [[ $(ha_http_status "$(ha_api_port "$node")" "$path") == 200 ]]; then
            printf 'db%s\n' "$node"
            return 0
        fi
    done
    return 1
}

ha_leader() {
    ha_load "$(pg_abspath "$1")" || return 1
    ha_node_answering /leader
}

ha_sync() {
    ha_load "$(pg_abspath "$1")" || return 1
    ha_node_answering /sync
}

# Waits up to SECONDS for a leader that accepts writes and a synchronous
# standby.
ha_wait_healthy() {
    local dir=$1 seconds=$2 attempt leader
    for ((attempt = 0; attempt < seconds * 5; attempt++)); do
        if leader=$(ha_node_answering /primary) && ha_node_answering /sync >/dev/null; then
            printf '%s\n' "$leader"
            return 0
        fi
        sleep 0.2
    done
    ha_status "$dir" >&2 || true
    die "the replicated database has no primary with a synchronous standby after ${seconds}s (logs: $dir/db*/patroni.out, $dir/db*/patroni.log)"
}

ha_start() {
    local dir
    dir=$(pg_abspath "$1")
    ha_load "$dir" || return 1
    ha_find_tools || return 1
    ha_start_etcd "$dir" || return 1
    local node
    for ((node = 1; node <= HA_NODES; node++)); do
        ha_start_node "$dir" "$node" || return 1
    done
    # A first start runs initdb on one node and copies it to the others.
    local leader
    leader=$(ha_wait_healthy "$dir" 120) || return 1
    pg_createdb "$(ha_pg_port "${leader#db}")" chat
}

# Sends SIGNAL to the pid in PIDFILE and waits up to SECONDS for it to end.
ha_end() {
    local pidfile=$1 signal=$2 seconds=$3 pid attempt
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    [[ -n $pid ]] || return 0
    kill "-$signal" "$pid" 2>/dev/null || return 0
    for ((attempt = 0; attempt < seconds * 10; attempt++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

ha_stop() {
    local dir
    dir=$(pg_abspath "$1")
    ha_load "$dir" || return 1
    local node status=0
    # Patroni stops its PostgreSQL cleanly on SIGTERM; all at once, so that no
    # standby is promoted as the primary stops.
    for ((node = 1; node <= HA_NODES; node++)); do
        local pid
        if pid=$(cat "$dir/db$node/patroni.pid" 2>/dev/null); then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for ((node = 1; node <= HA_NODES; node++)); do
        if ! ha_end "$dir/db$node/patroni.pid" TERM 60; then
            say "Patroni of db$node did not stop in 60 s; killing it"
            ha_end "$dir/db$node/patroni.pid" KILL 5 || status=1
        fi
        ha_kill_postmaster "$dir" "$node" TERM
    done
    ha_end "$dir/etcd/etcd.pid" TERM 10 || ha_end "$dir/etcd/etcd.pid" KILL 5 || status=1
    return "$status"
}

# Sends SIGNAL to node NODE's postmaster, if it runs.
ha_kill_postmaster() {
    local dir=$1 node=$2 signal=$3 pid
    pid=$(head -n 1 "$dir/db$node/data/postmaster.pid" 2>/dev/null) || return 0
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
}

ha_kill() {
    local dir node what
    dir=$(pg_abspath "$1")
    node=${2#db}
    what=$3
    ha_load "$dir" || return 1
    ((node >= 1 && node <= HA_NODES)) || { die "there is no node $2 (db1 to db$HA_NODES)"; return 1; }
    case $what in
        postgres) ha_kill_postmaster "$dir" "$node" KILL ;;
        host)
            ha_end "$dir/db$node/patroni.pid" KILL 5 || true
            ha_kill_postmaster "$dir" "$node" KILL
            ;;
        *) die "kill what: postgres or host, not $what"; return 1 ;;
    esac
}

ha_url() {
    local dir db hosts="" node
    dir=$(pg_abspath "$1")
    db=$2
    ha_load "$dir" || return 1
    for ((node = 1; node <= HA_NODES; node++)); do
        hosts+="${hosts:+,}$PG_HOST:$(ha_pg_port "$node")"
    done
    printf 'postgres://postgres@%s/%s?target_session_attrs=read-write\n' "$hosts" "$db"
}

ha_status() {
    local dir
    dir=$(pg_abspath "$1")
    ha_load "$dir" || return 1
    patronictl -c "$dir/db1/patroni.yml" list 2>&1
}
