#!/bin/bash
# Where xdhcpd-xdp6's time goes at the bench's limit (issue 14, benches/RESULTS.md): SARR
# (IA_NA + IA_PD) at RATE/s for 5 s against xdhcpd in XDP mode with COMMIT (default ack),
# the bench's link and pools, while strace times the worker thread's msync calls.
# Run as root after `cargo xtask build` and the tools build: RATE=8000 benches/v6_commit_probe.sh
set -u
WT=$(cd "$(dirname "$0")/.." && pwd)
S=v6bench-ps; C=v6bench-pc; SI=v6bps0; CI=v6bpc0
W=/tmp/v6-commit-probe-$$; rm -rf $W; mkdir -p $W
cleanup() { [ -n "${DPID:-}" ] && kill $DPID 2>/dev/null; sleep 1; ip netns del $S 2>/dev/null; ip netns del $C 2>/dev/null; }
trap 'cleanup; rm -rf $W' EXIT
ip netns add $S; ip netns add $C
ip -n $S link add $SI numrxqueues 2 numtxqueues 2 type veth peer name $CI numrxqueues 2 numtxqueues 2 netns $C
ip -n $S addr add 10.78.0.1/16 dev $SI; ip -n $C addr add 10.78.0.2/16 dev $CI
ip -n $S link set $SI up; ip -n $C link set $CI up
for i in $(seq 1 50); do ip -n $S -6 addr show dev $SI scope link | grep -q tentative || break; sleep 0.2; done
cat > $W/x.toml <<EOT
[server]
interface = "$SI"
queues = "all"
server-id = "10.78.0.1"
commit = "${COMMIT:-ack}"
lease-file = "$W/leases.db"
[[subnet]]
cidr = "10.78.0.0/16"
[[subnet.pool]]
range = "10.78.1.0-10.78.250.255"
[dhcpv6]
lease-file = "$W/b6.db"
capacity = 262144
[[subnet6]]
prefix = "fd78::/64"
interface = "$SI"
[[subnet6.pool]]
range = "fd78::1:0-fd78::ff:ffff"
[[subnet6.pd-pool]]
prefix = "fd78:100::/40"
delegated-length = 56
EOT
ip netns exec $S taskset -c 1 $WT/target/release/xdhcpd run -c $W/x.toml --io xdp --stats-interval 0 > $W/d.log 2>&1 &
DPID=$!
sleep 3
ip netns exec $C taskset -c 0 $WT/target/release/xdhcp-loadgen -i $CI --io xdp --cpus 0 --dhcpv6 both --scenario sarr --clients 50000 --count 2000 --concurrency 64 --quiet > /dev/null 2>&1
DAEMON=$(pgrep -P $DPID xdhcpd || echo $DPID)
Q0=$(grep -l xdhcpd-q0 /proc/$DAEMON/task/*/comm | head -1 | cut -d/ -f5)
( timeout 6 strace -T -e trace=msync,fdatasync,fsync -p $Q0 -o $W/strace-q0.txt ) &
SPID=$!
sleep 0.5
ip netns exec $C taskset -c 0 $WT/target/release/xdhcp-loadgen -i $CI --io xdp --cpus 0 --dhcpv6 both --scenario sarr --clients 50000 --rate ${RATE:-6000} --duration 5s --quiet --json $W/lg.json > $W/lg.txt 2>&1
wait $SPID
cat $W/lg.txt
python3 -c "
import re, sys
d = sorted(float(x) for x in re.findall(r'<([0-9.]+)>', open(sys.argv[1]).read()))
n = len(d)
if n:
    print(f'worker q0: {n} msync calls, {sum(d):.3f} s in all; p50 {d[n//2]*1e3:.2f} ms, p90 {d[int(n*.9)]*1e3:.2f} ms, p99 {d[int(n*.99)]*1e3:.2f} ms, max {d[-1]*1e3:.2f} ms')
else:
    print('worker q0: no msync')
" $W/strace-q0.txt
