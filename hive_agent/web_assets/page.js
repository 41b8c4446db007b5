// One agent's own page: its live turn log, its state, and the turn controls.
// Live from one event stream; no polling.
//
// Every piece of server data is rendered as text (textContent / text nodes),
// with invisible and bidirectional characters made visible by `visible()`.

import { createTerminal, el } from "./front/terminal.js";
import {
  $, busy, clockTime, durationMs, fullTime, getJSON, post, renderVersion, setConn as setConnChip, str, toast,
  visible, visibleString, vspan, createLive,
} from "./front/ui.js";

/** Replace a node's children with visible(text). */
function setVisible(node, text, keepNewlines = false) {
  node.replaceChildren(visible(text, keepNewlines));
}

// ---------------------------------------------------------------- numbers

function num(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

function compact(value) {
  const n = num(value);
  const abs = Math.abs(n);
  if (abs < 1000) return String(Math.round(n));
  if (abs < 10000) return `${(n / 1000).toFixed(1)}k`;
  if (abs < 1e6) return `${Math.round(n / 1000)}k`;
  if (abs < 1e7) return `${(n / 1e6).toFixed(2)}M`;
  return `${(n / 1e6).toFixed(1)}M`;
}

const grouped = (value) => num(value).toLocaleString("en-US");

// ---------------------------------------------------------------- state

const state = {
  agent: "",
  role: "agent",
  model: "",
  model_source: "", // override | agent.toml | default
  models: [],
  status: "",
  turnState: "idle",
  turnsRun: 0,
  login: "unknown",
  contextTokens: 0,
  contextWindow: 0,
  usage: {},
  lastTurn: null,
  version: "",
};

const TURN_STATES = {
  idle: { cls: "dim", title: "idle: waiting to be woken" },
  waiting: { cls: "warn", text: "waiting for a slot", title: "waiting for a slot: the hive runs as many turns as it can at once" },
  thinking: { cls: "info", title: "thinking: the model is answering" },
  tool: { cls: "accent", title: "tool: a tool call is running" },
  compacting: { cls: "warn", title: "compacting the session's context" },
  cancelling: { cls: "warn", title: "cancelling the running turn" },
};

const LOGIN = {
  unknown: null,
  logged_in: null,
  needs_login: { text: "needs login", title: "claude is not logged in: log in from the dashboard" },
  claude_missing: { text: "claude missing", title: "the claude binary is missing from this agent" },
};

function setChip(node, cls, title) {
  node.className = ["chip", ...(Array.isArray(cls) ? cls : [cls])].filter(Boolean).join(" ");
  node.title = title;
}

// ---------------------------------------------------------------- header and badges

function renderHeader() {
  const name = $("agent-name");
  setVisible(name, state.agent || "agent");
  name.title = `agent ${visibleString(state.agent)}`;
  document.title = `${visibleString(state.agent) || "agent"} · hyperhive`;
  $("role").hidden = state.role !== "manager";
  renderVersion($("version"), state.version);
}

function renderDashboardLink(url) {
  const link = $("dashboard-link");
  const s = str(url);
  let href = null;
  if (/^https?:\/\//i.test(s)) {
    try {
      const parsed = new URL(s);
      if (parsed.protocol === "http:" || parsed.protocol === "https:") href = parsed.href;
    } catch {
      href = null;
    }
  }
  if (href) {
    link.href = href;
    link.title = `back to the hive dashboard (${visibleString(href)})`;
    link.hidden = false;
  } else {
    link.removeAttribute("href");
    link.hidden = true;
  }
}

function renderTurnState() {
  const node = $("badge-state");
  const st = str(state.turnState);
  const info = TURN_STATES[st] || { cls: "warn", title: `turn state: ${visibleString(st)}` };
  setChip(node, [info.cls, st && st !== "idle" ? "busy" : ""], info.title);
  node.setAttribute("data-state", st);
  setVisible(node, info.text || st || "?");
  const cancel = document.querySelector('[data-action="cancel"]');
  if (cancel && !cancel.classList.contains("busy")) cancel.classList.toggle("live", st !== "idle");
}

function renderStatus() {
  const node = $("badge-status");
  const text = str(state.status);
  setChip(node, ["dim", "status-chip"], text ? `status: ${visibleString(text, true)}` : "no status set");
  setVisible(node, text || "no status");
}

function renderTokens() {
  const node = $("badge-tokens");
  const u = state.usage || {};
  const input = num(u.input_tokens);
  const output = num(u.output_tokens);
  const created = num(u.cache_creation_input_tokens);
  const read = num(u.cache_read_input_tokens);
  node.textContent = `in ${compact(input)} · out ${compact(output)}`;
  node.setAttribute("data-in", String(input));
  node.setAttribute("data-out", String(output));
  node.title = [
    "tokens of the current turn",
    `input: ${grouped(input)}`,
    `output: ${grouped(output)}`,
    `cache creation input: ${grouped(created)}`,
    `cache read input: ${grouped(read)}`,
  ].join("\n");
  setChip(node, "dim", node.title);
}

function renderContext() {
  const node = $("badge-context");
  const used = num(state.contextTokens);
  const windowSize = num(state.contextWindow);
  const pct = windowSize > 0 ? (used / windowSize) * 100 : 0;
  const level = windowSize <= 0 ? "dim" : pct < 60 ? "ok" : pct < 85 ? "warn" : "bad";
  setChip(node, [level, "context-chip"], windowSize > 0
    ? `context: ${grouped(used)} of ${grouped(windowSize)} tokens (${pct.toFixed(1)} %)`
    : `context: ${grouped(used)} tokens (window unknown)`);
  node.setAttribute("data-level", level);
  node.setAttribute("data-pct", windowSize > 0 ? pct.toFixed(1) : "");
  const bar = $("context-bar");
  bar.value = Math.max(0, Math.min(100, pct));
  bar.className = level;
  $("context-pct").textContent = windowSize > 0 ? `${Math.round(pct)}%` : compact(used);
}

const RESULT_CLS = {
  success: "ok",
  cancelled: "warn",
  max_turns: "warn",
  rate_limited: "warn",
  overloaded: "warn",
};

function resultClass(result) {
  return RESULT_CLS[str(result)] || "bad";
}

function renderLastTurn() {
  const node = $("badge-last");
  const last = state.lastTurn;
  const turns = $("turns");
  turns.textContent = state.turnsRun ? `${grouped(state.turnsRun)} turn${state.turnsRun === 1 ? "" : "s"}` : "";
  if (!last || typeof last !== "object") {
    setChip(node, "dim", "no turn has ended yet");
    node.textContent = "no turn yet";
    node.removeAttribute("data-result");
    return;
  }
  const result = str(last.result) || "?";
  node.setAttribute("data-result", result);
  const lines = [`last turn: ${visibleString(result)} in ${durationMs(last.duration_ms)}`];
  if (last.detail) lines.push(visibleString(last.detail, true));
  if (last.model) lines.push(`model: ${visibleString(last.model)}`);
  if (last.ended_at) lines.push(`ended ${fullTime(last.ended_at)}`);
  setChip(node, resultClass(result), lines.join("\n"));
  node.replaceChildren(el("span", { cls: "lbl", text: "last" }), visible(result), ` · ${durationMs(last.duration_ms)}`);
}

function renderLogin() {
  const node = $("badge-login");
  const info = LOGIN[str(state.login)];
  if (info === undefined) {
    node.hidden = false;
    setChip(node, "warn", `login: ${visibleString(state.login)}`);
    setVisible(node, state.login);
    return;
  }
  node.hidden = !info;
  if (info) {
    setChip(node, "bad", info.title);
    node.textContent = info.text;
  }
}

const STUCK_LABEL = {
  no_progress: "no progress", repetition: "repeating", burn: "burning tokens", ping_pong: "ping-pong", silent: "silent",
};

/** The stuck signals: the ones the harness sees in the running turn, and hive-core's. */
function renderStuck() {
  const node = $("badge-stuck");
  const signals = Array.isArray(state.stuck) ? state.stuck.map(str) : [];
  node.hidden = signals.length === 0;
  if (signals.length) {
    const text = signals.map((s) => STUCK_LABEL[s] || visibleString(s)).join(", ");
    setChip(node, "warn", `this turn looks stuck: ${text} (cancel the turn, or start a new session)`);
    node.textContent = `stuck: ${text}`;
  }
}

// ---------------------------------------------------------------- the login panel

// The harness relays `claude auth login`: its output and state arrive as
// `login_output` / `login_changed` events; the code goes back as a POST.
const loginPanel = { state: "idle", url: null, output: "", waiting: false };
const LOGIN_OUTPUT_MAX = 64 * 1024;

function safeHttpsUrl(value) {
  try {
    const url = new URL(str(value));
    return url.protocol === "https:" ? url.href : "";
  } catch {
    return "";
  }
}

function renderLoginPanel() {
  const missing = state.login === "claude_missing";
  const needed = state.login === "needs_login" || missing;
  const s = loginPanel.state;
  const running = s === "running";
  $("login").hidden = !(needed || running || s === "failed");
  const chip = $("login-state");
  // With no claude to run there is nothing to log in to: say what is missing instead.
  const idleText = missing ? "claude missing" : "not logged in";
  chip.textContent = running ? "logging in…" : s === "logged_in" ? "logged in" : s === "failed" ? "login failed" : idleText;
  setChip(chip, running ? "warn" : s === "logged_in" ? "ok" : "bad", `login session: ${s}`);
  $("login-why").textContent = missing && !running
    ? "this agent's claude binary cannot be run: install Claude Code where its harness runs, then restart the agent (hive-core restart NAME); a HIVE_CLAUDE_BIN that names a wrong path needs hive-core restarted"
    : "this agent's claude code is not logged in: its turns cannot run";
  $("login-start").hidden = running || missing;
  $("login-cancel").hidden = !running;
  const href = running ? safeHttpsUrl(loginPanel.url) : "";
  $("login-link-row").hidden = !href;
  const link = $("login-url");
  if (href) {
    link.href = href;
    setVisible(link, href);
  }
  $("login-code-form").hidden = !(running && href);
  const out = $("login-output");
  out.hidden = !loginPanel.output;
  setVisible(out, loginPanel.output, true);
}

function applyLogin(ev) {
  if (ev.kind === "login_output") {
    loginPanel.output = (loginPanel.output + str(ev.text)).slice(-LOGIN_OUTPUT_MAX);
  } else {
    loginPanel.state = str(ev.state);
    // A URL belongs to one login session: a session that ended takes its URL with it.
    if (loginPanel.state !== "running") loginPanel.url = null;
    else if (ev.url) loginPanel.url = ev.url;
    if (loginPanel.state === "logged_in") state.login = "logged_in";
    if (ev.detail) toast(`login ${loginPanel.state}: ${str(ev.detail)}`, loginPanel.state === "failed" ? "error" : "");
    renderLogin();
  }
  renderLoginPanel();
}

function wireLogin() {
  $("login-start").addEventListener("click", () => {
    loginPanel.output = "";
    loginPanel.url = null;
    busy($("login-start"), () => post("/login/start", {}));
  });
  $("login-cancel").addEventListener("click", () => busy($("login-cancel"), () => post("/login/cancel", {})));
  $("login-code-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("login-code");
    const code = input.value.trim();
    if (!code) return;
    busy($("login-code-send"), async () => {
      const got = await post("/login/code", { code });
      if (got) input.value = "";
    });
  });
}

