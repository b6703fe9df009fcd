// Package ui is the web UI every master serves at /ui: static HTML, CSS and JavaScript
// embedded in the binary, no build step. The pages read the same public JSON API as the CLI
// (/v1/cluster, /v1/agents, /v1/tasks, /v2/apps, /v2/deployments, /v1/jobs, /v1/graph) and
// write through it (scale, restart, run now, kill), so the UI can do nothing the API cannot.
//
// Pages (hash routes of one document): #/ the cluster overview (masters, leader, agents with
// their used/total resources, frameworks, and what waits to start and why), #/apps and
// #/apps/{id} (instances, health, the running deployment, why instances wait; scale and
// restart), #/jobs and #/jobs/{id} (schedules, next run, last runs, why a run waits; run now)
// with the job DAG drawn as SVG, #/tasks and #/tasks/{id} (status and the task's stdout/stderr,
// refreshed), #/events (Marathon's event stream, live). Why something waits is a red line
// wherever it shows: the apps' and runs' waitingReason.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the UI under /ui/ (mount it at "GET /ui/").
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:")
		files.ServeHTTP(w, r)
	})
}
