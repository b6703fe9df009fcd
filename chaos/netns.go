package chaos

// Network mode: every node of a cluster in a network namespace of its own, so that faults are
// packets lost on a real (virtual) network rather than a switch inside the process.
//
//	        host network namespace: the test process, containerd (untouched)
//	  - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
//	  agchPIDcN-br: bridge br0, nft table "bridge chaos" (the faults: drops, loss)
//	     |p-cl          |p-m1           |p-m2   ...     |p-a1   ...
//	  agchPIDcN-cl   agchPIDcN-m1    agchPIDcN-m2    agchPIDcN-a1
//	  10.217.0.2     10.217.0.11     10.217.0.12     10.217.0.21    (eth0 each, and lo)
//	  the harness's  agora master    agora master    agora agent, and its tasks
//	  HTTP client                                    (agora agent --task-netns)
//
// Each cluster's namespaces are named after the test process's pid and a sequence number, and
// removed when the test ends, failed or not; those of a process that no longer runs (a run
// killed before its cleanup) are removed, with what still runs in them, at the first cluster of
// the next run. The 10.217.0.0/24 range exists only inside one cluster's namespaces, which no
// route joins to the host or to another cluster, so clusters never collide.
//
// Faults are rules in the bridge's namespace, on the path between hosts: a dropped packet left
// its sender, which learns nothing (a drop on the sender's own output would fail its send with
// EPERM at once, which no real network does).

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/chaos/netem"
)

// NetEnv chooses the network mode: "netns" (fail where namespaces cannot be made), "loopback",
// or unset / "auto": namespaces where the process may make them, loopback otherwise.
const NetEnv = "AGORA_CHAOS_NET"

const netnsPrefix = "agch"

var (
	subnet     = netip.MustParsePrefix("10.217.0.0/24")
	clientAddr = netip.MustParseAddr("10.217.0.2")
)

var (
	modeOnce sync.Once
	modeOK   bool
	modeWhy  string
	netSeq   int
	netSeqMu sync.Mutex
)

// NetworkMode says whether clusters run in network namespaces, and if not, why. It decides once
// per process and prints the decision ("chaos: loopback mode: why"); a process that may make
// namespaces first removes the ones a killed earlier run left.
func NetworkMode() (bool, string) {
	modeOnce.Do(func() {
		modeOK, modeWhy = probeNetns()
		if modeOK {
			removeStale()
			fmt.Printf("chaos: network mode: every node in a network namespace of its own on a bridge (%s), faults are packets dropped between them (nftables)\n", subnet)
		} else {
			fmt.Printf("chaos: loopback mode: %s; partitions are pkg/faultnet's switches inside the processes, the scenarios that need real networks do not run\n", modeWhy)
		}
	})
	return modeOK, modeWhy
}

func probeNetns() (bool, string) {
	switch v := os.Getenv(NetEnv); v {
	case "loopback":
		return false, NetEnv + "=loopback"
	case "", "auto", "netns":
	default:
		return false, fmt.Sprintf("%s=%q is neither netns, loopback nor auto", NetEnv, v)
	}
	if os.Geteuid() != 0 {
		return false, "not root (network namespaces need it)"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return false, tool + " is not installed (scripts/netdeps.sh installs it)"
		}
	}
	name := fmt.Sprintf("%s%dprobe", netnsPrefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return false, fmt.Sprintf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	defer exec.Command("ip", "netns", "del", name).Run()
	if err := netem.InNamespace(name, func() error {
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(nftSetup)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}); err != nil {
		return false, "nft in a namespace: " + err.Error()
	}
	return true, ""
}

// ForcedNetns says whether NetEnv asks for network mode whatever the machine allows.
func ForcedNetns() bool { return os.Getenv(NetEnv) == "netns" }

var staleName = regexp.MustCompile(`^` + netnsPrefix + `(\d+)`)

// removeStale removes the namespaces of chaos runs whose process is gone, and kills what still
// runs in them (the nodes of a killed run outlive it: they have their own process groups).
func removeStale() {
	entries, _ := os.ReadDir(netem.NetnsDir)
	for _, e := range entries {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // ours, or its process still runs
		}
		out, _ := exec.Command("ip", "netns", "pids", e.Name()).Output()
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		exec.Command("ip", "netns", "del", e.Name()).Run()
		fmt.Printf("chaos: removed the network namespace %s of an earlier run (process %d is gone)\n", e.Name(), pid)
	}
}

// nftSetup is the bridge's table of faults: rules in its forward chain drop packets between
// hosts.
const nftSetup = `table bridge chaos {
	chain cut {
		type filter hook forward priority 0; policy accept;
	}
}
`

// network is one cluster's namespaces.
type network struct {
	t      testing.TB
	prefix string // agchPIDcN
	hosts  map[string]netip.Addr
	mu     sync.Mutex // serializes changes to the rules
}

