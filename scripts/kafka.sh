#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker+controller) on
# 127.0.0.1, for the integration tests. The jars come from Maven Central and are
# cached; the broker's state (pid, address, data, logs) lives in one directory.
#
# usage: scripts/kafka.sh start | stop | status | addr [oauth] | clean
#        scripts/kafka.sh topics ARGS...   Kafka's TopicCommand against the broker
#        scripts/kafka.sh groups ARGS...   Kafka's ConsumerGroupCommand against it
#
#   start   start the broker unless it runs; print its bootstrap address
#           (127.0.0.1:PORT, the only line on stdout; progress goes to stderr)
#   stop    stop the broker and wait for it to exit (its data is kept)
#   status  say whether it runs; exit 0 if it does, 1 if not
#   addr    print the bootstrap address of the running broker; `addr oauth`
#           prints its SASL_PLAINTEXT + OAUTHBEARER one (see ALERTHOST_KAFKA_OAUTH)
#   clean   delete the state directory (the broker must be stopped)
#
# environment (all optional):
#   ALERTHOST_KAFKA_DIR      state directory        (default /tmp/alerthost-kafka)
#   ALERTHOST_KAFKA_CACHE    jar cache directory
#                            (default ${XDG_CACHE_HOME:-$HOME/.cache}/alerthost/kafka-VERSION)
#   ALERTHOST_KAFKA_PORT     PLAINTEXT port         (default: a free one, the last
#                            one used when it is still free)
#   ALERTHOST_KAFKA_CONTROLLER_PORT  CONTROLLER port (default: likewise)
#   ALERTHOST_KAFKA_OAUTH    1: also listen for SASL_PLAINTEXT with OAUTHBEARER
#                            (a stand-in for GCN, without TLS). Kafka's default
#                            validator checks each token: an unsigned JWT
#                            (alg "none") with a `sub` and an unexpired `exp`
#                            (and `iat` not in the future); connections must
#                            re-authenticate before their token expires.
#   ALERTHOST_KAFKA_OAUTH_PORT       its port (default: as for PLAINTEXT)
#   ALERTHOST_KAFKA_START_TIMEOUT    seconds to wait for the broker (default 60)
#   ALERTHOST_KAFKA_HEAP     JVM heap options       (default "-Xms128m -Xmx512m")
#   ALERTHOST_KAFKA_PROPS    extra server.properties lines, e.g.
#                            "auto.create.topics.enable=false" (newline-separated)
set -euo pipefail

# Pinned: the broker every test runs against.
KAFKA_VERSION=4.1.2
# The slf4j 1.x binding to log4j2; Kafka 4.1 logs through slf4j 1.7 and brings
# log4j-core 2.25.3 itself.
LOG4J_VERSION=2.25.3

STATE_DIR=${ALERTHOST_KAFKA_DIR:-/tmp/alerthost-kafka}
CACHE_DIR=${ALERTHOST_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/alerthost/kafka-$KAFKA_VERSION}
START_TIMEOUT=${ALERTHOST_KAFKA_START_TIMEOUT:-60}
HEAP_OPTS=${ALERTHOST_KAFKA_HEAP:--Xms128m -Xmx512m}

PID_FILE=$STATE_DIR/kafka.pid
ADDR_FILE=$STATE_DIR/addr
OAUTH_ADDR_FILE=$STATE_DIR/addr.oauth
PORTS_FILE=$STATE_DIR/ports
LOG_FILE=$STATE_DIR/server.log
OUT_FILE=$STATE_DIR/stdout.log
DATA_DIR=$STATE_DIR/data
LIBS_DIR=$CACHE_DIR/libs

