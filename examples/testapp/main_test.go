package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestRunExitsWithRequestedStatus(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string
		wantStderr string
	}{
		{name: "default", args: nil, wantCode: 0, wantStdout: []string{"testapp: started"}},
		{name: "exit code", args: []string{"-exit", "3"}, wantCode: 3},
		{name: "args", args: []string{"-print-args", "x"}, wantStdout: []string{"args: -print-args x"}},
		{name: "env", args: []string{"-print-env"}, wantStdout: []string{"TESTAPP_MARK=42"}},
		{name: "stderr", args: []string{"-stderr", "boom"}, wantStderr: "boom\n"},
		{name: "sleep then exit", args: []string{"-sleep", "10ms", "-exit", "7"}, wantCode: 7, wantStdout: []string{"exiting with 7"}},
		{name: "alloc", args: []string{"-alloc-mib", "2"}, wantStdout: []string{"allocated 2 MiB"}},
		{name: "bad flag", args: []string{"-nope"}, wantCode: 2},
	}
	t.Setenv("TESTAPP_MARK", "42")
	t.Setenv("PORT0", "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if got := run(tt.args, &out, &errb); got != tt.wantCode {
				t.Fatalf("exit status = %d, want %d; stderr: %s", got, tt.wantCode, errb.String())
			}
			for _, w := range tt.wantStdout {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout %q does not contain %q", out.String(), w)
				}
			}
			if tt.wantStderr != "" && !strings.Contains(errb.String(), tt.wantStderr) {
				t.Errorf("stderr = %q, want %q", errb.String(), tt.wantStderr)
			}
		})
	}
}

func TestHealthCanBeFlipped(t *testing.T) {
	exit := make(chan int, 1)
	srv := httptest.NewServer(handler(options{}, exit))
	defer srv.Close()

	get := func() int {
		t.Helper()
		resp, err := http.Get(srv.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	post := func(path string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	if got := get(); got != http.StatusOK {
		t.Fatalf("healthy: /health = %d, want 200", got)
	}
	post("/health/fail")
	if got := get(); got != http.StatusServiceUnavailable {
		t.Fatalf("after fail: /health = %d, want 503", got)
	}
	post("/health/ok")
	if got := get(); got != http.StatusOK {
		t.Fatalf("after ok: /health = %d, want 200", got)
	}
	if got := post("/exit?code=x"); got != http.StatusBadRequest {
		t.Fatalf("/exit?code=x = %d, want 400", got)
	}
	post("/exit?code=5")
	if got := <-exit; got != 5 {
		t.Fatalf("exit code sent = %d, want 5", got)
	}
}

func TestStartsUnhealthyWhenAsked(t *testing.T) {
	srv := httptest.NewServer(handler(options{unhealthy: true}, make(chan int, 1)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/health = %d, want 503", resp.StatusCode)
	}
}

func TestPrintFile(t *testing.T) {
	dir := t.TempDir()
	a, b := dir+"/a", dir+"/b"
	if err := os.WriteFile(a, []byte("a\nb"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"-print-file", a, "-print-file", b}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"file " + a + `: content="a\nb"`, fmt.Sprintf("file %s: mode=0640 uid=%d gid=%d", a, os.Getuid(), os.Getgid()),
		"file " + a + ": write: ok", "file " + a + ": chmod: ok", "file " + b + `: content=""`} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestWriteAndFill(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if code := run([]string{"-write", dir + "/t=hello", "-fill", dir + "/f=2", "-print-file", dir + "/t"}, &out, &bytes.Buffer{}); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for _, want := range []string{"write " + dir + "/t: ok", "fill " + dir + "/f: 2 MiB ok", "file " + dir + `/t: content="hello"`} {
		if !strings.Contains(out.String(), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if fi, err := os.Stat(dir + "/f"); err != nil || fi.Size() != 2<<20 {
		t.Fatalf("filled file: %v %v", fi, err)
	}
	out.Reset()
	if code := run([]string{"-fill", dir + "/no/such=1"}, &out, &bytes.Buffer{}); code != 1 || !strings.Contains(out.String(), "no such file") {
		t.Fatalf("a failed fill: exit %d, %q; want 1 and the error", code, out.String())
	}
}
