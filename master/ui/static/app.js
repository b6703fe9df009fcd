// Agora's UI: one document, hash routes, the public JSON API. No framework, no build step.
"use strict";

const $main = document.getElementById("main");
const $error = document.getElementById("error");
let refreshTimer = null;
let eventSource = null;

// esc makes any value safe to put in HTML.
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// The API token, when the masters ask for one (--tokens-file): kept in this browser only.
const token = () => localStorage.getItem("agora-token") || "";

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (token()) opts.headers["Authorization"] = "Bearer " + token();
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  if (resp.status === 401) {
    askToken();
    throw new Error("this cluster needs an API token: enter one above");
  }
  if (!resp.ok) {
    let msg = text;
    try {
      const e = JSON.parse(text);
      msg = e.message || text;
      if (e.field && !(e.details || []).length && !msg.includes(e.field)) msg = e.field + ": " + msg;
      for (const d of e.details || []) msg += "; " + d.path + ": " + (d.errors || []).join(", ");
    } catch (_) { /* not JSON */ }
    const err = new Error(method + " " + path + ": " + resp.status + " " + msg);
    err.status = resp.status;
    throw err;
  }
  if (!text) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? JSON.parse(text) : text;
}
const get = path => api("GET", path);

// askToken shows a form for the API token (once), above the error line.
function askToken() {
  if (document.getElementById("token-form")) return;
  const form = document.createElement("form");
  form.id = "token-form";
  form.className = "inline token";
  form.innerHTML = `<label>API token <input type="password" id="token-input" autocomplete="off"></label><button type="submit" id="token-save">Use</button>`;
  document.querySelector("header").appendChild(form);
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    localStorage.setItem("agora-token", document.getElementById("token-input").value.trim());
    form.remove();
    if (eventSource) { eventSource.close(); eventSource = null; }
    refresh();
  });
}

function showError(err) {
  if (!err) { $error.hidden = true; $error.textContent = ""; return; }
  $error.hidden = false;
  $error.textContent = String(err.message || err);
}

// depID is a job's dependency: Metronome writes {"id": ...}.
function depID(d) { return typeof d === "string" ? d : d.id; }

// parseTime reads RFC 3339 and Metronome's times (2026-12-06T20:24:17.735+0000).
function parseTime(ts) { return new Date(String(ts).replace(/([+-]\d\d)(\d\d)$/, "$1:$2")); }

function ago(ts) {
  if (!ts) return "-";
  const t = parseTime(ts);
  if (isNaN(t)) return "-";
  const s = Math.round((Date.now() - t.getTime()) / 1000);
  if (s < -1) return "in " + dur(-s);
  return dur(Math.max(s, 0)) + " ago";
}
function dur(s) {
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60 ? " " + (s % 60) + "s" : "");
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
}
function between(a, b) {
  if (!a || !b) return "-";
  const ms = parseTime(b) - parseTime(a);
  return ms < 10000 ? (ms / 1000).toFixed(1) + "s" : dur(Math.round(ms / 1000));
}
function bar(used, total, unit) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0;
  const fmt = x => (x >= 100 ? Math.round(x) : Math.round(x * 100) / 100).toString();
  return `<span class="bar" title="${esc(fmt(used))} of ${esc(fmt(total))} ${esc(unit)}"><span data-pct="${pct.toFixed(1)}"></span></span><small>${esc(fmt(used))} / ${esc(fmt(total))} ${esc(unit)}</small>`;
}
// render puts HTML in the page and sizes the bars (CSP forbids inline style attributes).
function render(html) {
  $main.innerHTML = html;
  for (const el of $main.querySelectorAll("[data-pct]")) el.style.width = el.dataset.pct + "%";
}
function table(headers, rows, attrs) {
  return `<table ${attrs || ""}><thead><tr>${headers.map(h => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.join("") || `<tr><td colspan="${headers.length}" class="muted">none</td></tr>`}</tbody></table>`;
}
const appHref = id => "#/apps" + id.split("/").map(encodeURIComponent).join("/");
const taskHref = id => "#/tasks/" + encodeURIComponent(id);
const jobHref = id => "#/jobs/" + encodeURIComponent(id);

