// Command testapp is the workload Agora's tests run as real containers. It is a small static
// program (built with CGO_ENABLED=0) packed into the image agora.local/testapp:latest by
// pkg/ociimage, so no test pulls from a registry.
//
// What it can do, each from a flag:
//
//	-print-env, -print-args  print the environment (sorted) and the arguments to stdout
//	-print-file PATH         print a file: its content (quoted), mode, owner, filesystem, and
//	                         whether it can be written or its mode changed (repeatable)
//	-write PATH=TEXT         write TEXT to the file PATH, synced (repeatable)
//	-fill PATH=N             write N MiB to the file PATH, synced, and say how much was
//	                         written and why it stopped (repeatable); a failed write or fill
//	                         makes the exit status 1, after whatever else was asked
//	-stderr MSG              print MSG to stderr
//	-listen ADDR             serve HTTP (default ":$PORT0" when PORT0 is set)
//	-unhealthy               start with /health failing
//	-alloc-mib N             allocate and touch N MiB of memory, and hold it
//	-sleep D                 stay up for D (a Go duration like 3s), then exit; 0 with -listen means forever
//	-exit N                  exit with status N
//	-ignore-term D           on SIGTERM, keep running for D before exiting
//
// HTTP endpoints when serving:
//
//	GET  /health        200 "ok", or 503 "unhealthy" after POST /health/fail
//	POST /health/fail   make /health fail
//	POST /health/ok     make /health pass again
//	GET  /env           the environment as a JSON object
//	POST /exit?code=N   exit with status N
//	GET  /              a line naming the task and the port
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	printEnv      bool
	printArgs     bool
	printIdentity bool
	printFiles    []string
	writes        []fileWrite
	stderr        string
	listen        string
	unhealthy     bool
	allocMiB      int
	sleep         time.Duration
	exit          int
	ignoreTerm    time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("testapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.printEnv, "print-env", false, "print the environment to stdout")
	fs.BoolVar(&o.printArgs, "print-args", false, "print the arguments to stdout")
	fs.BoolVar(&o.printIdentity, "print-identity", false, "print who the process is and what it may do: uid, gid, groups, and CapEff, NoNewPrivs and Seccomp of /proc/self/status")
	fs.Func("print-file", "print this file: content, mode, owner, filesystem, and whether it can be written (repeatable)", func(p string) error {
		o.printFiles = append(o.printFiles, p)
		return nil
	})
	fs.Func("write", "write TEXT to the file PATH, synced: PATH=TEXT (repeatable)", func(v string) error {
		path, text, ok := strings.Cut(v, "=")
		if !ok || path == "" {
			return fmt.Errorf("want PATH=TEXT")
		}
		o.writes = append(o.writes, fileWrite{path: path, text: text})
		return nil
	})
	fs.Func("fill", "write N MiB to the file PATH, synced: PATH=N (repeatable)", func(v string) error {
		path, n, ok := strings.Cut(v, "=")
		mib, err := strconv.Atoi(n)
		if !ok || path == "" || err != nil || mib < 0 {
			return fmt.Errorf("want PATH=N, N a number of MiB")
		}
		o.writes = append(o.writes, fileWrite{path: path, fillMiB: mib, fill: true})
		return nil
	})
	fs.StringVar(&o.stderr, "stderr", "", "print this message to stderr")
	fs.StringVar(&o.listen, "listen", "", `serve HTTP on this address (default ":$PORT0" when PORT0 is set)`)
	fs.BoolVar(&o.unhealthy, "unhealthy", false, "start with /health failing")
	fs.IntVar(&o.allocMiB, "alloc-mib", 0, "allocate and touch this many MiB")
	fs.DurationVar(&o.sleep, "sleep", 0, "stay up this long, then exit")
	fs.IntVar(&o.exit, "exit", 0, "exit status")
	fs.DurationVar(&o.ignoreTerm, "ignore-term", 0, "on SIGTERM, keep running this long before exiting")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.listen == "" {
		if p := os.Getenv("PORT0"); p != "" {
			o.listen = ":" + p
		}
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		return 2
	}
	// SIGTERM is caught before "started" is printed: whoever waits for that line may then stop
	// the app and see it end on its own terms (as PID 1 of a container, an uncaught SIGTERM
	// would have the Go runtime exit with 2).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	fmt.Fprintf(stdout, "testapp: started pid=%d\n", os.Getpid())
	if o.printArgs {
		fmt.Fprintf(stdout, "args: %s\n", strings.Join(args, " "))
	}
	if o.printIdentity {
		printIdentity(stdout)
	}
	wrote := true
	for _, fw := range o.writes {
		wrote = fw.do(stdout) && wrote
	}
	for _, p := range o.printFiles {
		printFile(stdout, p)
	}
	if o.printEnv {
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Fprintln(stdout, kv)
		}
	}
	if o.stderr != "" {
		fmt.Fprintln(stderr, o.stderr)
	}
	var hold []byte
	if o.allocMiB > 0 {
		hold = make([]byte, o.allocMiB<<20)
		for i := 0; i < len(hold); i += 4096 {
			hold[i] = 1 // touch every page so it is really resident
		}
		fmt.Fprintf(stdout, "testapp: allocated %d MiB\n", o.allocMiB)
	}

	exit := make(chan int, 1)

	var srv *http.Server
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			fmt.Fprintf(stderr, "testapp: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "testapp: listening on %s\n", ln.Addr())
		srv = &http.Server{Handler: handler(o, exit), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
	}

	var timeout <-chan time.Time
	switch {
	case o.sleep > 0:
		timeout = time.After(o.sleep)
	case srv == nil:
		// Nothing to serve and nothing to wait for: exit now.
		if !wrote && o.exit == 0 {
			return 1
		}
		return o.exit
	}

	code := o.exit
	select {
	case <-timeout:
	case code = <-exit:
	case sig := <-sigs:
		fmt.Fprintf(stdout, "testapp: got %v\n", sig)
		if o.ignoreTerm > 0 {
			fmt.Fprintf(stdout, "testapp: ignoring it for %v\n", o.ignoreTerm)
			time.Sleep(o.ignoreTerm)
		}
	}
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	runtime.KeepAlive(hold)
	if !wrote && code == 0 {
		code = 1
	}
	fmt.Fprintf(stdout, "testapp: exiting with %d\n", code)
	return code
}

