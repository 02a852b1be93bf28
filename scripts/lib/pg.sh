# shellcheck shell=bash
#
# Functions for a private PostgreSQL cluster that listens on 127.0.0.1 only
# and trusts every local connection. Source it after scripts/lib/common.sh.
#
#   pg_find_bin              sets PG_BIN, installing PostgreSQL with apt-get
#                            when it is missing and we are root
#   pg_lookup_bin            sets PG_BIN if PostgreSQL is installed
#   pg_init DIR              creates the cluster in DIR unless it exists
#   pg_start DIR PORT [OPT]  starts it; OPT are extra postgres options, such
#                            as "-c fsync=off"
#   pg_start_free_port DIR [OPT]
#                            starts it on a free random port, prints the port
#   pg_stop DIR              stops it if it runs
#   pg_running DIR           true when it runs
#   pg_port DIR              prints the port of the running cluster
#   pg_createdb PORT NAME    creates database NAME unless it exists
#   pg_url PORT NAME         prints the database URL
#
# Functions report failures on stderr and return non-zero; none of them exits.
# As root, the server programs run as the `postgres` user, because initdb and
# pg_ctl refuse to run as root. The client programs (psql, createdb,
# pg_isready) connect over TCP as the database user `postgres` from any user.

PG_HOST=127.0.0.1

# Runs a command as the cluster owner: `postgres` when we are root, else us.
# It runs from / because the postgres user may not be able to enter our
# working directory, so every path given to it must be absolute.
pg_as_owner() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Prints the absolute form of a path that may not exist yet.
pg_abspath() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

# Prints the newest /usr/lib/postgresql/<version>/bin that has initdb, if any.
pg_newest_debian_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/initdb && -x $dir/pg_ctl ]] && printf '%s\n' "$dir"
    done | sort -V | tail -n 1
}

# Installs PostgreSQL from the distribution without creating or starting the
# distribution's own `main` cluster, the way the official Docker image does.
pg_install() {
    is_root || { die "PostgreSQL is not installed; install it (e.g. sudo apt-get install postgresql) or run this as root to let it be installed"; return 1; }
    command -v apt-get >/dev/null 2>&1 || { die "PostgreSQL is not installed and apt-get is not available; install PostgreSQL (initdb, pg_ctl) and try again"; return 1; }
    say "PostgreSQL is not installed; installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null || { die "apt-get update failed"; return 1; }
    apt-get install -y -qq postgresql-common </dev/null || { die "apt-get install postgresql-common failed"; return 1; }
    local conf=/etc/postgresql-common/createcluster.conf
    if [[ -f $conf ]]; then
        sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*$/create_main_cluster = false/' "$conf"
    fi
    apt-get install -y -qq postgresql </dev/null || { die "apt-get install postgresql failed"; return 1; }
}

# Sets PG_BIN to the directory of initdb, pg_ctl, psql and friends, looking
# in order at PG_BIN if already set, the newest Debian version directory, and
# initdb on PATH. Returns 1 quietly when none has them.
pg_lookup_bin() {
    if [[ -n ${PG_BIN:-} ]]; then
        [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] && return 0
        die "PG_BIN=$PG_BIN does not contain initdb and pg_ctl"
        return 1
    fi
    PG_BIN=$(pg_newest_debian_bin)
    if [[ -z $PG_BIN ]] && command -v initdb >/dev/null 2>&1; then
        PG_BIN=$(dirname "$(readlink -f "$(command -v initdb)")")
        [[ -x $PG_BIN/pg_ctl ]] || PG_BIN=
    fi
    [[ -n $PG_BIN ]] && export PG_BIN
}

