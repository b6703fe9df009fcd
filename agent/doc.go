// Package agent will be the Agora agent: it registers with the leading master, runs the tasks
// frameworks launch as containerd containers, checkpoints them in bbolt, and retries every status
// update until it is acknowledged (the agents issue). Its executor is built: agent/containerd
// launches, waits for and kills tasks in real containers. The daemon around it (registration,
// checkpoint, status updates, recovery, health checks) is not yet; `agora agent` says so.
package agent