// ---- pages ----

// waitingLines are red lines for what waits to start and why: the apps (their waitingReason)
// and the jobs' runs (each active run's).
function waitingLines(apps, jobs) {
  const lines = [];
  for (const a of apps) {
    if (a.waitingReason) lines.push(`<p class="bad waiting" data-waiting-app="${esc(a.id)}">App <a href="${appHref(a.id)}">${esc(a.id)}</a> waits: ${esc(a.waitingReason)}</p>`);
  }
  for (const j of jobs) {
    for (const r of j.activeRuns || []) {
      if (r.waitingReason) lines.push(`<p class="bad waiting" data-waiting-run="${esc(r.id)}">Job <a href="${jobHref(j.id)}">${esc(j.id)}</a> run ${esc(r.id)} waits: ${esc(r.waitingReason)}</p>`);
    }
  }
  return lines.join("");
}

async function overview() {
  const [cluster, agents, frameworks, apps, jobs, quotas] = await Promise.all([get("/v1/cluster"), get("/v1/agents"), get("/v1/frameworks").catch(() => []),
    get("/v2/apps").then(r => r.apps || []).catch(() => []), get("/v1/jobs?embed=activeRuns").catch(() => []),
    get("/v1/quota").then(r => r.quotas || []).catch(() => [])]);
  const waiting = waitingLines(apps, jobs);
  const live = agents.filter(a => !a.removed_at);
  const sum = (k, f) => live.reduce((n, a) => n + (f(a)[k] || 0), 0);
  const masters = (cluster.masters || []).map(m => `<tr data-master="${esc(m.id)}"><td>${esc(m.id)}</td><td class="state ${esc(m.state)}">${esc(m.state)}</td><td>${esc(m.address)}</td><td>${esc(m.http || "-")}</td><td class="num">${esc(m.applied_index)}</td></tr>`);
  const agentRows = agents.map(a => `<tr data-agent="${esc(a.id)}"><td>${esc(a.hostname)}<br><small class="muted">${esc(a.id)}</small></td>
    <td class="state ${esc(a.state)}"${a.unavailable ? ` title="${esc(a.unavailable)}"` : ""}>${esc(a.state || "-")}${a.unavailable ? `<br><small class="muted">${esc(a.unavailable)}</small>` : ""}</td>
    <td>${bar(a.used?.cpus || 0, a.resources?.cpus || 0, "cpus")}</td>
    <td>${bar(a.used?.mem || 0, a.resources?.mem || 0, "MiB")}</td>
    <td>${bar(a.used?.disk || 0, a.resources?.disk || 0, "MiB disk")}</td>
    <td class="num tasks">${esc(a.tasks ?? 0)}</td><td>${esc(a.http)}</td></tr>`);
  const fwRows = frameworks.map(f => `<tr data-framework="${esc(f.info.id)}"><td>${esc(f.info.name)}<br><small class="muted">${esc(f.info.id)}</small></td><td>${esc(f.info.role)}</td>
    <td class="${f.connected ? "ok" : "bad"}">${f.connected ? "connected" : "disconnected"}</td><td class="num">${esc(f.tasks)}</td><td class="num">${esc((f.dominant_share || 0).toFixed(3))}</td></tr>`);
  // A role's quota: what it is guaranteed, what it is limited to, what it holds (offered or in use).
  const amounts = m => ["cpus", "mem", "disk"].filter(k => m && k in m).map(k => `${k} ${Math.round(m[k] * 1000) / 1000}`).join(", ") || "-";
  const quotaRows = quotas.map(q => `<tr data-role="${esc(q.role)}"><td>${esc(q.role)}</td><td class="guarantee">${esc(amounts(q.guarantee))}</td>
    <td class="limit">${esc(amounts(q.limit))}</td><td class="allocated">${esc(amounts(q.allocated))}</td></tr>`);
  render(`<h1>Cluster</h1>
    <div class="cards">
      <div class="card"><span class="muted">Leader</span><b id="leader-id">${esc(cluster.leader?.id || "none")}</b></div>
      <div class="card"><span class="muted">Masters</span><b>${(cluster.masters || []).length}</b></div>
      <div class="card"><span class="muted">Agents</span><b id="agent-count">${live.length}</b></div>
      <div class="card"><span class="muted">CPUs used</span><b>${(Math.round(sum("cpus", a => a.used || {}) * 100) / 100)} / ${sum("cpus", a => a.resources || {})}</b></div>
      <div class="card"><span class="muted">Frameworks</span><b>${frameworks.length}</b></div>
    </div>
    ${waiting ? `<h2>Waiting</h2><div id="waiting">${waiting}</div>` : ""}
    <h2>Agents</h2>${table(["Agent", "State", "CPUs", "Memory", "Disk", "Tasks", "API"], agentRows, 'id="agents"')}
    <h2>Masters</h2>${table(["ID", "Raft state", "Raft address", "HTTP", "Applied index"], masters, 'id="masters"')}
    <h2>Frameworks</h2>${table(["Framework", "Role", "Connection", "Tasks", "Dominant share"], fwRows, 'id="frameworks"')}
    ${quotaRows.length ? `<h2>Quotas</h2>${table(["Role", "Guarantee", "Limit", "Holds"], quotaRows, 'id="quotas"')}` : ""}`);
}

