package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/agora-sched/agora/master/discovery"
	"github.com/agora-sched/agora/master/dnsserver"
	"github.com/agora-sched/agora/master/scheduler"
	"github.com/agora-sched/agora/pkg/api"
)

// Service discovery: the view of where services run (master/discovery), built on the leader
// and fetched by the other masters, and the DNS server that answers from it
// (master/dnsserver), when Config.DNS.Addr is set.

// DNSConfig configures a master's DNS server: dnsserver.Config (Addr "": none).
type DNSConfig = dnsserver.Config

// startDiscovery makes the view's keeper, refreshed every half TTL, and the services feed
// (GET /v1/services); with Config.DNS.Addr it binds the DNS server's port.
func (m *Master) startDiscovery() error {
	ttl := m.cfg.DNS.TTL
	if ttl == 0 {
		ttl = dnsserver.DefaultTTL
	}
	domain := ""
	if m.cfg.DNS.Addr != "" {
		cfg := m.cfg.DNS
		cfg.SelfID = m.id
		cfg.Logger = m.logger.With("component", "dns")
		var err error
		if m.dns, err = dnsserver.New(cfg); err != nil {
			return err
		}
		domain = m.dns.Domain()
		m.registry.MustRegister(m.dns.Collectors()...)
	}
	m.feed = discovery.NewFeed(domain)
	m.keeper = discovery.NewKeeper(discovery.Config{Refresh: ttl / 2, Build: m.buildView, Fetch: m.fetchView, Masters: m.discoveryMasters,
		OnChange: m.viewChanged, Active: m.viewRead, Logger: m.logger.With("component", "discovery")})
	m.registry.MustRegister(m.keeper.Collectors()...)
	return nil
}

// viewChanged hands a new view to the DNS server and the services feed.
func (m *Master) viewChanged(v *discovery.View, readAt time.Time) {
	if m.dns != nil {
		m.dns.Update(v, readAt)
	}
	m.feed.Update(v)
}

// runDiscovery keeps the view, and serves DNS with --dns, until ctx ends.
func (m *Master) runDiscovery(ctx context.Context) error {
	go m.keeper.Run(ctx)
	if m.dns == nil {
		return nil
	}
	return m.dns.Serve(ctx)
}

// DescribeServices adds what a framework (by name) says of its services beyond their tasks to
// the view the leader reads (frameworks.Host). Call it before Run.
func (m *Master) DescribeServices(framework string, describe func(context.Context) ([]api.ServiceInfo, error)) {
	m.describeMu.Lock()
	defer m.describeMu.Unlock()
	if m.describers == nil {
		m.describers = map[string]func(context.Context) ([]api.ServiceInfo, error){}
	}
	m.describers[framework] = describe
}

// describeServices asks every framework that describes its services; one that fails keeps
// what it last said.
func (m *Master) describeServices(ctx context.Context) map[string][]api.ServiceInfo {
	m.describeMu.Lock()
	defer m.describeMu.Unlock()
	if len(m.describers) == 0 {
		return nil
	}
	if m.described == nil {
		m.described = map[string][]api.ServiceInfo{}
	}
	out := make(map[string][]api.ServiceInfo, len(m.describers))
	for fw, describe := range m.describers {
		infos, err := describe(ctx)
		if err != nil {
			m.logger.Warn("service discovery: a framework did not describe its services; what it said before stays", "framework", fw, "err", err)
			infos = m.described[fw]
		}
		m.described[fw] = infos
		out[fw] = infos
	}
	return out
}

// servicesIdle is how long the view is kept fresh after the last GET /v1/services without DNS.
const servicesIdle = 5 * time.Minute

// viewRead says whether anyone reads the view: the DNS server always; GET /v1/services while a
// stream follows it, and for servicesIdle after a read. A master nobody asks spends nothing on
// the view (at 100,000 tasks a build is not free).
func (m *Master) viewRead() bool {
	return m.dns != nil || m.servicesStreams.Load() > 0 || time.Since(time.Unix(0, m.servicesReadAt.Load())) < servicesIdle
}

// Services is GET /v1/services's document of this master's view, refreshed first if nobody
// kept it fresh (nil: no view to be had: no leader answers), and a channel closed when the
// services next change.
func (m *Master) Services(ctx context.Context) (*api.Services, <-chan struct{}) {
	m.servicesReadAt.Store(time.Now().UnixNano())
	m.keeper.Fresh(ctx)
	return m.feed.Current()
}

// FollowServices keeps the view fresh for a reader that follows its changes, until release.
func (m *Master) FollowServices() (release func()) {
	m.servicesStreams.Add(1)
	return func() {
		m.servicesReadAt.Store(time.Now().UnixNano())
		m.servicesStreams.Add(-1)
	}
}

