// The hyperhive operator dashboard. Live from one event stream; no polling.
//
// Every piece of server data is rendered as text (textContent / text nodes),
// with invisible and bidirectional characters made visible by `visible()`.

import { createTerminal, el } from "./front/terminal.js";
import {
  $, backoffDelay, busy, clockTime, countInvisible, createLive, duration, fullTime, getJSON, post, renderVersion, str, ticketed,
  toast, visible, visibleString, vspan,
} from "./front/ui.js";
import { createUsage } from "./usage.js";

const NAME_RE = /^[a-z][a-z0-9-]{0,31}$/;
const HEX40 = /^[0-9a-f]{40}$/i;

function shortCommit(commit) {
  const c = str(commit);
  return HEX40.test(c) ? c.slice(0, 12) : visibleString(c.slice(0, 12));
}

function agentPath(name, action) {
  return `/api/agents/${encodeURIComponent(str(name))}/${action}`;
}

// ---------------------------------------------------------------- time

const nowSec = () => Date.now() / 1000;
const mono = () => performance.now() / 1000;

/**
 * A button that asks "sure?" on the first click and acts on a second click
 * within 4 s. Returns the button; `act` is called with it.
 */
function confirmButton(btn, act) {
  const label = btn.textContent;
  let timer = 0;
  const disarm = () => {
    clearTimeout(timer);
    timer = 0;
    btn.classList.remove("armed");
    btn.textContent = label;
  };
  btn.addEventListener("click", () => {
    if (btn.classList.contains("busy")) return;
    if (!btn.classList.contains("armed")) {
      btn.classList.add("armed");
      btn.textContent = "sure?";
      timer = setTimeout(disarm, 4000);
      return;
    }
    disarm();
    act(btn);
  });
  return btn;
}

// ---------------------------------------------------------------- state

const state = {
  agents: new Map(), // name -> agent (+ _at: monotonic receipt time)
  approvals: new Map(), // id -> approval
  questions: new Map(), // id -> question
  transients: new Map(), // id -> transient
  inbox: [], // messages to the operator, newest first
  attention: [], // the attention list, ranked by the server
  version: "",
  backend: "", // "local" (child processes) or "nixos" (containers)
  hosts: { federated: false, link: null, list: [], at: 0 }, // the hive's hosts, when it spans several
};

const ui = {
  agentBoxes: new Map(), // name -> {box, line, panel, buttons: Map}
  dirty: new Set(), // agents whose row is built again at the next render
  allDirty: true, // every row is built again at the next render
  tombBoxes: new Map(),
  approvalNodes: new Map(),
  questionNodes: new Map(),
  inboxIds: new Set(),
  recentAction: new Map(), // agent -> monotonic time of the last operator/transient action
  decided: new Set(), // approval ids this page approved or denied: their toast came already
};

// ---------------------------------------------------------------- notifications

const NOTIFY_KEY = "hive.notify";

function notifyEnabled() {
  return "Notification" in window && Notification.permission === "granted" && localStorage.getItem(NOTIFY_KEY) === "1";
}

function renderNotifyButton() {
  const btn = $("notify");
  if (!("Notification" in window)) {
    btn.disabled = true;
    btn.textContent = "notify: n/a";
    btn.title = "this browser has no notifications";
    return;
  }
  const on = notifyEnabled();
  btn.textContent = on ? "notify: on" : "notify";
  btn.classList.toggle("primary", on);
  btn.title = on
    ? "notifications on (click to turn off)"
    : Notification.permission === "denied"
      ? "notifications are blocked for this site in the browser settings"
      : "browser notifications for approvals, questions, logins and crashes";
}

async function onNotifyClick() {
  if (!("Notification" in window)) return;
  if (notifyEnabled()) {
    localStorage.removeItem(NOTIFY_KEY);
    renderNotifyButton();
    toast("notifications off");
    return;
  }
  let permission = Notification.permission;
  if (permission !== "granted") {
    try {
      permission = await Notification.requestPermission();
    } catch {
      permission = "denied";
    }
  }
  if (permission === "granted") {
    localStorage.setItem(NOTIFY_KEY, "1");
    toast("notifications on");
  } else {
    toast("notifications not allowed by the browser", "error");
  }
  renderNotifyButton();
}

function notify(title, body, tag) {
  if (!notifyEnabled()) return;
  try {
    const n = new Notification(visibleString(title), { body: visibleString(body, true).slice(0, 300), tag });
    n.addEventListener("click", () => {
      window.focus();
      n.close();
    });
  } catch {
    /* some browsers only allow notifications from a service worker */
  }
}

// ---------------------------------------------------------------- agents

const LIVE_STATES = new Set(["running", "stopped"]);
const isTomb = (agent) => !LIVE_STATES.has(agent.state) && (agent.state === "tombstone" || agent.state === "prepared");

const ACTION_LABEL = {
  start: "starting",
  stop: "stopping",
  restart: "restarting",
  kill: "killing",
  rebuild: "rebuilding",
  destroy: "destroying",
  purge: "purging",
  deploy: "deploying",
  spawn: "spawning",
  update: "updating",
  "new-session": "new session",
  "new_session": "new session",
  apply: "applying",
  apply_commit: "deploying",
};

function transientLabel(action) {
  const a = str(action);
  return `${ACTION_LABEL[a] || visibleString(a)}…`;
}

function chip(text, cls, title) {
  const node = el("span", { cls: ["chip", ...(Array.isArray(cls) ? cls : [cls])], attrs: { title: title || "" } });
  node.appendChild(visible(text));
  return node;
}

function agentSort(a, b) {
  const ra = a.role === "manager" ? 0 : 1;
  const rb = b.role === "manager" ? 0 : 1;
  if (ra !== rb) return ra - rb;
  return str(a.name) < str(b.name) ? -1 : str(a.name) > str(b.name) ? 1 : 0;
}

// ---------------------------------------------------------------- agents: filter and sort

const SORT_KEY = "hive.agents.sort";
const SORTS = new Set(["attention", "state", "name"]);
const COMPACT_AT = 9; // from this many agents on, a row is one line and its actions fold
const SEVERITY_RANK = { urgent: 0, warn: 1, info: 2 };
const BUSY_TURNS = new Set(["waiting", "thinking", "tool", "compacting", "cancelling"]);

/** How much an agent needs the operator: 0 (urgent) … 3 (nothing). */
function attentionRank(agent) {
  let rank = 3;
  for (const item of state.attention) {
    if (item.agent === agent.name && item.severity in SEVERITY_RANK) rank = Math.min(rank, SEVERITY_RANK[item.severity]);
  }
  if (agent.state === "running" && !agent.alive) rank = Math.min(rank, 0);
  if (agent.login === "needs_login" || agent.login === "claude_missing") rank = Math.min(rank, 0);
  if (Array.isArray(agent.stuck) && agent.stuck.some((k) => STUCK_KINDS.has(k))) rank = Math.min(rank, 1);
  return rank;
}

function stateRank(agent) {
  if (agent.state !== "running") return 3;
  if (BUSY_TURNS.has(agent.turn_state)) return 0;
  return agent.turn_state === "idle" ? 1 : 2;
}

const AGENT_ORDER = {
  attention: (a, b) => attentionRank(a) - attentionRank(b) || agentSort(a, b),
  state: (a, b) => stateRank(a) - stateRank(b) || agentSort(a, b),
  name: agentSort,
};

/** The words an agent is found by: its name, status text, state, turn state, badges and
 * host. */
function agentWords(agent) {
  const words = [agent.name, agent.status, agent.state, agent.turn_state, agent.role, agent.model, agent.host];
  if (agent.state === "running") words.push(agent.alive ? "alive" : "dead not answering");
  if (agent.login === "needs_login") words.push("needs login");
  if (agent.login === "claude_missing") words.push("claude missing");
  if (agent.needs_update) words.push("needs update");
  for (const kind of Array.isArray(agent.stuck) ? agent.stuck : []) words.push("stuck", KIND_LABEL[kind] || kind);
  return words.filter((w) => typeof w === "string" && w).join(" ").toLowerCase();
}

function agentMatches(agent, query) {
  if (!query) return true;
  const words = agentWords(agent);
  return query.split(/\s+/).every((term) => words.includes(term));
}

function agentQuery() {
  return $("agent-filter").value.trim().toLowerCase();
}

function agentPageLink(agent) {
  const port = agent.web_port;
  if (agent.state !== "running" || !Number.isInteger(port) || port <= 0 || port > 65535) return null;
  const name = str(agent.name);
  const button = el("button", {
    cls: "link page-link",
    text: "page ↗",
    attrs: { type: "button", "data-action": "page", title: `open ${name}'s own page (port ${port}) with a one-time link` },
  });
  button.addEventListener("click", () => {
    // Opened now, inside the click (no popup blocker); pointed at the link once it comes.
    const win = window.open("about:blank", "_blank");
    busy(button, async () => {
      const got = await post(`/api/agents/${encodeURIComponent(name)}/page-link`, {}, { quiet: true });
      const url = got && typeof got.detail === "string" ? got.detail : "";
      if (win && /^https?:\/\/[^/]+:\d+\/login\?code=[\w-]+$/.test(url)) {
        win.opener = null;
        win.location.href = url;
      } else if (win) {
        win.close();
      }
    });
  });
  return button;
}

