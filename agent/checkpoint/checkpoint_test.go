package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agora-sched/agora/pkg/task"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func upd(id, uuid string, st task.State) Update {
	return Update{TaskID: id, UUID: uuid, State: st, Timestamp: time.Unix(1, 0).UTC()}
}

func TestUpdatesQueueInOrderAndAckOneAtATime(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "agent.db"))
	for _, u := range []Update{upd("a", "a1", task.Starting), upd("b", "b1", task.Running), upd("a", "a2", task.Running), upd("a", "a3", task.Finished)} {
		if err := s.AddUpdate(u); err != nil {
			t.Fatal(err)
		}
	}
	head, ok, err := s.Head("a")
	if err != nil || !ok || head.UUID != "a1" {
		t.Fatalf("head = %+v %v %v, want a1", head, ok, err)
	}
	// An ack of an update not at the head (sent out of order, or a duplicate) changes nothing.
	for _, uuid := range []string{"a2", "a3", "zz"} {
		if acked, err := s.Ack("a", uuid); err != nil || acked {
			t.Fatalf("ack %s = %v %v, want ignored", uuid, acked, err)
		}
	}
	if acked, err := s.Ack("a", "a1"); err != nil || !acked {
		t.Fatalf("ack a1 = %v %v", acked, err)
	}
	if acked, _ := s.Ack("a", "a1"); acked {
		t.Fatal("a repeated ack acked again")
	}
	pending, err := s.Pending()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range pending["a"] {
		got = append(got, u.UUID)
	}
	if strings.Join(got, ",") != "a2,a3" || len(pending["b"]) != 1 {
		t.Fatalf("pending = %v", pending)
	}
	if _, ok, _ := s.Head("nobody"); ok {
		t.Fatal("a head for an unknown task")
	}
	if err := s.AddUpdate(Update{TaskID: "a"}); err == nil {
		t.Fatal("an update without a uuid was accepted")
	}
}

func TestTasksSurviveReopenAndRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveTask("web.1", []byte(`{"image":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUpdate(upd("web.1", "u1", task.Running)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrInUse) {
		t.Fatalf("a second open: %v, want ErrInUse", err)
	}
	s.Close()

	s = open(t, path)
	tasks, err := s.Tasks()
	if err != nil || string(tasks["web.1"]) != `{"image":"x"}` {
		t.Fatalf("tasks after reopen = %v %v", tasks, err)
	}
	if head, ok, _ := s.Head("web.1"); !ok || head.State != task.Running {
		t.Fatalf("head after reopen = %+v %v", head, ok)
	}
	if err := s.RemoveTask("web.1"); err != nil {
		t.Fatal(err)
	}
	if tasks, _ := s.Tasks(); len(tasks) != 0 {
		t.Fatalf("tasks after removal = %v", tasks)
	}
	if pending, _ := s.Pending(); len(pending) != 0 {
		t.Fatalf("pending after removal = %v", pending)
	}
}

// TestUpdatesSurviveKill9 runs a writer in a child process, kills it with SIGKILL mid-stream,
// and finds every update the child had been told was written.
func TestUpdatesSurviveKill9(t *testing.T) {
	if path := os.Getenv("CHECKPOINT_CHILD"); path != "" {
		s, err := Open(path)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := 0; ; i++ {
			if err := s.AddUpdate(upd("t", strconv.Itoa(i), task.Running)); err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println("wrote", i)
		}
	}
	path := filepath.Join(t.TempDir(), "agent.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestUpdatesSurviveKill9$")
	cmd.Env = append(os.Environ(), "CHECKPOINT_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	last := -1
	sc := bufio.NewScanner(out)
	for sc.Scan() && last < 150 {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "wrote "); ok {
			last, _ = strconv.Atoi(n)
		} else if strings.HasPrefix(line, "error") {
			t.Fatal(line)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	s := open(t, path)
	pending, err := s.Pending()
	if err != nil {
		t.Fatal(err)
	}
	got := pending["t"]
	if len(got) < last+1 {
		t.Fatalf("%d updates after kill -9, but the child had reported %d written", len(got), last+1)
	}
	for i, u := range got {
		if u.UUID != strconv.Itoa(i) {
			t.Fatalf("update %d is %s: order lost", i, u.UUID)
		}
	}
}

func TestVolumesOutliveReopenAndTasks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveVolume("v1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveVolume("v2", []byte(`{"b":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveTask("v1"); err != nil { // a task of the same name is another thing
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	vs, err := s.Volumes()
	if err != nil || len(vs) != 2 || string(vs["v1"]) != `{"a":1}` {
		t.Fatalf("volumes after reopen = %q %v, want v1 and v2", vs, err)
	}
	if err := s.RemoveVolume("v1"); err != nil {
		t.Fatal(err)
	}
	if vs, _ := s.Volumes(); len(vs) != 1 || vs["v2"] == nil {
		t.Fatalf("volumes after removing v1 = %q, want v2 only", vs)
	}
}
