package agent

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agora-sched/agora/agent/volumes"
	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/auth"
	"github.com/agora-sched/agora/pkg/httpjson"
	"github.com/agora-sched/agora/pkg/task"
)

// Persistent volumes, end to end: real ext4 images on real loop devices, real containers. The
// volumes are removed at the end of each test (DELETE, and the env's cleanup for what a failed
// test leaves), so that no loop device or mount is leaked.

// volumesEnv is newEnv whose cleanup unmounts and detaches whatever volumes are left.
func volumesEnv(t *testing.T) *testEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("persistent volumes need root (loop devices, mount)")
	}
	e := newEnv(t)
	t.Cleanup(func() { // runs after the agents' own cleanups stopped them
		if err := volumes.Release(filepath.Join(e.dataDir, "volumes")); err != nil {
			t.Error(err)
		}
	})
	return e
}

func withVolume(info api.TaskInfo, m api.VolumeMount) api.TaskInfo {
	info.PersistentVolumes = append(info.PersistentVolumes, m)
	return info
}

// volumes is GET /v1/volumes, by id.
func (ra *runningAgent) volumes(t *testing.T) map[string]api.AgentVolume {
	t.Helper()
	var vs []api.AgentVolume
	if code := ra.call(t, "GET", "/v1/volumes", nil, &vs); code != 200 {
		t.Fatalf("GET /v1/volumes: %d", code)
	}
	out := map[string]api.AgentVolume{}
	for _, v := range vs {
		out[v.ID] = v
	}
	return out
}

func (ra *runningAgent) deleteVolume(t *testing.T, id string) int {
	t.Helper()
	var body httpjson.ErrorBody
	code := ra.call(t, "DELETE", "/v1/volumes/"+id, nil, nil)
	if code != http.StatusNoContent {
		ra.call(t, "DELETE", "/v1/volumes/"+id, nil, &body)
		t.Logf("DELETE %s: %d %s", id, code, body.Message)
	}
	return code
}