function uptimeText(agent) {
  if (agent.state !== "running" || typeof agent.uptime_seconds !== "number") return "";
  return `up ${duration(agent.uptime_seconds + (mono() - agent._at))}`;
}

function buttonFor(entry, name, action, label, opts = {}) {
  let btn = entry.buttons.get(action);
  if (btn) return btn;
  btn = el("button", {
    cls: opts.danger ? "danger" : "",
    text: label,
    attrs: { type: "button", "data-action": action, title: opts.title || `${label} ${name}` },
  });
  const run = (b) => {
    ui.recentAction.set(name, mono());
    busy(b, () => post(agentPath(name, action), {}));
  };
  if (opts.danger) confirmButton(btn, run);
  else btn.addEventListener("click", () => run(btn));
  entry.buttons.set(action, btn);
  return btn;
}

function menuButton(entry, name) {
  // On a narrow screen the row's actions fold behind this button (dashboard.css).
  let btn = entry.buttons.get("menu");
  if (btn) return btn;
  btn = el("button", { cls: "menu", text: "actions ▾", attrs: { type: "button", "data-action": "menu", "aria-expanded": "false", title: `${name}'s actions` } });
  btn.addEventListener("click", () => {
    const open = entry.box.classList.toggle("menu-open");
    btn.setAttribute("aria-expanded", String(open));
    btn.textContent = open ? "actions ▴" : "actions ▾";
  });
  entry.buttons.set("menu", btn);
  return btn;
}

function configButton(entry, name) {
  let btn = entry.buttons.get("config");
  if (btn) return btn;
  btn = el("button", { text: "config", attrs: { type: "button", "data-action": "config", title: `show ${name}'s deployed config` } });
  btn.addEventListener("click", () => toggleConfig(entry, name, btn));
  entry.buttons.set("config", btn);
  return btn;
}

async function toggleConfig(entry, name, btn) {
  if (!entry.panel.hidden) {
    entry.panel.hidden = true;
    entry.panel.replaceChildren();
    btn.classList.remove("primary");
    return;
  }
  await busy(btn, async () => {
    let data;
    try {
      data = await getJSON(agentPath(name, "config"));
    } catch (err) {
      toast(`config of ${name}: ${err.message}`, "error");
      return;
    }
    const panel = entry.panel;
    panel.replaceChildren();
    const commit = data && data.commit;
    panel.appendChild(el("div", { cls: "config-head" },
      el("span", { cls: "dim", text: "commit " }),
      commit ? chip(shortCommit(commit), "dim", visibleString(commit)) : el("span", { cls: "dim", text: "none" })));
    const files = (data && data.files && typeof data.files === "object") ? data.files : {};
    const names = Object.keys(files);
    if (!names.length) panel.appendChild(el("p", { cls: "empty", text: "no files" }));
    for (const file of names) {
      const details = el("details", { attrs: { open: true } }, el("summary", {}, vspan("file", file)));
      const pre = el("pre", { cls: "code" });
      pre.appendChild(visible(files[file], true));
      details.appendChild(pre);
      panel.appendChild(details);
    }
    panel.hidden = false;
    btn.classList.add("primary");
  });
}

function agentEntry(name) {
  let entry = ui.agentBoxes.get(name);
  if (!entry) {
    const panel = el("div", { cls: "config-panel" });
    panel.hidden = true;
    const box = el("div", { cls: "agent", attrs: { "data-agent": name } });
    entry = { box, line: null, panel, buttons: new Map() };
    ui.agentBoxes.set(name, entry);
  }
  return entry;
}

/** An agent's buttons into `actions`, the same on this host's rows and another host's (whose
 * run there); `more` go before config. */
function agentButtons(actions, entry, agent, ...more) {
  const name = str(agent.name);
  if (agent.state === "running") {
    actions.appendChild(buttonFor(entry, name, "stop", "stop"));
    actions.appendChild(buttonFor(entry, name, "restart", "restart"));
    actions.appendChild(buttonFor(entry, name, "kill", "kill", { danger: true }));
    actions.appendChild(buttonFor(entry, name, "new-session", "new session", { title: `start a fresh claude session for ${name}` }));
  } else {
    actions.appendChild(buttonFor(entry, name, "start", "start"));
  }
  actions.appendChild(buttonFor(entry, name, "rebuild", "rebuild"));
  for (const button of more) actions.appendChild(button);
  actions.appendChild(configButton(entry, name));
  // The manager is recreated at once when it is gone: it can be stopped, not destroyed.
  if (agent.role !== "manager") actions.appendChild(buttonFor(entry, name, "destroy", "destroy", { danger: true }));
}

function renderAgentLine(agent, entry) {
  const name = str(agent.name);
  const running = agent.state === "running";
  const line = el("div", { cls: "agent-line" });

  const nameCell = el("span", {
    cls: "agent-name",
    attrs: { title: agent.role === "manager" ? `${visibleString(name)}: the hive's manager` : visibleString(name) },
  });
  nameCell.appendChild(visible(name));
  const ident = el("span", { cls: "ident" }, nameCell);
  if (agent.role === "manager") ident.appendChild(chip("manager", "accent", "the hive's manager agent"));
  line.appendChild(ident);

  const chips = el("span", { cls: "chips" });
  const attention = running && !agent.alive;
  chips.appendChild(chip(
    agent.state,
    running ? (attention ? "bad" : "ok") : "dim",
    attention ? "running but not answering pings: needs attention" : `${state.backend === "nixos" ? "container" : "harness"} state: ${visibleString(agent.state)}`,
  ));
  if (running) {
    chips.appendChild(chip(agent.alive ? "alive" : "dead", agent.alive ? ["ok", "extra"] : "bad",
      agent.alive ? "the harness answers pings" : "the harness does not answer pings"));
  }
  if (agent.turn_state) {
    const ts = str(agent.turn_state);
    if (ts === "waiting") chips.appendChild(chip("waiting for a slot", "warn", "its turn waits for a place: the hive runs as many turns at once as HIVE_TURN_SLOTS allows, oldest message first"));
    else chips.appendChild(chip(ts, ts === "thinking" ? "info" : ts === "compacting" ? "warn" : "dim", `turn state: ${visibleString(ts)}`));
  }
  const where = state.backend === "nixos" ? "in its container" : "where its harness runs";
  if (agent.login === "needs_login") chips.appendChild(chip("needs login", "bad", `claude is not logged in ${where}: use "log in" on its page, or hive-core login ${visibleString(name)}`));
  else if (agent.login === "claude_missing") chips.appendChild(chip("claude missing", "bad", `the claude binary cannot be run ${where}`));
  else if (agent.login === "logged_in" && typeof agent.login_expires_at === "number" && agent.login_expires_at - nowSec() < 86400) {
    chips.appendChild(chip("login expiring", "warn", `its Claude Code login stops working at ${fullTime(agent.login_expires_at)}: log in again on its page`));
  }
  if (agent.needs_update) chips.appendChild(chip("needs update", "warn", "deployed on an older hive-core: update"));
  for (const kind of Array.isArray(agent.stuck) ? agent.stuck : []) {
    const label = KIND_LABEL[kind] || visibleString(kind);
    chips.appendChild(chip(label, "warn", `looks stuck: ${label} (see the attention list)`));
  }
  if (agent.model) {
    // Where it comes from: a choice made at run time wins over the approved agent.toml.
    const from = { override: "set at run time (overrides agent.toml)", "agent.toml": "from agent.toml", default: "the default (agent.toml names none)" }[agent.model_source] || "";
    const text = agent.model_source === "override" ? `${agent.model} (set)` : agent.model;
    chips.appendChild(chip(text, ["dim", "extra"], `model: ${visibleString(agent.model)}${from ? `, ${from}` : ""}`));
  }
  if (agent.deployed_commit) chips.appendChild(chip(shortCommit(agent.deployed_commit), ["dim", "extra"], `deployed commit ${visibleString(agent.deployed_commit)}`));
  for (const t of state.transients.values()) {
    if (t.agent === agent.name) {
      chips.appendChild(chip(transientLabel(t.action), ["warn", "busy"], `${visibleString(t.action)} by ${visibleString(t.actor)}`));
    }
  }
  const uptime = el("span", { cls: "uptime dim extra", text: uptimeText(agent), attrs: { title: "uptime" } });
  chips.appendChild(uptime);
  line.appendChild(chips);

  const status = vspan("status", agent.status || "");
  status.title = visibleString(agent.status || "");
  line.appendChild(status);

  const actions = el("span", { cls: "actions" });
  const link = agentPageLink(agent);
  if (link) actions.appendChild(link);
  agentButtons(actions, entry, agent);
  actions.appendChild(menuButton(entry, name));
  line.appendChild(actions);

  entry.uptime = uptime;
  return line;
}

function renderAgent(agent) {
  const entry = agentEntry(agent.name);
  const line = renderAgentLine(agent, entry);
  entry.box.setAttribute("data-state", str(agent.state));
  entry.box.classList.toggle("is-manager", agent.role === "manager");
  const stuck = Array.isArray(agent.stuck) && agent.stuck.some((k) => STUCK_KINDS.has(k));
  entry.box.classList.toggle("attention", (agent.state === "running" && !agent.alive) || agent.login === "needs_login" || agent.login === "claude_missing" || stuck);
  if (entry.line) entry.line.replaceWith(line);
  else entry.box.append(line, entry.panel);
  entry.line = line;
  return entry;
}

