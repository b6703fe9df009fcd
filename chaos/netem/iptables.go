package netem

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// The rules of a Link live in a chain of their own in the mangle table, jumped to from the end of
// POSTROUTING: every packet leaving the namespace (made there or forwarded) passes it after
// routing and after the filter table's OUTPUT and FORWARD chains, so a partition's DROP rules
// there still apply first. A packet given back by a verdict goes on with the hooks after mangle
// POSTROUTING (nat, other nftables chains); rules appended to mangle POSTROUTING after the jump
// are skipped for it, so shaping and other tools' mangle rules do not mix.
const table = "mangle"

// chainName is the chain of the Link that owns queue num in its namespace. Since the kernel gives
// a queue number to one socket at a time per namespace, a chain of that name found when the
// number is bound was left by a process that died, and may be replaced.
func chainName(num uint16) string { return fmt.Sprintf("AGORA-NETEM-%d", num) }

// family is one of iptables' address families: its commands and the Link's prefixes in it.
type family struct {
	list, restore string // "iptables", "iptables-restore" or the ip6 ones
	dsts          []netip.Prefix
}

// families splits dsts between IPv4 and IPv6.
func families(dsts []netip.Prefix) []family {
	v4 := family{list: "iptables", restore: "iptables-restore"}
	v6 := family{list: "ip6tables", restore: "ip6tables-restore"}
	for _, p := range dsts {
		if p.Addr().Is4() {
			v4.dsts = append(v4.dsts, p)
		} else {
			v6.dsts = append(v6.dsts, p)
		}
	}
	var out []family
	for _, f := range []family{v4, v6} {
		if len(f.dsts) > 0 {
			out = append(out, f)
		}
	}
	return out
}

// lookTools checks that ip and the iptables commands the families need are installed.
func lookTools(fams []family) error {
	tools := []string{"ip"}
	for _, f := range fams {
		tools = append(tools, f.list, f.restore)
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("netem: %s not found in PATH (scripts/netdeps.sh installs iproute2 and iptables)", strings.Join(missing, ", "))
	}
	return nil
}

// addRules diverts the family's destinations to queue num, after removing what a dead process
// may have left under the same chain name. The rules go in with one iptables-restore, whole or
// not at all. --queue-bypass lets packets through when no socket owns the queue: a test that dies
// leaves at worst rules that do nothing.
func addRules(netns string, f family, num uint16) error {
	if err := removeRules(netns, f, num); err != nil {
		return err
	}
	c := chainName(num)
	var s strings.Builder
	fmt.Fprintf(&s, "*%s\n:%s - [0:0]\n", table, c)
	for _, p := range f.dsts {
		fmt.Fprintf(&s, "-A %s -d %s -j NFQUEUE --queue-num %d --queue-bypass\n", c, p, num)
	}
	fmt.Fprintf(&s, "-A POSTROUTING -j %s\nCOMMIT\n", c)
	return restore(netns, f, s.String())
}

// removeRules removes the chain of queue num and every jump to it, if there are any.
func removeRules(netns string, f family, num uint16) error {
	c := chainName(num)
	out, err := ipnetns(netns, nil, f.list, "-w", "-t", table, "-S")
	if err != nil {
		return err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "*%s\n", table)
	jumps, chain := 0, false
	for _, line := range strings.Split(out, "\n") {
		fs := strings.Fields(line)
		switch {
		case len(fs) == 2 && fs[0] == "-N" && fs[1] == c:
			chain = true
		case len(fs) >= 4 && fs[0] == "-A" && fs[1] != c && fs[len(fs)-2] == "-j" && fs[len(fs)-1] == c:
			fmt.Fprintf(&s, "-D %s\n", strings.Join(fs[1:], " "))
			jumps++
		}
	}
	if jumps == 0 && !chain {
		return nil
	}
	if chain {
		fmt.Fprintf(&s, "-F %s\n-X %s\n", c, c)
	}
	s.WriteString("COMMIT\n")
	return restore(netns, f, s.String())
}

// rulesLeft says whether any rule or chain of queue num is in the namespace.
func rulesLeft(netns string, f family, num uint16) (bool, error) {
	out, err := ipnetns(netns, nil, f.list, "-w", "-t", table, "-S")
	if err != nil {
		return false, err
	}
	c := chainName(num)
	for _, w := range strings.Fields(out) {
		if w == c {
			return true, nil
		}
	}
	return false, nil
}

func restore(netns string, f family, script string) error {
	_, err := ipnetns(netns, []byte(script), f.restore, "-w", "--noflush")
	if err != nil {
		return fmt.Errorf("%w, given:\n%s", err, script)
	}
	return nil
}

// ipnetns runs a command in the named network namespace and returns its standard output.
func ipnetns(netns string, stdin []byte, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("netem: ip netns exec %s %s: %w: %s", netns, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