func isMounted(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// waitLog waits until a task's stdout holds want.
func (ra *runningAgent) waitLog(t *testing.T, taskID, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := ra.logs(t, taskID, "stdout")
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's stdout never held %q: %q", taskID, want, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestVolumeOutlivesItsTasksAndServesOneAtATime(t *testing.T) {
	e := volumesEnv(t)
	a := e.start()
	// The first task makes the volume (the master gives its size), writes into it as nobody at a
	// path relative to its sandbox, and ends.
	first := withVolume(testApp("first", "-write", "data/hello=from the first task"),
		api.VolumeMount{VolumeID: "db", ContainerPath: "data", Size: 16, Role: "svc"})
	a.launch(t, first)
	e.fm.waitState("first", task.Finished, 60*time.Second)
	if out := a.logs(t, "first", "stdout"); !strings.Contains(out, "write data/hello: ok") {
		t.Fatalf("first task's stdout: %q, want the write done", out)
	}
	vs := a.volumes(t)
	db, ok := vs["db"]
	if !ok || db.Size != 16 || db.Role != "svc" || db.Task != "" || db.Used <= 0 {
		t.Fatalf("after the first task: %+v, want db of 16 MiB, role svc, no task, something used", vs)
	}
	if !isMounted(t, db.Path) {
		t.Fatalf("%s is not mounted", db.Path)
	}
	var st unix.Stat_t
	if err := unix.Stat(db.Path, &st); err != nil || st.Uid != 65534 || st.Mode&0o777 != 0o755 {
		t.Fatalf("the volume's root: %+v %v, want nobody's (the first task's user), 0755", st, err)
	}

	// The second one mounts it read-only at an absolute path and reads what the first wrote.
	second := withVolume(testApp("second", "-print-file", "/vol/hello", "-sleep", "1h"),
		api.VolumeMount{VolumeID: "db", ContainerPath: "/vol", ReadOnly: true, Size: 16})
	a.launch(t, second)
	e.fm.waitState("second", task.Running, 60*time.Second)
	out := a.waitLog(t, "second", "file /vol/hello: write:")
	if !strings.Contains(out, `file /vol/hello: content="from the first task"`) || !strings.Contains(out, "read-only file system") {
		t.Fatalf("second task's stdout: %q", out)
	}
	if got := a.volumes(t)["db"].Task; got != "second" {
		t.Fatalf("GET /v1/volumes says %q mounts db, want second", got)
	}

	// While it runs, no other task gets the volume and no DELETE removes it.
	var body httpjson.ErrorBody
	third := withVolume(testApp("third", "-exit", "0"), api.VolumeMount{VolumeID: "db", ContainerPath: "v"})
	if code := a.call(t, "POST", "/v1/tasks", third, &body); code != http.StatusConflict || body.Field != "persistent_volumes[0].volume_id" || !strings.Contains(body.Message, "second") {
		t.Fatalf("a second task on a mounted volume: %d %+v, want 409 naming the field and the task", code, body)
	}
	if code := a.deleteVolume(t, "db"); code != http.StatusConflict {
		t.Fatalf("DELETE of a mounted volume: %d, want 409", code)
	}
	a.call(t, "POST", "/v1/tasks/second/kill", nil, nil)
	e.fm.waitState("second", task.Killed, 30*time.Second)

	// Another size for it is a conflict; a missing volume without a size is refused.
	sized := withVolume(testApp("sized", "-exit", "0"), api.VolumeMount{VolumeID: "db", ContainerPath: "v", Size: 32})
	if code := a.call(t, "POST", "/v1/tasks", sized, &body); code != http.StatusConflict || body.Field != "persistent_volumes[0].size" {
		t.Fatalf("a mount of another size: %d %+v, want 409 naming the size", code, body)
	}
	nosize := withVolume(testApp("nosize", "-exit", "0"), api.VolumeMount{VolumeID: "nowhere", ContainerPath: "v"})
	if code := a.call(t, "POST", "/v1/tasks", nosize, &body); code != http.StatusUnprocessableEntity || body.Field != "persistent_volumes[0].size" {
		t.Fatalf("a missing volume without a size: %d %+v, want 422 naming the size", code, body)
	}
	if _, ok := a.volumes(t)["nowhere"]; ok {
		t.Fatal("a refused launch made a volume")
	}

	// Only a DELETE removes it: unmounted, its loop device and files gone.
	img := filepath.Join(filepath.Dir(db.Path), "image.ext4")
	if code := a.deleteVolume(t, "db"); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	if isMounted(t, db.Path) {
		t.Fatal("still mounted after DELETE")
	}
	if _, err := os.Stat(filepath.Dir(db.Path)); !os.IsNotExist(err) {
		t.Fatalf("the volume's directory after DELETE: %v", err)
	}
	if loops := loopDevicesOf(t, img); len(loops) > 0 {
		t.Fatalf("loop devices left on %s: %v", img, loops)
	}
	if code := a.deleteVolume(t, "db"); code != http.StatusNoContent {
		t.Fatalf("DELETE again: %d, want 204", code)
	}
}

// loopDevicesOf lists the loop devices backed by img.
func loopDevicesOf(t *testing.T, img string) []string {
	t.Helper()
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), img) {
			out = append(out, f)
		}
	}
	return out
}

func TestVolumeBoundIsENOSPCInTheContainer(t *testing.T) {
	e := volumesEnv(t)
	a := e.start()
	var v api.AgentVolume
	if code := a.call(t, "PUT", "/v1/volumes/small", api.PersistentVolume{Size: 8}, &v); code != http.StatusCreated {
		t.Fatalf("PUT: %d %+v", code, v)
	}
	// The whole size fits; 4 MiB more (past the little ext4 leaves over) does not.
	hog := withVolume(testApp("hog", "-fill", "/vol/within=8", "-fill", "/vol/past=4"),
		api.VolumeMount{VolumeID: "small", ContainerPath: "/vol"})
	a.launch(t, hog)
	st := e.fm.waitState("hog", task.Failed, 60*time.Second)
	out := a.logs(t, "hog", "stdout")
	if !strings.Contains(out, "fill /vol/within: 8 MiB ok") || !strings.Contains(out, "no space left on device") || st.ExitStatus == nil || *st.ExitStatus != 1 {
		t.Fatalf("the hog: %+v; stdout %q; want 8 MiB written, then ENOSPC", st, out)
	}
	fi, err := os.Stat(filepath.Join(v.Path, "within"))
	if err != nil || fi.Size() != 8<<20 {
		t.Fatalf("the data within the bound: %v %v", fi, err)
	}
	if used := a.volumes(t)["small"].Used; used < 8 || used > 10.5 {
		t.Fatalf("used %g MiB, want 8 to 10.5", used)
	}
	if code := a.deleteVolume(t, "small"); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
}

