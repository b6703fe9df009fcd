// Package dnsserver is a master's DNS server (--dns): it answers, over UDP and TCP, for the
// cluster's domain (--dns-domain, "agora") from the master's service-discovery view
// (master/discovery), with the names Mesos-DNS gives tasks:
//
//	web-group.marathon.agora.                A, AAAA  the agents of /group/web's healthy instances
//	_web-group._tcp.marathon.agora.          SRV      each healthy instance's tcp ports (_udp: udp)
//	_http._web-group._tcp.marathon.agora.    SRV      their ports named http
//	web-group-<hash>-s0.marathon.agora.      A, AAAA  one instance's agent: the SRV target
//	backup.chronos.agora.                    A, AAAA  a job's runs while they run
//	<task>.<framework>.agora.                         an external framework's tasks alike
//	leader.agora.  master.agora.             A, AAAA  the leading master; every master alive
//	agent.agora.  <agent-id>.agent.agora.    A, AAAA  every agent tasks may run on; one of them
//	_view.agora.                             TXT      the view: raft index, term, who built it, age
//
// A task's name and its framework's become labels as discovery.TaskLabel and FrameworkLabel make
// them. Healthy instances are the running ones that pass their health checks (all running ones
// of an app without health checks). Every record has the TTL --dns-ttl (5 s); a name of the
// domain with no records is NXDOMAIN, with the zone's SOA in the authority section; a name of
// the domain without records of the asked type answers none (NOERROR, the SOA in authority).
// Names outside the domain are REFUSED, or forwarded to --dns-recursors in turn when there
// are some (then the server is a resolver for whoever reaches it: keep it on loopback or a
// private network). Answers over UDP are cut to 512 bytes or the query's EDNS0 size: the
// additional section (the SRV targets' addresses) first, then the answer, marked truncated.
// Records are shuffled in each answer.
//
// Each view is made into a map of names to records once (Update), so that a query is a map
// lookup and a copy; the A, AAAA and SRV records are also packed then, each on its own, so that
// the common query over UDP (such a question of a name that has such records, its answer within
// the query's size) is answered from the query's bytes into a reused buffer with no dns.Msg
// (wire.go), the others through Answer. UDP is read by one goroutine per two CPUs, each taking all
// the queries waiting in one recvmmsg and writing their answers in one sendmmsg; TCP is
// miekg/dns's server. The master calls Update with every view its discovery.Keeper takes.
//
// Metrics: agora_dns_queries_total{qtype, rcode} and agora_dns_answer_seconds.
package dnsserver
