package id

import (
	"math/rand"
	"regexp"
	"strings"
	"sync"
	"testing"
)

func seeded(seed int64) *Generator {
	g, err := NewGenerator(rand.New(rand.NewSource(seed)))
	if err != nil {
		panic(err)
	}
	return g
}

func TestShapes(t *testing.T) {
	g := seeded(1)
	uuidRe := `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	for _, tt := range []struct {
		got  string
		want string
	}{
		{string(g.Agent()), `^` + uuidRe + `-S0$`},
		{string(g.Agent()), `^` + uuidRe + `-S1$`},
		{string(g.Framework()), `^` + uuidRe + `-0000$`},
		{string(g.Offer()), `^` + uuidRe + `-O0$`},
	} {
		if !regexp.MustCompile(tt.want).MatchString(tt.got) {
			t.Errorf("%q does not match %s", tt.got, tt.want)
		}
		if !HasPrefix(tt.got, g.Prefix()) {
			t.Errorf("%q does not start with the generator's prefix", tt.got)
		}
	}
}

func TestSameSeedSameIDs(t *testing.T) {
	a, b := seeded(7), seeded(7)
	ua, _ := a.UUID()
	ub, _ := b.UUID()
	if a.Agent() != b.Agent() || ua != ub {
		t.Fatal("two generators with one seed differ")
	}
	if c := seeded(8); c.Prefix() == a.Prefix() {
		t.Fatal("different seeds give one prefix")
	}
}

func TestUniqueUnderConcurrency(t *testing.T) {
	g := seeded(3)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1250; i++ {
				u, err := g.UUID()
				if err != nil {
					t.Error(err)
					return
				}
				ids := []string{string(g.Offer()), u}
				mu.Lock()
				for _, id := range ids {
					if seen[id] {
						t.Errorf("duplicate id %s", id)
					}
					seen[id] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 20000 {
		t.Fatalf("%d distinct ids, want 20000", len(seen))
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		id, err string
	}{
		{"web.instance-1", ""},
		{"a", ""},
		{"", "empty"},
		{".", "not allowed"},
		{"..", "not allowed"},
		{"a b", "whitespace"},
		{"a/b", "'/'"},
		{"tab\there", "whitespace"},
		{"caf\u00e9", "non-ASCII"},
		{"nul\x00", "control"},
		{strings.Repeat("x", 256), "longer than 255"},
	}
	for _, tt := range tests {
		err := TaskID(tt.id).Validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("TaskID(%q).Validate() = %v, want %q", tt.id, err, tt.err)
		}
	}
	if err := AgentID("a b").Validate(); err == nil || !strings.HasPrefix(err.Error(), `id: agent id "a b"`) {
		t.Errorf("agent error = %v", err)
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("web.1")
	f.Fuzz(func(t *testing.T, s string) {
		if TaskID(s).Validate() != nil {
			return
		}
		for _, c := range []byte(s) {
			if c <= ' ' || c > '~' || c == '/' {
				t.Fatalf("%q validated with byte %q", s, c)
			}
		}
	})
}