function renderTomb(agent) {
  const name = str(agent.name);
  let entry = ui.tombBoxes.get(name);
  if (!entry) {
    entry = { box: el("div", { cls: "agent tomb", attrs: { "data-agent": name } }), buttons: new Map() };
    ui.tombBoxes.set(name, entry);
  }
  const line = el("div", { cls: "agent-line" });
  const nameCell = el("span", { cls: "agent-name", attrs: { title: visibleString(name) } });
  nameCell.appendChild(visible(name));
  line.appendChild(el("span", { cls: "ident" }, nameCell));
  const chips = el("span", { cls: "chips" });
  chips.appendChild(chip(agent.state, agent.state === "prepared" ? "info" : "dim",
    agent.state === "prepared" ? "prepared, never started" : "destroyed; its state is kept until purged"));
  if (agent.deployed_commit) chips.appendChild(chip(shortCommit(agent.deployed_commit), "dim", `deployed commit ${visibleString(agent.deployed_commit)}`));
  for (const t of state.transients.values()) {
    if (t.agent === agent.name) chips.appendChild(chip(transientLabel(t.action), ["warn", "busy"], `${visibleString(t.action)} by ${visibleString(t.actor)}`));
  }
  line.appendChild(chips);
  line.appendChild(el("span", { cls: "actions" }, buttonFor(entry, name, "purge", "purge", { danger: true, title: `remove everything left of ${name}` })));
  entry.box.replaceChildren(line);
  return entry;
}

// ---------------------------------------------------------------- hosts (a hive across hosts)

function thisHost() {
  const me = state.hosts.list.find((h) => h && h.this);
  return me ? str(me.host) : "";
}

/** Whether `agent` runs on another host: its row shows what the hive's directory holds. */
const isRemote = (agent) => state.hosts.federated && typeof agent.host === "string" && agent.host !== thisHost();

function setHosts(federated, link, hosts) {
  state.hosts = { federated: !!federated, link: link ? str(link) : null, list: Array.isArray(hosts) ? hosts : [], at: mono() };
  scheduleAgents();
}

function hostDashboard(host) {
  const url = str(host && host.dashboard_url);
  return /^https?:\/\/[^\s]+$/.test(url) ? url : "";
}

function hostHead(name) {
  const info = state.hosts.list.find((h) => h && str(h.host) === name);
  const mine = name === thisHost();
  const head = el("div", { cls: "host-head", attrs: { "data-host": name } });
  head.appendChild(vspan("host-name", name));
  if (mine) {
    const link = state.hosts.link || "connecting";
    head.appendChild(chip("this host", "accent", "the host whose dashboard this is"));
    const err = info && info.link_error ? ` — ${visibleString(info.link_error)}` : "";
    head.appendChild(chip(`NATS ${link}`, link === "up" ? "ok" : link === "down" ? "bad" : "warn", `this host's link to the hive's other hosts${err}`));
    if (info && info.pending_forwards) head.appendChild(chip(`${info.pending_forwards} to hand on`, "warn", "messages for other hosts' agents, committed here and waiting for the link"));
  } else if (info) {
    const ago = Math.max(0, Number(info.last_seen_seconds) || 0) + (mono() - state.hosts.at);
    head.appendChild(chip(`seen ${duration(ago)} ago`, ago > 60 ? "bad" : "dim", "the time since its last heartbeat reached this host (every 10 s)"));
  } else {
    head.appendChild(chip("not heard from", "warn", "no heartbeat of this host has reached this one"));
  }
  const url = mine ? "" : hostDashboard(info);
  if (url) {
    head.appendChild(el("a", { cls: "link", text: "its dashboard ↗", attrs: { href: url, target: "_blank", rel: "noopener noreferrer", title: `act on ${name}'s agents on ${visibleString(url)}` } }));
  }
  return head;
}

function renderRemote(agent) {
  const name = str(agent.name);
  const entry = agentEntry(name);
  const line = el("div", { cls: "agent-line" });
  const nameCell = el("span", { cls: "agent-name", attrs: { title: `${visibleString(name)}, on host ${visibleString(agent.host)}` } });
  nameCell.appendChild(visible(name));
  const ident = el("span", { cls: "ident" }, nameCell);
  if (agent.role === "manager") ident.appendChild(chip("manager", "accent", "the hive's manager agent"));
  line.appendChild(ident);
  const running = agent.state === "running";
  const chips = el("span", { cls: "chips" },
    chip(agent.state, running ? "ok" : "dim", `state on ${visibleString(agent.host)}, as the hive's directory shows it`),
    chip(`on ${str(agent.host)}`, "info", "another host's agent: its buttons, page, log and config are run and read on that host"));
  if (agent.deployed_commit) chips.appendChild(chip(shortCommit(agent.deployed_commit), ["dim", "extra"], `deployed commit ${visibleString(agent.deployed_commit)}, as its host shared it`));
  line.appendChild(chips);
  line.appendChild(vspan("status", ""));
  const actions = el("span", { cls: "actions" });
  const link = agentPageLink(agent); // a link on its host's address, made there
  if (link) actions.appendChild(link);
  const url = hostDashboard(state.hosts.list.find((h) => h && str(h.host) === agent.host));
  if (url) actions.appendChild(el("a", { cls: "link", text: `open on ${str(agent.host)} ↗`, attrs: { href: url, target: "_blank", rel: "noopener noreferrer", "data-action": "open-host" } }));
  // Run on its host (hive-core hands the request on), as on this host's rows.
  agentButtons(actions, entry, agent, itemButton("log", `${name}'s log, read on ${visibleString(agent.host)}`, () => showLog(name)));
  actions.appendChild(menuButton(entry, name)); // folds them, as on this host's rows
  line.appendChild(actions);
  entry.box.setAttribute("data-state", str(agent.state));
  entry.box.setAttribute("data-host", str(agent.host));
  entry.box.classList.add("remote");
  if (entry.line) entry.line.replaceWith(line);
  else entry.box.append(line, entry.panel);
  entry.line = line;
  entry.uptime = null;
  return entry;
}

/** The rows with a head per host (this host first), when the hive spans hosts. */
function groupByHost(shown) {
  if (!state.hosts.federated) return shown.map((a) => ui.agentBoxes.get(a.name).box);
  const me = thisHost();
  const groups = new Map([[me, []]]);
  for (const h of state.hosts.list) if (h && !groups.has(str(h.host))) groups.set(str(h.host), []);
  for (const a of shown) {
    const host = isRemote(a) ? str(a.host) : me;
    if (!groups.has(host)) groups.set(host, []);
    groups.get(host).push(ui.agentBoxes.get(a.name).box);
  }
  const names = [...groups.keys()];
  const order = [me, ...names.filter((n) => n !== me).sort()];
  return order.flatMap((host) => [hostHead(host), ...groups.get(host)]);
}

function renderAgents() {
  const list = $("agents-list");
  const tombList = $("tombstones-list");
  const all = [...state.agents.values()].sort(agentSort);
  const live = all.filter((a) => !isTomb(a));
  const tombs = all.filter(isTomb);

  // Drop the UI of agents that are gone from either section.
  for (const [name, entry] of ui.agentBoxes) {
    const a = state.agents.get(name);
    if (!a || isTomb(a)) {
      entry.box.remove();
      ui.agentBoxes.delete(name);
    }
  }
  for (const [name, entry] of ui.tombBoxes) {
    const a = state.agents.get(name);
    if (!a || !isTomb(a)) {
      entry.box.remove();
      ui.tombBoxes.delete(name);
    }
  }

  // Only the rows whose agent changed are built again; the rest are moved, if at all.
  for (const a of live) {
    if (ui.allDirty || ui.dirty.has(a.name) || !ui.agentBoxes.has(a.name)) (isRemote(a) ? renderRemote : renderAgent)(a);
  }
  ui.dirty.clear();
  ui.allDirty = false;
  const query = agentQuery();
  const shown = live.filter((a) => agentMatches(a, query)).sort(AGENT_ORDER[$("agent-sort").value] || agentSort);
  const boxes = groupByHost(shown);
  // Transients for agents not (yet) known, e.g. a spawn in progress.
  for (const t of state.transients.values()) {
    if (!state.agents.has(t.agent)) {
      boxes.push(el("div", { cls: "agent pending", attrs: { "data-transient": str(t.id) } },
        el("div", { cls: "agent-line" },
          el("span", { cls: "ident" }, vspan("agent-name", t.agent)),
          el("span", { cls: "chips" }, chip(transientLabel(t.action), ["warn", "busy"], `${visibleString(t.action)} by ${visibleString(t.actor)}`)))));
    }
  }
  list.classList.toggle("compact", live.length >= COMPACT_AT);
  syncChildren(list, boxes, live.length ? `no agent matches “${visibleString(query)}”` : "no agents");
  setCount("agents", live.length);
  const count = document.querySelector("#agents .count");
  if (query) {
    count.textContent = `${shown.length} of ${live.length}`;
    count.title = `agents matching the filter, of ${live.length}`;
  } else {
    count.title = "agents";
  }

  const tombBoxes = tombs.map((a) => renderTomb(a).box);
  tombList.replaceChildren(...(tombBoxes.length ? tombBoxes : [el("p", { cls: "empty", text: "no tombstones" })]));
  setCount("tombstones", tombs.length);

  renderLogChoices();
}

