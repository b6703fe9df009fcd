package marathon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"

	"github.com/agora-sched/agora/pkg/httpjson"
)

// groupDef is a group as Marathon's API takes it: apps and groups nested under an id, with the
// group's dependencies; or, on PUT, scaleBy alone.
type groupDef struct {
	ID           string            `json:"id"`
	Apps         []json.RawMessage `json:"apps,omitempty"`
	Groups       []groupDef        `json:"groups,omitempty"`
	Dependencies []string          `json:"dependencies,omitempty"`
	ScaleBy      *float64          `json:"scaleBy,omitempty"`
	Version      string            `json:"version,omitempty"`
}

// under says whether id is path or below it.
func under(id, path string) bool {
	return path == "/" || id == path || strings.HasPrefix(id, path+"/")
}

// flatten turns a group into app edits (ids resolved against the group) and group records.
func flatten(g groupDef, base, path string, edits *[]appEdit, groups map[string]*groupRecord, p *problems) {
	id := NormalizeID(g.ID)
	if g.ID != "" && !strings.HasPrefix(g.ID, "/") {
		id = NormalizeID(strings.TrimRight(base, "/") + "/" + g.ID)
	}
	if id == "" {
		id = base
	}
	if path != "" && (id == base || !under(id, base)) {
		p.add(path+"/id", "the group %s is not inside its parent %s", id, base)
		return
	}
	rec := &groupRecord{ID: id, Dependencies: append([]string(nil), g.Dependencies...), path: path}
	if prev := groups[id]; prev != nil {
		p.add(path+"/id", "the group %s is given twice in this request (also at %s)", id, where(prev.path))
	}
	if id != "/" {
		groups[id] = rec
	}
	for i, raw := range g.Apps {
		appPath := fmt.Sprintf("%s/apps(%d)", path, i)
		def, err := Decode(raw)
		if err != nil {
			p.add(appPath, "%s", err.Error())
			continue
		}
		def = withoutReadOnly(def)
		var appID string
		json.Unmarshal(def["id"], &appID)
		if appID == "" {
			p.add(appPath+"/id", "must not be empty")
			continue
		}
		if !strings.HasPrefix(appID, "/") {
			appID = strings.TrimRight(id, "/") + "/" + appID
		}
		appID = NormalizeID(appID)
		if !under(appID, id) {
			p.add(appPath+"/id", "%s is not in the group %s", appID, id)
			continue
		}
		def["id"], _ = json.Marshal(appID)
		*edits = append(*edits, appEdit{id: appID, path: appPath, edit: func(*appState) (Definition, error) { return def, nil }})
	}
	for i, sub := range g.Groups {
		flatten(sub, id, fmt.Sprintf("%s/groups(%d)", path, i), edits, groups, p)
	}
}

func readGroup(w http.ResponseWriter, r *http.Request) (groupDef, bool) {
	var g groupDef
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8*maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			marathonError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", tooBig.Limit))
			return g, false
		}
	}
	if err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		err = errors.New("want a JSON object")
	}
	if err == nil {
		// A group has few fields; unlike an app's (kept for Marathon's many), an unknown one is
		// a mistake to name.
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(&g)
	}
	if err != nil {
		httpjson.Write(w, http.StatusBadRequest, ValidationError{Message: "Invalid JSON", Details: []ErrorDetails{{Path: "/", Errors: []string{err.Error()}}}})
		return g, false
	}
	var p problems
	checkGroupIDs(g, "", &p)
	if err := p.err(); err != nil {
		httpjson.Write(w, http.StatusUnprocessableEntity, err)
		return g, false
	}
	return g, true
}

// checkGroupIDs names every group id (of g and the groups in it) that is not a valid path.
func checkGroupIDs(g groupDef, path string, p *problems) {
	if g.ID != "" && g.ID != "/" {
		if problem := idProblem(strings.TrimSuffix(g.ID, "/")); problem != "" {
			p.add(path+"/id", "%s", problem)
		}
	}
	for i, sub := range g.Groups {
		checkGroupIDs(sub, fmt.Sprintf("%s/groups(%d)", path, i), p)
	}
}

