// The usage panel: what each agent spent over the budget windows, against its limits, and
// its last 24 hours as a small bar chart. Filled from the snapshot, then kept live by
// `usage_changed` events (one agent's rows, the hive's total as agent `*`).

import { el } from "./front/terminal.js";
import { str, vspan } from "./front/ui.js";

const SVG = "http://www.w3.org/2000/svg";
const HOURS = 24;
const STATE_CHIP = { ok: "dim", warning: "warn", over: "bad" };

/** 1234567 → "1.2M", 5300 → "5.3k". */
export function tokens(n) {
  const v = Number(n) || 0;
  if (v >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v));
}

function dollars(n) {
  return `$${(Number(n) || 0).toFixed(2)}`;
}

/** One window's cell: spent, "/ limit" when there is one, coloured by its state. */
function windowCell(row, what) {
  if (!row) return el("span", { cls: "dim", text: "—" });
  const spent = what === "usd" ? dollars(row.cost_usd) : tokens(row.tokens);
  const limit = what === "usd" ? row.limit_usd : row.limit_tokens;
  const shown = limit === null || limit === undefined ? spent : `${spent} / ${what === "usd" ? dollars(limit) : tokens(limit)}`;
  const title = what === "usd"
    ? `${dollars(row.cost_usd)} over ${str(row.window)} (${row.turns} turns)`
    : `${Number(row.tokens).toLocaleString()} tokens over ${str(row.window)}: input ${row.input_tokens}, cache creation ${row.cache_creation_input_tokens}, output ${row.output_tokens}; cache reads ${row.cache_read_input_tokens} (not counted); ${row.turns} turns`;
  const state = what === "usd" && (limit === null || limit === undefined) ? "ok" : str(row.state);
  return el("span", { cls: ["chip", STATE_CHIP[state] || "dim"], text: shown, attrs: { title } });
}

/** The last 24 hours of one agent as bars (tokens per hour), oldest on the left. */
function chart(hours, now) {
  const start = Math.floor(now / 3600) * 3600 - (HOURS - 1) * 3600;
  const values = new Array(HOURS).fill(0);
  for (const h of hours) {
    const i = Math.round((Number(h.hour) - start) / 3600);
    if (i >= 0 && i < HOURS) values[i] += Number(h.tokens) || 0;
  }
  const top = Math.max(...values, 1);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${HOURS * 3} 20`);
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const total = values.reduce((a, b) => a + b, 0);
  svg.setAttribute("aria-label", `${tokens(total)} tokens in the last 24 hours`);
  values.forEach((v, i) => {
    if (!v) return;
    const height = Math.max(1, Math.round((v / top) * 20));
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("x", String(i * 3));
    bar.setAttribute("y", String(20 - height));
    bar.setAttribute("width", "2");
    bar.setAttribute("height", String(height));
    const tip = document.createElementNS(SVG, "title");
    tip.textContent = `${tokens(v)} tokens, ${HOURS - 1 - i} h ago`;
    bar.appendChild(tip);
    svg.appendChild(bar);
  });
  return svg;
}

/** No turn over 7 days and no limit in either window. */
function isQuiet(r) {
  const windows = Object.values(r || {});
  return windows.every((w) => Number(w.turns) === 0 && (w.limit_tokens === null || w.limit_tokens === undefined)
    && (w.limit_usd === null || w.limit_usd === undefined));
}

export function createUsage(list, setCount) {
  const rows = new Map(); // agent → { "5h": row, "7d": row }
  const hourly = new Map(); // agent → [UsageHour]

  function put(items) {
    for (const row of Array.isArray(items) ? items : []) {
      if (!row || typeof row.agent !== "string") continue;
      const mine = rows.get(row.agent) || {};
      mine[str(row.window)] = row;
      rows.set(row.agent, mine);
    }
  }

  function render() {
    const now = Date.now() / 1000;
    const agents = [...rows.keys()].filter((n) => n !== "*").sort();
    // Agents without a turn in 7 days and without limits fold into one line: at 40 agents
    // the panel shows who spends.
    const quiet = agents.filter((n) => isQuiet(rows.get(n)));
    const names = agents.filter((n) => !quiet.includes(n));
    if (rows.has("*") && names.length) names.push("*");
    const nodes = names.map((name) => {
      const r = rows.get(name);
      const node = el("div", { cls: ["usage-row", name === "*" ? "total" : ""], attrs: { "data-usage": name } });
      node.appendChild(vspan("name", name === "*" ? "hive" : name));
      node.appendChild(windowCell(r["5h"], "tokens"));
      node.appendChild(windowCell(r["7d"], "tokens"));
      node.appendChild(windowCell(r["7d"], "usd"));
      node.appendChild(name === "*" ? el("span") : chart(hourly.get(name) || [], now));
      return node;
    });
    const head = el("div", { cls: ["usage-row", "head", "dim"] },
      el("span", { text: "agent" }), el("span", { text: "5 h" }), el("span", { text: "7 d" }),
      el("span", { text: "7 d $" }), el("span", { text: "last 24 h" }));
    if (quiet.length && nodes.length) {
      nodes.push(el("div", {
        cls: ["usage-row", "quiet", "dim"],
        text: `${quiet.length} more without a turn in 7 days`,
        attrs: { title: quiet.join(", "), "data-usage-quiet": String(quiet.length) },
      }));
    }
    list.replaceChildren(...(nodes.length ? [head, ...nodes] : [el("p", { cls: "empty", text: "no turns counted yet" })]));
    setCount(names.filter((n) => n !== "*").length);
  }

  return {
    reset(report) {
      rows.clear();
      hourly.clear();
      put(report && report.usage);
      for (const h of (report && Array.isArray(report.hourly) ? report.hourly : [])) {
        if (!h || typeof h.agent !== "string") continue;
        if (!hourly.has(h.agent)) hourly.set(h.agent, []);
        hourly.get(h.agent).push(h);
      }
      render();
    },
    apply(ev) {
      if (!ev || typeof ev.agent !== "string") return;
      put(ev.usage);
      hourly.set(ev.agent, Array.isArray(ev.hourly) ? ev.hourly : []);
      render();
    },
  };
}