let agentsDirty = false;
/** Render the agents soon (once for a burst of events), building `name`'s row again, or
 * every row (no name), or none (null: the filter, the order or the ranks changed). */
function scheduleAgents(name) {
  if (name === undefined) ui.allDirty = true;
  else ui.dirty.add(name);
  if (agentsDirty) return;
  agentsDirty = true;
  queueMicrotask(() => {
    agentsDirty = false;
    renderAgents();
  });
}

function setAgent(agent, live) {
  if (!agent || typeof agent.name !== "string") return;
  const prev = state.agents.get(agent.name);
  const next = { ...agent, _at: mono() };
  state.agents.set(agent.name, next);
  if (live && prev) {
    if (next.login === "needs_login" && prev.login !== "needs_login") {
      notify(`${agent.name} needs a login`, "claude is not logged in", `login-${agent.name}`);
    }
    if (prev.state === "running" && next.state === "stopped") {
      const last = ui.recentAction.get(agent.name);
      const busyNow = [...state.transients.values()].some((t) => t.agent === agent.name);
      if (!busyNow && !(last && mono() - last < 20)) {
        notify(`${agent.name} stopped`, "the container stopped without an operator action", `crash-${agent.name}`);
        toast(`${agent.name} stopped unexpectedly`, "error");
      }
    }
  }
  scheduleAgents(agent.name);
}

const usage = createUsage($("usage-list"), (n) => setCount("usage", n));

function setCount(section, n) {
  const node = document.querySelector(`#${section} .count`);
  if (node) {
    node.textContent = String(n);
    node.classList.toggle("dim", n === 0);
    node.classList.toggle("warn", n > 0 && (section === "approvals" || section === "questions"));
  }
}

// ---------------------------------------------------------------- approvals

function diffStat(diff) {
  let files = 0;
  let plusFiles = 0;
  let add = 0;
  let del = 0;
  for (const line of str(diff).split("\n")) {
    if (line.startsWith("diff --git ")) files += 1;
    else if (line.startsWith("+++ ")) plusFiles += 1;
    else if (line.startsWith("---")) continue;
    else if (line.startsWith("+")) add += 1;
    else if (line.startsWith("-")) del += 1;
  }
  return { files: files || plusFiles, add, del };
}

function diffLineClass(line) {
  if (line.startsWith("+++") || line.startsWith("---")) return "d-file";
  if (line.startsWith("diff --git") || line.startsWith("index ") || line.startsWith("new file") || line.startsWith("deleted file")) return "d-file";
  if (line.startsWith("@@")) return "d-hunk";
  if (line.startsWith("+")) return "d-add";
  if (line.startsWith("-")) return "d-del";
  return "d-ctx";
}

function renderDiff(diff) {
  const pre = el("pre", { cls: "diff" });
  const lines = str(diff).split("\n");
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  for (const line of lines) {
    const span = el("span", { cls: ["dl", diffLineClass(line)] });
    span.appendChild(visible(line));
    pre.appendChild(span);
  }
  return pre;
}

const EAGER_DIFF = 200000;

/** An approval's or question's key on this page: its id, and its host when another host
 * of the hive holds it (ids are each host's own). */
function itemKey(x) {
  return x.host ? `${str(x.host)}/${str(x.id)}` : str(x.id);
}

/** The query naming the host that holds an item, for its actions. */
function hostQuery(x) {
  return x.host ? `?host=${encodeURIComponent(str(x.host))}` : "";
}

/** What names an item in a toast or title: `approval 3`, or `approval 3 on host b`. */
function itemName(what, x) {
  return `${what} ${str(x.id)}${x.host ? ` on ${visibleString(x.host)}` : ""}`;
}

function renderApproval(a) {
  const id = str(a.id);
  const key = itemKey(a);
  const node = el("article", { cls: "card approval", attrs: { "data-approval": key } });
  const head = el("div", { cls: "card-head" },
    chip(`#${id}`, "dim", itemName("approval", a)),
    a.host ? chip(`on ${visibleString(a.host)}`, "info", `held and carried out by host ${visibleString(a.host)}`) : null,
    chip(str(a.kind).replace("_", " "), a.kind === "spawn" ? "info" : a.kind === "update" ? "warn" : "accent", `kind: ${visibleString(a.kind)}`),
    el("span", { cls: "who" }, vspan("agent-name", a.agent)),
    el("span", { cls: "dim", text: "by" }),
    vspan("requester", a.requester),
    el("span", { cls: "spacer" }),
    el("span", { cls: "dim time", text: clockTime(a.created_at), attrs: { title: fullTime(a.created_at) } }));
  node.appendChild(head);

  if (a.kind === "apply_commit" && str(a.agent) === str(a.requester)) {
    node.appendChild(el("div", {
      cls: "line own-config",
      text: `⚠ ${visibleString(a.agent)} proposes a change to its own config`,
    }));
  }
  if (a.commit) {
    node.appendChild(el("div", { cls: "line" }, el("span", { cls: "dim", text: "commit " }),
      chip(shortCommit(a.commit), "dim", visibleString(a.commit))));
  }
  if (a.reason) {
    node.appendChild(el("div", { cls: "line reason" }, el("span", { cls: "dim", text: "reason " }), vspan("", a.reason, true)));
  }

  const inDiff = countInvisible(a.diff, true);
  if (inDiff > 0) {
    node.appendChild(el("div", {
      cls: "warning",
      text: `⚠ this diff holds ${inDiff} invisible or bidirectional character${inDiff === 1 ? "" : "s"}`,
    }));
  }
  const inRequest = countInvisible(a.reason, true) + countInvisible(a.agent) + countInvisible(a.requester);
  if (inRequest > 0) {
    node.appendChild(el("div", {
      cls: "warning",
      text: `⚠ this request holds ${inRequest} invisible or bidirectional character${inRequest === 1 ? "" : "s"}`,
    }));
  }

  if (a.diff) {
    const stat = diffStat(a.diff);
    const summary = el("summary", {},
      el("span", { text: "diff " }),
      el("span", { cls: "dim", text: `${stat.files} file${stat.files === 1 ? "" : "s"}, ` }),
      el("span", { cls: "d-add", text: `+${stat.add}` }),
      " ",
      el("span", { cls: "d-del", text: `-${stat.del}` }));
    const details = el("details", { cls: "diff-box" }, summary);
    if (str(a.diff).length <= EAGER_DIFF) {
      // What is approved is what is read: a diff of reviewable size is shown open.
      details.open = true;
      details.appendChild(renderDiff(a.diff));
    } else {
      // A very large diff is built only when opened.
      let rendered = false;
      details.addEventListener("toggle", () => {
        if (details.open && !rendered) {
          rendered = true;
          details.appendChild(renderDiff(a.diff));
        }
      });
    }
    node.appendChild(details);
  } else if (a.kind === "apply_commit") {
    node.appendChild(el("div", { cls: "line dim", text: "no diff" }));
  }

  const approve = el("button", { cls: "primary", text: "approve", attrs: { type: "button", "data-action": "approve" } });
  approve.addEventListener("click", () => {
    ui.decided.add(key);
    busy(approve, () => post(`/api/approvals/${encodeURIComponent(id)}/approve${hostQuery(a)}`, {}));
  });

  const deny = el("button", { cls: "danger", text: "deny", attrs: { type: "button", "data-action": "deny" } });
  const reason = el("input", { attrs: { type: "text", placeholder: "reason (optional)", "aria-label": "deny reason", maxlength: "2000" } });
  const sendDeny = el("button", { cls: "danger", text: "send deny", attrs: { type: "button", "data-action": "deny-send" } });
  const cancelDeny = el("button", { text: "cancel", attrs: { type: "button" } });
  const denyForm = el("span", { cls: "deny-form" }, reason, sendDeny, cancelDeny);
  denyForm.hidden = true;
  deny.addEventListener("click", () => {
    denyForm.hidden = false;
    deny.hidden = true;
    reason.focus();
  });
  cancelDeny.addEventListener("click", () => {
    denyForm.hidden = true;
    deny.hidden = false;
  });
  const doDeny = () => {
    ui.decided.add(key);
    busy(sendDeny, () => post(`/api/approvals/${encodeURIComponent(id)}/deny${hostQuery(a)}`, { reason: reason.value.trim() }));
  };
  sendDeny.addEventListener("click", doDeny);
  reason.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      doDeny();
    } else if (ev.key === "Escape") {
      cancelDeny.click();
    }
  });
  if (a.status === "in_progress") {
    // Approved and being carried out: neither a second approve nor a deny would stop it.
    const doing = { apply_commit: "deploying", spawn: "spawning", update: "updating" }[a.kind] || "being carried out";
    node.appendChild(el("div", { cls: "card-actions" }, el("span", { cls: "dim", text: `approved — ${doing}…` })));
    return node;
  }
  node.appendChild(el("div", { cls: "card-actions" }, approve, deny, denyForm));
  return node;
}