// newNetwork makes the bridge, the client's namespace and one namespace per host (masters
// m1.., agents a1..), removed when the test ends.
func newNetwork(t testing.TB, masters, agents int) *network {
	t.Helper()
	netSeqMu.Lock()
	netSeq++
	seq := netSeq
	netSeqMu.Unlock()
	nw := &network{t: t, prefix: fmt.Sprintf("%s%dc%d", netnsPrefix, os.Getpid(), seq), hosts: map[string]netip.Addr{"cl": clientAddr}}
	for i := 1; i <= masters; i++ {
		nw.hosts[fmt.Sprintf("m%d", i)] = netip.AddrFrom4([4]byte{10, 217, 0, byte(10 + i)})
	}
	for i := 1; i <= agents; i++ {
		nw.hosts[fmt.Sprintf("a%d", i)] = netip.AddrFrom4([4]byte{10, 217, 0, byte(20 + i)})
	}
	t.Cleanup(nw.remove)
	var add strings.Builder
	fmt.Fprintf(&add, "netns add %s\n", nw.ns("br"))
	for h := range nw.hosts {
		fmt.Fprintf(&add, "netns add %s\n", nw.ns(h))
	}
	if err := ipBatch("", add.String()); err != nil {
		t.Fatalf("chaos: network namespaces: %v", err)
	}
	var br strings.Builder
	br.WriteString("link set lo up\nlink add br0 type bridge\nlink set br0 up\n")
	for h := range nw.hosts {
		fmt.Fprintf(&br, "link add p-%s type veth peer name eth0 netns %s\nlink set p-%s master br0 up\n", h, nw.ns(h), h)
	}
	if err := ipBatch(nw.ns("br"), br.String()); err != nil {
		t.Fatalf("chaos: the bridge: %v", err)
	}
	for h, a := range nw.hosts {
		if err := ipBatch(nw.ns(h), fmt.Sprintf("link set lo up\naddr add %s/%d dev eth0\nlink set eth0 up\n", a, subnet.Bits())); err != nil {
			t.Fatalf("chaos: host %s: %v", h, err)
		}
	}
	if _, err := nw.nft(nftSetup); err != nil {
		t.Fatalf("chaos: the bridge's table of faults: %v", err)
	}
	return nw
}

// ns is the name of host h's namespace ("br" is the bridge's, "cl" the client's).
func (nw *network) ns(h string) string { return nw.prefix + "-" + h }

// path is the file of host h's namespace, for agora agent --task-netns.
func (nw *network) path(h string) string { return filepath.Join(netem.NetnsDir, nw.ns(h)) }

// remove deletes every namespace of the cluster (those a process still runs in last as long as
// it does, without a name, and without a way out: their bridge is gone).
func (nw *network) remove() {
	var del strings.Builder
	fmt.Fprintf(&del, "netns del %s\n", nw.ns("br"))
	for h := range nw.hosts {
		fmt.Fprintf(&del, "netns del %s\n", nw.ns(h))
	}
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(del.String())
	cmd.Run() // -force goes on past the ones never made
}

// ipBatch runs ip's commands, one a line, in namespace ns (the host's when empty).
func ipBatch(ns, lines string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdin = strings.NewReader(lines)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var nftHandle = regexp.MustCompile(`# handle (\d+)`)

// nft runs an nft script in the bridge's namespace and answers the handles of the rules it
// added.
func (nw *network) nft(script string) ([]string, error) {
	var out []byte
	err := netem.InNamespace(nw.ns("br"), func() error {
		cmd := exec.Command("nft", "--echo", "--handle", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		var err error
		if out, err = cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	var handles []string
	for _, m := range nftHandle.FindAllStringSubmatch(string(out), -1) {
		handles = append(handles, m[1])
	}
	return handles, err
}

// drop adds rules that drop percent % (100: all) of the packets from each host of from to each
// host of to, and answers what removes them.
func (nw *network) drop(from, to []string, percent int) (func() error, error) {
	if percent <= 0 || percent > 100 {
		return nil, fmt.Errorf("chaos: drop %d %% of packets: want 1 to 100", percent)
	}
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var script strings.Builder
	for _, f := range from {
		var dsts []string
		for _, d := range to {
			if d != f {
				dsts = append(dsts, nw.hosts[d].String())
			}
		}
		if len(dsts) == 0 {
			continue
		}
		chance := ""
		if percent < 100 {
			chance = fmt.Sprintf(" numgen random mod 100 < %d", percent)
		}
		fmt.Fprintf(&script, "add rule bridge chaos cut ip saddr %s ip daddr { %s }%s drop\n", nw.hosts[f], strings.Join(dsts, ", "), chance)
	}
	handles, err := nw.nft(script.String())
	heal := func() error {
		if len(handles) == 0 {
			return nil
		}
		nw.mu.Lock()
		defer nw.mu.Unlock()
		var del strings.Builder
		for _, h := range handles {
			fmt.Fprintf(&del, "delete rule bridge chaos cut handle %s\n", h)
		}
		_, err := nw.nft(del.String())
		handles = nil
		return err
	}
	if err != nil {
		heal()
		return nil, err
	}
	return heal, nil
}

// DialContext connects from the client's namespace: the harness's HTTP client reaches the
// nodes through it.
func (nw *network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netem.InNamespace(nw.ns("cl"), func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// start starts cmd in host h's namespace.
func (nw *network) start(h string, cmd *exec.Cmd) error {
	return netem.InNamespace(nw.ns(h), cmd.Start)
}

// LinkShape is how the links from some hosts to others behave: Delay (± Jitter) before each
// packet, Loss and Reorder as fractions of packets (0.25 is 25 %).
type LinkShape struct {
	Delay, Jitter time.Duration
	Loss, Reorder float64
}

// shapeLatency delays and reorders the packets that leave namespace ns (its name, under
// /var/run/netns) for dsts, with chaos/netem (userspace, on NFQUEUE: the kernel here has no
// netem qdisc); s.Loss is always 0 here, as Shape drops on the bridge. It answers the Link's
// Close, which lets every held packet go.
func shapeLatency(ns string, dsts []netip.Prefix, s LinkShape) (func() error, error) {
	l, err := netem.Apply(ns, dsts, netem.Shape{Delay: s.Delay, Jitter: s.Jitter, Reorder: s.Reorder})
	if err != nil {
		return nil, err
	}
	return func() error {
		st := l.Stats()
		shaped.Add(st.Delayed + st.Reordered)
		return l.Close()
	}, nil
}

// shaped counts the packets chaos/netem delayed or reordered, for a scenario's figures.
var shaped atomic.Uint64
