// Package containerd runs an agent's tasks as containerd containers, in a containerd namespace
// of their own ("agora"). It is the agent's executor: it launches, waits, kills and re-attaches;
// the agent decides what to run and keeps the books.
//
// Use:
//
//  1. New(Config{Client, Namespace, SandboxRoot, LogMaxBytes, LogKeep, HostDirs, Hidden,
//     DefaultUser, AllowRoot, NetNS}) makes an executor, and the root and /etc copy of tasks
//     without an image.
//  2. Recover(ctx, known) once at start: re-attaches to the containers of tasks the agent's
//     checkpoint knows (and copies on what they wrote meanwhile into their log files), reports
//     the ones that ended meanwhile, and kills and removes the rest (and the secret files of a
//     launch it did not finish).
//  3. Launch(ctx, Spec) gets the image (or, without one, a curated read-only view of the host:
//     HostDirs and a copy of /etc without secrets), creates the container (args, env with
//     PORT0.. and the task's identity, cgroup limits from cpus and mem; run as the task's user,
//     its image's when not root, or DefaultUser; no capabilities but root's, no new privileges,
//     the default seccomp profile; the host's network, or the namespace NetNS names), gives the
//     sandbox to that user (and the volumes marked Own: a persistent volume's root), puts its secret files in a tmpfs of its own, 0400 and that user's,
//     mounted read-only into the container and gone from the host before the process starts
//     (secrets.go), starts the process with stdout and stderr going to rotated files beside
//     the sandbox (LogDir, out of the task's reach), and returns once the process runs.
//  4. The Handle's Done channel delivers the Exit: status code, and whether the kernel killed it
//     for memory. The container stays until Remove, so that an exit the agent has not yet
//     checkpointed survives an agent crash; Remove also copies the last of the task's output
//     into its log files, so that they are complete once it returns. A wait that breaks because containerd went away
//     (killed, restarted) is no exit: the process runs on under its shim, and the executor
//     re-attaches once containerd answers again, so Done delivers only the real end (the status
//     containerd kept for a process that ended meanwhile). Available says whether containerd
//     answers and every task is attached; Unavailable tells such errors from others;
//     ReapLostShim ends the shim of a task containerd lost when it was killed creating it.
//  5. Kill sends SIGTERM, waits the grace period, then SIGKILL. Exec runs a command inside a
//     task (COMMAND health checks); Stats reads its cgroup usage.
//
// A task's stdout and stderr cost no process of Agora's: the containerd shim writes each into a
// spool file of the task's LogDir itself (SpoolIO), where it keeps flowing while the agent
// restarts, and the executor's one logs.Pump copies the spools into the rotated files the agent
// serves, from where those end (agent/logs).
//
// Files: executor.go makes the Executor (New) and removes and kills tasks; launch.go launches
// them (Launch, in steps; SpoolIO), with user.go (whom a task runs as), hostroot.go (the root
// of tasks without an image), image.go (pulls and imports), secrets.go (secret files) and
// netns.go (the network namespace tasks join); wait.go waits for their ends, re-attaches after
// containerd comes back and says whether the executor is Available; recover.go re-attaches at
// start; reap.go ends shims containerd lost; exec.go runs commands in tasks; stats.go reads
// their usage.
package containerd