function putApproval(a) {
  // A status change redraws the card (its buttons depend on it).
  const id = itemKey(a);
  const node = ui.approvalNodes.get(id);
  if (node) {
    node.remove();
    ui.approvalNodes.delete(id);
  }
  state.approvals.set(id, a);
  renderApprovals();
}

function renderApprovals() {
  const list = $("approvals-list");
  const items = [...state.approvals.values()].sort((x, y) => (Number(x.created_at) || 0) - (Number(y.created_at) || 0));
  for (const [id, node] of ui.approvalNodes) {
    if (!state.approvals.has(id)) {
      node.remove();
      ui.approvalNodes.delete(id);
    }
  }
  const nodes = items.map((a) => {
    const id = itemKey(a);
    let node = ui.approvalNodes.get(id);
    if (!node) {
      node = renderApproval(a);
      ui.approvalNodes.set(id, node);
    }
    return node;
  });
  syncChildren(list, nodes, "no pending approvals");
  setCount("approvals", items.length);
  renderPending();
}

/** Make `list` hold exactly `nodes` in order, without recreating kept ones. */
function syncChildren(list, nodes, emptyText) {
  if (!nodes.length) {
    list.replaceChildren(el("p", { cls: "empty", text: emptyText }));
    return;
  }
  const keep = new Set(nodes);
  for (const child of [...list.children]) if (!keep.has(child)) child.remove();
  let cursor = list.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
    } else {
      list.insertBefore(node, cursor);
    }
  }
}

// ---------------------------------------------------------------- questions

function ttlText(q) {
  if (typeof q.expires_at !== "number") return "no expiry";
  const left = q.expires_at - nowSec();
  if (left <= 0) return "expired";
  return `expires in ${duration(left)}`;
}

function renderQuestion(q) {
  const id = str(q.id);
  const node = el("article", { cls: "card question", attrs: { "data-question": itemKey(q) } });
  const ttl = el("span", { cls: "ttl dim", text: ttlText(q), attrs: { title: q.expires_at ? `expires ${fullTime(q.expires_at)}` : "never expires" } });
  node._ttl = ttl;
  node._q = q;
  node.appendChild(el("div", { cls: "card-head" },
    chip(`#${id}`, "dim", itemName("question", q)),
    q.host ? chip(`on ${visibleString(q.host)}`, "info", `held by host ${visibleString(q.host)}`) : null,
    vspan("agent-name", q.asker),
    el("span", { cls: "dim", text: "asks" }),
    el("span", { cls: "spacer" }),
    ttl));
  const hidden = countInvisible(q.question, true) + (Array.isArray(q.options) ? q.options.reduce((n, o) => n + countInvisible(o), 0) : 0);
  if (hidden > 0) {
    node.appendChild(el("div", { cls: "warning", text: `⚠ this question holds ${hidden} invisible or bidirectional character${hidden === 1 ? "" : "s"}` }));
  }
  node.appendChild(el("div", { cls: "question-text" }, visible(q.question, true)));

  const answer = (text, btn) => busy(btn, () => post(`/api/questions/${encodeURIComponent(id)}/answer${hostQuery(q)}`, { answer: text }));
  if (Array.isArray(q.options) && q.options.length) {
    const opts = el("div", { cls: "options" });
    for (const option of q.options) {
      const b = el("button", { cls: "option", attrs: { type: "button", "data-action": "answer-option", title: `answer: ${visibleString(option)}` } });
      b.appendChild(visible(option));
      b.addEventListener("click", () => answer(str(option), b));
      opts.appendChild(b);
    }
    node.appendChild(opts);
  }
  const input = el("input", { attrs: { type: "text", placeholder: "answer…", "aria-label": "free-text answer", maxlength: "8000" } });
  const send = el("button", { cls: "primary", text: "send", attrs: { type: "button", "data-action": "answer" } });
  const sendText = () => {
    const text = input.value.trim();
    if (!text) {
      toast("type an answer first", "error");
      input.focus();
      return;
    }
    answer(text, send);
  };
  send.addEventListener("click", sendText);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      sendText();
    }
  });
  const cancel = el("button", { cls: "danger", text: "cancel", attrs: { type: "button", "data-action": "cancel", title: "cancel this question" } });
  cancel.addEventListener("click", () => busy(cancel, () => post(`/api/questions/${encodeURIComponent(id)}/cancel${hostQuery(q)}`, {})));
  node.appendChild(el("div", { cls: "card-actions answer-line" }, input, send, cancel));
  return node;
}

function renderQuestions() {
  const list = $("questions-list");
  const items = [...state.questions.values()].sort((x, y) => (Number(x.created_at) || 0) - (Number(y.created_at) || 0));
  for (const [id, node] of ui.questionNodes) {
    if (!state.questions.has(id)) {
      node.remove();
      ui.questionNodes.delete(id);
    }
  }
  const nodes = items.map((q) => {
    const id = itemKey(q);
    let node = ui.questionNodes.get(id);
    if (!node) {
      node = renderQuestion(q);
      ui.questionNodes.set(id, node);
    }
    return node;
  });
  syncChildren(list, nodes, "no open questions");
  setCount("questions", items.length);
  renderPending();
}

function isOperatorQuestion(q) {
  return q && (q.target === null || q.target === undefined) && (q.status === undefined || q.status === "pending");
}

/** The top bar's line for notification URLs whose deliveries fail (`hive-core notify status`). */
function renderNotify(targets) {
  const node = $("notify-chip");
  const list = Array.isArray(targets) ? targets : [];
  const failing = list.filter((t) => t && t.failing);
  node.hidden = failing.length === 0;
  if (!failing.length) return;
  node.textContent = `notifications failing (${failing.length} of ${list.length})`;
  node.title = failing.map((t) => `${visibleString(t.url)}: ${visibleString(t.last_error || "?")}`).join("\n")
    + "\n(hive-core notify status)";
}

function renderPending() {
  // What needs the operator: the attention list's items above `info`.
  const n = state.attention.filter((i) => i.severity === "warn" || i.severity === "urgent").length;
  const urgent = state.attention.some((i) => i.severity === "urgent");
  const node = $("pending");
  node.textContent = `${n} need${n === 1 ? "s" : ""} you`;
  node.className = `chip ${urgent ? "bad" : n ? "warn" : "dim"}`;
  document.title = n ? `(${n}) hyperhive` : "hyperhive";
}

// ---------------------------------------------------------------- the attention list

const SEVERITY_CHIP = { urgent: "bad", warn: "warn", info: "dim" };
const KIND_LABEL = {
  approval: "approval",
  question: "question",
  operator_message: "inbox",
  crashed: "crashed",
  given_up: "gave up",
  needs_login: "needs login",
  claude_missing: "claude missing",
  login_expiring: "login expiring",
  deploy_failed: "deploy failed",
  needs_update: "outdated",
  stuck_no_progress: "no progress",
  stuck_repetition: "repeating",
  stuck_burn: "burning tokens",
  ping_pong: "ping-pong",
  silent: "silent",
  over_budget: "over budget",
  budget_warning: "budget",
};
const STUCK_KINDS = new Set(["stuck_no_progress", "stuck_repetition", "stuck_burn", "ping_pong", "silent"]);

/** Scroll to `node` and outline it for a moment. */
function reveal(node) {
  if (!node) return;
  node.scrollIntoView({ block: "center", behavior: "smooth" });
  node.classList.add("flash");
  setTimeout(() => node.classList.remove("flash"), 1500);
}

function showLog(name) {
  const select = $("log-agent");
  if ([...select.options].some((o) => o.value === name)) {
    select.value = name;
    logRetry = 0;
    loadLogTail();
  }
  reveal($("log"));
}

function itemButton(label, title, act) {
  const btn = el("button", { text: label, attrs: { type: "button", title, "data-action": label.replace(/\W+/g, "-") } });
  btn.addEventListener("click", () => act(btn));
  return btn;
}