// wanted is an app's instances; an app that leaves them out has Marathon's default, 1.
function wanted(a) {
  return a.instances ?? 1;
}
function instances(a) {
  return `${a.tasksRunning ?? 0}/${wanted(a)}`;
}
function health(a) {
  if (!(a.healthChecks || []).length) return "-";
  return `${a.tasksHealthy ?? 0}/${wanted(a)}` + (a.tasksUnhealthy ? ` (${a.tasksUnhealthy} unhealthy)` : "");
}
function image(a) {
  return [a.container?.docker?.image || a.cmd || "", ...(a.args || [])].join(" ").trim();
}

async function apps() {
  const [res, deps] = await Promise.all([get("/v2/apps"), get("/v2/deployments")]);
  const rows = res.apps.map(a => {
    const d = deps.find(d => (d.affectedApps || []).includes(a.id));
    return `<tr data-app="${esc(a.id)}"><td><a href="${appHref(a.id)}">${esc(a.id)}</a></td><td class="num instances">${esc(instances(a))}</td>
      <td class="num health">${esc(health(a))}</td><td class="num">${esc(a.cpus)}</td><td class="num">${esc(a.mem)}</td><td>${esc(image(a))}</td>
      <td>${d ? `step ${esc(d.currentStep)}/${esc(d.totalSteps)}: ${esc((d.currentActions || []).map(x => x.action).join(", "))}` : "-"}</td></tr>` +
      (a.waitingReason ? `<tr class="why" data-waiting="${esc(a.id)}"><td colspan="7" class="bad">waiting: ${esc(a.waitingReason)}</td></tr>` : "");
  });
  render(`<h1>Apps</h1>${table(["App", "Running", "Healthy", "CPUs", "Mem", "Runs", "Deployment"], rows, 'id="apps"')}
    <p class="muted">Add one with <code>agora app add FILE.json</code> or <code>POST /v2/apps</code>.</p>`);
}