// DNSAddr is the address the DNS server answers on, "" without one.
func (m *Master) DNSAddr() string {
	if m.dns == nil {
		return ""
	}
	return m.dns.Addr()
}

// discoveryView is what GET /v1/discovery/view hands the other masters: the view built now,
// from the view this master holds (a new leader keeps what its agents ran until they register).
func (m *Master) discoveryView() (*discovery.View, error) {
	var prev *discovery.View
	if m.keeper != nil {
		prev, _, _ = m.keeper.Current()
	}
	return m.buildView(prev)
}

// buildView reads the view from the leader's memory: its live tasks, the agents as it sees
// them, the frameworks' names. discovery.ErrNotLeader when this master does not lead or its
// term has not started.
func (m *Master) buildView(prev *discovery.View) (*discovery.View, error) {
	if !m.store.IsLeader() {
		return nil, discovery.ErrNotLeader
	}
	st := m.store.Stats() // read first: the view holds at least what this index holds
	tasks, err := m.sched.LiveTasks()
	if errors.Is(err, scheduler.ErrNotReady) {
		return nil, discovery.ErrNotLeader
	}
	if err != nil {
		return nil, err
	}
	fws, err := m.sched.FrameworksView()
	if err != nil {
		return nil, discovery.ErrNotLeader
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	agents, err := m.AgentViews(ctx)
	if err != nil {
		return nil, err
	}
	in := discovery.Input{Index: st.AppliedIndex, Term: st.Term, Leader: m.id, Frameworks: make(map[string]string, len(fws)),
		Agents: agents, Tasks: make([]discovery.Task, len(tasks)), Prev: prev, Resolve: m.resolver.lookup, Described: m.describeServices(ctx)}
	for _, fw := range fws {
		in.Frameworks[fw.Info.ID] = fw.Info.Name
	}
	for i, t := range tasks {
		in.Tasks[i] = discovery.Task{Info: t.Info, AgentID: t.AgentID, Status: t.Status}
	}
	return discovery.Build(in), nil
}

// fetchView asks the leader for its view (GET /v1/discovery/view, with the cluster secret).
func (m *Master) fetchView(ctx context.Context) (*discovery.View, error) {
	leaderID, _ := m.store.Leader()
	switch leaderID {
	case "":
		return nil, errors.New("no leader is known")
	case m.id:
		return nil, errors.New("this master leads, but its term has not started yet")
	}
	addr := ""
	for _, mem := range m.gossip.Masters() {
		if mem.Meta.ID == leaderID {
			addr = mem.Meta.HTTP
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("the leader %s is not in gossip", leaderID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.cfg.TLS.Scheme()+"://"+addr+"/v1/discovery/view", nil)
	if err != nil {
		return nil, err
	}
	if m.cfg.ClusterSecret != "" {
		req.Header.Set("Authorization", "Bearer "+m.cfg.ClusterSecret)
	}
	resp, err := (&http.Client{Transport: m.tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("the leader %s answered %s: %s", leaderID, resp.Status, body)
	}
	var v discovery.View
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, fmt.Errorf("the leader's view: %w", err)
	}
	return &v, nil
}

// discoveryMasters lists the masters of the raft configuration that this master knows alive
// (itself, and those alive in its gossip), at their raft addresses, and the leader's id.
func (m *Master) discoveryMasters() ([]discovery.Master, string) {
	leaderID, _ := m.store.Leader()
	servers, err := m.store.Servers()
	if err != nil {
		return nil, leaderID
	}
	alive := map[string]bool{m.id: true}
	for _, mem := range m.gossip.Masters() {
		alive[mem.Meta.ID] = true
	}
	var out []discovery.Master
	for _, sv := range servers {
		if !alive[sv.ID] {
			continue
		}
		host, _, err := net.SplitHostPort(sv.Address)
		if err != nil {
			continue
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip.Unmap()}
		} else {
			ips = m.resolver.lookup(host)
		}
		out = append(out, discovery.Master{ID: sv.ID, IPs: ips})
	}
	return out, leaderID
}

// hostResolver looks names up for the view (agents and masters known by name), keeping each
// answer for a minute.
type hostResolver struct {
	mu    sync.Mutex
	known map[string]resolved
}

type resolved struct {
	ips []netip.Addr
	at  time.Time
}

func (r *hostResolver) lookup(host string) []netip.Addr {
	r.mu.Lock()
	got, ok := r.known[host]
	r.mu.Unlock()
	if ok && time.Since(got.at) < time.Minute {
		return got.ips
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil && ok {
		return got.ips // keep the last answer while the resolver does not answer
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	r.mu.Lock()
	if r.known == nil {
		r.known = map[string]resolved{}
	}
	r.known[host] = resolved{ips: ips, at: time.Now()}
	r.mu.Unlock()
	return ips
}
