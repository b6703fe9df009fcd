package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/agora-sched/agora/pkg/promtext"
)

// The harness's HTTP calls to the cluster: through the leader, to one agent, for metrics.

// Metrics reads a node's /metrics page.
func (c *Cluster) Metrics(n *Node) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", n.HTTP+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %d", n.HTTP, resp.StatusCode)
	}
	return promtext.Parse(resp.Body)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// Client is an HTTP client that reaches the cluster's nodes and their tasks (through the
// harness's own namespace in network mode), with its own timeout.
func (c *Cluster) Client(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: c.hc.Transport}
}

// Do calls any master's API (trying each until one answers other than 5xx) and decodes a 2xx
// answer into out. It answers the status (0 when none answered).
func (c *Cluster) Do(method, path string, in, out any) (int, error) {
	var lastErr error
	for _, m := range c.Masters {
		code, err := c.call(method, m.HTTP+path, "", in, out)
		if err == nil || code >= 400 && code < 500 {
			return code, err
		}
		lastErr = err
	}
	return 0, lastErr
}

// Agent calls an agent's own API with the cluster secret.
func (c *Cluster) Agent(a *Node, path string, out any) error {
	_, err := c.call("GET", a.HTTP+path, c.Secret, nil, out)
	return err
}

func (c *Cluster) get(url string, out any) error {
	_, err := c.call("GET", url, "", nil, out)
	return err
}

func (c *Cluster) call(method, url, token string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.do(ctx, method, url, token, body, out)
}

func (c *Cluster) do(ctx context.Context, method, url, token string, body io.Reader, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return resp.StatusCode, nil
}
