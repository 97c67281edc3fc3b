#!/usr/bin/env bash
# DORA/s through a relay with and without 20 classes and shared networks, same run.
#
# Two namespaces joined by a 2-queue veth (names unique per run, always removed); the daemon
# (release build, XDP) in one, xdhcp-loadgen as a relay agent (giaddr 10.77.0.9, option 82 with
# remote-id = the client's MAC) in the other. Configurations alternate plain, classes, plain,
# classes, ... (ROUNDS times each) so machine load hits both alike.
#
#   plain:   one subnet 10.174.0.0/16 selected by the relay address, one pool of 65,000.
#   classes: 20 [[class]]es (the loadgen's clients are in 3: remote-id equals chaddr, giaddr,
#            unknown), two [[shared-network]]s, the clients' 65,000-address pool after six pools
#            their classes may not use; options from class, pool, subnet and network layers.
#
# Usage (root): benches/prov_loadgen.sh [ROUNDS] [SECONDS]
# Needs target/release/xdhcpd and target/release/xdhcp-loadgen built with the eBPF object:
#   XDHCPD_EBPF_OBJECT=$PWD/target/bpfel-unknown-none/release/xdhcpd-ebpf \
#     cargo build --release -p xdhcpd -p xdhcpd-tools
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release
TAG=p$$
SRV=xps$TAG CLI=xpc$TAG A=vs$TAG B=vc$TAG
WORK=$(mktemp -d /tmp/xdhcpd-prov-lg.XXXXXX)
cleanup() {
    [[ -n "${DPID:-}" ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
    ip netns del "$SRV" 2>/dev/null || true
    ip netns del "$CLI" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$SRV"
ip netns add "$CLI"
ip link add "$A" numrxqueues 2 numtxqueues 2 type veth peer name "$B" numrxqueues 2 numtxqueues 2
ip link set "$A" netns "$SRV"
ip link set "$B" netns "$CLI"
ip -n "$SRV" addr add 10.77.0.1/16 dev "$A"
ip -n "$CLI" addr add 10.77.0.9/16 dev "$B"
ip -n "$SRV" link set "$A" up
ip -n "$CLI" link set "$B" up
ip -n "$SRV" link set lo up
ip -n "$CLI" link set lo up

head() {
    cat <<EOF
[server]
interface = "$A"
server-id = "10.77.0.1"
lease-file = "$WORK/leases.db"
commit = "interval:10"
[lease]
default-time = 21600
max-time = 21600
EOF
}

{
    head
    cat <<'EOF'
[[subnet]]
cidr = "10.174.0.0/16"
relay-addresses = ["10.77.0.9"]
router = ["10.174.0.1"]
dns-servers = ["192.168.0.81"]
domain-name = "example.com"
[[subnet.pool]]
range = "10.174.0.10-10.174.254.40"
EOF
} >"$WORK/plain.toml"

{
    head
    cat <<'EOF'
[[class]]
name = "cm"
remote-id-is-chaddr = true
next-server = "192.168.0.12"
boot-file = "docsis3.cfg"
log-servers = ["192.168.0.12"]
[[class]]
name = "cmts"
giaddr = ["10.77.0.0/16"]
ntp-servers = ["192.168.0.12"]
[[class]]
name = "unknown"
known = false
EOF
    i=0
    for m in 'vendor-class-prefix = "pktc1.0:"' 'vendor-class-contains = "dslforum.org"' \
        'vendor-class = "MSFT 5.0"' 'user-class = "iptv"' 'user-class-prefix = "voip"' \
        'circuit-id = "olt2/0/1/1:1.0"' 'remote-id = "0x001122334455"' 'subscriber-id = "sub-1"' \
        'remote-id-is-chaddr = false' 'client-id = "01:00:11:22:33:44:55"' 'hw-prefix = "00:e0:6f"' \
        'giaddr = ["192.0.2.0/24"]' 'known = true' 'vendor-class-prefix = "docsis1.0:"' \
        'vendor-class-prefix = "meter"' 'vendor-class-prefix = "docsis"' 'user-class = "x"'; do
        printf '[[class]]\nname = "other%d"\n%s\nboot-file = "other%d.cfg"\ndomain-name = "other%d.example"\n' \
            "$i" "$m" "$i" "$i"
        i=$((i + 1))
    done
    cat <<'EOF'
[[shared-network]]
name = "cmts"
relay-addresses = ["10.77.0.9"]
domain-name = "example.com"
time-servers = ["192.168.0.12", "192.168.0.11"]
time-offset = -10800
[[shared-network]]
name = "other"
relay-addresses = ["192.0.2.200"]
[[subnet]]
cidr = "10.173.0.0/16"
shared-network = "cmts"
router = ["10.173.0.1"]
[[subnet.pool]]
range = "10.173.1.0-10.173.1.255"
allow = ["other0"]
[[subnet.pool]]
range = "10.173.2.0-10.173.2.255"
deny = ["cm"]
[[subnet.pool]]
range = "10.173.3.0-10.173.3.255"
allow = ["other1", "other2"]
deny-unknown = true
[[subnet]]
cidr = "10.174.0.0/16"
shared-network = "cmts"
router = ["10.174.0.1"]
dns-servers = ["192.168.0.81"]
[[subnet.pool]]
range = "10.174.255.1-10.174.255.200"
allow = ["other3"]
[[subnet.pool]]
range = "10.174.0.10-10.174.254.40"
allow = ["cm"]
deny = ["other5"]
dns-servers = ["192.168.0.82"]
[[subnet]]
cidr = "10.175.0.0/16"
shared-network = "cmts"
[[subnet.pool]]
range = "10.175.0.10-10.175.0.200"
allow = ["other8"]
[[subnet.pool]]
range = "10.175.1.10-10.175.1.200"
deny = ["unknown"]
[[subnet]]
cidr = "10.176.0.0/16"
shared-network = "other"
[[subnet.pool]]
range = "10.176.0.10-10.176.0.200"
EOF
} >"$WORK/classes.toml"

"$BIN/xdhcpd" check-config "$WORK/plain.toml"
"$BIN/xdhcpd" check-config "$WORK/classes.toml"

run_one() { # config name, round
    rm -f "$WORK/leases.db"
    ip netns exec "$SRV" "$BIN/xdhcpd" run --config "$WORK/$1.toml" --io xdp >"$WORK/d.log" 2>&1 &
    DPID=$!
    for _ in $(seq 100); do grep -q serving "$WORK/d.log" 2>/dev/null && break; sleep 0.1; done
    sleep 0.5
    ip netns exec "$CLI" "$BIN/xdhcp-loadgen" -i "$B" --relay 10.77.0.9 --server 10.77.0.1 \
        --scenario dora --clients 60000 --duration "${SECS}s" --concurrency 256 --quiet \
        --json "$WORK/lg.json" >/dev/null 2>"$WORK/lg.err" || { cat "$WORK/lg.err"; exit 1; }
    kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=
    python3 - "$WORK/lg.json" "$1" "$2" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["phases"][0]
print(f"{sys.argv[2]:8} round {sys.argv[3]}: {p['acked_per_s']:.0f} DORA/s, loss {p['loss_pct']:.2f}%, p99 {p['latency']['p99_us']/1000:.2f} ms")
PY
}

uptime
for r in $(seq "$ROUNDS"); do
    run_one plain "$r"
    run_one classes "$r"
done
uptime