say() { echo "kafka.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

usage() {
    sed -n '/^# usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# Hold an exclusive lock on FILE on descriptor FD until the script exits, so
# that tests starting the broker at once start one broker, and fetch once.
lock() {
    local fd=$1 file=$2
    command -v flock >/dev/null || die "flock not found: install util-linux"
    mkdir -p "$(dirname "$file")"
    eval "exec $fd>\"\$file\""
    flock "$fd"
}

need_java() {
    command -v java >/dev/null || die "java not found: install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre-headless)"
}

# Download Kafka's jars (broker, tools, log binding) once into the cache.
fetch_jars() {
    if [[ -f $LIBS_DIR/.complete ]]; then
        return
    fi
    lock 8 "$CACHE_DIR.lock"
    if [[ -f $LIBS_DIR/.complete ]]; then
        return
    fi
    command -v mvn >/dev/null || die "mvn not found: install Maven (e.g. apt-get install maven) to fetch Kafka $KAFKA_VERSION"
    say "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $CACHE_DIR"
    mkdir -p "$CACHE_DIR"
    cat >"$CACHE_DIR/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.alerthost</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    rm -rf "$LIBS_DIR"
    if ! mvn -q -B -f "$CACHE_DIR/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$LIBS_DIR" >"$CACHE_DIR/mvn.log" 2>&1; then
        tail -n 30 "$CACHE_DIR/mvn.log" >&2
        die "Maven could not fetch Kafka $KAFKA_VERSION (full log: $CACHE_DIR/mvn.log)"
    fi
    [[ -f $LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar ]] || die "Maven finished but $LIBS_DIR has no kafka_2.13-$KAFKA_VERSION.jar"
    touch "$LIBS_DIR/.complete"
}

# Log4j2 configuration for the command-line tools: warnings and errors to stderr.
tools_log_config() {
    local file=$CACHE_DIR/tools-log4j2.properties
    if [[ ! -f $file ]]; then
        cat >"$file" <<'EOF'
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
EOF
    fi
    echo "$file"
}

# Run a Kafka class with the cached jars.
run_class() {
    local class=$1
    shift
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$(tools_log_config)" \
        -cp "$LIBS_DIR/*" "$class" "$@"
}

# The pid of the running broker, or nothing. A pid file whose process is gone
# (or is not our broker) counts as not running.
running_pid() {
    [[ -f $PID_FILE ]] || return 0
    local pid cmdline
    pid=$(<"$PID_FILE")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 0
    if [[ $cmdline == *" kafka.Kafka "* ]]; then
        echo "$pid"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nobody listens on, below Linux's ephemeral range (32768-60999) so that
# outgoing connections do not take it between now and the broker's bind; not
# one of the space-separated ports in $1.
free_port() {
    local avoid=" ${1:-} " port tries
    for tries in $(seq 200); do
        port=$((20000 + RANDOM % 12000))
        if [[ $avoid != *" $port "* ]] && ! port_in_use "$port"; then
            echo "$port"
            return
        fi
    done
    die "found no free port on 127.0.0.1 after $tries tries"
}

# Use the port asked for (fail if it is taken), else the previous one when still
# free, else a fresh one; never one of the space-separated ports in AVOID.
choose_port() {
    local asked=$1 previous=$2 avoid=$3 what=$4
    if [[ -n $asked ]]; then
        port_in_use "$asked" && die "$what port $asked on 127.0.0.1 is already in use"
        echo "$asked"
    elif [[ -n $previous && " $avoid " != *" $previous "* ]] && ! port_in_use "$previous"; then
        echo "$previous"
    else
        free_port "$avoid"
    fi
}

# The OAUTH listener (when OPORT is given) has no server callback handler, so
# Kafka's OAuthBearerUnsecuredValidatorCallbackHandler checks its tokens; a
# maximum session lifetime makes the broker close a connection whose token has
# expired unless the client re-authenticated.
write_config() {
    local port=$1 cport=$2 oport=$3
    local listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
    local advertised=PLAINTEXT://127.0.0.1:$port
    local protocols=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
    if [[ -n $oport ]]; then
        listeners+=,OAUTH://127.0.0.1:$oport
        advertised+=,OAUTH://127.0.0.1:$oport
        protocols+=,OAUTH:SASL_PLAINTEXT
    fi
    cat >"$STATE_DIR/server.properties" <<EOF
# Written by scripts/kafka.sh; rewritten at every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$DATA_DIR
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
    if [[ -n $oport ]]; then
        cat >>"$STATE_DIR/server.properties" <<EOF
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;
listener.name.oauth.oauthbearer.connections.max.reauth.ms=3600000
EOF
    fi
    if [[ -n ${ALERTHOST_KAFKA_PROPS:-} ]]; then
        printf '%s\n' "$ALERTHOST_KAFKA_PROPS" >>"$STATE_DIR/server.properties"
    fi
    cat >"$STATE_DIR/log4j2.properties" <<EOF
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $LOG_FILE
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
}

# Format the data directory once, with a random cluster id.
format_storage() {
    if [[ -f $DATA_DIR/meta.properties ]]; then
        return
    fi
    local cluster_id
    # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding.
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    say "formatting $DATA_DIR (cluster id $cluster_id)"
    if ! run_class kafka.tools.StorageTool format --cluster-id="$cluster_id" \
        -c "$STATE_DIR/server.properties" >"$STATE_DIR/format.log" 2>&1; then
        cat "$STATE_DIR/format.log" >&2
        die "formatting the Kafka storage in $DATA_DIR failed"
    fi
}

# True once the broker answers metadata requests and lists itself.
broker_ready() {
    local addr=$1 metadata
    if command -v kcat >/dev/null; then
        metadata=$(kcat -b "$addr" -L -m 2 2>/dev/null) || return 1
        [[ $metadata == *" 1 brokers:"* ]]
    else
        port_in_use "${addr##*:}" && grep -q 'Kafka Server started' "$LOG_FILE" 2>/dev/null
    fi
}

cmd_start() {
    local pid
    pid=$(running_pid)
    if [[ -n $pid ]]; then
        if [[ ${ALERTHOST_KAFKA_OAUTH:-} == 1 && ! -f $OAUTH_ADDR_FILE ]]; then
            die "already running (pid $pid) without the OAuth listener; run: $0 stop"
        fi
        say "already running (pid $pid)"
        cat "$ADDR_FILE"
        return
    fi
    need_java
    fetch_jars
    mkdir -p "$STATE_DIR"

    local prev_port="" prev_cport="" prev_oport="" port cport oport=""
    if [[ -f $PORTS_FILE ]]; then
        read -r prev_port prev_cport prev_oport <"$PORTS_FILE" || true
    fi
    port=$(choose_port "${ALERTHOST_KAFKA_PORT:-}" "$prev_port" "" PLAINTEXT)
    cport=$(choose_port "${ALERTHOST_KAFKA_CONTROLLER_PORT:-}" "$prev_cport" "$port" CONTROLLER)
    if [[ ${ALERTHOST_KAFKA_OAUTH:-} == 1 ]]; then
        oport=$(choose_port "${ALERTHOST_KAFKA_OAUTH_PORT:-}" "$prev_oport" "$port $cport" OAUTH)
    fi
    local addr=127.0.0.1:$port

    write_config "$port" "$cport" "$oport"
    format_storage

    say "starting Kafka $KAFKA_VERSION on $addr (controller 127.0.0.1:$cport${oport:+, OAuth 127.0.0.1:$oport}), state in $STATE_DIR"
    rm -f "$ADDR_FILE" "$OAUTH_ADDR_FILE"
    : >"$LOG_FILE"
    # shellcheck disable=SC2086 # HEAP_OPTS holds several options
    nohup java $HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$STATE_DIR/log4j2.properties" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$STATE_DIR/server.properties" \
        >"$OUT_FILE" 2>&1 </dev/null 8>&- 9>&- &
    pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$port $cport${oport:+ $oport}" >"$PORTS_FILE"

    local deadline=$((SECONDS + START_TIMEOUT))
    until broker_ready "$addr"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 40 "$OUT_FILE" "$LOG_FILE" >&2 || true
            rm -f "$PID_FILE"
            die "the broker exited during start-up (logs: $LOG_FILE, $OUT_FILE)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 40 "$OUT_FILE" "$LOG_FILE" >&2 || true
            stop_pid "$pid"
            die "the broker did not answer on $addr within ${START_TIMEOUT}s (logs: $LOG_FILE, $OUT_FILE)"
        fi
        sleep 0.5
    done
    if [[ -n $oport ]]; then
        echo "127.0.0.1:$oport" >"$OAUTH_ADDR_FILE"
    fi
    echo "$addr" >"$ADDR_FILE"
    say "ready (pid $pid)"
    echo "$addr"
}

# TERM, wait for the controlled shutdown, KILL after 30 s.
stop_pid() {
    local pid=$1 deadline=$((SECONDS + 30))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid still running after 30s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
    fi
    rm -f "$PID_FILE" "$ADDR_FILE" "$OAUTH_ADDR_FILE"
}

cmd_stop() {
    local pid
    pid=$(running_pid)
    if [[ -z $pid ]]; then
        say "not running"
        rm -f "$PID_FILE" "$ADDR_FILE" "$OAUTH_ADDR_FILE"
        return
    fi
    say "stopping pid $pid"
    stop_pid "$pid"
    say "stopped"
}

cmd_status() {
    local pid
    pid=$(running_pid)
    if [[ -n $pid && -f $ADDR_FILE && -f $OAUTH_ADDR_FILE ]]; then
        echo "running: $(<"$ADDR_FILE"), OAuth $(<"$OAUTH_ADDR_FILE") (pid $pid, state in $STATE_DIR)"
    elif [[ -n $pid && -f $ADDR_FILE ]]; then
        echo "running: $(<"$ADDR_FILE") (pid $pid, state in $STATE_DIR)"
    elif [[ -n $pid ]]; then
        echo "starting (pid $pid, state in $STATE_DIR)"
    else
        echo "not running (state in $STATE_DIR)"
        return 1
    fi
}

# The PLAINTEXT address, or with `oauth` the OAuth listener's.
running_addr() {
    [[ -n $(running_pid) && -f $ADDR_FILE ]] || die "no broker running (state in $STATE_DIR); run: $0 start"
    case ${1:-} in
    "") cat "$ADDR_FILE" ;;
    oauth)
        [[ -f $OAUTH_ADDR_FILE ]] || die "the broker has no OAuth listener; restart it with ALERTHOST_KAFKA_OAUTH=1"
        cat "$OAUTH_ADDR_FILE"
        ;;
    *) usage ;;
    esac
}

cmd_clean() {
    [[ -z $(running_pid) ]] || die "the broker is running; run: $0 stop"
    rm -rf "$STATE_DIR"
    say "removed $STATE_DIR"
}

cmd_tool() {
    local class=$1
    shift
    local addr
    addr=$(running_addr)
    need_java
    fetch_jars
    run_class "$class" --bootstrap-server "$addr" "$@"
}

case ${1:-} in
start) lock 9 "$STATE_DIR.lock" && cmd_start ;;
stop) lock 9 "$STATE_DIR.lock" && cmd_stop ;;
status) cmd_status ;;
addr) running_addr "${2:-}" ;;
clean) lock 9 "$STATE_DIR.lock" && cmd_clean ;;
topics) shift && cmd_tool org.apache.kafka.tools.TopicCommand "$@" ;;
groups) shift && cmd_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "$@" ;;
*) usage ;;
esac