/** The buttons that act on an item where it can be acted on from here. */
function itemActions(item) {
  const name = str(item.agent);
  const ref = item.ref === null || item.ref === undefined ? "" : str(item.ref);
  const held = { id: ref, host: item.host }; // another host's approval or question: its host
  const out = [];
  switch (item.kind) {
    case "approval": {
      const a = state.approvals.get(itemKey(held));
      if (a && a.status === "pending") {
        out.push(confirmButton(el("button", { text: "approve", attrs: { type: "button", "data-action": "approve", title: `approve ${itemName("approval", held)}` } }),
          (btn) => busy(btn, () => post(`/api/approvals/${encodeURIComponent(ref)}/approve${hostQuery(held)}`, {}))));
      }
      out.push(itemButton("show", "its card, with the diff and deny", () => reveal(ui.approvalNodes.get(itemKey(held)))));
      break;
    }
    case "question":
      out.push(itemButton("answer", "its card", () => {
        const node = ui.questionNodes.get(itemKey(held));
        reveal(node);
        const input = node && node.querySelector("input, textarea");
        if (input) input.focus({ preventScroll: true });
      }));
      break;
    case "operator_message":
      out.push(itemButton("inbox", "the operator inbox", () => reveal($("inbox"))));
      break;
    case "given_up":
      out.push(itemButton("start", `start ${name} again`, (btn) => busy(btn, () => post(agentPath(name, "start"), {}))));
      out.push(itemButton("log", `${name}'s log`, () => showLog(name)));
      break;
    case "crashed":
    case "claude_missing":
    case "deploy_failed":
      out.push(itemButton("log", `${name}'s log`, () => showLog(name)));
      break;
    case "needs_login":
    case "login_expiring": {
      const agent = state.agents.get(name);
      if (agent && agent.state === "running") {
        const link = agentPageLink(agent);
        link.textContent = "log in ↗";
        out.push(link);
      }
      break;
    }
    case "over_budget": {
      const a = state.approvals.get(ref);
      if (a && a.status === "pending") {
        out.push(confirmButton(el("button", { text: "allow more", attrs: { type: "button", "data-action": "approve", title: `approve ${ref}: raise the limit for this window` } }),
          (btn) => busy(btn, () => post(`/api/approvals/${encodeURIComponent(ref)}/approve`, {}))));
        out.push(itemButton("show", "its card, with deny", () => reveal(ui.approvalNodes.get(ref))));
      }
      break;
    }
    case "stuck_no_progress":
    case "stuck_repetition":
    case "stuck_burn":
    case "ping_pong":
    case "silent":
      out.push(itemButton("cancel turn", `cancel ${name}'s turn (its unseen messages stay queued)`,
        (btn) => busy(btn, () => post(agentPath(name, "cancel"), {}))));
      out.push(itemButton("new session", `start ${name}'s next turn in a new session`,
        (btn) => busy(btn, () => post(agentPath(name, "new-session"), {}))));
      out.push(confirmButton(el("button", { cls: "danger", text: "stop", attrs: { type: "button", "data-action": "stop", title: `stop ${name}` } }),
        (btn) => busy(btn, () => post(agentPath(name, "stop"), {}))));
      out.push(itemButton("log", `${name}'s log`, () => showLog(name)));
      break;
    case "needs_update":
      out.push(itemButton("update all", "queue an update of every outdated agent", (btn) => busy(btn, () => post("/api/update", {}))));
      break;
    default:
      break;
  }
  return out;
}

function renderAttentionItem(item) {
  const sev = str(item.severity);
  const node = el("div", { cls: ["attention-item", sev], attrs: { "data-attention": str(item.key), "data-kind": str(item.kind) } });
  node.appendChild(chip(KIND_LABEL[item.kind] || visibleString(item.kind), SEVERITY_CHIP[sev] || "dim", `${sev}: ${visibleString(item.action)}`));
  node.appendChild(vspan("what", item.agent || "operator"));
  const summary = vspan("summary", item.summary);
  summary.title = `to resolve: ${visibleString(item.action)}`;
  node.appendChild(summary);
  const age = el("span", { cls: "dim age", text: duration(nowSec() - Number(item.since)), attrs: { title: `since ${fullTime(item.since)}` } });
  node._since = Number(item.since);
  node._age = age;
  node.appendChild(age);
  node.appendChild(el("span", { cls: "actions" }, ...itemActions(item)));
  return node;
}

function renderAttention() {
  const list = $("attention-list");
  const nodes = state.attention.map(renderAttentionItem);
  list.replaceChildren(...(nodes.length ? nodes : [el("p", { cls: "empty", text: "nothing needs you" })]));
  setCount("attention", state.attention.length);
  renderPending();
}

function setAttention(items) {
  state.attention = (Array.isArray(items) ? items : []).filter((i) => i && typeof i.key === "string");
  renderAttention();
  if ($("agent-sort").value === "attention") scheduleAgents(null); // ranks may change: a re-sort
}

// ---------------------------------------------------------------- flow + inbox

const STATE_RANK = { queued: 0, leased: 1, delivered: 2 };

function renderFlowRow(m) {
  const st = STATE_RANK[m.state] !== undefined ? m.state : "queued";
  const system = m.sender === "hive" || (m.event && typeof m.event === "object");
  const row = el("div", {
    cls: [`state-${st}`, system ? "system" : ""],
    attrs: { "data-message": str(m.id), "data-state": st },
  });
  row.appendChild(el("span", { cls: "ts", text: clockTime(m.sent_at), attrs: { title: fullTime(m.sent_at) } }));
  row.appendChild(vspan("from", m.sender));
  row.appendChild(el("span", { cls: "arrow", text: " → " }));
  row.appendChild(vspan("to", m.recipient));
  row.appendChild(el("span", {
    cls: "state",
    text: ` [${st}] `,
    attrs: { title: st === "delivered" && m.delivered_at ? `delivered ${fullTime(m.delivered_at)}` : st },
  }));
  row.appendChild(bodyNode(m.body, system && m.event && m.event.kind ? `event: ${visibleString(m.event.kind)}` : ""));
  return row;
}

const BODY_PREVIEW = 1200;

function bodyNode(body, title) {
  const text = str(body);
  const span = el("span", { cls: "body", attrs: { title: title || "" } });
  if (text.length <= BODY_PREVIEW) {
    span.appendChild(visible(text, true));
    return span;
  }
  span.appendChild(visible(text.slice(0, BODY_PREVIEW), true));
  const more = el("button", { cls: "link", text: `… show all (${text.length} chars)`, attrs: { type: "button" } });
  more.addEventListener("click", () => {
    more.remove();
    span.replaceChildren(visible(text, true));
  });
  span.appendChild(more);
  return span;
}

// The flow keeps a window of FLOW_WINDOW rows in the page, however long it stays open:
// new rows push the oldest out; scrolled to the top it loads older pages (and lets the
// newest go), scrolled back down newer ones (terminal.js).
const FLOW_WINDOW = 200;
const FLOW_PAGE = 100;

// What happened to messages that are not in the window (leased, delivered), so that a row
// loaded later shows it; the newest MARKS_KEPT are remembered.
const MARKS_KEPT = 2000;
const flowMarks = new Map(); // id -> {state, delivered_at}

function rememberMark(id, st, deliveredAt) {
  const k = str(id);
  const prev = flowMarks.get(k);
  if (st === "queued") {
    if (prev && prev.state === "leased") flowMarks.set(k, { state: "queued", delivered_at: null });
    return;
  }
  if (prev && STATE_RANK[prev.state] >= STATE_RANK[st]) return;
  flowMarks.delete(k);
  flowMarks.set(k, { state: st, delivered_at: deliveredAt || (prev && prev.delivered_at) || null });
  while (flowMarks.size > MARKS_KEPT) flowMarks.delete(flowMarks.keys().next().value);
}

function flowRevise(m) {
  const next = { ...m, state: m.state in STATE_RANK ? m.state : "queued" };
  const mark = flowMarks.get(str(m.id));
  if (!mark) return next;
  if (mark.state === "queued") return next.state === "leased" ? { ...next, state: "queued" } : next;
  if (STATE_RANK[mark.state] > STATE_RANK[next.state]) {
    return { ...next, state: mark.state, delivered_at: next.delivered_at || mark.delivered_at };
  }
  return next;
}

async function flowPage(query) {
  const data = await getJSON(`/dashboard/history?${query ? `${query}&` : ""}limit=${FLOW_PAGE}`);
  return { items: Array.isArray(data.messages) ? data.messages : [], more: Boolean(data.more) };
}

const flow = createTerminal({
  container: $("flow-term"),
  render: renderFlowRow,
  key: (m) => str(m.id),
  order: (m) => Number(m.id) || 0,
  empty: "no messages yet",
  cap: FLOW_WINDOW,
  loadOlder: (oldest) => flowPage(`before=${encodeURIComponent(str(oldest.id))}`),
  loadNewer: (newest) => flowPage(`after=${encodeURIComponent(str(newest.id))}`),
  loadLatest: () => flowPage(""),
  revise: flowRevise,
});

function flowUpsert(m) {
  if (!m || m.id === undefined || m.id === null) return;
  const prev = flow.get(str(m.id));
  let next = flowRevise(m);
  if (prev && STATE_RANK[prev.state] > STATE_RANK[next.state]) {
    next = { ...next, state: prev.state, delivered_at: next.delivered_at || prev.delivered_at };
  }
  flow.upsert(next);
}

function flowMark(ids, st, deliveredAt) {
  if (!Array.isArray(ids)) return;
  for (const id of ids) {
    const prev = flow.get(str(id));
    if (!prev) {
      rememberMark(id, st, deliveredAt);
    } else if (STATE_RANK[prev.state] < STATE_RANK[st]) {
      flow.upsert({ ...prev, state: st, delivered_at: deliveredAt || prev.delivered_at });
    }
  }
}

// A receiver hung up before acknowledging: its leased messages are queued again.
function flowRelease(ids) {
  if (!Array.isArray(ids)) return;
  for (const id of ids) {
    const prev = flow.get(str(id));
    if (!prev) rememberMark(id, "queued");
    else if (prev.state === "leased") flow.upsert({ ...prev, state: "queued" });
  }
}

const INBOX_CAP = 300;