func TestAgentRestartKeepsVolumesAndTheirTasks(t *testing.T) {
	e := volumesEnv(t)
	a := e.start()
	long := withVolume(testApp("long", "-write", "/vol/note=written before the restart", "-sleep", "1h"),
		api.VolumeMount{VolumeID: "keep", ContainerPath: "/vol", Size: 16})
	a.launch(t, long)
	e.fm.waitState("long", task.Running, 60*time.Second)
	a.waitLog(t, "long", "write /vol/note: ok")
	path := a.volumes(t)["keep"].Path
	a.stop(t)

	// Restarted, the agent finds the volume mounted and the task that holds it.
	b := e.start()
	if v := b.volumes(t)["keep"]; v.Task != "long" || v.Path != path {
		t.Fatalf("after a restart: %+v, want keep, mounted by long", v)
	}
	if code := b.deleteVolume(t, "keep"); code != http.StatusConflict {
		t.Fatalf("DELETE while the recovered task mounts it: %d, want 409", code)
	}
	b.call(t, "POST", "/v1/tasks/long/kill", nil, nil)
	e.fm.waitState("long", task.Killed, 30*time.Second)
	b.stop(t)

	// As after a reboot: the mount is gone. The agent mounts it anew; the data is there.
	if err := unix.Unmount(path, 0); err != nil {
		t.Fatal(err)
	}
	c := e.start()
	if !isMounted(t, path) {
		t.Fatal("the volume was not mounted again")
	}
	c.launch(t, withVolume(testApp("reader", "-print-file", "/vol/note"), api.VolumeMount{VolumeID: "keep", ContainerPath: "/vol"}))
	e.fm.waitState("reader", task.Finished, 60*time.Second)
	if out := c.logs(t, "reader", "stdout"); !strings.Contains(out, `content="written before the restart"`) {
		t.Fatalf("reader's stdout: %q", out)
	}
	if code := c.deleteVolume(t, "keep"); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
}

func TestVolumeAPIAnswersNamingTheField(t *testing.T) {
	e := volumesEnv(t)
	a := e.start()
	for _, c := range []struct {
		method, path string
		body         any
		code         int
		field        string
	}{
		{"PUT", "/v1/volumes/.hidden", api.PersistentVolume{Size: 8}, 400, "id"},
		{"PUT", "/v1/volumes/" + strings.Repeat("x", 65), api.PersistentVolume{Size: 8}, 400, "id"},
		{"PUT", "/v1/volumes/a", api.PersistentVolume{ID: "b", Size: 8}, 400, "id"},
		{"PUT", "/v1/volumes/a", api.PersistentVolume{Size: 0}, 400, "size"},
		{"PUT", "/v1/volumes/a", api.PersistentVolume{Size: -1}, 400, "size"},
		{"PUT", "/v1/volumes/a", map[string]any{"size": "big"}, 400, "size"},
		{"DELETE", "/v1/volumes/.x", nil, 400, "id"},
		{"PUT", "/v1/volumes/huge", api.PersistentVolume{Size: maxVolumeMiB}, 507, "size"},
		{"PUT", "/v1/volumes/a", api.PersistentVolume{ID: "a", Size: 8, Role: "svc"}, 201, ""},
		{"PUT", "/v1/volumes/a", api.PersistentVolume{Size: 8}, 200, ""},
		{"PUT", "/v1/volumes/a", api.PersistentVolume{Size: 9}, 409, "size"},
		{"DELETE", "/v1/volumes/a", nil, 204, ""},
		{"DELETE", "/v1/volumes/never", nil, 204, ""},
		{"POST", "/v1/tasks", withVolume(testApp("bad", "-exit", "0"), api.VolumeMount{VolumeID: "v", ContainerPath: "../out", Size: 8}), 422, "persistent_volumes[0].container_path"},
		{"POST", "/v1/tasks", withVolume(testApp("bad", "-exit", "0"), api.VolumeMount{VolumeID: "v/w", ContainerPath: "x", Size: 8}), 422, "persistent_volumes[0].volume_id"},
	} {
		var body httpjson.ErrorBody
		var out any = &body
		if c.code == 204 {
			out = nil
		}
		if code := a.call(t, c.method, c.path, c.body, out); code != c.code || body.Field != c.field {
			t.Errorf("%s %s %v: %d %+v, want %d naming %q", c.method, c.path, c.body, code, body, c.code, c.field)
		}
	}
	if vs := a.volumes(t); len(vs) != 0 {
		t.Fatalf("volumes left: %+v", vs)
	}
	// Only masters call these.
	for _, p := range []string{"/v1/volumes", "/v1/volumes/a"} {
		if need := a.guard().Need(httptest.NewRequest("PUT", p, nil)); need != auth.Cluster {
			t.Errorf("%s needs %v, want the cluster secret", p, need)
		}
	}
}

