package marathon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// probeReadiness runs an instance's readiness checks from the leader, as Marathon does, until
// they all pass, the instance is gone, or the service stops leading.
func (s *Service) probeReadiness(ctx context.Context, state *leaderState, p probe) {
	a, in, rec := p.app, p.in, p.rec // rec: where the instance is, taken under s.mu when decided
	names := a.PortNames()
	go func() {
		client := &http.Client{}
		for {
			ready := true
			for _, rc := range a.ReadinessChecks {
				if !readinessPasses(ctx, client, rc, rec, names) {
					ready = false
					break
				}
			}
			s.mu.Lock()
			current := s.st == state && state.instances[in.rec.ID] == in
			if ready && current {
				in.ready, in.probing = true, false
				state.touch(in.rec.AppID)
				s.bus.publish(EventInstanceChanged, map[string]any{"instanceId": in.rec.ID, "condition": "Ready", "runSpecId": in.rec.AppID,
					"agentId": in.rec.AgentID, "host": in.rec.Host, "runSpecVersion": in.rec.Version})
			}
			s.mu.Unlock()
			if ready || !current {
				s.poke()
				return
			}
			interval := 30 * time.Second
			if n := a.ReadinessChecks[0].IntervalSeconds; n > 0 {
				interval = time.Duration(n) * time.Second
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
}

// readinessPasses makes one readiness request.
func readinessPasses(ctx context.Context, client *http.Client, rc ReadinessCheck, rec InstanceRecord, portNames []string) bool {
	i := slices.Index(portNames, rc.PortName)
	if i < 0 || i >= len(rec.Ports) {
		return false
	}
	scheme := "http"
	if rc.Protocol == "HTTPS" {
		scheme = "https"
	}
	path := rc.Path
	if path == "" {
		path = "/"
	}
	timeout := 10 * time.Second
	if rc.TimeoutSeconds > 0 {
		timeout = time.Duration(rc.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(rec.Host, strconv.Itoa(rec.Ports[i])), path), nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	codes := rc.HTTPStatusCodesForReady
	if len(codes) == 0 {
		codes = []int{http.StatusOK}
	}
	return slices.Contains(codes, resp.StatusCode)
}
