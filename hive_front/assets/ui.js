// What the dashboard and the per-agent page share besides the terminal: safe
// text, time formatting, toasts, requests, busy buttons, the connection chip
// and the live event stream with its reconnect backoff.
//
// Every piece of server data is rendered as text (textContent / text nodes),
// with invisible and bidirectional characters made visible by `visible()`.

import { authHeaders, ticketed, toLogin, token } from "./auth.js";
import { el } from "./terminal.js";

export { ticketed } from "./auth.js";

export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- text safety

// C0/C1 controls (tab aside), format characters (bidi controls, zero-width
// characters, soft hyphen, BOM, tags...), line/paragraph separators, and a few
// blank-looking letters.
const INVISIBLE_G = /[\u0000-\u0008\u000A-\u001F\u007F-\u009F\u2028\u2029\u034F\u115F\u1160\u3164\uFFA0\p{Cf}\p{Cs}]/gu;
const INVISIBLE_NO_NL_G = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u2028\u2029\u034F\u115F\u1160\u3164\uFFA0\p{Cf}\p{Cs}]/gu;

function marker(ch) {
  const cp = ch.codePointAt(0);
  return `⟦U+${cp.toString(16).toUpperCase().padStart(4, "0")}⟧`;
}

export function str(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : String(value);
}

/**
 * Text as a DocumentFragment, each invisible or bidirectional character
 * replaced by a highlighted ⟦U+XXXX⟧ marker. `keepNewlines` leaves "\n" alone
 * (message bodies); everything else flags them too.
 */
export function visible(text, keepNewlines = false) {
  const s = str(text);
  const frag = document.createDocumentFragment();
  const re = keepNewlines ? INVISIBLE_NO_NL_G : INVISIBLE_G;
  re.lastIndex = 0;
  let last = 0;
  let m;
  while ((m = re.exec(s)) !== null) {
    if (m.index > last) frag.appendChild(document.createTextNode(s.slice(last, m.index)));
    const span = document.createElement("span");
    span.className = "invis";
    span.textContent = marker(m[0]);
    span.title = "invisible or bidirectional character";
    frag.appendChild(span);
    last = m.index + m[0].length;
  }
  if (last < s.length) frag.appendChild(document.createTextNode(s.slice(last)));
  return frag;
}

/** Plain-string form of visible(), for titles, option labels and values shown in inputs. */
export function visibleString(text, keepNewlines = false) {
  const re = keepNewlines ? INVISIBLE_NO_NL_G : INVISIBLE_G;
  return str(text).replace(re, marker);
}

/** How many invisible or bidirectional characters `text` holds. */
export function countInvisible(text, keepNewlines = false) {
  const re = keepNewlines ? INVISIBLE_NO_NL_G : INVISIBLE_G;
  const m = str(text).match(re);
  return m ? m.length : 0;
}

/** A span holding visible(text). */
export function vspan(cls, text, keepNewlines = false) {
  const span = el("span", { cls });
  span.appendChild(visible(text, keepNewlines));
  return span;
}

/** Show a version string in `node`, with a leading "v"; hidden when there is none. */
export function renderVersion(node, version) {
  node.textContent = /^v/i.test(version) ? visibleString(version) : `v${visibleString(version)}`;
  node.hidden = !version;
}

// ---------------------------------------------------------------- time

export const pad2 = (n) => String(n).padStart(2, "0");

