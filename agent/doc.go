// Package agent will be the Agora agent: it registers with the leading master, runs the tasks
// frameworks launch as containerd containers, checkpoints them in bbolt, and retries every status
// update until it is acknowledged. Until that lands (the agents issue), the package holds nothing
// but this description; `agora agent` says so when run.
package agent
