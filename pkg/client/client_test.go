package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestNewAcceptsURLsAndHostPorts(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8080":        "http://127.0.0.1:8080",
		"http://10.0.0.1:8080":  "http://10.0.0.1:8080",
		"https://masters.local": "https://masters.local",
	} {
		c, err := New(in)
		if err != nil || c.base.String() != want {
			t.Errorf("New(%q) = %v, %v; want %s", in, c, err, want)
		}
	}
	for _, bad := range []string{"ftp://x", "http://", "::"} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestErrorsCarryTheMastersMessage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/cluster/masters/nobody":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message": "master: no such master: \"nobody\""}`))
		case "/v1/cluster":
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("upstream sadness\n"))
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var e *Error
	if err := c.RemoveMaster(context.Background(), "nobody"); !errors.As(err, &e) || e.Status != 404 || e.Message != `master: no such master: "nobody"` {
		t.Fatalf("RemoveMaster: %v", err)
	}
	if _, err := c.Cluster(context.Background()); !errors.As(err, &e) || e.Status != 502 || e.Message != "upstream sadness" {
		t.Fatalf("Cluster: %v", err)
	}
}