// groupExists says whether anything is at or under id.
func (st *leaderState) groupExists(id string) bool {
	if _, ok := st.groups[id]; ok {
		return true
	}
	for appID, as := range st.apps {
		if !as.deleted && strings.HasPrefix(appID, id+"/") {
			return true
		}
	}
	return false
}

func (s *Service) createGroup(w http.ResponseWriter, r *http.Request) {
	g, ok := readGroup(w, r)
	if !ok {
		return
	}
	id := NormalizeID(g.ID)
	if id == "" || id == "/" {
		httpjson.Write(w, http.StatusUnprocessableEntity, invalid("/id", "a group needs an id other than /"))
		return
	}
	s.mu.Lock()
	exists := s.st != nil && s.st.groupExists(id)
	s.mu.Unlock()
	if exists {
		marathonError(w, http.StatusConflict, "Group "+id+" is already created. Use PUT to change this group.")
		return
	}
	s.applyGroup(w, r, g, id, http.StatusCreated)
}

// groupIDOf is the group a /v2/groups/{path...} request names, "/" for the root.
func groupIDOf(r *http.Request) string {
	if id := NormalizeID("/" + r.PathValue("path")); id != "" {
		return id
	}
	return "/"
}

// flattenGroup is g, placed at id, as app edits and group records; a ValidationError names
// every problem by its path: an app or a group given twice, an app and a group of one id.
func flattenGroup(g groupDef, id string) ([]appEdit, map[string]*groupRecord, error) {
	var edits []appEdit
	groups := map[string]*groupRecord{}
	var p problems
	g.ID = id
	flatten(g, "/", "", &edits, groups, &p)
	seen := map[string]string{} // app id → where it was first given
	for _, e := range edits {
		if first, dup := seen[e.id]; dup {
			p.add(e.path+"/id", "the app %s is given twice in this request (also at %s): which one is meant?", e.id, where(first))
		} else {
			seen[e.id] = e.path
		}
		if g := groups[e.id]; g != nil {
			p.add(e.path+"/id", "%s is also a group in this request (at %s); an app and a group cannot share an id", e.id, where(g.path))
		}
	}
	return edits, groups, p.err()
}

// where is a path in a request as errors name it: "/" for its top.
func where(path string) string {
	if path == "" {
		return "/"
	}
	return path
}

// applyGroup makes the apps and groups under id what g says, as one deployment: apps and
// groups under id that g leaves out are deleted.
func (s *Service) applyGroup(w http.ResponseWriter, r *http.Request, g groupDef, id string, okCode int) {
	edits, groups, err := flattenGroup(g, id)
	if err != nil {
		httpjson.Write(w, http.StatusUnprocessableEntity, err)
		return
	}
	in := map[string]bool{}
	for _, e := range edits {
		in[e.id] = true
	}
	s.mu.Lock()
	if s.readyState(w) == nil {
		s.mu.Unlock()
		return
	}
	for appID, as := range s.st.apps {
		if !as.deleted && under(appID, id) && !in[appID] {
			edits = append(edits, appEdit{id: appID, edit: func(*appState) (Definition, error) { return nil, nil }})
		}
	}
	for gid := range s.st.groups {
		if under(gid, id) && groups[gid] == nil {
			groups[gid] = nil
		}
	}
	s.mu.Unlock()
	s.deploy(w, r, okCode, edits, groups)
}

