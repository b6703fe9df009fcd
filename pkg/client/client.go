// Package client talks to an Agora master's HTTP API; the CLI is built on it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/agora-sched/agora/pkg/api"
)

// Client calls one master. Followers forward writes to the leader, so any master will do.
type Client struct {
	base    *url.URL
	hc      *http.Client
	streams *http.Client // no timeout: a followed log stays open
	token   string       // sent as "Authorization: Bearer" when set
}

// WithTLS is a copy of the client that speaks HTTPS with conf (the CA to trust, and a
// certificate to show, if any); an http:// address becomes https://.
func (c *Client) WithTLS(conf *tls.Config) *Client {
	cp := c.WithTransport(transportFor(conf))
	base := *c.base
	if base.Scheme == "http" {
		base.Scheme = "https"
	}
	cp.base = &base
	return cp
}

// WithTransport is a copy of the client that sends its requests through tr (after WithTLS, tr
// must carry the TLS configuration itself): an agent's links to masters through the chaos
// harness's fault switch.
func (c *Client) WithTransport(tr http.RoundTripper) *Client {
	cp := *c
	cp.hc = &http.Client{Timeout: c.hc.Timeout, Transport: tr}
	cp.streams = &http.Client{Transport: tr}
	return &cp
}

// WithToken is a copy of the client that sends token (an API token, or the cluster secret)
// with every request; "" sends none.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.token = token
	return &cp
}

// New makes a client for the master at addr: a URL ("http://10.0.0.1:8080") or host:port.
func New(addr string) (*Client, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("client: master address %q is not a URL like http://host:port", addr)
	}
	return &Client{base: u, hc: &http.Client{Timeout: 30 * time.Second}, streams: &http.Client{}}, nil
}

// Error is an answer of 4xx or 5xx from the master.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("master answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// do sends a request (with in as its JSON body, if not nil) and decodes a 2xx JSON answer into
// out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	path, query, _ := strings.Cut(path, "?")
	u := c.base.JoinPath(path)
	u.RawQuery = query
	var reqBody io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %w", err)
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reqBody)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("client: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		return &Error{Status: resp.StatusCode, Message: errorMessage(body)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("client: %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

// Cluster is GET /v1/cluster.
func (c *Client) Cluster(ctx context.Context) (api.ClusterView, error) {
	var v api.ClusterView
	err := c.do(ctx, http.MethodGet, "/v1/cluster", nil, &v)
	return v, err
}

// Leader is GET /v1/cluster/leader: who leads, as this master knows it. A master that has no
// leader answers 503; one older than the call, 404 (ask Cluster then).
func (c *Client) Leader(ctx context.Context) (api.LeaderInfo, error) {
	var v api.LeaderInfo
	err := c.do(ctx, http.MethodGet, "/v1/cluster/leader", nil, &v)
	return v, err
}

// RemoveMaster is DELETE /v1/cluster/masters/{id}.
func (c *Client) RemoveMaster(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/cluster/masters/"+url.PathEscape(id), nil, nil)
}

// RegisterAgent is POST /v1/agents/register.
func (c *Client) RegisterAgent(ctx context.Context, reg api.AgentRegistration) (api.Agent, error) {
	var a api.Agent
	err := c.do(ctx, http.MethodPost, "/v1/agents/register", reg, &a)
	return a, err
}

// Agents is GET /v1/agents.
func (c *Client) Agents(ctx context.Context) ([]api.Agent, error) {
	var as []api.Agent
	err := c.do(ctx, http.MethodGet, "/v1/agents", nil, &as)
	return as, err
}

// SendStatus delivers an agent's status update to the leader (through any master).
func (c *Client) SendStatus(ctx context.Context, agentID string, st api.TaskStatus) (api.StatusAck, error) {
	var ack api.StatusAck
	err := c.do(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(agentID)+"/status", st, &ack)
	return ack, err
}

// Tasks lists every task the leader knows of, with its latest state.
func (c *Client) Tasks(ctx context.Context) ([]api.TaskStatus, error) {
	var ts []api.TaskStatus
	err := c.do(ctx, http.MethodGet, "/v1/tasks", nil, &ts)
	return ts, err
}

// Frameworks is GET /v1/frameworks.
func (c *Client) Frameworks(ctx context.Context) ([]api.FrameworkState, error) {
	var fws []api.FrameworkState
	err := c.do(ctx, http.MethodGet, "/v1/frameworks", nil, &fws)
	return fws, err
}

// Do calls any endpoint of the master's API: in (if not nil) is sent as JSON (a json.RawMessage
// as it is), a 2xx JSON answer is decoded into out (if not nil), and 4xx/5xx are *Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out)
}

// Addr is the host:port the client talks to.
func (c *Client) Addr() string { return c.base.Host }

// errorMessage is the message of an error answer: Agora's {"message"} with the field it names
// ({"field"}), or Marathon's and Metronome's validation details ({"details": [{"path",
// "errors"}]}), or the body itself when it is not JSON.
func errorMessage(body []byte) string {
	var e struct {
		api.Error
		Field   string `json:"field"`
		Details []struct {
			Path   string   `json:"path"`
			Errors []string `json:"errors"`
		} `json:"details"`
	}
	if json.Unmarshal(body, &e) != nil || e.Message == "" {
		return strings.TrimSpace(string(body))
	}
	msg := e.Message
	if e.Field != "" && len(e.Details) == 0 && !strings.Contains(msg, e.Field) {
		msg = e.Field + ": " + msg
	}
	for _, d := range e.Details {
		msg += "; " + d.Path + ": " + strings.Join(d.Errors, ", ")
	}
	return msg
}

// Stream is GET of path (with its query) answered with a body that is not JSON (a task's logs,
// followed as they grow): the caller reads and closes it. A 4xx/5xx answer is *Error.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	return c.stream(ctx, path, "")
}

// Events is GET of path asking for Server-Sent Events (Accept: text/event-stream): the body is
// the stream, open until the master ends it or ctx is done; the caller reads and closes it. A
// 4xx/5xx answer is *Error.
func (c *Client) Events(ctx context.Context, path string) (io.ReadCloser, error) {
	return c.stream(ctx, path, "text/event-stream")
}

func (c *Client) stream(ctx context.Context, path, accept string) (io.ReadCloser, error) {
	path, query, _ := strings.Cut(path, "?")
	u := c.base.JoinPath(path)
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	c.authorize(req)
	resp, err := c.streams.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, &Error{Status: resp.StatusCode, Message: errorMessage(body)}
	}
	return resp.Body, nil
}

func (c *Client) authorize(req *http.Request) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
}

// transports keeps one transport (and its connections) per TLS configuration: clients are
// made per call, their connections must outlive them.
var transports sync.Map // *tls.Config → *http.Transport

func transportFor(conf *tls.Config) *http.Transport {
	if tr, ok := transports.Load(conf); ok {
		return tr.(*http.Transport)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	actual, _ := transports.LoadOrStore(conf, tr)
	return actual.(*http.Transport)
}