func TestCheckVolume(t *testing.T) {
	for _, c := range []struct {
		id    string
		pv    api.PersistentVolume
		field string
	}{
		{"ok", api.PersistentVolume{Size: 1}, ""},
		{"ok", api.PersistentVolume{ID: "ok", Size: 0.5}, ""},
		{"", api.PersistentVolume{Size: 1}, "id"},
		{"a b", api.PersistentVolume{Size: 1}, "id"},
		{"ok", api.PersistentVolume{ID: "other", Size: 1}, "id"},
		{"ok", api.PersistentVolume{Size: 0}, "size"},
		{"ok", api.PersistentVolume{Size: maxVolumeMiB + 1}, "size"},
	} {
		pv, err := checkVolume(c.id, c.pv)
		field := ""
		if fe, ok := err.(*api.FieldError); ok {
			field = fe.Field
		} else if err != nil {
			t.Fatalf("%q %+v: %v is not a field error", c.id, c.pv, err)
		}
		if field != c.field || err == nil && pv.ID != c.id {
			t.Errorf("checkVolume(%q, %+v) = %+v, %v; want field %q", c.id, c.pv, pv, err, c.field)
		}
	}
}

func FuzzCheckVolume(f *testing.F) {
	f.Add("db", 16.0, "")
	f.Add("../x", 1.0, "y")
	f.Fuzz(func(t *testing.T, id string, size float64, bodyID string) {
		pv, err := checkVolume(id, api.PersistentVolume{ID: bodyID, Size: size})
		if err != nil {
			if _, ok := err.(*api.FieldError); !ok {
				t.Fatalf("%v is not a field error", err)
			}
			return
		}
		if api.ValidateVolumeID(pv.ID) != nil || pv.ID != id || !(pv.Size > 0) || filepath.Base(pv.ID) != pv.ID {
			t.Fatalf("took %q %g: %+v", id, size, pv)
		}
	})
}

func TestTaskWithoutImageWritesItsVolumeInItsSandbox(t *testing.T) {
	e := volumesEnv(t)
	a := e.start()
	info := withVolume(api.TaskInfo{TaskID: "host", FrameworkID: "fw-1", Cmd: "echo from the host root > data/f && id -u",
		Resources: mustRes(t, 0.1, 32)}, api.VolumeMount{VolumeID: "h", ContainerPath: "data", Size: 4})
	a.launch(t, info)
	if st := e.fm.waitFor("host", 60*time.Second, func(st api.TaskStatus) bool { return st.State.IsTerminal() }); st.State != task.Finished {
		t.Fatalf("%+v; stdout %q", st, a.logs(t, "host", "stdout"))
	}
	v := a.volumes(t)["h"]
	if b, err := os.ReadFile(filepath.Join(v.Path, "f")); err != nil || string(b) != "from the host root\n" {
		t.Fatalf("the volume's file: %q %v", b, err)
	}
	if code := a.deleteVolume(t, "h"); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
}
