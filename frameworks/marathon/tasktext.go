package marathon

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/agora-sched/agora/pkg/task"
)

// Marathon's text/plain list of tasks (GET /v2/tasks or /v2/apps/{id}/tasks with Accept:
// text/plain), which marathon-lb's older templates, servicerouter.py and haproxy-marathon-bridge
// read: per app and service port a line of the app's id ('_' for '/', no leading one), the
// service port and the host:port of each running instance, each followed by a tab:
//
//	web_api<TAB>10000<TAB>node1:31000<TAB>node2:31004<TAB>
//
// An app without service ports has one line, with " " for the port and the hosts alone.

// endpointsApp is what the text list shows of an app.
type endpointsApp struct {
	ID           string
	ServicePorts []int
	Running      []endpointsTask // its running instances, in order
}

// endpointsTask is a running instance: its host and host ports.
type endpointsTask struct {
	Host  string
	Ports []int
}

// writeEndpoints writes the text list of apps.
func writeEndpoints(w io.Writer, apps []endpointsApp) error {
	var b strings.Builder
	for _, a := range apps {
		id := strings.ReplaceAll(strings.TrimPrefix(a.ID, "/"), "/", "_")
		if len(a.ServicePorts) == 0 {
			b.WriteString(id + "\t \t")
			for _, t := range a.Running {
				b.WriteString(t.Host + "\t")
			}
			b.WriteByte('\n')
			continue
		}
		for i, sp := range a.ServicePorts {
			b.WriteString(id + "\t" + strconv.Itoa(sp) + "\t")
			for _, t := range a.Running {
				if i < len(t.Ports) {
					b.WriteString(t.Host + ":" + strconv.Itoa(t.Ports[i]) + "\t")
				}
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wantsText says whether a request's Accept header prefers text/plain to JSON: text/plain
// named with a higher quality than application/json (or a wildcard that covers it), or the
// same quality and named first. Without an Accept header the answer is JSON.
func wantsText(r *http.Request) bool {
	textQ, jsonQ := -1.0, -1.0
	textAt, jsonAt := -1, -1
	for i, part := range strings.Split(strings.Join(r.Header.Values("Accept"), ","), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case "text/plain":
			if q > textQ {
				textQ, textAt = q, i
			}
		case "application/json", "application/*", "*/*":
			if q > jsonQ {
				jsonQ, jsonAt = q, i
			}
		}
	}
	return textQ > 0 && (textQ > jsonQ || textQ == jsonQ && textAt < jsonAt)
}

// endpointsLocked is the text list's view of apps (all apps, by id, when ids is nil).
func (s *Service) endpointsLocked(st *leaderState, ids []string) []endpointsApp {
	if ids == nil {
		ids = sortedKeys(st.apps)
	}
	var out []endpointsApp
	for _, id := range ids {
		as := st.apps[id]
		if as == nil || as.deleted {
			continue
		}
		a := endpointsApp{ID: id, ServicePorts: as.app.ServicePorts()}
		for _, in := range st.appInstances(id) {
			if in.state == task.Running {
				a.Running = append(a.Running, endpointsTask{Host: in.rec.Host, Ports: in.rec.Ports})
			}
		}
		out = append(out, a)
	}
	return out
}

// tasksText answers the text list of apps (all of them when ids is nil). The caller holds s.mu.
func (s *Service) tasksText(w http.ResponseWriter, st *leaderState, ids []string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	writeEndpoints(w, s.endpointsLocked(st, ids))
}