# Like pg_lookup_bin, but installs PostgreSQL when it is missing, and checks
# that the client programs and, as root, the postgres user exist.
pg_find_bin() {
    if ! pg_lookup_bin; then
        [[ -z ${PG_BIN:-} ]] || return 1
        pg_install || return 1
        pg_lookup_bin || { die "PostgreSQL was installed but no /usr/lib/postgresql/*/bin/initdb was found"; return 1; }
    fi
    local tool
    for tool in psql createdb pg_isready; do
        [[ -x $PG_BIN/$tool ]] || { die "$PG_BIN/$tool is missing; install the PostgreSQL client programs"; return 1; }
    done
    if is_root && ! getent passwd postgres >/dev/null; then
        die "the user \`postgres\` does not exist; as root the cluster must run as that user (create it with: useradd --system --home-dir /var/lib/postgresql postgres)"
        return 1
    fi
}

# Makes sure PG_BIN is set, for the functions below.
pg_need_bin() {
    [[ -n ${PG_BIN:-} ]] || pg_find_bin
}

# Checks that the cluster owner can enter DIR, which exists. When it cannot,
# names the first directory on the way that blocks it.
pg_check_reachable() {
    local dir=$1
    is_root || return 0
    runuser -u postgres -- test -x "$dir" 2>/dev/null && return 0
    local path="" part
    local -a parts
    IFS=/ read -ra parts <<<"${dir#/}"
    for part in "${parts[@]}"; do
        path="$path/$part"
        if ! runuser -u postgres -- test -x "$path" 2>/dev/null; then
            die "the postgres user cannot enter $path (mode $(stat -c %A "$path"), owner $(stat -c %U "$path")), so it cannot use $dir; put the cluster somewhere it can reach (e.g. under /tmp) or set DATABASE_URL to an existing database"
            return 1
        fi
    done
    die "the postgres user cannot reach $dir"
    return 1
}

# Creates a cluster in DIR with trust authentication for the superuser
# `postgres`. An existing cluster (DIR/PG_VERSION present) is kept as it is.
pg_init() {
    local dir
    dir=$(pg_abspath "$1")
    pg_need_bin || return 1
    if [[ -f $dir/PG_VERSION ]]; then
        return 0
    fi
    if [[ -d $dir && -n $(ls -A "$dir") ]]; then
        die "$dir is not empty and holds no PostgreSQL cluster; remove it or choose another directory"
        return 1
    fi
    (umask 022 && mkdir -p "$dir") || { die "cannot create $dir"; return 1; }
    if is_root; then
        chown postgres: "$dir" || { die "cannot chown $dir to postgres"; return 1; }
    fi
    chmod 700 "$dir"
    pg_check_reachable "$dir" || return 1

    local locale=C
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale=C.UTF-8
    fi
    say "creating a PostgreSQL cluster in $dir"
    local output
    if ! output=$(pg_as_owner "$PG_BIN/initdb" -D "$dir" --auth=trust --username=postgres \
        -E UTF8 --locale="$locale" 2>&1); then
        printf '%s\n' "$output" >&2
        die "initdb failed for $dir"
        return 1
    fi
}

# True when the cluster in DIR runs.
pg_running() {
    local dir
    dir=$(pg_abspath "$1")
    pg_need_bin || return 1
    [[ -f $dir/postmaster.pid ]] || return 1
    pg_as_owner "$PG_BIN/pg_ctl" status -D "$dir" >/dev/null 2>&1
}

# Prints the port of the cluster running in DIR, from its postmaster.pid.
pg_port() {
    local dir
    dir=$(pg_abspath "$1")
    sed -n 4p "$dir/postmaster.pid" 2>/dev/null
}

# Waits until the cluster accepts connections on PORT, for up to 30 seconds.
pg_wait_ready() {
    local port=$1 attempt
    pg_need_bin || return 1
    for ((attempt = 0; attempt < 150; attempt++)); do
        "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$port" -U postgres -d postgres && return 0
        sleep 0.2
    done
    return 1
}

