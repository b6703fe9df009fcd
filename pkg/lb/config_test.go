package lb

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/lb/lbtest"
)

var update = flag.Bool("update", false, "rewrite the golden configs in testdata/config")

// goldenCase is one testdata/config/NAME.json: the services document and the lb's options.
type goldenCase struct {
	About   string       `json:"_about"`
	Options Options      `json:"options"`
	Doc     api.Services `json:"services"`
}

func readCases(t testing.TB) map[string]goldenCase {
	t.Helper()
	paths, err := filepath.Glob("testdata/config/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no testdata/config/*.json: %v", err)
	}
	cases := map[string]goldenCase{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var c goldenCase
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		cases[strings.TrimSuffix(filepath.Base(p), ".json")] = c
	}
	return cases
}

// golden is what Generate answers for a case: the config, then the ports it skipped and why.
func golden(cfg Config) string {
	var b strings.Builder
	b.WriteString(cfg.Text)
	fmt.Fprintf(&b, "\n# --- services %d, backends %d, servers %d\n", cfg.Services, cfg.Backends, cfg.Servers)
	for _, s := range cfg.Skipped {
		fmt.Fprintf(&b, "# skipped %s port %d: %s\n", s.Service, s.Port, s.Reason)
	}
	return b.String()
}

// TestGenerateGolden: each testdata/config case gives its golden config (written by hand from
// marathon-lb's documented semantics, then kept by -update), and the same config whatever the
// order of the services and instances.
func TestGenerateGolden(t *testing.T) {
	for name, c := range readCases(t) {
		t.Run(name, func(t *testing.T) {
			got := golden(Generate(c.Doc, c.Options))
			path := filepath.Join("testdata/config", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./lb -run TestGenerateGolden -update writes it)", err)
			}
			if got != string(want) {
				t.Errorf("%s: the config differs from %s:\n%s", c.About, path, diff(string(want), got))
			}
			r := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				shuffled := shuffle(c.Doc, r)
				if again := golden(Generate(shuffled, c.Options)); again != got {
					t.Fatalf("the services in another order give another config:\n%s", diff(got, again))
				}
			}
		})
	}
}

func shuffle(doc api.Services, r *rand.Rand) api.Services {
	out := doc
	out.Services = slices.Clone(doc.Services)
	r.Shuffle(len(out.Services), func(i, j int) { out.Services[i], out.Services[j] = out.Services[j], out.Services[i] })
	for i := range out.Services {
		ins := slices.Clone(out.Services[i].Instances)
		r.Shuffle(len(ins), func(a, b int) { ins[a], ins[b] = ins[b], ins[a] })
		out.Services[i].Instances = ins
	}
	out.Index += uint64(r.IntN(100)) // a newer view that serves the same: the same text
	return out
}

// diff shows the first lines where want and got differ.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  want %q\n  got  %q", i+1, wl, gl)
		}
	}
	return "(same lines)"
}

// TestGoldenConfigsPassHAProxy: HAProxy itself (haproxy -c) accepts every golden config.
func TestGoldenConfigsPassHAProxy(t *testing.T) {
	haproxy := lbtest.HAProxy(t)
	for name, c := range readCases(t) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(path, []byte(Generate(c.Doc, c.Options).Text), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := validate(t.Context(), haproxy, path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGenerateRefusesInjection: no label value adds a line to the config.
func TestGenerateRefusesInjection(t *testing.T) {
	evil := "x\n  lua-load /tmp/evil.lua\n#"
	for _, label := range []string{"HAPROXY_0_VHOST", "HAPROXY_0_BALANCE", "HAPROXY_0_PATH", "HAPROXY_0_BIND_ADDR", "HAPROXY_0_MODE", "HAPROXY_0_PORT", "HAPROXY_0_BACKEND_WEIGHT", "HAPROXY_GROUP"} {
		doc := api.Services{Services: []api.ServiceEntry{{
			Framework: "marathon", Name: "/a", Labels: map[string]string{"HAPROXY_GROUP": "g", "HAPROXY_0_VHOST": "a.example.com", label: evil},
			Ports:     []api.ServicePort{{Index: 0, Protocol: "tcp", ServicePort: 10000}},
			Instances: []api.ServiceInstance{{TaskID: "a.1", Host: "h", IP: "10.0.0.1", Ports: []int{31000}}},
		}}}
		cfg := Generate(doc, Options{Groups: []string{"g"}, BindAddr: "127.0.0.1", HTTPPort: 80})
		if strings.Contains(cfg.Text, "lua-load") {
			t.Errorf("%s: the value got into the config:\n%s", label, cfg.Text)
		}
	}
}

// bigDoc is a document of apps × instances of Marathon apps, each with a vhost.
func bigDoc(apps, instances int) api.Services {
	doc := api.Services{Index: 1, Term: 1, Leader: "m-1"}
	for a := range apps {
		s := api.ServiceEntry{Framework: "marathon", Name: fmt.Sprintf("/group%d/app%d", a%10, a),
			Labels: map[string]string{"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": fmt.Sprintf("app%d.example.com", a)},
			Ports:  []api.ServicePort{{Index: 0, Name: "http", Protocol: "tcp", ServicePort: 10000 + a}}}
		for i := range instances {
			s.Instances = append(s.Instances, api.ServiceInstance{TaskID: fmt.Sprintf("app%d.%d", a, i), Host: fmt.Sprintf("node%d", i), IP: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Ports: []int{31000 + a}})
		}
		doc.Services = append(doc.Services, s)
	}
	return doc
}

// BenchmarkConfig1000Apps: the config of 1,000 apps × 10 instances (goal: ≤ 100 ms).
func BenchmarkConfig1000Apps(b *testing.B) {
	doc := bigDoc(1000, 10)
	opts := Options{Groups: []string{"external"}, BindAddr: "127.0.0.1", HTTPPort: 80, StatsSocket: "/run/agora-lb/haproxy.sock"}
	var cfg Config
	for b.Loop() {
		cfg = Generate(doc, opts)
	}
	if cfg.Backends != 1000 || cfg.Servers != 10000 {
		b.Fatalf("backends %d, servers %d", cfg.Backends, cfg.Servers)
	}
	b.ReportMetric(float64(len(cfg.Text)), "bytes/config")
}
