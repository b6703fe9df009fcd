// Package id holds Agora's identifiers and makes new ones shaped like Mesos's: an agent is
// "<uuid>-S<n>", a framework "<uuid>-<nnnn>", an offer "<uuid>-O<n>", where the uuid is chosen
// once per generator (Mesos uses the master's id) and n counts up.
package id

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// The kinds of identifier.
type (
	AgentID     string
	FrameworkID string
	TaskID      string
	OfferID     string
	ExecutorID  string
)

// MaxLen is the longest identifier accepted, in bytes.
const MaxLen = 255

// validate applies the rules every identifier shares: not empty, at most MaxLen bytes,
// printable ASCII without spaces or '/', and not "." or "..".
func validate(kind, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("id: %s id is empty", kind)
	case len(s) > MaxLen:
		return fmt.Errorf("id: %s id %.20q...: longer than %d bytes", kind, s, MaxLen)
	case s == "." || s == "..":
		return fmt.Errorf("id: %s id %q is not allowed", kind, s)
	}
	for _, c := range []byte(s) {
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return fmt.Errorf("id: %s id %q: contains whitespace", kind, s)
		case c < 0x21 || c > 0x7e:
			return fmt.Errorf("id: %s id %q: contains a control or non-ASCII character", kind, s)
		case c == '/':
			return fmt.Errorf("id: %s id %q: contains '/'", kind, s)
		}
	}
	return nil
}

// Validate checks the id.
func (a AgentID) Validate() error { return validate("agent", string(a)) }

// Validate checks the id.
func (f FrameworkID) Validate() error { return validate("framework", string(f)) }

// Validate checks the id.
func (t TaskID) Validate() error { return validate("task", string(t)) }

// MaxContainerName bounds a task id that names a container and a sandbox directory; frameworks
// bound the ids their task ids are made of so that they fit.
const MaxContainerName = 200

// ValidateContainerName checks the stricter rule a task id meets to name a container and a
// sandbox directory: 1 to MaxContainerName letters, digits, '-', '_' and '.', and not "." or
// "..". The master checks it at launch so that the agent never has to refuse a task for its id.
func (t TaskID) ValidateContainerName() error {
	s := string(t)
	switch {
	case s == "", len(s) > MaxContainerName:
		return fmt.Errorf("id: task id %.20q: 1 to %d characters", s, MaxContainerName)
	case s == "." || s == "..":
		return fmt.Errorf("id: task id %q is not allowed", s)
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("id: task id %q: only letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}

// Validate checks the id.
func (o OfferID) Validate() error { return validate("offer", string(o)) }

// Validate checks the id.
func (e ExecutorID) Validate() error { return validate("executor", string(e)) }

// Generator makes identifiers. It is safe for concurrent use.
type Generator struct {
	mu                         sync.Mutex // guards rand and the counters
	rand                       io.Reader
	prefix                     string
	agents, frameworks, offers uint64
}

// NewGenerator makes a generator drawing randomness from r: crypto/rand.Reader in production, a
// seeded source in tests. Its uuid prefix is drawn now.
func NewGenerator(r io.Reader) (*Generator, error) {
	g := &Generator{rand: r}
	u, err := uuid.NewRandomFromReader(r)
	if err != nil {
		return nil, fmt.Errorf("id: %w", err)
	}
	g.prefix = u.String()
	return g, nil
}

// next returns the counter's value and moves it on.
func (g *Generator) next(counter *uint64) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := *counter
	*counter++
	return n
}

// Agent returns a new agent id.
func (g *Generator) Agent() AgentID {
	return AgentID(fmt.Sprintf("%s-S%d", g.prefix, g.next(&g.agents)))
}

// Framework returns a new framework id.
func (g *Generator) Framework() FrameworkID {
	return FrameworkID(fmt.Sprintf("%s-%04d", g.prefix, g.next(&g.frameworks)))
}

// Offer returns a new offer id.
func (g *Generator) Offer() OfferID {
	return OfferID(fmt.Sprintf("%s-O%d", g.prefix, g.next(&g.offers)))
}

// UUID returns a fresh random version 4 uuid.
func (g *Generator) UUID() (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	u, err := uuid.NewRandomFromReader(g.rand)
	if err != nil {
		return "", fmt.Errorf("id: %w", err)
	}
	return u.String(), nil
}

// Prefix is the uuid this generator's ids start with.
func (g *Generator) Prefix() string { return g.prefix }

// HasPrefix reports whether the id was made by a generator with this prefix.
func HasPrefix(id, prefix string) bool { return strings.HasPrefix(id, prefix+"-") }
