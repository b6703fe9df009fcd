// Command image writes the test app's OCI archive (agora.local/testapp:latest), so that
// `make run` can import it into the dev agent's containerd and examples can run it without a
// registry:
//
//	go run ./examples/testapp/image -o bin/testapp.tar && agora image import bin/testapp.tar
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agora-sched/agora/pkg/containerdtest"
)

func main() {
	out := flag.String("o", "testapp.tar", "where to write the archive")
	flag.Parse()
	data, err := containerdtest.TestAppArchive()
	if err == nil {
		// The folder too (bin/ of a fresh checkout), so that the command in the doc above works
		// on its own.
		err = os.MkdirAll(filepath.Dir(*out), 0o755)
	}
	if err == nil {
		err = os.WriteFile(*out, data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s, %d bytes)\n", *out, containerdtest.TestAppImage, len(data))
}
