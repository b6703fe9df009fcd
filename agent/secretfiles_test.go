package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/api"
	"github.com/agora-sched/agora/pkg/resources"
	"github.com/agora-sched/agora/pkg/task"
)

// TestSecretFilesReachOnlyTheContainer: a task's secret file holds its value for the task, as
// a file of its user only (0400) that it cannot write; the agent's task listing shows it masked,
// and no file of the agent's data dir holds it (the checkpoint keeps it masked; the sandbox
// holds an empty file under the mount) but the task's own output, where the task printed it.
func TestSecretFilesReachOnlyTheContainer(t *testing.T) {
	e := newEnv(t)
	a := e.start()
	const value = "agent-s3cr3t-7f1c"
	a.launch(t, api.TaskInfo{
		TaskID: "reader", FrameworkID: "fw-1", Resources: resources.Resources{CPUs: 0.1, Mem: 64}, User: "4321:4322",
		Cmd: `cat conf/db.pw; echo; stat -c 'mode=%a owner=%u:%g' conf/db.pw
			if echo x >> conf/db.pw 2>/dev/null; then echo WROTE; else echo NOT-WRITABLE; fi`,
		SecretFiles: []api.SecretFile{{ContainerPath: "conf/db.pw", Value: value}},
	})
	st := e.fm.waitFor("reader", 60*time.Second, func(st api.TaskStatus) bool { return st.State.IsTerminal() })
	out := a.logs(t, "reader", "stdout")
	if st.State != task.Finished || out != value+"\nmode=400 owner=4321:4322\nNOT-WRITABLE\n" {
		t.Fatalf("the task ended %s (%s):\n%s", st.State, st.Message, out)
	}

	var listed []api.Task
	a.call(t, "GET", "/v1/tasks", nil, &listed)
	var one api.Task
	a.call(t, "GET", "/v1/tasks/reader", nil, &one)
	raw, _ := json.Marshal([]any{listed, one})
	if strings.Contains(string(raw), value) || len(one.Info.SecretFiles) != 1 || one.Info.SecretFiles[0] != (api.SecretFile{ContainerPath: "conf/db.pw", Value: api.SecretMask}) {
		t.Fatalf("the agent shows the task as %s", raw)
	}
	logs := filepath.Join(e.dataDir, "sandboxes-logs", "reader")
	err := filepath.WalkDir(e.dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == logs {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			if b, err := os.ReadFile(path); err != nil || strings.Contains(string(b), value) {
				t.Errorf("%s holds the secret's value (%v)", path, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(logs); err != nil {
		t.Fatalf("the task's logs are not where the walk skips them: %v", err)
	}
}
