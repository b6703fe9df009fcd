package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T) string {
	t.Helper()
	s, err := New(Config{HTTPAddr: "127.0.0.1:0", Info: Info{Role: "dev", DataDir: "/d", StartedAt: time.Unix(1, 0).UTC()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + s.Addr().String()
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestEndpoints(t *testing.T) {
	base := startServer(t)
	tests := []struct {
		path     string
		wantCode int
		wantType string
		wantBody string
	}{
		{"/ping", 200, "text/plain; charset=utf-8", "pong\n"},
		{"/health", 200, "application/json", `"status": "ok"`},
		{"/nope", 404, "application/json", `"message": "no such endpoint: GET /nope"`},
	}
	for _, tt := range tests {
		code, ctype, body := get(t, base+tt.path)
		if code != tt.wantCode || ctype != tt.wantType || !strings.Contains(body, tt.wantBody) {
			t.Errorf("GET %s = %d %q %q, want %d %q containing %q", tt.path, code, ctype, body, tt.wantCode, tt.wantType, tt.wantBody)
		}
	}
}

func TestInfoNamesTheNode(t *testing.T) {
	base := startServer(t)
	code, _, body := get(t, base+"/v1/info")
	if code != 200 {
		t.Fatalf("GET /v1/info = %d %s", code, body)
	}
	var info Info
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "agora" || info.Role != "dev" || info.DataDir != "/d" || "http://"+info.HTTP != base || info.Build.GoVersion == "" {
		t.Fatalf("info = %+v, want agora dev at %s", info, base)
	}
}

func TestNewRejectsABadAddress(t *testing.T) {
	if _, err := New(Config{HTTPAddr: "127.0.0.1:notaport"}); err == nil || !strings.Contains(err.Error(), "master: listen on 127.0.0.1:notaport") {
		t.Fatalf("err = %v, want a listen error naming the address", err)
	}
}