# Starts the cluster in DIR on PORT, logging to DIR/postgres.log. Any further
# arguments are passed to postgres as options; pg_ctl hands them to a shell,
# so a value with spaces needs its own quotes. The unix socket lives in DIR
# unless that path is too long for a socket, in which case there is none.
pg_start() {
    local dir port extra
    dir=$(pg_abspath "$1")
    pg_need_bin || return 1
    port=$2
    shift 2
    extra="$*"
    if pg_running "$dir"; then
        say "PostgreSQL in $dir is already running on port $(pg_port "$dir")"
        return 0
    fi
    local socket_dir=$dir
    if ((${#dir} + 20 > 100)); then
        socket_dir=
    fi
    local log=$dir/postgres.log
    local log_start=0
    [[ -f $log ]] && log_start=$(wc -l <"$log")
    if ! pg_as_owner "$PG_BIN/pg_ctl" start -D "$dir" -l "$log" -w -t 60 \
        -o "-p $port -k '$socket_dir' -c listen_addresses=$PG_HOST $extra" >/dev/null 2>&1; then
        # Shows only what this attempt logged.
        tail -n +"$((log_start + 1))" "$log" 2>/dev/null | tail -n 20 >&2
        die "PostgreSQL in $dir did not start on port $port (log: $log)"
        return 1
    fi
    if ! pg_wait_ready "$port"; then
        tail -n 20 "$log" >&2
        die "PostgreSQL in $dir started but does not accept connections on $PG_HOST:$port (log: $log)"
        return 1
    fi
}

# True when nothing accepts TCP connections on 127.0.0.1:PORT.
pg_port_free() {
    ! (exec 3<>"/dev/tcp/$PG_HOST/$1") 2>/dev/null
}

# Starts the cluster in DIR on a free random port in 20000-60000 and prints
# the port. Another process may take the port between the check and the
# start, so it tries again, a few times, when the port turns out to be taken.
pg_start_free_port() {
    local dir attempt port log lines_before
    dir=$(pg_abspath "$1")
    shift
    log=$dir/postgres.log
    if pg_running "$dir"; then
        pg_port "$dir"
        return 0
    fi
    for ((attempt = 1; attempt <= 10; attempt++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
        pg_port_free "$port" || continue
        lines_before=0
        [[ -f $log ]] && lines_before=$(wc -l <"$log")
        if pg_start "$dir" "$port" "$@" 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
        if ! tail -n +"$((lines_before + 1))" "$log" 2>/dev/null | grep -q 'could not bind\|Address already in use'; then
            # Not a port clash: try once more with messages, to show why.
            pg_start "$dir" "$port" "$@" && { printf '%s\n' "$port"; return 0; }
            return 1
        fi
    done
    die "could not find a free port for PostgreSQL after $((attempt - 1)) attempts"
    return 1
}

# Stops the cluster in DIR if it runs (fast mode: ends open sessions).
pg_stop() {
    local dir
    dir=$(pg_abspath "$1")
    pg_need_bin || return 1
    pg_running "$dir" || return 0
    pg_as_owner "$PG_BIN/pg_ctl" stop -D "$dir" -m fast -w -t 60 >/dev/null ||
        { die "could not stop PostgreSQL in $dir"; return 1; }
}

# Creates database NAME on the cluster at PORT unless it exists.
pg_createdb() {
    local port=$1 name=$2 exists
    pg_need_bin || return 1
    # psql interpolates :'name' (quoted as a literal) only in input it reads,
    # not in -c, hence the here-string.
    exists=$("$PG_BIN/psql" -X -q -A -t -h "$PG_HOST" -p "$port" -U postgres -d postgres \
        -v ON_ERROR_STOP=1 -v name="$name" <<<"select 1 from pg_database where datname = :'name'") ||
        { die "cannot query databases on $PG_HOST:$port"; return 1; }
    [[ $exists == 1 ]] && return 0
    "$PG_BIN/createdb" -h "$PG_HOST" -p "$port" -U postgres "$name" </dev/null ||
        { die "createdb $name failed on $PG_HOST:$port"; return 1; }
}

# Prints the URL of database NAME on the cluster at PORT.
pg_url() {
    printf 'postgres://postgres@%s:%s/%s\n' "$PG_HOST" "$1" "$2"
}
