// Package endpoints writes Marathon's text/plain list of where apps run (GET /v2/tasks or
// /v2/apps/{id}/tasks with Accept: text/plain, and the masters' GET /v1/services), which
// marathon-lb's older templates, servicerouter.py and haproxy-marathon-bridge read: per app and
// service port a line of the app's id ('_' for '/', no leading one), the service port and the
// host:port of each instance, each followed by a tab:
//
//	web_api<TAB>10000<TAB>node1:31000<TAB>node2:31004<TAB>
//
// An app without service ports has one line, with " " for the port and the hosts alone.
package endpoints

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// App is what the text list shows of an app.
type App struct {
	ID           string
	ServicePorts []int
	Running      []Task // its instances to list, in order
}

// Task is an instance: its host and host ports (Ports[i] is the app's port i's).
type Task struct {
	Host  string
	Ports []int
}

// Write writes the text list of apps.
func Write(w io.Writer, apps []App) error {
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

// WantsText says whether a request's Accept header prefers text/plain to JSON: text/plain
// named with a higher quality than application/json (or a wildcard that covers it), or the
// same quality and named first. Without an Accept header the answer is JSON.
func WantsText(r *http.Request) bool {
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
