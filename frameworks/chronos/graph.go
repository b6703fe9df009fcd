package chronos

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/pkg/httpjson"
)

// Graph is the job DAG: every job, and an edge from each parent to each dependant.
type Graph struct {
	Nodes []GraphNode `json:"nodes"`
	Edges []GraphEdge `json:"edges"`
}

// GraphNode is a job in the graph with how its runs went.
type GraphNode struct {
	ID string `json:"id"`
	// LastStatus is "success" or "failure" (the latest finished run) or "fresh" (none yet).
	LastStatus string `json:"lastStatus"`
	ActiveRuns int    `json:"activeRuns"`
	Scheduled  bool   `json:"scheduled"` // it has schedules (a root the clock starts)
}

// GraphEdge says that To runs after From succeeded.
type GraphEdge struct {
	From string `json:"from"`
	To   string `json:"to"`
}

func (st *leaderState) graph() Graph {
	g := Graph{Nodes: []GraphNode{}, Edges: []GraphEdge{}}
	for _, id := range slices.Sorted(maps.Keys(st.jobs)) {
		js := st.jobs[id]
		g.Nodes = append(g.Nodes, GraphNode{ID: id, LastStatus: lastStatus(js.hist), ActiveRuns: len(js.activeRuns()), Scheduled: len(js.job.Schedules) > 0})
		for _, p := range js.job.Dependencies {
			g.Edges = append(g.Edges, GraphEdge{From: p, To: id})
		}
	}
	return g
}

func lastStatus(h *History) string {
	switch {
	case h.LastSuccessAt == nil && h.LastFailureAt == nil:
		return "fresh"
	case h.LastFailureAt == nil || h.LastSuccessAt != nil && h.LastSuccessAt.After(*h.LastFailureAt):
		return "success"
	}
	return "failure"
}

// DOT is the graph in Graphviz's language; nodes are coloured by their last status, as
// Chronos's graph is.
func (g Graph) DOT() string {
	var b strings.Builder
	b.WriteString("digraph jobs {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n")
	colors := map[string]string{"success": "#b7e4c7", "failure": "#f4a6a6", "fresh": "#e0e0e0"}
	for _, n := range g.Nodes {
		fmt.Fprintf(&b, "  %q [fillcolor=%q];\n", n.ID, colors[n.LastStatus])
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %q -> %q;\n", e.From, e.To)
	}
	b.WriteString("}\n")
	return b.String()
}

// graph answers GET /v1/graph: JSON, or DOT with ?format=dot or Accept: text/vnd.graphviz.
func (s *Service) graph(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "dot" {
		httpjson.FieldError(w, http.StatusBadRequest, "format", "want json or dot, got "+strconv.Quote(format))
		return
	}
	dot := format == "dot" || format == "" && strings.Contains(r.Header.Get("Accept"), "text/vnd.graphviz")
	s.read(w, func(st *leaderState) error {
		g := st.graph()
		if dot {
			writeDOT(w, g)
			return nil
		}
		httpjson.Write(w, http.StatusOK, g)
		return nil
	})
}

func writeDOT(w http.ResponseWriter, g Graph) {
	w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, g.DOT())
}