export function clockTime(unix) {
  const n = Number(unix);
  if (!Number.isFinite(n) || n <= 0) return "--:--:--";
  const d = new Date(n * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

export function fullTime(unix) {
  const n = Number(unix);
  if (!Number.isFinite(n) || n <= 0) return "";
  return new Date(n * 1000).toLocaleString();
}

/** Whole seconds as "3d 4h", "2h 05m", "4m 09s" or "7s". */
export function duration(seconds) {
  let s = Math.max(0, Math.floor(Number(seconds) || 0));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${pad2(m)}m`;
  if (m) return `${m}m ${pad2(s)}s`;
  return `${s}s`;
}

/** Milliseconds as "350ms", "4.2s", "37s", "4m 09s" or "2h 05m"; "?" when not a duration. */
export function durationMs(ms) {
  const n = Number(ms);
  if (!Number.isFinite(n) || n < 0) return "?";
  if (n < 1000) return `${Math.round(n)}ms`;
  let s = n / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  s = Math.round(s);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h) return `${h}h ${pad2(m)}m`;
  return `${m}m ${pad2(sec)}s`;
}

// ---------------------------------------------------------------- toasts

const MAX_TOASTS = 6;

export function toast(text, kind = "") {
  const box = $("toasts");
  const node = el("div", { cls: ["toast", kind], attrs: { role: kind === "error" ? "alert" : "status" } });
  node.appendChild(visible(text, true));
  node.addEventListener("click", () => node.remove());
  box.appendChild(node);
  while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
  setTimeout(() => node.remove(), kind === "error" ? 10000 : 5000);
}

// ---------------------------------------------------------------- requests

/**
 * POST `body` as JSON with the page's session; the answer's detail (or "done")
 * is toasted unless `opts.quiet`, an error always is. Resolves to the answer,
 * or null on failure. `opts.token` sends that token instead (an agent page's
 * send goes to the dashboard with a send token); a refused session (401)
 * sends this page to its login page.
 */
export async function post(path, body = {}, opts = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { ...authHeaders(opts.token), "Content-Type": "application/json", "X-Hive-Request": "1", Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
  } catch (err) {
    toast(`request failed: ${err && err.message ? err.message : "network error"}`, "error");
    return null;
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (resp.ok && data && data.ok !== false) {
    if (!opts.quiet) toast(str(data.detail) || "done");
    return data;
  }
  if (resp.status === 401 && opts.token === undefined) {
    toLogin();
    return null;
  }
  const error = data && (data.error || data.detail);
  toast(str(error) || `${resp.status} ${resp.statusText || "error"}`.trim(), "error");
  return null;
}

/** GET JSON with the page's session; a failed answer throws an Error carrying `status`. */
export async function getJSON(path) {
  const resp = await fetch(path, { credentials: "omit", cache: "no-store", headers: { ...authHeaders(), Accept: "application/json" } });
  if (!resp.ok) {
    let msg = `${resp.status}`;
    try {
      const data = await resp.json();
      if (data && data.error) msg = `${resp.status}: ${data.error}`;
    } catch {
      /* not json */
    }
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return resp.json();
}

/** Run `fn` with `btn` busy (spinner, disabled); re-entrance is refused. */
export async function busy(btn, fn) {
  if (btn.classList.contains("busy")) return null;
  btn.classList.add("busy");
  btn.disabled = true;
  try {
    return await fn();
  } finally {
    btn.classList.remove("busy");
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------- the live stream

export const BACKOFF = [500, 1000, 2000, 4000, 8000, 10000];

export function backoffDelay(attempt) {
  return BACKOFF[Math.min(attempt, BACKOFF.length - 1)];
}

/** The #conn chip: its text, colour class and title. */
export function setConn(text, cls, title) {
  const node = $("conn");
  node.textContent = text;
  node.className = `chip ${cls}`;
  node.title = title;
}

/**
 * One live event stream with a snapshot, reconnecting with backoff.
 *
 * - `url`: the EventSource address (opened with a fresh one-use ticket);
 *   `peer` names the other end in messages.
 * - `load(current)`: fetches the snapshot (an Error with a `status` when it
 *   cannot; `current()` says whether this attempt still counts) and resolves
 *   to what `apply` takes.
 * - `apply(data)`: renders the snapshot; frames that came meanwhile go to
 *   `frame(frame)` after it, in order.
 * - `authWhy`: the message when the snapshot is refused (403), if any; a 401
 *   (the session is gone) sends the page to its login page.
 * - `conn(text, cls, title)`: shows the connection state.
 *
 * The returned object's `lastSeq` is the page's to keep; `start()` connects
 * and reconnects at once when the browser comes back online.
 */
export function createLive({ url, peer, load, apply, frame: onFrame, authWhy = "", conn = setConn }) {
  const live = {
    gen: 0,
    source: null,
    lastSeq: -1,
    attempt: 0,
    everLive: false,
    wasDown: false,
    timer: 0,
    start,
  };

  async function connect() {
    const gen = ++live.gen;
    clearTimeout(live.timer);
    if (live.source) live.source.close();
    live.source = null;
    let address;
    try {
      address = await ticketed(url);
    } catch (err) {
      if (err && err.status === 401) toLogin();
      else fail(gen, `no stream ticket: ${err && err.message ? err.message : "network error"}`);
      return;
    }
    if (gen !== live.gen) return;
    const buffer = [];
    let snapshotDone = false;
    let opened = false;

    const source = new EventSource(address);
    live.source = source;

    const goLive = () => {
      if (!snapshotDone || !opened || gen !== live.gen) return;
      conn("live", "ok", "event stream connected");
      if (live.attempt > 0 || (live.everLive && live.wasDown)) toast("reconnected");
      live.attempt = 0;
      live.wasDown = false;
      live.everLive = true;
    };

    source.addEventListener("open", () => {
      if (gen !== live.gen) return;
      opened = true;
      fetchSnapshot();
      goLive();
    });
    source.addEventListener("message", (ev) => {
      if (gen !== live.gen) return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!frame || typeof frame !== "object") return;
      if (frame.event && frame.event.kind === "resync") {
        fail(gen, `${peer} asked for a resync`);
        return;
      }
      if (!snapshotDone) buffer.push(frame);
      else onFrame(frame);
    });
    source.addEventListener("error", () => {
      if (gen !== live.gen) return;
      fail(gen, "event stream lost");
    });

    // The snapshot is asked for once the stream is subscribed (its `open`), so
    // no event can fall between the two; a slow `open` does not hold it back
    // for more than a moment.
    let fetching = false;
    const fetchSnapshot = async () => {
      if (fetching || gen !== live.gen) return;
      fetching = true;
      let data;
      try {
        data = await load(() => gen === live.gen);
      } catch (err) {
        if (gen !== live.gen) return;
        if (err && err.status === 401) {
          toLogin();
          return;
        }
        const refused = Boolean(err && err.status === 403);
        if (refused && authWhy) fail(gen, authWhy, true);
        else fail(gen, `state unavailable: ${err && err.message ? err.message : "network error"}`, refused);
        return;
      }
      if (gen !== live.gen) return;
      apply(data);
      snapshotDone = true;
      for (const frame of buffer) onFrame(frame);
      buffer.length = 0;
      if (source.readyState === EventSource.OPEN) opened = true;
      goLive();
    };
    live.timer = setTimeout(fetchSnapshot, 2000);
  }

  function fail(gen, why, authProblem = false) {
    if (gen !== live.gen) return;
    live.gen += 1; // ignore anything still in flight from this attempt
    if (live.source) {
      live.source.close();
      live.source = null;
    }
    live.wasDown = true;
    const delay = backoffDelay(live.attempt);
    live.attempt += 1;
    const offline = authProblem || navigator.onLine === false || live.attempt > BACKOFF.length;
    conn(offline ? "offline" : "reconnecting…", offline ? "bad" : "warn", `${why}; retrying in ${delay / 1000} s`);
    const waitGen = live.gen;
    clearTimeout(live.timer);
    live.timer = setTimeout(() => {
      if (waitGen === live.gen) connect();
    }, delay);
  }

  function start() {
    if (!token()) {
      toLogin();
      return;
    }
    window.addEventListener("online", () => {
      if (!live.source) {
        live.attempt = 0;
        connect();
      }
    });
    connect();
  }

  return live;
}