// ---------------------------------------------------------------- the inbox

// What the agent was woken with, newest first: `messages_received` events.
const INBOX_MAX = 100;
const inbox = [];

function renderInbox() {
  const list = $("inbox-list");
  $("inbox-count").textContent = String(inbox.length);
  if (!inbox.length) {
    list.replaceChildren(el("div", { cls: "dim", text: "// no messages yet" }));
    return;
  }
  list.replaceChildren(...inbox.map((m) => {
    const item = el("article", { cls: "inbox-item", attrs: { "data-inbox": str(m.id) } });
    item.append(
      el("div", { cls: "inbox-head" },
        el("span", { cls: "ts dim", text: clockTime(m.sent_at), attrs: { title: fullTime(m.sent_at) } }),
        vspan("from", m.sender)),
      vspan("body", m.body, true),
    );
    return item;
  }));
}

function addInbox(messages) {
  for (const m of Array.isArray(messages) ? messages : []) {
    if (m && m.id !== undefined && !inbox.some((x) => x.id === m.id)) inbox.unshift(m);
  }
  inbox.sort((a, b) => (Number(b.id) || 0) - (Number(a.id) || 0));
  inbox.length = Math.min(inbox.length, INBOX_MAX);
  renderInbox();
}

// ---------------------------------------------------------------- the operator's send