func (s *Service) putGroup(w http.ResponseWriter, r *http.Request) {
	id := groupIDOf(r)
	g, ok := readGroup(w, r)
	if !ok {
		return
	}
	if g.ScaleBy == nil {
		s.applyGroup(w, r, g, id, http.StatusOK)
		return
	}
	if *g.ScaleBy < 0 || math.IsNaN(*g.ScaleBy) || math.IsInf(*g.ScaleBy, 0) {
		httpjson.Write(w, http.StatusUnprocessableEntity, invalid("/scaleBy", "must be 0 or more"))
		return
	}
	factor := *g.ScaleBy
	var edits []appEdit
	s.mu.Lock()
	if s.st != nil {
		for appID, as := range s.st.apps {
			if as.deleted || !under(appID, id) {
				continue
			}
			edits = append(edits, appEdit{id: appID, edit: func(cur *appState) (Definition, error) {
				if cur == nil {
					return nil, nil
				}
				d := cur.def.Merge(nil)
				d["instances"], _ = json.Marshal(int(math.Ceil(float64(cur.app.Instances) * factor)))
				return d, nil
			}})
		}
	}
	s.mu.Unlock()
	if len(edits) == 0 {
		marathonError(w, http.StatusNotFound, "Group '"+id+"' does not exist")
		return
	}
	s.deploy(w, r, http.StatusOK, edits, nil)
}

func (s *Service) deleteGroup(w http.ResponseWriter, r *http.Request) {
	id := groupIDOf(r)
	var edits []appEdit
	groups := map[string]*groupRecord{}
	s.mu.Lock()
	if s.st != nil {
		for appID, as := range s.st.apps {
			if !as.deleted && under(appID, id) {
				edits = append(edits, appEdit{id: appID, edit: func(*appState) (Definition, error) { return nil, nil }})
			}
		}
		for gid := range s.st.groups {
			if under(gid, id) {
				groups[gid] = nil
			}
		}
	}
	s.mu.Unlock()
	if len(edits) == 0 && len(groups) == 0 {
		marathonError(w, http.StatusNotFound, "Group '"+id+"' does not exist")
		return
	}
	s.deploy(w, r, http.StatusOK, edits, groups)
}

// getGroup is GET /v2/groups[/{id}]: the group with its apps and nested groups.
func (s *Service) getGroup(w http.ResponseWriter, r *http.Request) {
	id := groupIDOf(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.readyState(w)
	if st == nil {
		return
	}
	if id != "/" && !st.groupExists(id) {
		marathonError(w, http.StatusNotFound, "Group '"+id+"' does not exist")
		return
	}
	httpjson.Write(w, http.StatusOK, s.groupJSONLocked(st, id, embedOf(r)))
}

func (s *Service) groupJSONLocked(st *leaderState, id string, embed map[string]bool) map[string]any {
	apps := []map[string]any{}
	children := map[string]bool{}
	version := ""
	for _, appID := range sortedKeys(st.apps) {
		as := st.apps[appID]
		if as.deleted || !under(appID, id) {
			continue
		}
		rest := strings.TrimPrefix(appID, strings.TrimRight(id, "/")+"/")
		if i := strings.Index(rest, "/"); i >= 0 {
			children[strings.TrimRight(id, "/")+"/"+rest[:i]] = true
			continue
		}
		apps = append(apps, s.appJSONLocked(st, as, embed, ""))
		if as.app.Version > version {
			version = as.app.Version
		}
	}
	for gid := range st.groups {
		if gid == id || !under(gid, id) {
			continue
		}
		rest := strings.TrimPrefix(gid, strings.TrimRight(id, "/")+"/")
		children[strings.TrimRight(id, "/")+"/"+strings.SplitN(rest, "/", 2)[0]] = true
	}
	var sub []string
	for c := range children {
		sub = append(sub, c)
	}
	sort.Strings(sub)
	groups := []map[string]any{}
	for _, c := range sub {
		groups = append(groups, s.groupJSONLocked(st, c, embed))
	}
	deps := st.groups[id].Dependencies
	if deps == nil {
		deps = []string{}
	}
	return map[string]any{"id": id, "apps": apps, "groups": groups, "dependencies": deps, "version": version}
}
