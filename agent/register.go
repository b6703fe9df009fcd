package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/agora-sched/agora/agent/checkpoint"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/client"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/version"
)

// Registration with the leader (again with every new leader), the gossip metadata that tells the
// masters whether the agent takes tasks, and the delivery of status updates through the master
// it registered with (doc.go, steps 2 and 4).

// registerLoop registers, and registers again whenever the leader changes, until ctx ends.
// When the masters answer again after a time they did not (a partition, a network outage), the
// unacknowledged status updates go out at once rather than when their backoff ends.
func (a *Agent) registerLoop(ctx context.Context) {
	tick := time.NewTicker(a.cfg.RetryEvery)
	defer tick.Stop()
	lost := false
	for {
		err := a.registerIfNeeded(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			a.logger.Warn("registration", "err", err)
			lost = true
		case err == nil && lost:
			lost = false
			a.logger.Info("masters reachable again: resending unacknowledged status updates now")
			a.updates.Flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sender delivers status updates to the leader through the master the agent registered with
// (any master forwards); the leader's answer is the acknowledgement.
type sender struct{ a *Agent }

func (s sender) Send(ctx context.Context, u checkpoint.Update) error {
	a := s.a
	a.mu.Lock()
	agentID, addr := a.id, a.leaderHTTP
	a.mu.Unlock()
	if agentID == "" || addr == "" {
		return errors.New("not registered with a master yet")
	}
	c, err := a.client(addr)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := c.SendStatus(sctx, agentID, u)
	if err != nil {
		var apiErr *client.Error
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
			// The leader does not know this agent (a new cluster?): register again.
			a.mu.Lock()
			a.leader = ""
			a.mu.Unlock()
		}
		return err
	}
	if ack.Acknowledged {
		return a.tasks.acknowledge(u.TaskID, ack.UUID)
	}
	return nil
}

// registerIfNeeded asks a master who leads, and registers when that leader has not heard from
// this agent yet.
func (a *Agent) registerIfNeeded(ctx context.Context) error {
	masters := a.gossip.Masters()
	if len(masters) == 0 {
		return errors.New("no master known through gossip yet")
	}
	var lastErr error
	for _, m := range masters {
		if m.Meta.HTTP == "" {
			continue
		}
		c, err := a.client(m.Meta.HTTP)
		if err != nil {
			lastErr = err
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		leader, err := askLeader(rctx, c)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		a.mu.Lock()
		same := leader.ID == a.leader
		a.mu.Unlock()
		if same {
			return nil
		}
		return a.register(ctx, c, leader.ID, leader.HTTP)
	}
	return lastErr
}

// errNoLeader: the master asked knows no leader.
var errNoLeader = errors.New("no leader elected yet")

// askLeader asks a master who leads: GET /v1/cluster/leader, a few bytes from its memory, or
// GET /v1/cluster of a master older than that call.
func askLeader(ctx context.Context, c *client.Client) (api.LeaderInfo, error) {
	leader, err := c.Leader(ctx)
	var apiErr *client.Error
	switch {
	case err == nil:
		return leader, nil
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable:
		return leader, errNoLeader
	case !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound:
		return leader, err
	}
	view, err := c.Cluster(ctx)
	if err != nil {
		return leader, err
	}
	if view.Leader == nil {
		return leader, errNoLeader
	}
	return *view.Leader, nil
}

func (a *Agent) register(ctx context.Context, c *client.Client, leader, leaderHTTP string) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got, err := c.RegisterAgent(rctx, api.AgentRegistration{
		ID:         a.ID(),
		Hostname:   a.cfg.Hostname,
		HTTP:       a.cfg.HTTPAddr,
		Resources:  a.cfg.Resources,
		Attributes: a.cfg.Attributes,
		Tasks:      a.tasks.registration(),
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	first := a.id == ""
	a.id, a.leader, a.leaderHTTP = got.ID, leader, leaderHTTP
	if a.leaderHTTP == "" {
		a.leaderHTTP = c.Addr()
	}
	a.attempts++
	a.mu.Unlock()
	if first {
		if err := os.WriteFile(a.idPath(), []byte(got.ID+"\n"), 0o600); err != nil {
			return fmt.Errorf("agent: keep id: %w", err)
		}
		if err := a.updateMeta(); err != nil {
			return err
		}
	}
	a.logger.Info("registered", "agent", got.ID, "leader", leader, "resources", a.cfg.Resources.String())
	a.updates.Flush() // the new leader gets what the old one did not acknowledge, now
	return nil
}

// updateMeta tells the cluster, through gossip, the agent's id and whether it takes tasks.
func (a *Agent) updateMeta() error {
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	why := a.tasks.runtimeUnavailable()
	if len(why) > 200 { // gossip metadata is small (512 bytes in all)
		why = why[:200] + "..."
	}
	return a.gossip.UpdateMeta(gossip.Meta{Role: gossip.RoleAgent, ID: a.ID(), HTTP: a.cfg.HTTPAddr, Version: version.Get().Version, Unavailable: why})
}

// Registrations is how many times the agent registered (first time and again).
func (a *Agent) Registrations() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.attempts
}

// client talks to a master, showing the cluster secret when there is one.
func (a *Agent) client(addr string) (*client.Client, error) {
	c, err := client.New(addr)
	if err != nil {
		return nil, err
	}
	c = c.WithToken(a.cfg.ClusterSecret)
	if a.tlsClient != nil {
		c = c.WithTLS(a.tlsClient)
	}
	if a.faultTransport != nil {
		c = c.WithTransport(a.faultTransport)
	}
	return c, nil
}
