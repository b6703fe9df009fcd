// Package netem delays, drops and reorders the packets that leave a network namespace toward
// given destinations, as tc's netem qdisc would, in this process instead of the kernel.
//
// # Why in userspace
//
// The chaos suite runs where the kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is not set on
// this machine nor on CI's: `tc qdisc add ... netem` answers "Specified qdisc kind is unknown"),
// but has nfnetlink_queue and iptables' NFQUEUE target. So a Link diverts packets to a queue and
// decides about each one here:
//
//  1. Apply opens a NETLINK_NETFILTER socket inside the namespace (on an OS thread that entered
//     it, and left it after: the socket stays in the namespace it was made in) and binds a queue
//     number no other socket owns there, asking for the packets' metadata only (their ids; no
//     payload is copied or changed), at most QueueLen at a time.
//  2. It adds a chain to the namespace's mangle table, jumped to from POSTROUTING, that sends
//     packets to any of the destinations to the queue (-j NFQUEUE --queue-bypass).
//  3. For each packet read, the Link draws its fate from the Shape: dropped with probability
//     Loss (NF_DROP at once); else let through at once with probability Reorder (netem's
//     reorder); else held for Delay ± Jitter (uniform) and let through (NF_ACCEPT) when due.
//     Verdicts go out by id, in any order; those due together share one write.
//  4. Close removes the chain, lets every packet still held go at once (one batch verdict) and
//     closes the socket.
//
// # How it differs from tc netem
//
//   - One direction: a Link shapes what leaves its namespace toward dsts, after routing, made
//     there or forwarded. A round trip between A and B is delayed both ways only with two Links,
//     one in A toward B and one in B toward A.
//   - Cost: every shaped packet crosses to this process and back: a netlink message, two
//     system calls and a goroutine wake-up. BenchmarkUDP measures 1.5 to 4.5 µs of CPU per
//     datagram more than without a Link on a 2-core machine (the more, the idler the Link: each
//     packet then wakes its reader). A few thousand packets a second, a cluster's control
//     traffic, cost about 1% of a core; bulk transfers would be slowed by the CPU as much as by
//     the shape. Where tc netem's timers live in the kernel, a delay here can come late by the
//     scheduling delay of this process (a millisecond idle, tens on a busy 2-core machine),
//     never early.
//   - Packets are what the kernel queues: a TCP segment offloaded as one large GSO packet is
//     delayed, lost or reordered as one, as netem does with the packets its qdisc gets.
//   - Limits: the queue holds QueueLen packets; beyond it the kernel drops (as netem does beyond
//     its limit), counted in Stats.Overflow. No correlation, distribution tables, rate,
//     duplication or corruption.
//   - A process that dies without Close drops the packets it held (the kernel destroys the queue
//     with its socket); the rules it leaves let packets through unshaped (--queue-bypass), and
//     the next Link bound to the same number in that namespace replaces them.
//
// Apply needs root (to enter the namespace and run iptables there through `ip netns exec`).
// The package depends on nothing else in chaos/; the tests build their own two namespaces.
package netem
