#!/bin/sh
# Runs one Omium consensus node (`omium node`) in a container; docs/deployment.md explains it.
#
# With arguments, runs `omium ARGS...` instead (e.g. `cluster --node omium-0.omium-peers:7001 status`).
#
# Without arguments, the node's identity comes from the host name, as a Kubernetes StatefulSet
# names its pods (omium-0, omium-1, ...): ordinal N is node id N+1, and it advertises
# <pod>.<OMIUM_PEER_SERVICE>:<OMIUM_PORT>, the pod's stable DNS name under the headless Service.
#
#   ordinal 0   bootstraps: starts `omium node` without --join, then, when every other pod
#               (ordinals 1..OMIUM_REPLICAS-1) answers that it belongs to no cluster, runs
#               `omium cluster --node 127.0.0.1:PORT init`. When another pod already belongs to
#               a cluster (pod 0 lost its volume), pod 0 is added to that cluster instead, so it
#               never starts a second cluster.
#   ordinal N>0 runs `omium node ... --join <pod 0>:PORT`; the node adds itself as a voter.
#
# Once the node sees itself among the voters, the script writes OMIUM_STORE.node-id; a restart
# with that file (and the store) passes no --join and does not bootstrap: the node is a member.
#
# Environment (all optional):
#   OMIUM_STORE         store directory                      (default /data/store)
#   OMIUM_PORT          the port peers reach (advertised, joined) (default 7001)
#   OMIUM_LISTEN        listen address                        (default 0.0.0.0:$OMIUM_PORT)
#   OMIUM_POD_NAME      pod name with its ordinal             (default $HOSTNAME, else `uname -n`)
#   OMIUM_PEER_SERVICE  DNS domain of the pods under the headless Service (default omium-peers);
#                       empty: pods are reached by their bare name (docker compose)
#   OMIUM_NODE_ID       node id                               (default ordinal + 1)
#   OMIUM_ADVERTISE     address peers reach this node at      (default <pod>.<service>:<port>)
#   OMIUM_JOIN          unset: derived as above; non-empty: join through this host:port (no
#                       bootstrap); empty: neither join nor bootstrap (manage membership by hand
#                       with `omium cluster add/remove`)
#   OMIUM_REPLICAS      how many pods pod 0 checks before it bootstraps (default 3)
#   OMIUM_BIN           the omium command                     (default omium)
#   OMIUM_TLS_DIR       a directory holding ca.crt, tls.crt and tls.key (a Kubernetes TLS
#                       Secret, e.g. cert-manager's): the node speaks mutual TLS with them, and
#                       this script's own `omium cluster` calls use them too. Without it, a node
#                       listens only on a loopback address (--insecure-loopback); on any other
#                       address `omium node` refuses to start.
set -eu

OMIUM_BIN=${OMIUM_BIN:-omium}

if [ "$#" -gt 0 ]; then
    exec "$OMIUM_BIN" "$@"
fi

log() {
    printf 'omium-entrypoint: %s\n' "$*" >&2
}

die() {
    log "$*"
    exit 1
}

store=${OMIUM_STORE:-/data/store}
port=${OMIUM_PORT:-7001}
listen=${OMIUM_LISTEN:-0.0.0.0:$port}
pod=${OMIUM_POD_NAME:-${HOSTNAME:-$(uname -n)}}
service=${OMIUM_PEER_SERVICE-omium-peers}
replicas=${OMIUM_REPLICAS:-3}
# Where this script reaches its own node: the listen address, or loopback for a wildcard one.
case ${listen%:*} in
    '' | 0.0.0.0 | '[::]') local_addr=127.0.0.1:${listen##*:} ;;
    *) local_addr=$listen ;;
esac

case $port in
    '' | *[!0-9]*) die "OMIUM_PORT must be a port number, not '$port' (in Kubernetes, set enableServiceLinks: false)" ;;
esac
case $replicas in
    '' | *[!0-9]* | 0) die "OMIUM_REPLICAS must be a whole number >= 1, not '$replicas'" ;;
esac

# The StatefulSet ordinal: the digits after the last '-' of the pod name.
base=${pod%-*}
ordinal=${pod##*-}
case $ordinal in
    '' | *[!0-9]*) ordinal= ;;
esac
if [ "$base" = "$pod" ]; then
    ordinal=
fi

# <name>.<service>:<port>, or <name>:<port> when OMIUM_PEER_SERVICE is empty.
peer_addr() {
    if [ -n "$service" ]; then
        printf '%s.%s:%s' "$1" "$service" "$port"
    else
        printf '%s:%s' "$1" "$port"
    fi
}

if [ -n "${OMIUM_NODE_ID:-}" ]; then
    id=$OMIUM_NODE_ID
elif [ -n "$ordinal" ]; then
    id=$((ordinal + 1))
else
    die "cannot tell the node id from the pod name '$pod' (expected NAME-ORDINAL, e.g. omium-0); set OMIUM_NODE_ID"
fi
case $id in
    '' | *[!0-9]* | 0) die "OMIUM_NODE_ID must be a whole number >= 1, not '$id'" ;;
esac

advertise=${OMIUM_ADVERTISE:-$(peer_addr "$pod")}

bootstrap=no
if [ "${OMIUM_JOIN+set}" = set ]; then
    join=$OMIUM_JOIN
elif [ "$ordinal" = 0 ]; then
    join=
    bootstrap=yes
elif [ -n "$ordinal" ]; then
    join=$(peer_addr "$base-0")