// The operator's message to this agent goes through hive-core: the dashboard on the
// host this page was loaded from takes it with a send token that opens that one
// route for this one agent (hive-core hands it over with the page's login code).
const sender = { url: "", token: "" };

function sendURL(dashboardURL, agent) {
  const s = str(dashboardURL);
  if (!/^https?:\/\//i.test(s) || !agent) return "";
  try {
    const url = new URL(s);
    url.hostname = location.hostname;
    url.pathname = `/api/agents/${encodeURIComponent(agent)}/send`;
    url.search = "";
    url.hash = "";
    return url.href;
  } catch {
    return "";
  }
}

function renderSend() {
  $("send-form").hidden = !sender.url || !sender.token;
  setVisible($("send-to"), `→ ${str(state.agent)}`);
}

function wireSend() {
  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("send-input");
    const body = input.value;
    if (!body.trim() || !sender.url || !sender.token) return;
    busy($("send-button"), async () => {
      const got = await post(sender.url, { body }, { token: sender.token, quiet: true });
      if (!got) return;
      input.value = "";
      toast(`sent to ${visibleString(state.agent)} as message ${str(got.id)}`);
    });
  });
}

// ---------------------------------------------------------------- the model picker

const OTHER = "other…";
// Where the model comes from: a choice made at run time wins over the approved agent.toml.
const MODEL_FROM = {
  override: ["set at run time", "set at run time (overrides agent.toml)"],
  "agent.toml": ["agent.toml", "from agent.toml"],
  default: ["default", "the default (agent.toml names none)"],
};
const model = { busy: false };