// dnsLabel makes a port's name a DNS label as the masters do: lower case, each run of other
// characters one '-', none at the ends, at most 63 bytes.
function dnsLabel(s) {
  return String(s || "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+/, "").slice(0, 63).replace(/-+$/, "");
}

// discoveryRows are the names a service is found by (GET /v1/services' entry): its A name, its
// SRV names (per protocol, and per named port), and its service ports, each with what it answers.
function discoveryRows(svc) {
  const rows = [];
  const row = (name, type, answers) => rows.push(`<tr data-dns-name="${esc(name)}"><td><code>${esc(name)}</code></td><td>${esc(type)}</td><td>${esc(answers)}</td></tr>`);
  const healthy = (svc.instances || []).length;
  if (svc.dns) {
    const dot = svc.dns.indexOf(".");
    const label = svc.dns.slice(0, dot), under = svc.dns.slice(dot + 1);
    row(svc.dns, "A, AAAA", `the hosts of its ${healthy} healthy instance${healthy === 1 ? "" : "s"}`);
    for (const proto of ["tcp", "udp"]) {
      const ports = (svc.ports || []).filter(p => (p.protocol || "tcp").split(",").includes(proto));
      if (!ports.length) continue;
      row(`_${label}._${proto}.${under}`, "SRV", "host and port of each healthy instance, every " + proto + " port");
      for (const p of ports) {
        if (dnsLabel(p.name)) row(`_${dnsLabel(p.name)}._${label}._${proto}.${under}`, "SRV", `port ${p.index} (${p.name})`);
      }
    }
  }
  for (const p of svc.ports || []) {
    if (!p.service_port) continue;
    const ends = (svc.instances || []).map(i => (i.host || i.ip) + ":" + (i.ports || [])[p.index]).join(", ") || "no healthy instance";
    rows.push(`<tr data-service-port="${esc(p.service_port)}"><td>service port <b>${esc(p.service_port)}</b></td><td>${esc(p.protocol)}</td><td>${esc(ends)}</td></tr>`);
  }
  return rows;
}

async function app(id) {
  const [res, deps, services] = await Promise.all([get("/v2/apps" + id + "?embed=app.tasks&embed=app.lastTaskFailure"), get("/v2/deployments"),
    get("/v1/services").catch(() => null)]);
  const a = res.app;
  const svc = services && (services.services || []).find(s => s.name === a.id);
  const mine = deps.filter(d => (d.affectedApps || []).includes(a.id));
  const depRows = mine.map(d => `<tr data-deployment="${esc(d.id)}"><td>${esc(d.id)}</td><td>step ${esc(d.currentStep)}/${esc(d.totalSteps)}</td>
    <td>${esc((d.currentActions || []).map(x => x.action + " " + x.app).join(", "))}</td><td>${esc(ago(d.version))}</td></tr>` +
    (a.waitingReason ? `<tr class="why" data-deployment-waiting="${esc(d.id)}"><td colspan="4" class="bad">held: ${esc(a.id)} waits: ${esc(a.waitingReason)}</td></tr>` : ""));
  // A resident app's (persistent volumes) instances show their agent and volumes; a suspended
  // one (scaled down, its volumes kept) is listed without a version, as Marathon lists it.
  const resident = (a.tasks || []).some(t => (t.localVolumes || []).length);
  const taskRows = (a.tasks || []).map(t => {
    const hc = (t.healthCheckResults || [])[0];
    const h = hc ? (hc.alive ? "healthy" : "unhealthy") : "-";
    const vols = (t.localVolumes || []).map(v => v.containerPath + " = " + v.persistenceId).join(", ");
    const suspended = resident && !t.version && vols;
    const state = suspended ? "suspended" : t.state;
    const extra = resident ? `<td class="agent">${esc(t.slaveId || "-")}</td><td class="volumes"><code>${esc(vols || "-")}</code></td>` : "";
    const name = suspended ? esc(t.id) : `<a href="${taskHref(t.id)}">${esc(t.id)}</a>`;
    return `<tr data-task="${esc(t.id)}"><td>${name}</td><td class="state ${esc(t.state)}">${esc(state)}</td>
      <td class="${esc(h)}">${esc(h)}</td><td>${esc(t.host)}</td>${extra}<td>${esc((t.ports || []).join(", ") || "-")}</td><td>${esc(t.version || "-")}</td><td>${esc(suspended ? "-" : ago(t.startedAt || t.stagedAt))}</td></tr>`;
  });
  const taskHeads = resident ? ["Task", "State", "Health", "Host", "Agent", "Volumes", "Ports", "Version", "Since"] : ["Task", "State", "Health", "Host", "Ports", "Version", "Since"];
  const f = a.lastTaskFailure;
  render(`<h1>App ${esc(a.id)}</h1>
    <div class="cards">
      <div class="card"><span class="muted">Running / wanted</span><b id="app-instances">${esc(instances(a))}</b></div>
      <div class="card"><span class="muted">Healthy</span><b id="app-health">${esc(health(a))}</b></div>
      <div class="card"><span class="muted">Resources</span><b>${esc(a.cpus)} cpu · ${esc(a.mem)} MiB</b></div>
      <div class="card"><span class="muted">Version</span><b><small>${esc(a.version)}</small></b></div>
    </div>
    ${a.waitingReason ? `<p class="bad waiting" id="app-waiting">Waiting: ${esc(a.waitingReason)}</p>` : ""}
    <p>Runs <code>${esc(image(a))}</code></p>
    <form class="inline" id="scale-form"><label>Instances <input type="number" id="scale-input" min="0" value="${esc(wanted(a))}"></label><button id="scale-button" type="submit">Scale</button></form>
    <button id="restart-button" type="button">Restart</button>
    <h2>Deployments</h2>${table(["Deployment", "Progress", "Current actions", "Started"], depRows, 'id="deployments"')}
    <h2>Instances</h2>${table(taskHeads, taskRows, 'id="instances"')}
    <h2>Find it by name</h2>${svc ? table(["Name", "Type", "Answers"], discoveryRows(svc), 'id="discovery"') +
      (svc.dns ? "" : `<p class="muted" id="no-dns">This master serves no DNS: start it with <code>--dns ADDR</code>.</p>`)
      : `<p class="muted" id="no-dns">Not in the service-discovery view yet.</p>`}
    ${f ? `<h2>Last failure</h2><p class="bad">${esc(f.taskId)} ${esc(f.state)} ${esc(ago(f.timestamp))}: ${esc(f.message)}</p>` : ""}`);
  document.getElementById("scale-form").addEventListener("submit", async ev => {
    ev.preventDefault();
    const n = parseInt(document.getElementById("scale-input").value, 10);
    try {
      await api("PUT", "/v2/apps" + a.id, { instances: n });
      showError(null);
      document.getElementById("scale-input").blur();
      refresh();
    } catch (err) { showError(err); }
  });
  document.getElementById("restart-button").addEventListener("click", async () => {
    try { await api("POST", "/v2/apps" + a.id + "/restart"); refresh(); } catch (err) { showError(err); }
  });
}

function schedText(j) {
  if ((j.dependencies || []).length) return "after " + j.dependencies.map(depID).join(", ");
  return (j.schedules || []).map(s => s.cron + (s.timezone && s.timezone !== "UTC" ? " (" + s.timezone + ")" : "") + (s.enabled === false ? " disabled" : "")).join("; ") || "on demand";
}
function nextRun(j) {
  const next = (j.schedules || []).map(s => s.nextRunAt).filter(Boolean).sort()[0];
  return next ? ago(next) : "-";
}
function lastRuns(j) {
  const h = j.history || {};
  const done = [...(h.successfulFinishedRuns || []).map(r => ({ ...r, status: "SUCCESS" })), ...(h.failedFinishedRuns || []).map(r => ({ ...r, status: "FAILED" }))];
  const active = (j.activeRuns || []).map(r => ({ id: r.id, createdAt: r.createdAt, status: r.status, active: true }));
  return [...active, ...done.sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1))];
}