else
    die "pod name '$pod' has no ordinal; set OMIUM_JOIN (host:port of a member, or empty to manage membership by hand)"
fi

# A store that has been a member (marker written by this script) needs neither.
marker=$store.node-id
if [ -f "$marker" ]; then
    if [ ! -d "$store" ]; then
        log "$marker exists but $store does not; treating this node as new"
        rm -f "$marker"
    elif [ "$(cat "$marker")" != "$id" ]; then
        die "$store belongs to node $(cat "$marker"), not node $id; use that id or another volume"
    else
        join=
        bootstrap=no
    fi
fi

# `omium --json cluster --node ADDR status` gives {"voters":[1,2,3],...}; print the voter ids
# as ",1,2,3," ("" when the node does not answer within 10 s).
voters_of() {
    reply=$(timeout 10 "$OMIUM_BIN" --json cluster --node "$1" status 2>/dev/null) || return 0
    list=$(printf '%s' "$reply" | sed -n 's/.*"voters":\[\([0-9,]*\)\].*/\1/p')
    case $reply in
        *'"voters":'*) printf ',%s,' "$list" ;;
    esac
}

node_pid=
stopping=no
on_signal() {
    stopping=yes
    if [ -n "$node_pid" ]; then
        kill -TERM "$node_pid" 2>/dev/null || true
    fi
}
trap on_signal TERM INT

node_alive() {
    [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null && [ "$stopping" = no ]
}

# Bootstrap (pod 0, first start): every other pod must have answered that it belongs to no
# cluster, and none may belong to one. A pod that answered once stays counted: it can only enter
# a cluster through pod 0 (a member reports its voters from the moment it starts), so the pods
# need not all be up at the same moment (the joiners restart while pod 0 waits).
bootstrap_cluster() {
    confirmed=' '
    while node_alive; do
        case $(voters_of "$local_addr") in
            *,"$id",*) return 0 ;; # already initialised (e.g. restarted before the marker)
        esac
        missing=0
        i=1
        while [ "$i" -lt "$replicas" ]; do
            peer=$(peer_addr "$base-$i")
            case $confirmed in
                *" $i "*) theirs=confirmed ;;
                *) theirs=$(voters_of "$peer") ;;
            esac
            case $theirs in
                confirmed) ;;
                '') missing=$((missing + 1)) ;;
                ,,) confirmed="$confirmed$i " ;;
                *,"$id",*)
                    log "$peer belongs to a cluster that lists node $id; not bootstrapping, the leader will catch this node up"
                    return 0
                    ;;
                *)
                    log "$peer belongs to a cluster; adding node $id to it"
                    "$OMIUM_BIN" cluster --node "$peer" add --id "$id" --addr "$advertise" >&2 && return 0
                    missing=$((missing + 1))
                    ;;
            esac
            i=$((i + 1))
        done
        if [ "$missing" -eq 0 ]; then
            log "no pod belongs to a cluster; initialising one with node $id as its first voter"
            "$OMIUM_BIN" cluster --node "$local_addr" init >&2 && return 0
        else
            log "waiting for $missing of the other $((replicas - 1)) pod(s) to answer before bootstrapping"
        fi
        sleep 2
    done
}

# Writes the marker once the node lists itself as a voter.
record_membership() {
    while node_alive; do
        case $(voters_of "$local_addr") in
            *,"$id",*)
                printf '%s\n' "$id" >"$marker"
                log "node $id is a voter; wrote $marker"
                return 0
                ;;
        esac
        sleep 2
    done
}

tls_dir=${OMIUM_TLS_DIR:-}
if [ -n "$tls_dir" ]; then
    for f in ca.crt tls.crt tls.key; do
        [ -r "$tls_dir/$f" ] || die "OMIUM_TLS_DIR=$tls_dir has no readable $f (mount a TLS Secret with ca.crt, as cert-manager writes it)"
    done
    OMIUM_CLUSTER_CA=$tls_dir/ca.crt
    OMIUM_CLUSTER_CERT=$tls_dir/tls.crt
    OMIUM_CLUSTER_KEY=$tls_dir/tls.key
    export OMIUM_CLUSTER_CA OMIUM_CLUSTER_CERT OMIUM_CLUSTER_KEY
fi

set -- --store "$store" node --id "$id" --listen "$listen" --advertise "$advertise"
if [ -n "$join" ]; then
    set -- "$@" --join "$join"
fi
if [ -n "$tls_dir" ]; then
    set -- "$@" --tls-ca "$tls_dir/ca.crt" --tls-cert "$tls_dir/tls.crt" --tls-key "$tls_dir/tls.key"
else
    case ${listen%:*} in
        127.* | localhost | '[::1]') set -- "$@" --insecure-loopback ;;
    esac
fi
log "starting: $OMIUM_BIN $*"
"$OMIUM_BIN" "$@" &
node_pid=$!
if [ "$stopping" = yes ]; then
    kill -TERM "$node_pid" 2>/dev/null || true  # stopped while it was starting
fi

if [ ! -f "$marker" ]; then
    if [ "$bootstrap" = yes ]; then
        bootstrap_cluster || true
    fi
    record_membership || true
fi

# Wait for the node; a TERM or INT interrupts `wait`, so wait again until it has exited.
code=0
while :; do
    if wait "$node_pid"; then
        code=0
    else
        code=$?
    fi
    kill -0 "$node_pid" 2>/dev/null || break
done
if [ "$stopping" = yes ]; then
    exit 0
fi
exit "$code"
