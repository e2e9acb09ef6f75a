# Launching throw-away Apache Cassandra 5.0 nodes: sourced (not run) by scripts/cassandra-node
# (one node) and scripts/cassandra-cluster (three nodes). It fetches the jars, writes a node's
# config files, starts its JVM and waits for CQL; where a node's data lives, when it is
# deleted and what "running" means stay with the script that sources this file.
#
# The sourcing script sets PROG (its name, for messages) first. Environment read here:
#   PYTHON          Python with cassandra-driver, default .venv/bin/python (relative to the root)
#   JAVA_HOME/JAVA  Java 17 (default: $JAVA_HOME/bin/java, else java on PATH)
#   TMPDIR          parent of the temporary data folders, default /tmp

CONF_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd -- "$CONF_DIR/../.." && pwd -P)
CACHE_DIR=$ROOT/.cache
LIB_DIR=$CACHE_DIR/cassandra/lib
M2_DIR=$CACHE_DIR/m2
POM=$CONF_DIR/pom.xml

PYTHON=${PYTHON:-.venv/bin/python}
[[ $PYTHON != */* || $PYTHON == /* ]] || PYTHON=$ROOT/$PYTHON
if [[ -n ${JAVA:-} ]]; then :
elif [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then JAVA=$JAVA_HOME/bin/java
else JAVA=java
fi

die() { echo "$PROG: $*" >&2; exit 1; }

# The version pinned in the pom. LIB_DIR/.complete holds that version and then the names of
# all jars Maven copied; it is written last, so a partial or stale copy is never "installed".
cassandra_version() {
    sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$POM" | head -n1
}

installed() {
    local marker=$LIB_DIR/.complete version jar
    [[ -f $marker ]] || return 1
    { read -r version && [[ $version == "$(cassandra_version)" ]] || return 1
      while read -r jar; do [[ -f $LIB_DIR/$jar ]] || return 1; done; } <"$marker"
    [[ -f $LIB_DIR/cassandra-all-$version.jar ]]
}

# Fetch the jars into LIB_DIR (no-op when already there).
install_jars() {
    installed && return 0
    command -v mvn >/dev/null || die "mvn (Maven) is needed to fetch Cassandra"
    local tmp=$LIB_DIR.tmp.$$ out
    rm -rf "$tmp"
    mkdir -p "$CACHE_DIR/cassandra" "$M2_DIR"
    # -q and captured output: quiet unless something goes wrong.
    if ! out=$(mvn -B -q -f "$POM" -Dmaven.repo.local="$M2_DIR" \
            dependency:copy-dependencies -DoutputDirectory="$tmp" 2>&1); then
        rm -rf "$tmp"
        printf '%s\n' "$out" >&2
        die "could not resolve cassandra-all $(cassandra_version) with Maven"
    fi
    [[ -f $tmp/cassandra-all-$(cassandra_version).jar ]] || { rm -rf "$tmp"; die "cassandra-all jar missing after Maven run"; }
    { cassandra_version; (cd "$tmp" && ls -1 -- *.jar); } >"$tmp/.complete"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
}

# Java and a Python with cassandra-driver (for the readiness checks) are there.
check_tools() {
    command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME or JAVA)"
    "$PYTHON" -c 'import cassandra.cluster' 2>/dev/null ||
        die "$PYTHON cannot import cassandra-driver (set PYTHON)"
}

# True while process $1 exists and is not a zombie (an exited node whose parent, typically
# init after `start` returned, has not reaped it yet).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0  # no procfs: trust kill -0
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# True when process $1 is a Cassandra node (guards against a pid reused by something else).
is_cassandra() {
    alive "$1" &&
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'org.apache.cassandra.service.CassandraDaemon'
}

# port_in_use ADDRESS PORT
port_in_use() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# cql_ready ADDRESS PORT: exit 0 once `SELECT release_version FROM system.local` answers
# there (and print the version).
cql_ready() {
    "$PYTHON" - "$1" "$2" <<'EOF' 2>/dev/null
import logging, sys
logging.disable(logging.CRITICAL)
from cassandra.cluster import Cluster
from cassandra.policies import WhiteListRoundRobinPolicy
address, port = sys.argv[1], int(sys.argv[2])
cluster = Cluster([address], port=port, connect_timeout=5, control_connection_timeout=5,
                  load_balancing_policy=WhiteListRoundRobinPolicy([address]), protocol_version=5)
try:
    session = cluster.connect()
    row = session.execute("SELECT release_version FROM system.local", timeout=10).one()
    print(row.release_version)
finally:
    cluster.shutdown()
EOF
}

show_log_tail() {
    local log=$1
    echo "---- last 40 lines of $log ----" >&2
    tail -n 40 "$log" >&2 2>/dev/null || true
    echo "----" >&2
}

# new_data_dir MARKER: a fresh temporary folder (printed), holding the empty file MARKER so
# that only folders made here are ever deleted.
new_data_dir() {
    local data
    data=$(mktemp -d "${TMPDIR:-/tmp}/notifier-cassandra.XXXXXX")
    data=$(cd -- "$data" && pwd -P)
    : >"$data/$1"
    mkdir -p "$data/logs" "$data/triggers"
    echo "$data"
}

# write_config DATA ADDRESS NATIVE_PORT STORAGE_PORT SEEDS CLUSTER_NAME HINTED_HANDOFF:
# DATA/cassandra.yaml from the template, and DATA/logback.xml.
write_config() {
    local data=$1
    sed -e "s|@DATA_DIR@|$data|g" -e "s|@ADDRESS@|$2|g" -e "s|@NATIVE_PORT@|$3|g" \
        -e "s|@STORAGE_PORT@|$4|g" -e "s|@SEEDS@|$5|g" -e "s|@CLUSTER_NAME@|$6|g" \
        -e "s|@HINTED_HANDOFF@|$7|g" \
        "$CONF_DIR/cassandra.yaml.in" >"$data/cassandra.yaml"
    # Logback to stdout, which goes to the node's log together with anything the JVM prints.
    cat >"$data/logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="INFO">
    <appender-ref ref="STDOUT"/>
  </root>
</configuration>
EOF
}

# launch_node DATA HEAP [JVM_OPTION...]: start a node on DATA (configured by write_config) in
# the background, its output in DATA/cassandra.log; sets LAUNCHED_PID. NO_FSYNC (below) makes
# it faster where nothing needs to survive the node's process.
launch_node() {
    local data=$1 heap=$2
    shift 2
    local -a jvm_opts=() words
    local line
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%%#*}
        [[ -n ${line//[[:space:]]/} ]] || continue
        read -r -a words <<<"$line"
        jvm_opts+=("${words[@]}")
    done <"$CONF_DIR/jvm17-server.options"
    jvm_opts+=(
        "-Xms$heap" "-Xmx$heap"
        -Xss256k
        -XX:+PerfDisableSharedMem
        -XX:+ExitOnOutOfMemoryError "-XX:ErrorFile=$data/hs_err_%p.log"
        -Djava.security.manager=allow  # Cassandra installs a SecurityManager; needed on Java 18+
        -Djava.net.preferIPv4Stack=true
        -Dcassandra-foreground=yes
        "-Dcassandra.config=file://$data/cassandra.yaml"
        "-Dcassandra.storagedir=$data"
        "-Dcassandra.logdir=$data/logs"
        "-Dcassandra.triggers_dir=$data/triggers"
        "-Dlogback.configurationFile=file://$data/logback.xml"
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.ring_delay_ms=1000
        # Quick shutdown: no gossip shutdown announcement / messaging drain.
        -Dcassandra.shutdown_announce_in_ms=0
        -Dcassandra.test.messagingService.nonGracefulShutdown=true
        "$@"
    )
    local jamm
    jamm=$(compgen -G "$LIB_DIR/jamm-*.jar" | head -n1 || true)
    [[ -z $jamm ]] || jvm_opts+=("-javaagent:$jamm")

    # Own session: a Ctrl-C of the caller won't hit the node.
    local -a launcher=()
    if command -v setsid >/dev/null; then launcher+=(setsid); fi
    # Cassandra always calls mlockall(MCL_CURRENT): with CAP_IPC_LOCK (root) or an unlimited
    # RLIMIT_MEMLOCK that succeeds, faults in and pins the whole heap (1 GB RSS at once, ~2 s
    # longer start-up). A test node doesn't want that: drop the capability, cap the limit.
    if [[ $(id -u) == 0 ]] && setpriv --bounding-set=-ipc_lock true 2>/dev/null; then
        launcher+=(setpriv --bounding-set=-ipc_lock)
    fi

    (
        cd "$data"
        ulimit -S -l 64 2>/dev/null || true
        exec "${launcher[@]}" "$JAVA" "${jvm_opts[@]}" -cp "$LIB_DIR/*" \
            org.apache.cassandra.service.CassandraDaemon </dev/null >>"$data/cassandra.log" 2>&1
    ) &
    LAUNCHED_PID=$!
}

# wait_for_cql PID ADDRESS PORT TIMEOUT: wait until the node PID answers CQL on ADDRESS:PORT
# and set CQL_VERSION; return 1 when it exited first, 2 after TIMEOUT seconds.
wait_for_cql() {
    local pid=$1 address=$2 port=$3 deadline
    deadline=$(($(date +%s) + $4))
    while :; do
        alive "$pid" || return 1
        if port_in_use "$address" "$port" && CQL_VERSION=$(cql_ready "$address" "$port"); then
            return 0
        fi
        (($(date +%s) < deadline)) || return 2
        sleep 0.5
    done
}

# JVM options for a node whose data need not survive its process: no fsync at all, and no
# flush of the system tables at schema changes (a killed node restarts without its schema).
NO_FSYNC=(-Dcassandra.unsafesystem=true -Dcassandra.skip_sync=true)

# elapsed T0: seconds since T0 (a `date +%s.%N`), one decimal.
elapsed() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $1}"; }
