package scheduler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// AgentConn is how the leader reaches agents: launch, kill, acknowledge, and list tasks. The
// HTTP one talks to real agents; benchmarks plug in simulated agents.
type AgentConn interface {
	Launch(ctx context.Context, ag api.Agent, t api.TaskInfo) error
	Kill(ctx context.Context, ag api.Agent, taskID string, grace time.Duration) error
	Acknowledge(ctx context.Context, ag api.Agent, ack api.Acknowledgement) error
	Tasks(ctx context.Context, ag api.Agent) ([]api.Task, error)
	// CreateVolume makes a persistent volume on the agent (done already: no error);
	// DestroyVolume removes one (gone already: no error).
	CreateVolume(ctx context.Context, ag api.Agent, v api.PersistentVolume) error
	DestroyVolume(ctx context.Context, ag api.Agent, volumeID string) error
}

// AgentRefusal is an agent's 4xx answer: the request itself is wrong and resending it will not
// help (a launch the agent cannot run, a task it does not have).
type AgentRefusal struct {
	Status  int
	Message string
}

func (e *AgentRefusal) Error() string {
	return fmt.Sprintf("agent refused (%d): %s", e.Status, e.Message)
}

// HTTPAgents is AgentConn over the agents' HTTP API.
type HTTPAgents struct {
	Client *http.Client
	Secret string // the cluster secret, shown to agents; "" when there is none
	Scheme string // http, or https with TLS
}

// NewHTTPAgentConn reaches agents over their plain HTTP API, without a cluster secret (a master
// builds its own, with its secret, TLS and transport).
func NewHTTPAgentConn() AgentConn {
	return HTTPAgents{Client: &http.Client{Timeout: 30 * time.Second}, Scheme: "http"}
}

func (h HTTPAgents) call(ctx context.Context, ag api.Agent, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.Scheme+"://"+ag.HTTP+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if h.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+h.Secret)
	}
	if ag.ID != "" {
		req.Header.Set(api.HeaderAgentID, ag.ID) // an agent that replaced it at its address refuses
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return fmt.Errorf("agent %s at %s: %w", ag.ID, ag.HTTP, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("agent %s: %w", ag.ID, err)
	}
	if resp.StatusCode >= 300 {
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return &AgentRefusal{Status: resp.StatusCode, Message: e.Message}
		}
		return fmt.Errorf("agent %s answered %d: %s", ag.ID, resp.StatusCode, e.Message)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (h HTTPAgents) Launch(ctx context.Context, ag api.Agent, t api.TaskInfo) error {
	return h.call(ctx, ag, http.MethodPost, "/v1/tasks", t, nil)
}

func (h HTTPAgents) Kill(ctx context.Context, ag api.Agent, taskID string, grace time.Duration) error {
	err := h.call(ctx, ag, http.MethodPost, "/v1/tasks/"+url.PathEscape(taskID)+"/kill", api.KillRequest{GracePeriodSeconds: grace.Seconds()}, nil)
	var ref *AgentRefusal
	if errors.As(err, &ref) && ref.Status == http.StatusConflict {
		return nil // it has ended already
	}
	return err
}

func (h HTTPAgents) Acknowledge(ctx context.Context, ag api.Agent, ack api.Acknowledgement) error {
	return h.call(ctx, ag, http.MethodPost, "/v1/acknowledge", ack, nil)
}

func (h HTTPAgents) Tasks(ctx context.Context, ag api.Agent) ([]api.Task, error) {
	var ts []api.Task
	err := h.call(ctx, ag, http.MethodGet, "/v1/tasks", nil, &ts)
	return ts, err
}

func (h HTTPAgents) CreateVolume(ctx context.Context, ag api.Agent, v api.PersistentVolume) error {
	return h.call(ctx, ag, http.MethodPut, "/v1/volumes/"+url.PathEscape(v.ID), v, nil)
}

func (h HTTPAgents) DestroyVolume(ctx context.Context, ag api.Agent, volumeID string) error {
	return h.call(ctx, ag, http.MethodDelete, "/v1/volumes/"+url.PathEscape(volumeID), nil, nil)
}
