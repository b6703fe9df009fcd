// Package agent is the Agora agent daemon: it registers with the leading master and runs the
// tasks it is given as containerd containers, and never loses a task or a status update.
//
// Use:
//
//  1. New(Config{DataDir, Join, Executor, ...}) refuses an API beyond loopback without the
//     cluster secret or mutual TLS (AccessLine), and host volumes that would show what tasks
//     must never see (pkg/hostaccess); opens the checkpoint (DataDir/checkpoint.db; a second
//     agent on the same data dir fails here) and the persistent volumes (DataDir/volumes,
//     agent/volumes: every volume the checkpoint holds is mounted again if the host restarted;
//     none is ever removed but by a DELETE), binds the API and gossip ports, and detects the
//     machine's resources unless given. What it allows tasks (privileged, root, host volumes)
//     becomes its attributes, by which frameworks place.
//  2. Run(ctx) first recovers: every task the checkpoint holds as not ended is matched with its
//     container. One still running is re-attached and stays RUNNING (nothing is launched
//     again); one that ended while the agent was down is reported with its real exit status;
//     a container no task knows is killed and removed (with an empty checkpoint — a lost data
//     dir — all of the namespace's, said in one line; the masters end the old agent's tasks
//     when this one registers from the same hostname and API address). Then it serves the API,
//     joins the gossip, registers with the leader (listing its tasks and their latest states),
//     registers again with every new leader, and delivers status updates. A call that names
//     another agent id (api.HeaderAgentID: a master that means an agent this one replaced) is
//     answered 421.
//  3. A launch (POST /v1/tasks) is checked against what the agent allows (privileged, root,
//     each volume granted and its links resolved: a 422 naming the field), its persistent
//     volumes (persistent.go: one another live task mounts, or of another size, is a 409; one
//     missing without a size a 422) and what is free: a task that does not fit ends
//     TASK_ERROR at once. A live task holds its persistent volumes until it ends: no other
//     task gets them and DELETE /v1/volumes/{id} is refused (409). Otherwise the agent
//     answers TASK_STARTING and, in the background, makes the persistent volumes it does not
//     have yet (the first task to write to one gets its root as its user's), fetches the
//     task's artifacts into its sandbox (agent/fetcher; a failure ends it TASK_FAILED,
//     REASON_CONTAINER_LAUNCH_FAILED, naming the URI; a kill meanwhile stops the fetch), has
//     the executor get the image and start the container (its volumes bind-mounted; its
//     secret env and secret files, api.TaskInfo's SecretEnv and SecretFiles, go to the
//     container only: the files through a tmpfs the host unmounts before the task starts; the
//     checkpoint and the API keep them masked, api.TaskInfo.Masked), then reports
//     TASK_RUNNING, runs the task's health checks, and reports its end: FINISHED, FAILED (with
//     the exit status, or "container OOM-killed"), or KILLED after a kill (TERM, grace, KILL)
//     or too many failed health checks.
//  4. Every state change is written to the checkpoint together with its status update before
//     the update is sent; updates go in order per task and are resent with backoff until the
//     master acknowledges them (agent/statusupdate). An ended task whose updates are all
//     acknowledged leaves the checkpoint; the API still lists the last 100 of them (keepEnded),
//     and of failed launches (ended before they ran, other than FINISHED or KILLED) only the
//     latest per framework and task name.
//  5. The agent asks the executor twice a second whether it can run tasks (containerd answers,
//     every task attached). While it cannot, the agent refuses launches (503 naming containerd),
//     answers /health with 503 and the reason, pauses health checks, and tells the masters
//     through gossip (gossip.Meta.Unavailable) so that they offer none of it; its tasks keep
//     their states, since they run on under their shims and "containerd does not answer" is not
//     "the container ended". When containerd answers again the executor has re-attached every
//     wait, a task that ended meanwhile is reported with its real exit status, kills asked for
//     meanwhile are sent, health checks resume and launches are taken again. A launch whose
//     containerd went away mid-way ends FAILED only after its container was removed, and any
//     shim containerd lost of it (killed while creating the task) was ended.
//  6. When ctx ends the agent leaves its tasks running, to re-attach when it is back, unless
//     Config.Drain asks it to kill them and see their last updates acknowledged first.
//
// Parts: agent/containerd (the executor), agent/checkpoint (bbolt), agent/statusupdate (in-order
// delivery), agent/logs (stdout and stderr, rotated, followable), agent/fetcher (artifacts),
// agent/volumes (persistent volumes); health checks are pkg/health's.
//
// Files: agent.go makes the Agent (New, in steps) and runs it (Run); config.go holds its Config
// and what New checks of it (AccessLine, the attributes, host volumes, resources); register.go
// its registrations and the delivery of status updates; runtime.go the container runtime's
// availability (step 5). The tasks are a taskSet, declared in tasks.go, where their life cycle
// is drawn and kills are asked: launch.go launches (step 3), exit.go reports ends,
// healthchecks.go runs health checks, recover.go re-attaches at start (step 2), and tasklist.go
// keeps the list of ended tasks (step 4) and the views of them; persistent.go ties tasks to
// the persistent volumes they mount (step 3). The API's routes are in
// http.go, and the Prometheus metrics it serves at GET /metrics in metrics.go.
package agent
