package master

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agora-sched/agora/master/httpapi"
	"github.com/agora-sched/agora/pkg/gossip"
	"github.com/agora-sched/agora/pkg/version"
	"github.com/agora-sched/agora/raft"
)

// How a master joins its cluster: it founds it or waits to be added (form), checks that the
// masters it meets through gossip are of its cluster, and, leading, adds the new ones as raft
// voters (reconcileMembers); an operator removes one for good (RemoveMaster).

// Errors of a master's life.
var (
	// ErrOtherCluster: the data dir belongs to another cluster than the masters it met.
	ErrOtherCluster = errors.New("master: data dir belongs to another cluster")
)

// meta is this master's gossip metadata: how the others find its raft and HTTP addresses and
// its cluster.
func (m *Master) meta() gossip.Meta {
	return gossip.Meta{
		Role:      gossip.RoleMaster,
		ID:        m.id,
		Cluster:   m.ClusterID(),
		Raft:      m.store.Addr(),
		HTTP:      m.httpAddrOrConfig(),
		Bootstrap: m.cfg.BootstrapExpect,
		Version:   version.Get().Version,
	}
}

func (m *Master) httpAddrOrConfig() string {
	if m.http != nil {
		return m.http.Addr().String()
	}
	return m.cfg.HTTPAddr
}

