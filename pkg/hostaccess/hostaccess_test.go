package hostaccess

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Volume{
		"data=/srv/data":         {Name: "data", Path: "/srv/data", ReadOnly: true},
		"data=/srv/data:ro":      {Name: "data", Path: "/srv/data", ReadOnly: true},
		"logs=/var/log/app/:rw":  {Name: "logs", Path: "/var/log/app", ReadOnly: false},
		"a.b_c-1=/x/../y/z:rw":   {Name: "a.b_c-1", Path: "/y/z"},
		"weird=/with:colon/x:ro": {Name: "weird", Path: "/with:colon/x", ReadOnly: true},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q.String()) = %+v, %v", in, again, err)
		}
		k, v := got.Attribute()
		if back := FromAttributes(map[string]string{k: v, "rack": "r1"}); len(back) != 1 || back[0] != got {
			t.Errorf("attribute %s=%s reads back as %+v", k, v, back)
		}
	}
	for _, bad := range []string{"", "data", "=/x", "data=relative", "-x=/a", "da ta=/x", "data=:rw"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestGrant(t *testing.T) {
	vols := []Volume{{Name: "data", Path: "/srv/data"}, {Name: "certs", Path: "/etc/ssl/certs", ReadOnly: true}}
	for _, c := range []struct {
		hostPath string
		readOnly bool
		want     string // "" refused
	}{
		{"data", false, "/srv/data"},
		{"/srv/data", false, "/srv/data"},
		{"/srv/data/app1/", false, "/srv/data/app1"},
		{"/srv/data/../data/x", true, "/srv/data/x"},
		{"/srv/database", true, ""}, // a prefix of the name is not inside
		{"/srv/data/../../etc", true, ""},
		{"/srv", true, ""},
		{"certs", true, "/etc/ssl/certs"},
		{"certs", false, ""}, // read-only volume asked read-write
		{"/etc/ssl/certs/ca.pem", true, "/etc/ssl/certs/ca.pem"},
		{"/", true, ""},
		{"/etc", true, ""},
		{"nope", true, ""},
		{"", true, ""},
	} {
		_, got, err := Grant(vols, c.hostPath, c.readOnly)
		if c.want == "" {
			if err == nil || !errors.Is(err, ErrNotGranted) {
				t.Errorf("Grant(%q, ro=%v) = %q, %v; want refused", c.hostPath, c.readOnly, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Grant(%q, ro=%v) = %q, %v; want %q", c.hostPath, c.readOnly, got, err, c.want)
		}
	}
	if _, _, err := Grant(nil, "/", true); err == nil || !strings.Contains(err.Error(), "root directory is never mounted") {
		t.Errorf("Grant of / says %v", err)
	}
}

// TestResolveStaysInTheVolume: a link a task leaves in a read-write volume cannot point a later
// mount outside it.
func TestResolveStaysInTheVolume(t *testing.T) {
	dir := t.TempDir()
	vol := Volume{Name: "data", Path: filepath.Join(dir, "data")}
	os.MkdirAll(filepath.Join(vol.Path, "app"), 0o755)
	os.Symlink("/etc", filepath.Join(vol.Path, "evil"))
	os.Symlink("app", filepath.Join(vol.Path, "fine"))
	if got, err := Resolve(vol, filepath.Join(vol.Path, "fine")); err != nil || got != filepath.Join(vol.Path, "app") {
		t.Errorf("a link inside: %q, %v", got, err)
	}
	if got, err := Resolve(vol, filepath.Join(vol.Path, "evil")); err == nil {
		t.Errorf("a link to /etc resolved to %q", got)
	}
	if _, err := Resolve(vol, filepath.Join(vol.Path, "missing")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing path: %v", err)
	}
}

func TestProtected(t *testing.T) {
	prot := append([]string{"/var/lib/agora", "/etc/agora/secret"}, AlwaysProtected...)
	for _, c := range []struct {
		path     string
		readOnly bool
		ok       bool
	}{
		{"/srv/data", false, true},
		{"/etc/ssl/certs", true, true},
		{"/etc/ssl/certs", false, false}, // a system dir, read-write
		{"/usr/share/data", false, false},
		{"/", true, false},
		{"/var", true, false},             // holds /var/lib/agora and containerd's state
		{"/var/lib/agora/x", true, false}, // inside a data dir
		{"/etc", true, false},             // holds /etc/shadow
		{"/root", true, false},
		{"/run/containerd", true, false},
		{"/home/app", false, true},
	} {
		err := Protected(c.path, c.readOnly, prot)
		if (err == nil) != c.ok {
			t.Errorf("Protected(%q, ro=%v) = %v, want ok=%v", c.path, c.readOnly, err, c.ok)
		}
	}
}

func TestIsRootAndValidUser(t *testing.T) {
	for u, root := range map[string]bool{"root": true, "0": true, "0:0": true, "root:wheel": true, "00": true, "nobody": false, "1000": false, "1000:0": false, "": false, "rooty": false} {
		if IsRoot(u) != root {
			t.Errorf("IsRoot(%q) = %v", u, !root)
		}
	}
	for _, ok := range []string{"", "nobody", "1000", "1000:1000", "app:staff", "svc_web-1.x"} {
		if err := ValidUser(ok); err != nil {
			t.Errorf("ValidUser(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{":", "a:", ":b", "a b", "-x", "a:b:c", "x;rm", strings.Repeat("a", 33)} {
		if ValidUser(bad) == nil {
			t.Errorf("ValidUser(%q) accepted", bad)
		}
	}
}

func TestNeeds(t *testing.T) {
	rootAgent := api.Agent{ID: "r", Attributes: map[string]string{RootAttribute: "true"}}
	volAgent := api.Agent{ID: "v", Attributes: map[string]string{AttributePrefix + "data": "/srv/data:rw"}}
	plain := api.Agent{ID: "p"}
	n := Needs{User: "root", Volumes: []api.Volume{{HostPath: "data"}}}
	if u := n.Unmet(rootAgent.Attributes); len(u) != 1 || u[0].Part != PartVolume {
		t.Errorf("the root agent: %+v", u)
	}
	if u := n.Nowhere([]api.Agent{plain}); len(u) != 2 || u[0].Part != PartUser || u[1].Part != PartVolume || !strings.Contains(u[1].Why, "no host volume is named") {
		t.Errorf("a plain agent: %+v", u)
	}
	if u := n.Nowhere([]api.Agent{rootAgent, volAgent}); len(u) != 1 || u[0].Part != PartAll {
		t.Errorf("root here and the volume there: %+v", u)
	}
	both := api.Agent{ID: "b", Attributes: map[string]string{RootAttribute: "true", AttributePrefix + "data": "/srv/data:rw"}}
	if u := n.Nowhere([]api.Agent{plain, both}); u != nil {
		t.Errorf("an agent with both: %+v", u)
	}
	if u := n.Nowhere(nil); u != nil {
		t.Errorf("no agent yet to judge by: %+v", u)
	}
	if u := (Needs{Privileged: true}).Nowhere([]api.Agent{plain}); len(u) != 1 || u[0].Part != PartPrivileged {
		t.Errorf("privileged on a plain agent: %+v", u)
	}
	if u := (Needs{User: "nobody"}).Nowhere(nil); u != nil {
		t.Errorf("nothing special needs no agent: %+v", u)
	}
}
