// Package marathon is Agora's service framework: Marathon's /v2 API and app definitions, on the
// two-level scheduler. It is a framework like any other — it subscribes with the master
// (frameworks.Host), gets offers and launches tasks through its api.Session — and keeps its
// state in its own namespace of the replicated store (Namespace).
//
// Use:
//
//  1. Pass Applier() for Namespace in the master's Config.Appliers.
//  2. New(Config{Host}) and Register(): the service runs while its master leads
//     (frameworks.Driver), and the /v2 endpoints are answered by the leader (other masters
//     forward).
//
// How it works:
//
//   - An API write (POST/PUT/PATCH/DELETE of an app, a restart, a scale through a kill) is
//     validated (Marathon's 422 shape, by JSON path), then committed with its version and a
//     Deployment in one batch; a change to an app a deployment is changing is a 409 unless
//     ?force=true. What could never run or is ambiguous is refused before anything is written:
//     ids that are not Marathon's paths or longer than MaxIDLength, mem under
//     resources.MinTaskMem, an app or group given twice in one request, an app where a group
//     is, a dependency on itself or on nothing (checkTargets), a cycle, needs no registered
//     agent meets (agentsCanRun). Query booleans (force, scale, wipe, partialUpdate) are read
//     strictly: anything but true or false is a 400 naming the parameter (checkQuery), where
//     Marathon would read false; embed values Marathon does not know are ignored, as Marathon
//     ignores them. The stored definition has instances, cpus, mem and disk filled in
//     (withDefaults); storeUrls (gone from Marathon 1.10) is taken and dropped.
//
//   - The leader's loop plans each app with PlanApp (decisions without I/O: scaling by
//     killSelection, rolling upgrades within upgradeStrategy), kills what the plan says, and
//     starts instances into offers that fit (resources, ports, constraints). An instance is
//     written to the store before its task is launched and deleted once the task has ended, so
//     a new leader neither doubles nor forgets one; it reconciles every instance it loads. A
//     kill is recorded (the instance's Killing) before it is sent, for the same reason.
//
//   - After a failover (or a restart of the framework) instances load with their last record
//     and unknown state and health: an app gets no move — no kill, no launch — until the
//     master has answered for each of its instances (asked again every 10 s). Then an instance
//     whose health is still unknown counts as not healthy for minimumHealthCapacity, yet is
//     not killed as an unhealthy one; the deployment goes on from where it was.
//
//   - An instance that ends on its own — having run, or its launch failed: TASK_ERROR,
//     TASK_FAILED before TASK_RUNNING, TASK_DROPPED, an agent that refused it — is forgotten
//     (lastTaskFailure keeps the latest) and replaced after backoffSeconds × backoffFactor^n (at
//     most maxLaunchDelaySeconds), n the failures in a row; the backoff starts over once an
//     instance launched after the latest failure has run (healthy) for 10 s — instances that
//     were running all along prove nothing about the launches that fail. Unreachable instances
//     are replaced after inactiveAfterSeconds of their app's unreachableStrategy and forgotten
//     after its expungeAfterSeconds.
//
//   - GET /v2/events streams Marathon's events (Server-Sent Events, ?event_type= filters).
//
//   - What /v2 and the event stream write is decided in one place, wire.go, as Marathon 1.10
//     writes it: apps with every default filled in (labels {}, env {}, networks, the default
//     port definition, health checks' defaults, ...), tasks with role, ipAddresses and
//     localVolumes, times with milliseconds, /v2/info's sections, plans in events with id,
//     version, steps and the original and target trees (as Marathon before 1.8 and
//     marathon-python have them; ?plan-format=light: 1.8's plan without them), api_post_event with clientIp and uri, Marathon-Deployment-Id on
//     writes that start a deployment, /v2/tasks as text for Accept: text/plain, errors with
//     details by path. What a client sends back from a GET (counts, tasks, deployments) is
//     dropped.
//
//   - A change of several apps (a group's POST, PUT or DELETE) is one deployment in steps
//     ordered by dependencies (an app's own, and its groups'): a step's apps are planned only
//     once the step before is done; stops go dependants first. Cycles are refused (422).
//
//   - A step is done when its apps have only instances of their version, as many as wanted,
//     running and healthy (or, for a deleted app, none); the deployment ends after its last.
//
//   - A deployment's record keeps the root group before and after its change (Original and
//     Target, PlanGroup), as much of it as the change touches (plantree.go): a new leader has
//     them, and DELETE /v2/deployments/{id} reverts the change from them in one new
//     deployment, as Marathon's revert does — an app the change deleted comes back with its
//     definition, one it created goes, groups get their dependencies back. Marathon 1.10 shows
//     neither tree, in events nor in GET /v2/deployments, and neither does Agora.
//
//   - Offers are suppressed while nothing waits and revived when something does.
//
//   - Every offer is judged against each app that waits for instances (fit): one that fits
//     none of it is declined, and each app it did not fit records why in its
//     frameworks.OfferStats — Marathon's reason names (InsufficientCpus, UnfulfilledConstraint
//     for a constraint or a privileged, root or hostPath need the agent does not allow, ...)
//     with Agora's words for the cause. GET /v2/queue shows them as Marathon's
//     processedOffersSummary and lastUnusedOffers; Agora's waitingReason, in the queue and in
//     the app, says in a line why the instances wait (offers declined, the launch backoff, no
//     offer for a while, agents that make no offers, the agent's message of the last failure).
//     GET /v2/apps/{id} embeds its tasks and lastTaskFailure by default, as Marathon's does;
//     embed=app.taskStats adds Marathon's tasksStats.
//
//   - readinessChecks are probed from the leader (HTTP GET on the instance's host and named
//     port, as Marathon does): a new instance counts toward its deployment once ready.
//
//   - Secret references in env ({"secret": name}) and secret volumes (container.volumes
//     {"containerPath": path, "secret": name}), with secrets.name.source, are read from the
//     master's secret store (PUT /v1/secrets/{source}) at launch and reach the container only
//     (api.TaskInfo.SecretEnv, SecretFiles): a secret volume is a file of the task's user, mode
//     0400, on a tmpfs, mounted read-only at path (relative: in the sandbox; absolute: only with
//     an image). The agent keeps and shows them masked. An app whose secret is missing, or
//     stored with a key the leader lacks, waits, saying why in lastTaskFailure. A secret volume
//     with hostPath or mode, or naming a secret the app does not define, is a 422.
//
//   - Host volumes (container.volumes with hostPath, RO or RW) are bind-mounted by the agent; a
//     relative containerPath is in the sandbox. hostPath names a host volume an agent declares
//     (--host-volume) or a path in one; an app is placed only on agents that declare it, and one
//     no agent declares is a 422. External volumes are refused.
//
//   - Local persistent volumes (container.volumes {"containerPath", "persistent": {"size"}},
//     root disk only) make an app resident, as Marathon's stateful apps (residency.go,
//     reserve.go): each instance reserves its resources and volumes on the agent it first lands
//     on, recording them (reservation/<instance>) before the accept, and every later task of it
//     goes there, mounting them; scaled down it is suspended (listed with its volumes), wipe=true
//     and the app's delete destroy them, an agent removed for good takes them with it.
//     Residency, upgradeStrategy {0.5, 0} and unreachableStrategy "disabled" are Marathon's
//     defaults for such an app; the framework's role must not be "*" (--marathon-role).
//
//   - user runs the tasks as that user (pkg/hostaccess); root only on agents that allow it.
//     Privileged containers, root and host volumes are judged against the registered agents
//     (unreachable and draining ones included: they come back as they were); while none is
//     registered (a cluster starting) the app is taken and waits for one.
//
//   - Service ports (portDefinitions[].port, container.portMappings[].servicePort) given as 0
//     are assigned when the app is written, from Config.ServicePorts (agora master/dev
//     --service-ports, 10000-20000 as Marathon's --local_port_min/max), never one another app
//     holds, kept across the app's updates, free again once it is deleted; past the range the
//     write is a 422 naming it (serviceports.go). With requirePorts they are the instances'
//     host ports. Tasks show them as servicePorts; GET /v2/tasks and /v2/apps/{id}/tasks with
//     Accept: text/plain answer Marathon's text list (tasktext.go). App JSON shows labels ({})
//     and health checks' numbers even where the definition leaves them out, as marathon-lb
//     reads them (lbfields.go).
//
// Deciding and doing: the leader's decisions are functions of its state in memory, the time
// and what happened, without I/O (decide.go, offer.go, plan.go): decide on a tick or a change,
// observe on a status update, placeOffer on an offer; each changes the state in memory and
// answers actions — the records to write, the kills, the launches, the events. step, update and
// useOffer (service.go) take s.mu only for the decision, commit the records through raft, and
// then, outside the lock, publish the events and call the master. A kill or a launch whose
// record could not be committed is not sent (the next step decides again).
//
// A deployment moves through its steps (deploy.go; advance in decide.go):
//
//	API write ──commit app(s) + Deployment{CurrentStep: 1}──▶ deployment_info
//	                               │
//	                               ▼
//	         ┌──────────▶ step n: its apps planned; apps of later steps held as they are
//	         │                     │
//	         │                     │ every app of step n settled (only its version, as many
//	         │                     │ as wanted, running, healthy, ready; deleted: none left)
//	         │                     ▼
//	         │            deployment_step_success
//	         │             │                   │
//	         └─ n < total: │                   │ n = total:
//	   CurrentStep++,      │                   ▼
//	   record committed ───┘            record deleted, deployment_success
//
//	 at any step: a forced change to its apps ─▶ deployment_failed (superseded), deleted;
//	              DELETE /v2/deployments/{id} ─▶ deleted, and a new deployment reverts it
//
// An instance's life (observe, decideApp, placeOffer):
//
//	app waits (want > 0, backoff over)
//	   │ an offer fits: InstanceRecord committed, then the task launched
//	   ▼
//	STAGING ──▶ RUNNING ──▶ healthy (and ready): counts for its deployment
//	   │           │
//	   │           ├─ UNREACHABLE for inactiveAfterSeconds: not counted, a replacement starts;
//	   │           │  for expungeAfterSeconds: record deleted, its task killed
//	   │           │
//	   │           └─ the plan kills it: Killing committed, then the kill sent
//	   │                 │
//	   │                 ▼
//	   │              KILLED (any end): record deleted
//	   ▼
//	ends on its own, from any state (FAILED, ERROR, DROPPED, LOST, GONE, ...): record deleted,
//	lastTaskFailure kept, failures++; replaced after backoffSeconds × backoffFactor^(n-1), at
//	most maxLaunchDelaySeconds; an instance launched since that runs (healthy) for 10 s
//	starts the backoff over
//
//	A new leader loads every instance unreconciled, its state and health unknown: its app
//	gets no move until the master has answered for each of them.
//
//	A resident app's instance ends the same way, but its reservation stays (suspended): its
//	next task is launched on it, on its agent only (residency.go draws that cycle).
//
// Not yet: docker.parameters are kept but have no effect (they are flags of Docker's daemon,
// not of containerd).
package marathon