async function jobs() {
  const [list, graph] = await Promise.all([get("/v1/jobs?embed=activeRuns,history,historySummary,schedules"), get("/v1/graph")]);
  const rows = list.map(j => {
    const runs = lastRuns(j).slice(0, 5);
    const waits = (j.activeRuns || []).filter(r => r.waitingReason);
    return `<tr data-job="${esc(j.id)}"><td><a href="${jobHref(j.id)}">${esc(j.id)}</a></td><td>${esc(schedText(j))}</td><td>${esc(nextRun(j))}</td>
      <td class="runs">${runs.map(r => `<span class="state ${esc(r.status)}" title="${esc(r.id)}">${esc(r.status)}</span>`).join(" · ") || "-"}</td>
      <td class="num">${esc(j.historySummary?.successCount ?? 0)} / ${esc(j.historySummary?.failureCount ?? 0)} / ${esc(j.historySummary?.missedCount ?? 0)}</td></tr>` +
      waits.map(r => `<tr class="why" data-waiting="${esc(r.id)}"><td colspan="5" class="bad">run ${esc(r.id)} waits: ${esc(r.waitingReason)}</td></tr>`).join("");
  });
  render(`<h1>Jobs</h1>${table(["Job", "Schedule", "Next run", "Last runs", "Success / failed / missed"], rows, 'id="jobs"')}
    <h2>Dependencies</h2>${dag(graph)}`);
}

