package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/version"
)

// Info is what GET /v1/info answers about this node.
type Info struct {
	Name       string          `json:"name"` // always "agora"
	Role       string          `json:"role"` // "dev" or "master"
	ID         string          `json:"id,omitempty"`
	ClusterID  string          `json:"cluster_id,omitempty"`
	Build      version.Info    `json:"build"`
	HTTP       string          `json:"http"`
	Raft       string          `json:"raft,omitempty"`
	Gossip     string          `json:"gossip,omitempty"`
	DataDir    string          `json:"data_dir"`
	StartedAt  time.Time       `json:"started_at"`
	Containerd *ContainerdInfo `json:"containerd,omitempty"`
	// Version and LibVersion are what Metronome's GET /v1/info answers (this path is also
	// Metronome's): the Metronome API version Agora speaks and the Marathon library version
	// under it. Agora's own build is in Build.
	Version    string `json:"version"`
	LibVersion string `json:"libVersion"`
}

// Metronome's /v1/info: the API version Agora's jobs API follows, and the Marathon version its
// /v2 API follows.
const (
	MetronomeVersion    = "0.6.0"
	MetronomeLibVersion = "1.10.0"
)

// ContainerdInfo names the containerd a dev node runs its tasks on.
type ContainerdInfo struct {
	Address string `json:"address"`
	Version string `json:"version"`
}

// Config configures a Server.
type Config struct {
	HTTPAddr string
	Info     Info
	Logger   *slog.Logger
	// Cluster, when set, adds the cluster endpoints, forwards writes to the leader and marks
	// reads with how stale they may be.
	Cluster *Cluster
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
}

// Server is a node's HTTP API.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger
	api    *apiHandler
}

// New listens on cfg.HTTPAddr. Info's Name, HTTP (the address actually bound) and Build are
// filled in here.
func New(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("master: listen on %s (--http): %w", cfg.HTTPAddr, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	info := cfg.Info
	info.Name = "agora"
	info.HTTP = ln.Addr().String()
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	info.Build = version.Get()
	info.Version, info.LibVersion = MetronomeVersion, MetronomeLibVersion
	a := &apiHandler{info: info, m: newCluster(cfg.Cluster, info.HTTP), logger: logger, stopping: make(chan struct{})}
	s := &Server{ln: ln, logger: logger, api: a}
	s.srv = &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// HandleLeader adds an endpoint that the leader answers (an embedded framework's API, which
// reads the leader's memory): any other master forwards the request to it, as it does writes.
// Patterns are net/http's ("GET /v2/apps/{id...}"). Call it before Serve, on a Server of a
// Cluster.
func (s *Server) HandleLeader(pattern string, h http.Handler) {
	s.api.mux.Handle(pattern, s.api.onLeader(h))
}

// Serve answers requests until ctx ends, then gives requests in flight five seconds to finish.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("master: http: %w", err)
	case <-ctx.Done():
	}
	close(s.api.stopping)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("master: http shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("master: http: %w", err)
	}
	return nil
}

// writeJSON is the one place responses are encoded.
func writeJSON(w http.ResponseWriter, code int, v any) { httpjson.Write(w, code, v) }

// writeError answers with the JSON error body every API error uses: {"message": "..."}.
func writeError(w http.ResponseWriter, code int, msg string) { httpjson.Error(w, code, msg) }