function renderModel() {
  const select = $("badge-model");
  const wrap = $("model-wrap");
  const current = str(state.model);
  const names = [];
  for (const m of Array.isArray(state.models) ? state.models : []) {
    const s = str(m);
    if (s && !names.includes(s)) names.push(s);
  }
  if (current && !names.includes(current)) names.unshift(current);
  const options = names.map((name) => el("option", {
    text: visibleString(name) + (name === current ? " ●" : ""),
    attrs: { value: name, title: visibleString(name) },
  }));
  options.push(el("option", { text: "other…", attrs: { value: OTHER, "data-other": "", title: "type another model name" } }));
  if (!current) options.unshift(el("option", { text: "?", attrs: { value: "", disabled: true } }));
  select.replaceChildren(...options);
  // While a name is being typed into "other…", the picker stays on it.
  select.value = $("model-other").hidden ? current : OTHER;
  const [short, from] = MODEL_FROM[str(state.model_source)] || ["", ""];
  select.title = current ? `model: ${visibleString(current)}${from ? `, ${from}` : ""} (change for the next turn)` : "model unknown";
  wrap.title = select.title;
  $("model-from").textContent = short;
}

async function setModel(name) {
  const select = $("badge-model");
  const wrap = $("model-wrap");
  const other = $("model-other");
  if (model.busy) return;
  model.busy = true;
  wrap.classList.add("busy");
  select.disabled = true;
  other.disabled = true;
  let result = null;
  try {
    result = await post("/api/model", { model: name });
  } finally {
    model.busy = false;
    wrap.classList.remove("busy");
    select.disabled = false;
    other.disabled = false;
  }
  if (result) {
    other.value = "";
    other.hidden = true;
  } else if (!other.hidden) {
    other.focus();
  }
  // The model_changed event moves the picker; until it comes, show the current model.
  renderModel();
}

function wireModel() {
  const select = $("badge-model");
  const other = $("model-other");
  select.addEventListener("change", () => {
    const value = select.value;
    const picked = select.selectedOptions[0];
    if (picked && picked.hasAttribute("data-other")) {
      other.hidden = false;
      other.focus();
      return;
    }
    other.hidden = true;
    if (value && value !== state.model) setModel(value);
    else renderModel();
  });
  other.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      const name = other.value.trim();
      if (!name) {
        toast("type a model name first", "error");
        return;
      }
      setModel(name);
    } else if (ev.key === "Escape") {
      other.value = "";
      other.hidden = true;
      renderModel();
      select.focus();
    }
  });
}

// ---------------------------------------------------------------- the turn log

// tool_use id -> {seq, node, body, mark}: the rendered tool rows.
const tools = new Map();
// tool_use id -> tool_result event, for tool rows rendered later or again.
const results = new Map();
// tool_use id -> seq of a tool_result shown on its own (its tool_use not loaded).
const loneResults = new Map();

const NAME_KEYS = ["command", "file_path", "path", "notebook_path", "pattern", "url", "to", "query", "description", "prompt", "subject"];
const SUMMARY_MAX = 160;

function oneLine(text, max = SUMMARY_MAX) {
  const s = str(text).replace(/\s+/g, " ").trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function toolLabel(input) {
  if (input && typeof input === "object") {
    for (const k of NAME_KEYS) {
      const v = input[k];
      if (typeof v === "string" && v.trim()) return oneLine(v);
      if (Array.isArray(v) && v.length && v.every((x) => typeof x === "string")) return oneLine(v.join(", "));
    }
  }
  let json = "";
  try {
    json = JSON.stringify(input);
  } catch {
    json = "";
  }
  return oneLine(json === "{}" ? "" : json, 100);
}

function prettyJSON(value) {
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return str(value);
  }
}

function tsSpan(frame) {
  return el("span", { cls: "ts", text: clockTime(frame.ts), attrs: { title: `${fullTime(frame.ts)} · seq ${num(frame.seq)}` } });
}

function rowBase(frame, kind, extra) {
  return el("div", {
    cls: [`k-${kind}`, ...(extra || [])],
    attrs: { "data-seq": String(num(frame.seq)), "data-kind": kind, "data-turn": frame.turn_id ? str(frame.turn_id) : null },
  });
}

// Lines of a simple line diff: the common head and tail as context, the rest
// as removed then added.
const CONTEXT_LINES = 3;