// dag draws the job graph: jobs in layers by their longest path from a root, edges as curves.
function dag(graph) {
  const nodes = graph.nodes || [], edges = graph.edges || [];
  if (!nodes.length) return `<p class="muted">No jobs.</p>`;
  const parents = {};
  for (const e of edges) (parents[e.to] = parents[e.to] || []).push(e.from);
  const depth = {};
  const depthOf = (id, seen) => {
    if (depth[id] !== undefined) return depth[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(-1, ...(parents[id] || []).map(p => depthOf(p, seen))) + 1;
    return (depth[id] = d);
  };
  nodes.forEach(n => depthOf(n.id, new Set()));
  const layers = [];
  for (const n of nodes) (layers[depth[n.id]] = layers[depth[n.id]] || []).push(n);
  const W = 170, H = 34, GX = 60, GY = 18, pos = {};
  layers.forEach((layer, x) => layer.forEach((n, y) => { pos[n.id] = { x: 10 + x * (W + GX), y: 10 + y * (H + GY) }; }));
  const width = 20 + layers.length * (W + GX), height = 20 + Math.max(...layers.map(l => l.length)) * (H + GY);
  const paths = edges.filter(e => pos[e.from] && pos[e.to]).map(e => {
    const a = pos[e.from], b = pos[e.to];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 4, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    return `<path data-edge="${esc(e.from)}→${esc(e.to)}" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"></path>`;
  });
  const boxes = nodes.map(n => {
    const p = pos[n.id], cls = n.activeRuns > 0 ? "running" : n.lastStatus;
    const label = n.id.length > 24 ? n.id.slice(0, 23) + "…" : n.id;
    return `<a href="${jobHref(n.id)}"><g data-node="${esc(n.id)}"><rect class="${esc(cls)}" x="${p.x}" y="${p.y}" width="${W}" height="${H}"></rect>
      <text x="${p.x + 8}" y="${p.y + 21}">${esc(label)}</text><title>${esc(n.id)}: ${esc(n.lastStatus)}${n.activeRuns ? ", running" : ""}</title></g></a>`;
  });
  return `<svg class="dag" id="dag" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z"></path></marker></defs>
    ${paths.join("")}${boxes.join("")}</svg>`;
}

async function job(id) {
  const j = await get("/v1/jobs/" + encodeURIComponent(id) + "?embed=activeRuns,history,historySummary,schedules");
  const runs = await get("/v1/jobs/" + encodeURIComponent(id) + "/runs?include=finished");
  const rows = runs.map(r => {
    const t = (r.tasks || []).at(-1);
    return `<tr data-run="${esc(r.id)}"><td>${esc(r.id)}</td><td class="state status ${esc(r.status)}">${esc(r.status)}</td><td>${esc(r.trigger || "-")}</td>
      <td>${esc(ago(r.createdAt))}</td><td>${esc(between(r.createdAt, r.completedAt))}</td><td class="num">${esc(r.exitStatus ?? "-")}</td>
      <td>${t ? `<a href="${taskHref(t.id)}">${esc(t.id)}</a>` : "-"}</td>
      <td class="reason${r.waitingReason ? " bad" : ""}">${esc(r.reason || (r.waitingReason ? "waiting: " + r.waitingReason : ""))}</td></tr>`;
  });
  const waits = runs.filter(r => r.waitingReason).map(r => `<p class="bad waiting" data-waiting-run="${esc(r.id)}">Run ${esc(r.id)} waits: ${esc(r.waitingReason)}</p>`);
  const scheds = (j.schedules || []).map(s => `<tr><td>${esc(s.id)}</td><td><code>${esc(s.cron)}</code></td><td>${esc(s.timezone || "UTC")}</td><td>${esc(s.concurrencyPolicy)}</td>
    <td>${s.enabled === false ? "disabled" : "enabled"}</td><td>${esc(ago(s.nextRunAt))}</td></tr>`);
  const missed = (j.history?.missedRuns || []).slice(0, 10).map(m => `<tr><td>${esc(m.scheduleId)}</td><td>${esc(m.scheduledAt)}</td><td>${esc(m.reason)}</td></tr>`);
  render(`<h1>Job ${esc(j.id)}</h1>
    <p>${esc(j.description || "")}</p>
    <p>Runs <code>${esc(j.run.docker?.image ? j.run.docker.image + " " + (j.run.args || []).join(" ") : j.run.cmd)}</code> with ${esc(j.run.cpus)} cpu, ${esc(j.run.mem)} MiB
      ${(j.dependencies || []).length ? "after " + j.dependencies.map(depID).map(d => `<a href="${jobHref(d)}">${esc(d)}</a>`).join(", ") : ""}</p>
    ${waits.length ? `<div id="job-waiting">${waits.join("")}</div>` : ""}
    <button id="run-button" type="button">Run now</button>
    <h2>Schedules</h2>${table(["ID", "Cron", "Timezone", "Concurrency", "State", "Next run"], scheds, 'id="schedules"')}
    <h2>Runs</h2>${table(["Run", "Status", "Trigger", "Created", "Duration", "Exit", "Task", "Reason"], rows, 'id="runs"')}
    ${missed.length ? `<h2>Missed runs</h2>${table(["Schedule", "Due", "Reason"], missed, 'id="missed"')}` : ""}`);
  document.getElementById("run-button").addEventListener("click", async () => {
    try { await api("POST", "/v1/jobs/" + encodeURIComponent(j.id) + "/runs"); showError(null); refresh(); } catch (err) { showError(err); }
  });
}

async function tasks() {
  const list = await get("/v1/tasks");
  list.sort((a, b) => (a.timestamp < b.timestamp ? 1 : -1));
  const rows = list.map(t => `<tr data-task="${esc(t.task_id)}"><td><a href="${taskHref(t.task_id)}">${esc(t.task_id)}</a></td><td class="state ${esc(t.state)}">${esc(t.state)}</td>
    <td>${esc(t.framework_id || "-")}</td><td>${esc(t.agent_id || "-")}</td><td>${esc(ago(t.timestamp))}</td><td>${esc(t.message || "")}</td></tr>`);
  render(`<h1>Tasks</h1>${table(["Task", "State", "Framework", "Agent", "Since", "Message"], rows, 'id="tasks"')}`);
}

let logStream = "stdout";
async function taskPage(id) {
  const t = await get("/v1/tasks/" + encodeURIComponent(id));
  // Logs need an operator's token unless the masters run with --viewers-read-logs: a viewer
  // gets 403 and sees why instead of the output.
  let logs = "", denied = false;
  try {
    logs = await get("/v1/tasks/" + encodeURIComponent(id) + "/logs?stream=" + logStream + "&offset=-65536");
  } catch (err) {
    if (err.status === 403) denied = true;
    else logs = "(" + err.message + ")";
  }
  const live = !/^TASK_(FINISHED|FAILED|KILLED|LOST|ERROR|DROPPED|GONE)/.test(t.state);
  render(`<h1>Task ${esc(t.task_id)}</h1>
    <div class="cards">
      <div class="card"><span class="muted">State</span><b class="state ${esc(t.state)}" id="task-state">${esc(t.state)}</b></div>
      <div class="card"><span class="muted">Agent</span><b><small>${esc(t.hostname || t.agent_id || "-")}</small></b></div>
      <div class="card"><span class="muted">Since</span><b><small>${esc(ago(t.timestamp))}</small></b></div>
      ${t.exit_status !== undefined ? `<div class="card"><span class="muted">Exit status</span><b>${esc(t.exit_status)}</b></div>` : ""}
    </div>
    <p class="muted">${esc(t.message || "")}</p>
    <div><button type="button" id="stream-stdout">stdout</button> <button type="button" id="stream-stderr">stderr</button>
      ${live ? `<button type="button" id="kill-button">Kill</button>` : ""}</div>
    <h2>${esc(logStream)}</h2>${denied
      ? `<p class="muted" id="logs-denied">Task logs need an operator's token; this one may see the task's state only (masters started with --viewers-read-logs let viewers read logs).</p>`
      : `<pre class="logs" id="logs">${esc(logs || "(empty)")}</pre>`}`);
  const pre = document.getElementById("logs");
  if (pre) pre.scrollTop = pre.scrollHeight;
  for (const s of ["stdout", "stderr"]) document.getElementById("stream-" + s).addEventListener("click", () => { logStream = s; refresh(); });
  const kill = document.getElementById("kill-button");
  if (kill) kill.addEventListener("click", async () => {
    try { await api("POST", "/v1/tasks/" + encodeURIComponent(id) + "/kill"); refresh(); } catch (err) { showError(err); }
  });
}

const eventLog = [];
function events() {
  if (!eventSource) {
    eventSource = new EventSource("/v2/events" + (token() ? "?access_token=" + encodeURIComponent(token()) : ""));
    const types = ["event_stream_attached", "api_post_event", "status_update_event", "instance_changed_event", "health_status_changed_event",
      "deployment_info", "deployment_step_success", "deployment_success", "deployment_failed", "app_terminated_event"];
    for (const type of types) {
      eventSource.addEventListener(type, ev => {
        let data = {};
        try { data = JSON.parse(ev.data); } catch (_) { /* keep it raw */ }
        eventLog.unshift({ type, at: new Date(), data });
        eventLog.length = Math.min(eventLog.length, 200);
        if (location.hash.startsWith("#/events")) drawEvents();
      });
    }
  }
  drawEvents();
}
function summary(d) {
  const parts = [];
  for (const k of ["appId", "taskId", "instanceId", "taskStatus", "alive", "host", "uri"]) if (d[k] !== undefined) parts.push(k + "=" + d[k]);
  if (d.plan?.id) parts.push("deployment=" + d.plan.id);
  if (d.id && !parts.length) parts.push("id=" + d.id);
  return parts.join(" ");
}
function drawEvents() {
  const rows = eventLog.map(e => `<tr data-event="${esc(e.type)}"><td>${esc(e.at.toLocaleTimeString())}</td><td>${esc(e.type)}</td><td>${esc(summary(e.data))}</td></tr>`);
  render(`<h1>Events</h1><p class="muted">Live from <code>/v2/events</code>, newest first.</p>${table(["Time", "Type", "What"], rows, 'id="events" class="events"')}`);
}

// ---- routing ----

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  const page = parts[0] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === page);
  switch (page) {
    case "apps": return parts.length > 1 ? () => app("/" + parts.slice(1).join("/")) : apps;
    case "jobs": return parts.length > 1 ? () => job(parts[1]) : jobs;
    case "tasks": return parts.length > 1 ? () => taskPage(parts[1]) : tasks;
    case "events": return events;
    default: return overview;
  }
}

async function refresh() {
  clearTimeout(refreshTimer);
  const page = route();
  // Keep a form the user is typing in: skip this refresh.
  const typing = document.activeElement && document.activeElement.tagName === "INPUT";
  if (!typing) {
    try {
      await page();
      showError(null);
    } catch (err) {
      showError(err);
    }
  }
  leaderLine();
  if (!location.hash.startsWith("#/events")) refreshTimer = setTimeout(refresh, 2000);
}

async function leaderLine() {
  try {
    const c = await get("/v1/cluster");
    document.getElementById("leader").textContent = c.leader ? "leader " + c.leader.id + " · " + (c.masters || []).length + " master(s)" : "no leader";
  } catch (_) {
    document.getElementById("leader").textContent = "master unreachable";
  }
}

window.addEventListener("hashchange", refresh);
refresh();