function renderInboxItem(m) {
  const item = el("article", { cls: "inbox-item", attrs: { "data-inbox": itemKey(m) } });
  const reply = el("button", { cls: "link", text: "reply", attrs: { type: "button", title: "reply in the compose line" } });
  reply.addEventListener("click", () => {
    if (NAME_RE.test(str(m.sender))) {
      const input = $("compose-input");
      input.value = `@${m.sender} `;
      input.focus();
      updatePrompt();
    }
  });
  item.appendChild(el("div", { cls: "inbox-head" },
    el("span", { cls: "ts dim", text: clockTime(m.sent_at), attrs: { title: fullTime(m.sent_at) } }),
    vspan("from", m.sender),
    m.host ? chip(`on ${visibleString(m.host)}`, "info", `in host ${visibleString(m.host)}'s operator inbox: hive-core inbox --host ${visibleString(m.host)} reads it whole`) : null,
    el("span", { cls: "spacer" }),
    m.sender !== "hive" ? reply : null));
  item.appendChild(el("div", { cls: "inbox-body" }, bodyNode(m.body, m.event && m.event.kind ? `event: ${visibleString(m.event.kind)}` : "")));
  return item;
}

function renderInbox() {
  const list = $("inbox-list");
  if (!state.inbox.length) {
    list.replaceChildren(el("p", { cls: "empty", text: "inbox empty" }));
  } else {
    list.replaceChildren(...state.inbox.map(renderInboxItem));
  }
  setCount("inbox", state.inbox.length);
}

/** Another host's operator inbox changed: its newest messages replace those shown. */
function inboxOf(host, inbox) {
  const recent = (inbox && Array.isArray(inbox.recent) ? inbox.recent : []).filter((m) => m && m.id !== undefined);
  const mine = state.inbox.filter((m) => m.host !== host);
  const all = mine.concat(recent.map((m) => ({ ...m, host })));
  all.sort((x, y) => (Number(y.sent_at) || 0) - (Number(x.sent_at) || 0) || (Number(y.id) || 0) - (Number(x.id) || 0));
  state.inbox = all.slice(0, INBOX_CAP);
  ui.inboxIds = new Set(state.inbox.map(itemKey));
  renderInbox();
}

function inboxAdd(m) {
  const id = itemKey(m);
  if (ui.inboxIds.has(id)) return;
  ui.inboxIds.add(id);
  state.inbox.unshift(m);
  const list = $("inbox-list");
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  list.prepend(renderInboxItem(m));
  while (state.inbox.length > INBOX_CAP) {
    const gone = state.inbox.pop();
    ui.inboxIds.delete(itemKey(gone));
    const last = list.lastElementChild;
    if (last) last.remove();
  }
  setCount("inbox", state.inbox.length);
}

// ---------------------------------------------------------------- compose

const TO_KEY = "hive.compose.to";
let composeTo = NAME_RE.test(localStorage.getItem(TO_KEY) || "") ? localStorage.getItem(TO_KEY) : "";
let completion = null; // {prefix, matches, index}

function parseCompose(text) {
  const m = /^@(\S+)(?:\s+([\s\S]*))?$/.exec(text.trimStart());
  if (m) return { to: m[1], body: (m[2] || "").trim(), explicit: true };
  return { to: composeTo, body: text.trim(), explicit: false };
}

function updatePrompt() {
  const { to } = parseCompose($("compose-input").value);
  const node = $("compose-to");
  node.textContent = `→ ${to || "?"}`;
  node.classList.toggle("unset", !to);
}

function agentNames() {
  return [...state.agents.values()].filter((a) => !isTomb(a)).map((a) => str(a.name)).filter((n) => NAME_RE.test(n)).sort();
}

function onComposeKey(ev) {
  const input = ev.target;
  if (ev.key !== "Tab") {
    if (ev.key !== "Shift") completion = null;
    return;
  }
  const value = input.value;
  const caret = input.selectionStart ?? value.length;
  const head = value.slice(0, caret);
  const m = /^(\s*)@([a-z0-9-]*)$/.exec(head);
  if (!m) return; // let Tab move focus
  ev.preventDefault();
  if (!completion || !completion.matches.length) {
    const matches = agentNames().filter((n) => n.startsWith(m[2]));
    if (!matches.length) return;
    completion = { matches, index: -1 };
  }
  completion.index = (completion.index + (ev.shiftKey ? -1 : 1) + completion.matches.length) % completion.matches.length;
  const name = completion.matches[completion.index];
  const rest = value.slice(caret).replace(/^[a-z0-9-]*/, "").replace(/^\s*/, "");
  const next = `${m[1]}@${name} ${rest}`;
  input.value = next;
  const at = m[1].length + name.length + 2;
  input.setSelectionRange(at, at);
  updatePrompt();
}

async function onComposeSubmit(ev) {
  ev.preventDefault();
  const input = $("compose-input");
  const btn = $("compose-send");
  const { to, body } = parseCompose(input.value);
  if (!to) {
    toast("no recipient: start the line with @name", "error");
    input.focus();
    return;
  }
  if (!body) {
    if (parseCompose(input.value).explicit && NAME_RE.test(to)) {
      composeTo = to;
      localStorage.setItem(TO_KEY, to);
      input.value = "";
      updatePrompt();
      toast(`recipient: ${to}`, "info");
      return;
    }
    toast("nothing to send", "error");
    input.focus();
    return;
  }
  const result = await busy(btn, () => post("/api/send", { to, body }));
  if (result) {
    composeTo = to;
    localStorage.setItem(TO_KEY, to);
    input.value = "";
    completion = null;
    updatePrompt();
  }
  input.focus();
}

// ---------------------------------------------------------------- log pane

let logSeq = 0;
let logSource = null;
let logGen = 0;
let logRetry = 0;
let logRetryTimer = 0;

const logTerm = createTerminal({
  container: $("log-term"),
  render: (item) => {
    const row = el("div", { cls: item.note ? "note" : "" });
    row.appendChild(visible(item.text));
    return row;
  },
  key: (item) => `l${item.n}`,
  order: (item) => item.n,
  empty: "pick an agent to see its log",
});

function logLines(lines) {
  if (!Array.isArray(lines)) return [];
  return lines.map((text) => ({ n: ++logSeq, text: str(text) }));
}

function setLogStatus(text, cls) {
  const node = $("log-status");
  node.textContent = text;
  node.className = `chip ${cls}`;
}

function closeLogStream() {
  logGen += 1;
  clearTimeout(logRetryTimer);
  if (logSource) {
    logSource.close();
    logSource = null;
  }
}

async function loadLogTail() {
  const name = $("log-agent").value;
  closeLogStream();
  const gen = logGen;
  if (!name) {
    logTerm.reset([], false);
    setLogStatus("idle", "dim");
    return;
  }
  setLogStatus("loading…", "warn");
  let data;
  try {
    data = await getJSON(`${agentPath(name, "log")}?lines=200`);
  } catch (err) {
    if (gen !== logGen) return;
    setLogStatus("error", "bad");
    toast(`log of ${name}: ${err.message}`, "error");
    if ($("log-follow").checked) scheduleLogRetry();
    return;
  }
  if (gen !== logGen) return;
  const items = logLines(data.lines);
  if (data.truncated) items.unshift({ n: ++logSeq, text: "… earlier lines not shown", note: true });
  logSeq += 1;
  logTerm.reset(items, false);
  if ($("log-follow").checked) openLogStream(name);
  else setLogStatus("tail", "dim");
}

async function openLogStream(name) {
  closeLogStream();
  const gen = logGen;
  setLogStatus("connecting…", "warn");
  let address;
  try {
    address = await ticketed(`${agentPath(name, "log")}/stream`);
  } catch {
    if (gen === logGen) scheduleLogRetry();
    return;
  }
  if (gen !== logGen || !$("log-follow").checked) return;
  const source = new EventSource(address);
  logSource = source;
  // Each stream begins with the log's tail: it replaces the lines shown, never adds to them.
  let first = true;
  source.addEventListener("open", () => {
    if (gen !== logGen) return;
    logRetry = 0;
    setLogStatus("following", "ok");
  });
  source.addEventListener("message", (ev) => {
    if (gen !== logGen) return;
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      return;
    }
    const items = logLines(data && data.lines);
    if (first) {
      first = false;
      logTerm.reset(items, false);
    } else {
      logTerm.upsertMany(items);
    }
  });
  source.addEventListener("error", () => {
    if (gen !== logGen) return;
    source.close();
    logSource = null;
    scheduleLogRetry();
  });
}

function scheduleLogRetry() {
  const gen = logGen;
  setLogStatus("reconnecting…", "warn");
  const delay = backoffDelay(logRetry++);
  logRetryTimer = setTimeout(() => {
    if (gen !== logGen || !$("log-follow").checked) return;
    loadLogTail();
  }, delay);
}

function onFollowChange() {
  const name = $("log-agent").value;
  if (!name) {
    setLogStatus("idle", "dim");
    return;
  }
  if ($("log-follow").checked) {
    logRetry = 0;
    openLogStream(name);
  } else {
    closeLogStream();
    setLogStatus("paused", "dim");
  }
}

function renderLogChoices() {
  const select = $("log-agent");
  const current = select.value;
  const names = [...state.agents.values()].sort(agentSort).map((a) => str(a.name));
  const existing = [...select.options].slice(1).map((o) => o.value);
  if (existing.length === names.length && existing.every((n, i) => n === names[i])) return;
  const options = [el("option", { text: "pick an agent", attrs: { value: "" } })];
  for (const name of names) options.push(el("option", { text: visibleString(name), attrs: { value: name } }));
  select.replaceChildren(...options);
  select.value = names.includes(current) ? current : "";
  if (current && !names.includes(current)) {
    // Kept selectable so the last lines stay readable; the stream stops.
    const gone = el("option", { text: `${visibleString(current)} (gone)`, attrs: { value: current } });
    select.appendChild(gone);
    select.value = current;
  }
}