// printIdentity prints "identity: uid=U gid=G groups=[...]" and the lines of /proc/self/status
// that say what the process may do.
func printIdentity(w io.Writer) {
	groups, _ := os.Getgroups()
	fmt.Fprintf(w, "identity: uid=%d gid=%d groups=%v\n", os.Getuid(), os.Getgid(), groups)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Fprintf(w, "identity: %v\n", err)
		return
	}
	for _, line := range strings.Split(string(status), "\n") {
		for _, key := range []string{"CapEff:", "CapPrm:", "CapBnd:", "NoNewPrivs:", "Seccomp:"} {
			if strings.HasPrefix(line, key) {
				fmt.Fprintf(w, "identity: %s\n", strings.Join(strings.Fields(line), " "))
			}
		}
	}
}

// printFile prints, each line starting "file PATH: ", a file's content (quoted), its mode and
// owner, the type of its filesystem (tmpfs, ...), and what writing it and changing its mode do.
func printFile(w io.Writer, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(w, "file %s: read: %v\n", path, err)
	} else {
		fmt.Fprintf(w, "file %s: content=%q\n", path, b)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		fmt.Fprintf(w, "file %s: stat: %v\n", path, err)
	} else {
		fmt.Fprintf(w, "file %s: mode=%04o uid=%d gid=%d\n", path, st.Mode&0o7777, st.Uid, st.Gid)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(path, &fs); err == nil {
		kind := fmt.Sprintf("0x%x", fs.Type)
		if fs.Type == 0x01021994 { // TMPFS_MAGIC
			kind = "tmpfs"
		}
		fmt.Fprintf(w, "file %s: fs=%s\n", path, kind)
	}
	if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err != nil {
		fmt.Fprintf(w, "file %s: write: %v\n", path, err)
	} else {
		f.Close()
		fmt.Fprintf(w, "file %s: write: ok\n", path)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		fmt.Fprintf(w, "file %s: chmod: %v\n", path, err)
	} else {
		fmt.Fprintf(w, "file %s: chmod: ok\n", path)
	}
}

func handler(o options, exit chan<- int) http.Handler {
	var unhealthy atomic.Bool
	unhealthy.Store(o.unhealthy)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if unhealthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /health/fail", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(true)
		fmt.Fprintln(w, "health now failing")
	})
	mux.HandleFunc("POST /health/ok", func(w http.ResponseWriter, r *http.Request) {
		unhealthy.Store(false)
		fmt.Fprintln(w, "health now passing")
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(env)
	})
	mux.HandleFunc("POST /exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			http.Error(w, "code: must be an integer", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "exiting with %d\n", code)
		select {
		case exit <- code:
		default:
		}
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "testapp task=%q port=%q\n", os.Getenv("AGORA_TASK_ID"), os.Getenv("PORT0"))
	})
	return mux
}

// fileWrite is one -write or -fill.
type fileWrite struct {
	path    string
	text    string
	fill    bool
	fillMiB int
}

// do writes the file and prints "write PATH: ok" or "fill PATH: N MiB ok", or what was
// written and the error; it answers whether all of it was written and synced.
func (fw fileWrite) do(w io.Writer) bool {
	verb := "write"
	if fw.fill {
		verb = "fill"
	}
	f, err := os.Create(fw.path)
	if err != nil {
		fmt.Fprintf(w, "%s %s: %v\n", verb, fw.path, err)
		return false
	}
	defer f.Close()
	if !fw.fill {
		if _, err = f.WriteString(fw.text); err == nil {
			err = f.Sync()
		}
		if err != nil {
			fmt.Fprintf(w, "write %s: %v\n", fw.path, err)
			return false
		}
		fmt.Fprintf(w, "write %s: ok\n", fw.path)
		return true
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = 'x'
	}
	for i := 0; i < fw.fillMiB; i++ {
		if _, err := f.Write(buf); err != nil {
			fmt.Fprintf(w, "fill %s: wrote %d MiB: %v\n", fw.path, i, err)
			return false
		}
	}
	if err := f.Sync(); err != nil {
		fmt.Fprintf(w, "fill %s: wrote %d MiB, sync: %v\n", fw.path, fw.fillMiB, err)
		return false
	}
	fmt.Fprintf(w, "fill %s: %d MiB ok\n", fw.path, fw.fillMiB)
	return true
}
