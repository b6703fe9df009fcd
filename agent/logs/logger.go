package logs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// DrainTimeout is how long the logger goes on after SIGTERM without seeing its pipes close.
const DrainTimeout = 5 * time.Second

// RunLogger is the logging process's body, as containerd's shim runs it: the container's stdout
// is fd 3, its stderr fd 4, and closing fd 5 tells the shim the logger is ready. It copies both
// into their rotated files until both pipes close. The shim sends SIGTERM once the container is
// gone; the logger then still drains what is left in the pipes, and gives up only if they stay
// open DrainTimeout longer.
func RunLogger(encoded string) error {
	o, err := DecodeOptions(encoded)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(terms)

	pipes := []*os.File{os.NewFile(3, "stdout"), os.NewFile(4, "stderr")}
	ready := os.NewFile(5, "ready")
	var files []*File
	for _, stream := range Streams {
		f, err := OpenFile(o.Dir, stream, o.MaxBytes, o.Keep)
		if err != nil {
			ready.Close()
			return err
		}
		defer f.Close()
		files = append(files, f)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := range pipes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.Copy(files[i], pipes[i]); err != nil && !errors.Is(err, os.ErrClosed) {
				errs <- fmt.Errorf("logs: %s: %w", Streams[i], err)
			}
		}()
	}
	ready.Close()
	copied := make(chan struct{})
	go func() { wg.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-terms:
		select {
		case <-copied:
		case <-time.After(DrainTimeout):
			for _, p := range pipes {
				p.Close()
			}
			<-copied
		}
	}
	close(errs)
	return <-errs
}