// ---------------------------------------------------------------- the live model

const live = createLive({
  url: "/dashboard/stream",
  peer: "the server",
  authWhy: "not logged in: open a fresh login link (hive-core login-link)",
  load: () => getJSON("/api/state"),
  apply: applySnapshot,
  frame: applyFrame,
});

function applySnapshot(snap) {
  live.lastSeq = Number(snap.seq);
  if (!Number.isFinite(live.lastSeq)) live.lastSeq = -1;
  state.version = str(snap.version);
  state.backend = str(snap.backend || "");
  renderVersion($("version"), state.version);

  // A snapshot raises no crash or login notices: it is not a transition seen happen.
  const at = mono();
  state.agents = new Map();
  for (const a of Array.isArray(snap.agents) ? snap.agents : []) {
    if (a && typeof a.name === "string") state.agents.set(a.name, { ...a, _at: at });
  }

  state.transients = new Map();
  for (const t of Array.isArray(snap.transients) ? snap.transients : []) {
    if (t && t.id !== undefined) state.transients.set(str(t.id), t);
  }

  state.approvals = new Map();
  for (const a of Array.isArray(snap.approvals) ? snap.approvals : []) {
    if (a && a.id !== undefined && (a.status === undefined || a.status === "pending" || a.status === "in_progress")) state.approvals.set(itemKey(a), a);
  }

  state.questions = new Map();
  for (const q of Array.isArray(snap.questions) ? snap.questions : []) {
    if (isOperatorQuestion(q)) state.questions.set(itemKey(q), { ...q });
  }

  const inbox = (Array.isArray(snap.inbox) ? snap.inbox : []).filter((m) => m && m.id !== undefined);
  inbox.sort((x, y) => (Number(y.sent_at) || 0) - (Number(x.sent_at) || 0) || (Number(y.id) || 0) - (Number(x.id) || 0));
  state.inbox = inbox.slice(0, INBOX_CAP);
  ui.inboxIds = new Set(state.inbox.map(itemKey));

  ui.allDirty = true;
  renderAgents();
  renderApprovals();
  renderQuestions();
  renderInbox();
  setAttention(snap.attention);
  usage.reset(snap.usage);
  renderNotify(snap.notify);
  const hosts = snap.hosts || {};
  setHosts(hosts.federated, hosts.link, hosts.hosts);
  flowMarks.clear();
  flow.reset((Array.isArray(snap.messages) ? snap.messages : []).map((m) => ({ ...m, state: m.state in STATE_RANK ? m.state : "queued" })), Boolean(snap.more_messages));
  updatePrompt();
}

function applyFrame(frame) {
  const seq = Number(frame.seq);
  if (Number.isFinite(seq)) {
    if (seq <= live.lastSeq) return;
    live.lastSeq = seq;
  }
  const ev = frame.event;
  if (!ev || typeof ev !== "object") return;
  try {
    handleEvent(ev);
  } catch (err) {
    console.error("dashboard: could not apply event", ev.kind, err);
  }
}

function handleEvent(ev) {
  switch (ev.kind) {
    case "sent": {
      const m = ev.message;
      if (!m) return;
      flowUpsert({ ...m, state: "queued" });
      if (m.recipient === "operator") inboxAdd(m);
      return;
    }
    case "leased":
      flowMark(ev.ids, "leased");
      return;
    case "released":
      flowRelease(ev.ids);
      return;
    case "delivered":
      flowMark(ev.ids, "delivered", ev.delivered_at);
      return;
    case "approval_added": {
      const a = ev.approval;
      if (!a || a.id === undefined) return;
      putApproval(a);
      notify(`${itemName("approval", a)}: ${str(a.kind).replace("_", " ")}`, `${str(a.agent)} (by ${str(a.requester)})`, `approval-${itemKey(a)}`);
      return;
    }
    case "approval_started": {
      const a = ev.approval;
      if (!a || a.id === undefined) return;
      putApproval(a);
      return;
    }
    case "approval_resolved": {
      const a = ev.approval;
      if (!a || a.id === undefined) return;
      const had = state.approvals.delete(itemKey(a));
      renderApprovals();
      if (ui.decided.delete(itemKey(a))) return; // the action's own answer said it
      const reason = str(a.reason);
      toast(`${itemName("approval", a)}: ${str(a.status)}${reason ? ` — ${reason}` : ""}`, a.status === "failed" ? "error" : had ? "" : "info");
      return;
    }
    case "question_added": {
      const q = ev.question;
      if (!isOperatorQuestion(q)) return;
      state.questions.set(itemKey(q), { ...q });
      renderQuestions();
      notify(`question from ${str(q.asker)}`, str(q.question), `question-${itemKey(q)}`);
      return;
    }
    case "remote_inbox":
      if (typeof ev.host === "string" && ev.host) inboxOf(ev.host, ev.inbox);
      return;
    case "question_resolved": {
      const q = ev.question;
      if (!q || q.id === undefined) return;
      if (state.questions.delete(itemKey(q))) renderQuestions();
      return;
    }
    case "transient_set": {
      if (ev.id === undefined) return;
      state.transients.set(str(ev.id), { id: ev.id, agent: ev.agent, action: ev.action, actor: ev.actor, started_at: ev.started_at });
      if (ev.agent) ui.recentAction.set(ev.agent, mono());
      scheduleAgents(typeof ev.agent === "string" ? ev.agent : undefined);
      return;
    }
    case "transient_cleared": {
      state.transients.delete(str(ev.id));
      if (ev.agent) ui.recentAction.set(ev.agent, mono());
      const outcome = str(ev.outcome);
      if (outcome && !/^(ok|done|success|succeeded|completed?)$/i.test(outcome)) {
        toast(`${str(ev.agent)}: ${str(ev.action)} — ${outcome}`, /fail|error|refused|denied/i.test(outcome) ? "error" : "info");
      }
      scheduleAgents(typeof ev.agent === "string" ? ev.agent : undefined);
      return;
    }
    case "container_state_changed":
      setAgent(ev.agent, true);
      return;
    case "attention_changed":
      setAttention(ev.items);
      break;
    case "usage_changed":
      usage.apply(ev);
      return;
    case "notify_changed":
      renderNotify(ev.targets);
      return;
    case "hosts_changed":
      setHosts(true, ev.link, ev.hosts);
      return;
    case "container_removed":
      if (typeof ev.name === "string" && state.agents.delete(ev.name)) scheduleAgents();
      return;
    default:
      return;
  }
}

// ---------------------------------------------------------------- timers (render only, never fetch)

function tick() {
  for (const entry of ui.agentBoxes.values()) {
    const name = entry.box.getAttribute("data-agent");
    const agent = state.agents.get(name);
    if (agent && entry.uptime) {
      const text = uptimeText(agent);
      if (entry.uptime.textContent !== text) entry.uptime.textContent = text;
    }
  }
  for (const node of $("attention-list").children) {
    if (!node._age) continue;
    const text = duration(nowSec() - node._since);
    if (node._age.textContent !== text) node._age.textContent = text;
  }
  for (const node of ui.questionNodes.values()) {
    const text = ttlText(node._q);
    if (node._ttl.textContent !== text) {
      node._ttl.textContent = text;
      node._ttl.classList.toggle("expired", text === "expired");
    }
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("notify").addEventListener("click", onNotifyClick);
  renderNotifyButton();

  $("spawn-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("spawn-name");
    const name = input.value.trim();
    if (!name) {
      toast("name the new agent first", "error");
      input.focus();
      return;
    }
    const result = await busy($("spawn-btn"), () => post("/api/spawn", { name }));
    if (result) input.value = "";
  });

  const sortSelect = $("agent-sort");
  const savedSort = localStorage.getItem(SORT_KEY);
  if (SORTS.has(savedSort)) sortSelect.value = savedSort;
  sortSelect.addEventListener("change", () => {
    localStorage.setItem(SORT_KEY, sortSelect.value);
    scheduleAgents(null);
  });
  const filter = $("agent-filter");
  filter.addEventListener("input", () => scheduleAgents(null));
  filter.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && filter.value) {
      filter.value = "";
      scheduleAgents(null);
    }
  });

  const updateBtn = $("update-all");
  updateBtn.addEventListener("click", () => busy(updateBtn, () => post("/api/update", {})));

  const input = $("compose-input");
  $("compose").addEventListener("submit", onComposeSubmit);
  input.addEventListener("keydown", onComposeKey);
  input.addEventListener("input", updatePrompt);
  updatePrompt();

  $("log-agent").addEventListener("change", () => {
    logRetry = 0;
    loadLogTail();
  });
  $("log-tail").addEventListener("click", () => {
    logRetry = 0;
    loadLogTail();
  });
  $("log-follow").addEventListener("change", onFollowChange);

  setInterval(tick, 1000);
}

wire();
live.start();

// For the console and for tests: the pure helpers.
export { visible, visibleString, countInvisible, parseCompose, diffStat };