function splitLines(text) {
  const s = str(text);
  if (s === "") return [];
  const lines = s.split("\n");
  if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

function diffLines(oldText, newText) {
  const a = splitLines(oldText);
  const b = splitLines(newText);
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head += 1;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail += 1;
  const out = [];
  const headFrom = Math.max(0, head - CONTEXT_LINES);
  if (headFrom > 0) out.push({ cls: "d-hunk", text: `@@ ${headFrom} unchanged line${headFrom === 1 ? "" : "s"} @@` });
  for (let i = headFrom; i < head; i += 1) out.push({ cls: "d-ctx", text: ` ${a[i]}` });
  for (let i = head; i < a.length - tail; i += 1) out.push({ cls: "d-del", text: `-${a[i]}` });
  for (let i = head; i < b.length - tail; i += 1) out.push({ cls: "d-add", text: `+${b[i]}` });
  const tailTo = Math.min(tail, CONTEXT_LINES);
  for (let i = a.length - tail; i < a.length - tail + tailTo; i += 1) out.push({ cls: "d-ctx", text: ` ${a[i]}` });
  if (tail > tailTo) out.push({ cls: "d-hunk", text: `@@ ${tail - tailTo} unchanged line${tail - tailTo === 1 ? "" : "s"} @@` });
  return out;
}

function renderDiffLines(lines) {
  const pre = el("pre", { cls: "diff" });
  for (const line of lines) {
    const span = el("span", { cls: ["dl", line.cls] });
    span.appendChild(visible(line.text));
    pre.appendChild(span);
  }
  return pre;
}

function toolDiff(name, input) {
  if (!input || typeof input !== "object") return null;
  const file = str(input.file_path || input.path || input.notebook_path);
  const lines = [];
  if (name === "Write" && typeof input.content === "string") {
    lines.push(...diffLines("", input.content));
  } else if (name === "Edit" && (typeof input.old_string === "string" || typeof input.new_string === "string")) {
    lines.push(...diffLines(input.old_string, input.new_string));
  } else if (name === "MultiEdit" && Array.isArray(input.edits)) {
    input.edits.forEach((edit, i) => {
      if (!edit || typeof edit !== "object") return;
      lines.push({ cls: "d-hunk", text: `@@ edit ${i + 1} of ${input.edits.length}${edit.replace_all ? " (all)" : ""} @@` });
      lines.push(...diffLines(edit.old_string, edit.new_string));
    });
  } else {
    return null;
  }
  const box = el("div", { cls: "tool-diff" });
  if (file) box.appendChild(el("div", { cls: "d-file" }, name === "Write" ? "write " : "edit ", vspan("", file)));
  box.appendChild(renderDiffLines(lines.length ? lines : [{ cls: "d-ctx", text: " (no change)" }]));
  return box;
}

function diffCounts(name, input) {
  if (!input || typeof input !== "object") return null;
  const count = (o, n) => {
    const lines = diffLines(o, n);
    return {
      add: lines.filter((l) => l.cls === "d-add").length,
      del: lines.filter((l) => l.cls === "d-del").length,
    };
  };
  if (name === "Write" && typeof input.content === "string") return count("", input.content);
  if (name === "Edit") return count(input.old_string, input.new_string);
  if (name === "MultiEdit" && Array.isArray(input.edits)) {
    const total = { add: 0, del: 0 };
    for (const e of input.edits) {
      if (!e || typeof e !== "object") continue;
      const c = count(e.old_string, e.new_string);
      total.add += c.add;
      total.del += c.del;
    }
    return total;
  }
  return null;
}

const RESULT_PREVIEW = 20000;

function resultNode(result) {
  const content = str(result.content);
  const box = el("div", { cls: ["tool-result", result.is_error ? "error" : ""], attrs: { "data-result": result.is_error ? "error" : "ok" } });
  box.appendChild(el("div", { cls: "part-label", text: result.is_error ? "error" : "result" }));
  const pre = el("pre", { cls: "result-text" });
  if (!content) {
    pre.appendChild(el("span", { cls: "dim", text: "(empty)" }));
  } else if (content.length <= RESULT_PREVIEW) {
    pre.appendChild(visible(content, true));
  } else {
    pre.appendChild(visible(content.slice(0, RESULT_PREVIEW), true));
    const more = el("button", { cls: "link", text: `… show all (${content.length} chars)`, attrs: { type: "button" } });
    more.addEventListener("click", () => {
      more.remove();
      pre.replaceChildren(visible(content, true));
    });
    pre.appendChild(more);
  }
  box.appendChild(pre);
  return box;
}

function setToolResult(entry, result) {
  const old = entry.body.querySelector(":scope > .tool-result");
  const node = resultNode(result);
  if (old) old.replaceWith(node);
  else entry.body.appendChild(node);
  entry.row.classList.toggle("tool-error", Boolean(result.is_error));
  entry.row.classList.remove("tool-pending");
  entry.row.setAttribute("data-result", result.is_error ? "error" : "ok");
  entry.mark.textContent = result.is_error ? "✗" : "✓";
  entry.mark.className = `mark ${result.is_error ? "bad" : "ok"}`;
  entry.mark.title = result.is_error ? "the tool call failed" : "the tool call returned";
}

function renderToolUse(frame) {
  const ev = frame.event;
  const id = str(ev.id);
  const name = str(ev.name);
  const input = ev.input && typeof ev.input === "object" ? ev.input : {};
  const row = rowBase(frame, "tool_use", ["tool-pending"]);
  const details = el("details", { cls: "tool", attrs: { "data-tool": id } });
  const mark = el("span", { cls: "mark pending", text: "…", attrs: { title: "waiting for the result" } });
  const summary = el("summary", { attrs: { title: `${visibleString(name)} · ${visibleString(id)}` } },
    tsSpan(frame),
    mark,
    " ",
    vspan("tool-name", name),
    " ",
    vspan("tool-arg", toolLabel(input)));
  const counts = diffCounts(name, input);
  if (counts) summary.appendChild(el("span", { cls: "diffstat" }, " ", el("span", { cls: "d-add", text: `+${counts.add}` }), " ", el("span", { cls: "d-del", text: `-${counts.del}` })));
  details.appendChild(summary);
  const body = el("div", { cls: "tool-body" });
  const diff = toolDiff(name, input);
  if (diff) body.appendChild(diff);
  const inputBox = diff ? el("details", { cls: "tool-input" }, el("summary", { text: "input" })) : el("div", { cls: "tool-input" }, el("div", { cls: "part-label", text: "input" }));
  const pre = el("pre", { cls: "json" });
  pre.appendChild(visible(prettyJSON(input), true));
  inputBox.appendChild(pre);
  body.appendChild(inputBox);
  details.appendChild(body);
  row.appendChild(details);
  // Drawn again (a replayed frame): keep it open if it was.
  const prev = tools.get(id);
  if (prev && prev.row.isConnected && prev.details.open) details.open = true;
  const entry = { seq: num(frame.seq), row, details, body, mark };
  tools.set(id, entry);
  const result = results.get(id);
  if (result) setToolResult(entry, result);
  return row;
}

function renderLoneResult(frame) {
  const ev = frame.event;
  const row = rowBase(frame, "tool_result", [ev.is_error ? "tool-error" : ""]);
  const details = el("details", { cls: "tool", attrs: { "data-tool-result": str(ev.tool_use_id) } });
  details.appendChild(el("summary", {},
    tsSpan(frame),
    el("span", { cls: `mark ${ev.is_error ? "bad" : "ok"}`, text: ev.is_error ? "✗" : "✓" }),
    " ",
    el("span", { cls: "tool-name", text: "result" }),
    " ",
    vspan("tool-arg", oneLine(ev.content))));
  const body = el("div", { cls: "tool-body" });
  body.appendChild(resultNode(ev));
  details.appendChild(body);
  row.appendChild(details);
  return row;
}

function renderTurnStarted(frame) {
  const ev = frame.event;
  const row = rowBase(frame, "turn_started", ["sep"]);
  const wake = Array.isArray(ev.wake_from) ? ev.wake_from.map(str).filter(Boolean) : [];
  row.append(tsSpan(frame), "── turn ", vspan("turn-id", ev.turn_id));
  if (wake.length) row.append(" · woken by ", vspan("wake", wake.join(", ")));
  if (ev.model) row.append(" · ", vspan("model", ev.model));
  if (ev.new_session) row.append(" · ", el("span", { cls: "new-session", text: "new session" }));
  row.append(" ──");
  return row;
}

function renderTurnEnded(frame) {
  const ev = frame.event;
  const result = str(ev.result) || "?";
  const row = rowBase(frame, "turn_ended", ["sep", `result-${resultClass(result)}`]);
  row.setAttribute("data-result", result);
  row.append(tsSpan(frame), "── turn ", vspan("turn-id", ev.turn_id), " ended · ", vspan("result", result), ` · ${durationMs(ev.duration_ms)}`);
  if (ev.detail) row.append(" · ", vspan("detail", ev.detail, true));
  row.append(" ──");
  return row;
}

function renderRaw(frame) {
  const ev = frame.event;
  const row = rowBase(frame, "raw", ["dimmed"]);
  const details = el("details", { cls: "raw" });
  details.appendChild(el("summary", {}, tsSpan(frame), "raw ", vspan("line-type", ev.line_type)));
  const pre = el("pre", { cls: "json" });
  pre.appendChild(visible(prettyJSON(ev.data), true));
  details.appendChild(pre);
  row.appendChild(details);
  return row;
}

function renderBadgeEvent(frame, text) {
  const row = rowBase(frame, frame.event.kind, ["dimmed"]);
  row.append(tsSpan(frame), vspan("", text, true));
  return row;
}

function renderRow(frame) {
  const ev = frame.event || {};
  switch (ev.kind) {
    case "turn_started":
      return renderTurnStarted(frame);
    case "turn_ended":
      return renderTurnEnded(frame);
    case "text": {
      const row = rowBase(frame, "text");
      row.append(tsSpan(frame), vspan("text", ev.text, true));
      return row;
    }
    case "tool_use":
      return renderToolUse(frame);
    case "tool_result":
      return renderLoneResult(frame);
    case "note": {
      const row = rowBase(frame, "note", ["note"]);
      row.append(tsSpan(frame), el("span", { cls: "note-mark", text: "! " }), vspan("note-text", ev.text, true));
      return row;
    }
    case "raw":
      return renderRaw(frame);
    case "model_changed":
      return renderBadgeEvent(frame, `model → ${str(ev.model)}`);
    default: {
      const row = rowBase(frame, "unknown", ["dimmed"]);
      row.append(tsSpan(frame), vspan("", `${str(ev.kind)} ${prettyJSON(ev)}`));
      return row;
    }
  }
}

// Kinds that only move the badges; they make no log row.
const BADGE_ONLY = new Set([
  "status_changed", "token_usage_changed", "turn_state_changed", "stuck_changed", "login_output", "login_changed", "messages_received",
]);

const term = createTerminal({
  container: $("log-term"),
  render: renderRow,
  key: (frame) => String(num(frame.seq)),
  order: (frame) => num(frame.seq),
  empty: "no turn events yet",
  cap: 3000,
  loadOlder: async (oldest) => {
    const data = await getJSON(`/events/history?before=${encodeURIComponent(String(num(oldest.seq)))}&limit=200`);
    const items = logItems(Array.isArray(data.events) ? data.events : []);
    // A result shown on its own folds into its tool row, now loaded.
    for (const frame of items) {
      if (frame.event.kind !== "tool_use") continue;
      const id = str(frame.event.id);
      const lone = loneResults.get(id);
      if (lone !== undefined) {
        loneResults.delete(id);
        term.remove(String(lone));
      }
    }
    return { items, more: Boolean(data.more) };
  },
});

function validFrame(frame) {
  return frame && typeof frame === "object" && frame.event && typeof frame.event === "object" && Number.isFinite(Number(frame.seq));
}

/**
 * The log rows of a batch of frames, oldest first: results are kept aside for
 * their tool rows and only make a row of their own when the tool row is not
 * in the batch nor on the page.
 */
function logItems(frames) {
  const uses = new Set();
  for (const frame of frames) {
    if (validFrame(frame) && frame.event.kind === "tool_use") uses.add(str(frame.event.id));
  }
  const items = [];
  for (const frame of frames) {
    if (!validFrame(frame)) continue;
    const ev = frame.event;
    if (BADGE_ONLY.has(ev.kind)) continue;
    if (ev.kind === "tool_result") {
      const id = str(ev.tool_use_id);
      results.set(id, ev);
      const entry = tools.get(id);
      if (uses.has(id)) continue;
      if (entry && entry.row.isConnected) {
        setToolResult(entry, ev);
        continue;
      }
      loneResults.set(id, num(frame.seq));
    }
    items.push(frame);
  }
  return items;
}

function logFrame(frame) {
  const ev = frame.event;
  if (BADGE_ONLY.has(ev.kind)) return;
  if (ev.kind === "tool_result") {
    const id = str(ev.tool_use_id);
    results.set(id, ev);
    const entry = tools.get(id);
    if (entry && entry.row.isConnected) {
      const stick = term.atBottom();
      setToolResult(entry, ev);
      if (stick) term.scrollToBottom();
      return;
    }
    loneResults.set(id, num(frame.seq));
  }
  term.upsert(frame);
}

// ---------------------------------------------------------------- events

function applyBadges(frame) {
  const ev = frame.event;
  switch (ev.kind) {
    case "status_changed":
      state.status = str(ev.status);
      renderStatus();
      break;
    case "model_changed":
      state.model = str(ev.model);
      state.model_source = "override"; // set_model is the only source of this event
      renderModel();
      break;
    case "token_usage_changed":
      state.contextTokens = num(ev.context_tokens);
      state.usage = ev.usage && typeof ev.usage === "object" ? ev.usage : {};
      renderTokens();
      renderContext();
      break;
    case "turn_state_changed":
      state.turnState = str(ev.state);
      renderTurnState();
      break;
    case "stuck_changed":
      state.stuck = Array.isArray(ev.signals) ? ev.signals : [];
      renderStuck();
      break;
    case "login_output":
    case "login_changed":
      applyLogin(ev);
      break;
    case "messages_received":
      addInbox(ev.messages);
      break;
    case "turn_ended":
      state.turnsRun += 1;
      state.lastTurn = {
        result: str(ev.result),
        detail: str(ev.detail),
        duration_ms: num(ev.duration_ms),
        model: state.model,
        ended_at: num(frame.ts),
      };
      renderLastTurn();
      break;
    default:
      break;
  }
}

function applySnapshot(snap) {
  state.agent = str(snap.agent);
  state.role = str(snap.role);
  state.model = str(snap.model);
  state.models = Array.isArray(snap.models) ? snap.models.map(str) : [];
  state.model_source = str(snap.model_source || "");
  state.status = str(snap.status);
  state.turnState = str(snap.turn_state) || "idle";
  state.turnsRun = num(snap.turns_run);
  state.login = str(snap.login) || "unknown";
  state.stuck = Array.isArray(snap.stuck) ? snap.stuck : [];
  state.contextTokens = num(snap.context_tokens);
  state.contextWindow = num(snap.context_window);
  state.usage = snap.usage && typeof snap.usage === "object" ? snap.usage : {};
  state.lastTurn = snap.last_turn && typeof snap.last_turn === "object" ? snap.last_turn : null;
  state.version = str(snap.version);
  renderHeader();
  renderDashboardLink(snap.dashboard_url);
  sender.url = sendURL(snap.dashboard_url, str(snap.agent));
  sender.token = str(snap.send_token);
  renderSend();
  renderTurnState();
  renderModel();
  renderStatus();
  renderTokens();
  renderContext();
  renderLastTurn();
  renderLogin();
  renderStuck();
  const session = snap.login_session && typeof snap.login_session === "object" ? snap.login_session : {};
  loginPanel.state = str(session.state) || "idle";
  loginPanel.url = loginPanel.state === "running" ? session.url || null : null;
  loginPanel.output = str(session.output).slice(-LOGIN_OUTPUT_MAX);
  renderLoginPanel();
  inbox.length = 0;
  addInbox(snap.inbox);
}

function applyHistory(data) {
  tools.clear();
  results.clear();
  loneResults.clear();
  const frames = Array.isArray(data.events) ? data.events : [];
  term.reset(logItems(frames), Boolean(data.more));
}

function applyFrame(frame) {
  if (!validFrame(frame)) return;
  const seq = Number(frame.seq);
  if (seq <= live.lastSeq) return;
  live.lastSeq = seq;
  try {
    applyBadges(frame);
    logFrame(frame);
  } catch (err) {
    console.error("agent page: could not apply event", frame.event.kind, err);
  }
}

// ---------------------------------------------------------------- the live model

function setConn(text, cls, title) {
  setConnChip(text, cls, title);
  $("conn").setAttribute("data-conn", text === "live" ? "live" : text === "offline" ? "offline" : "reconnecting");
  const alive = $("badge-alive");
  alive.className = `chip ${cls}`;
  alive.textContent = text === "live" ? "alive" : text === "offline" ? "offline" : "…";
  alive.title = `connection to the harness: ${title}`;
}

const live = createLive({
  url: "/events/stream",
  peer: "the harness",
  conn: setConn,
  load: async (current) => {
    const snap = await getJSON("/api/state");
    if (!current()) return null;
    const history = await getJSON("/events/history?limit=200");
    if (!snap || typeof snap !== "object") throw new Error("not an object");
    return { snap, history };
  },
  apply: ({ snap, history }) => {
    applySnapshot(snap);
    applyHistory(history && typeof history === "object" ? history : {});
    live.lastSeq = Number.isFinite(Number(snap.seq)) ? Number(snap.seq) : -1;
  },
  frame: applyFrame,
});

// ---------------------------------------------------------------- wiring

const ACTIONS = {
  cancel: "/api/cancel",
  compact: "/api/compact",
  "new-session": "/api/new-session",
};

function wire() {
  for (const btn of document.querySelectorAll("#controls button[data-action]")) {
    const path = ACTIONS[btn.getAttribute("data-action")];
    if (!path) continue;
    btn.addEventListener("click", () => busy(btn, () => post(path, {})));
  }
  wireModel();
  wireLogin();
  wireSend();
}

wire();
live.start();

// For the console and for tests: the pure helpers.
export { visible, visibleString, toolLabel, diffLines };