// form founds the cluster or waits to be added to it, and keeps checking that the masters it
// meets belong to its cluster.
func (m *Master) form(ctx context.Context) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	bootstrapped := m.store.HasState()
	warned := map[string]bool{}
	for {
		if err := m.checkCluster(); err != nil {
			var foreign *foreignMasterError
			if !errors.As(err, &foreign) || foreign.stray {
				return err
			}
			if !warned[foreign.id] {
				warned[foreign.id] = true
				m.logger.Warn("a master of another cluster is in the gossip pool; ignoring it", "err", err)
			}
		}
		if !bootstrapped {
			done, err := m.tryBootstrap()
			if err != nil {
				return err
			}
			bootstrapped = done
		}
		m.adoptClusterID()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// tryBootstrap founds the cluster when this master should; it reports true once nothing is
// left to do (bootstrapped, or an existing cluster will add it).
func (m *Master) tryBootstrap() (bool, error) {
	expect := m.cfg.BootstrapExpect
	if len(m.cfg.Join) == 0 && expect <= 1 {
		return true, m.bootstrap([]gossip.Member{{Meta: m.meta()}})
	}
	if expect == 0 {
		return true, nil // join only: the leader adds us
	}
	var peers []gossip.Member
	for _, mem := range m.gossip.Masters() {
		if mem.Meta.Cluster != "" {
			return true, nil // a cluster exists already: its leader adds us
		}
		if mem.Meta.Bootstrap == expect {
			peers = append(peers, mem)
		}
	}
	if len(peers) < expect {
		return false, nil
	}
	return true, m.bootstrap(peers)
}

// bootstrap founds the cluster with these masters. Every founder computes the same list and so
// the same cluster id: a hash of the founders' ids.
func (m *Master) bootstrap(founders []gossip.Member) error {
	slices.SortFunc(founders, func(a, b gossip.Member) int { return strings.Compare(a.Meta.ID, b.Meta.ID) })
	var servers []raft.Server
	h := sha256.New()
	for _, f := range founders {
		servers = append(servers, raft.Server{ID: f.Meta.ID, Address: f.Meta.Raft, Voter: true})
		fmt.Fprintf(h, "%s\n", f.Meta.ID)
	}
	clusterID := hex.EncodeToString(h.Sum(nil))[:16]
	if err := m.setClusterID(clusterID); err != nil {
		return err
	}
	if err := m.store.Bootstrap(servers); err != nil && !errors.Is(err, raft.ErrAlreadyBootstrapped) {
		return fmt.Errorf("master: %w", err)
	}
	m.logger.Info("bootstrapped the cluster", "cluster", clusterID, "masters", len(servers))
	return nil
}

// adoptClusterID takes the cluster id from the leader once this master has joined a cluster
// that it did not found.
func (m *Master) adoptClusterID() {
	if m.ClusterID() != "" || m.store.Stats().LastIndex == 0 {
		return // known already, or not part of a cluster yet
	}
	leaderID, _ := m.store.Leader()
	for _, mem := range m.gossip.Masters() {
		if mem.Meta.ID == leaderID && mem.Meta.Cluster != "" {
			if err := m.setClusterID(mem.Meta.Cluster); err != nil {
				m.logger.Error("keep cluster id", "err", err)
			}
			return
		}
	}
}

// checkCluster reports a master of another cluster in the gossip pool. This master is the
// stray one (and must stop) when the other cluster shows more live masters than its own, or as
// many and this master came in through --join: a data dir made by one cluster is being used to
// join another. The other side only warns and never adds the stray to raft.
func (m *Master) checkCluster() error {
	ours := m.ClusterID()
	if ours == "" {
		return nil
	}
	counts := map[string]int{}
	var foreign *gossip.Member
	for _, mem := range m.gossip.Masters() {
		counts[mem.Meta.Cluster]++
		if mem.Meta.Cluster != "" && mem.Meta.Cluster != ours && foreign == nil {
			foreign = &mem
		}
	}
	if foreign == nil {
		return nil
	}
	theirs := counts[foreign.Meta.Cluster]
	return &foreignMasterError{
		msg: fmt.Sprintf("%s belongs to cluster %s, but master %s (%s) is of cluster %s; start this master with a fresh --data-dir to join that cluster",
			m.cfg.DataDir, ours, foreign.Meta.ID, foreign.Addr, foreign.Meta.Cluster),
		id:    foreign.Meta.ID,
		stray: theirs > counts[ours] || theirs == counts[ours] && len(m.cfg.Join) > 0,
	}
}

// foreignMasterError says a master of another cluster was met.
type foreignMasterError struct {
	msg   string
	id    string // the other master
	stray bool   // this master is the one that does not belong
}

func (e *foreignMasterError) Error() string { return ErrOtherCluster.Error() + ": " + e.msg }

// Unwrap makes errors.Is(err, ErrOtherCluster) true.
func (e *foreignMasterError) Unwrap() error { return ErrOtherCluster }

func (m *Master) setClusterID(id string) error {
	m.mu.Lock()
	m.clusterID = id
	m.mu.Unlock()
	if err := writeFileAtomic(filepath.Join(m.cfg.DataDir, "cluster-id"), []byte(id+"\n")); err != nil {
		return fmt.Errorf("master: %w", err)
	}
	return m.gossip.UpdateMeta(m.meta())
}

// reconcileMembers is the leader's membership service: new masters that gossip knows (of no
// cluster yet) are added as voters, and a known master that moved gets its new address. Nothing is removed
// automatically: a master that stops, gracefully or not, keeps its seat, so restarting masters
// one by one never shrinks the cluster. An operator removes a master for good with
// DELETE /v1/cluster/masters/{id} (agora cluster remove-master).
func (m *Master) reconcileMembers(ctx context.Context) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := m.reconcileOnce(ctx); err != nil {
			m.logger.Warn("membership", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (m *Master) reconcileOnce(ctx context.Context) error {
	servers, err := m.store.Servers()
	if err != nil {
		return err
	}
	inRaft := map[string]raft.Server{}
	for _, s := range servers {
		inRaft[s.ID] = s
	}
	ours := m.ClusterID()
	for _, mem := range m.gossip.Members() {
		if mem.Meta.Role != gossip.RoleMaster || mem.Meta.ID == m.id {
			continue
		}
		s, known := inRaft[mem.Meta.ID]
		// New masters (no cluster id yet) are added; a master of ours that is not in raft was
		// removed by an operator and stays out (it needs a fresh data dir to come back).
		newcomer := !known && mem.Meta.Cluster == ""
		moved := known && mem.Meta.Cluster == ours && s.Address != mem.Meta.Raft
		if mem.Status == gossip.StatusAlive && (newcomer || moved) {
			m.logger.Info("adding a master", "id", mem.Meta.ID, "raft", mem.Meta.Raft)
			actx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := m.store.AddVoter(actx, mem.Meta.ID, mem.Meta.Raft)
			cancel()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// RemoveMaster takes a master out of the raft configuration (leader only).
func (m *Master) RemoveMaster(ctx context.Context, id string) error {
	servers, err := m.store.Servers()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(servers, func(s raft.Server) bool { return s.ID == id }) {
		return fmt.Errorf("%w: %q", ErrNoSuchMaster, id)
	}
	return m.store.RemoveServer(ctx, id)
}

// ErrNoSuchMaster: no master with that id is in the raft configuration.
var ErrNoSuchMaster = httpapi.ErrNoSuchMaster
