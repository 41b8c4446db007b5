// A scrolling log pane with sticky bottom, in-place updates, history backfill
// and a row cap. Shared by the dashboard and the per-agent page.
//
// Everything is built with DOM calls and textContent: no HTML strings.

const SAFE_URL = /^(https?:\/\/|\/(?!\/)|#|\?)/i;

/**
 * Build an element. `text` goes through textContent; `attrs` are set with
 * setAttribute except `style` and `on*` (refused); `href`/`src` must be
 * http(s), a same-origin path, a query or a fragment. Children may be nodes
 * or strings (added as text nodes); null, undefined and false are skipped.
 */
export function el(tag, opts, ...children) {
  const node = document.createElement(tag);
  const { cls, text, attrs, on } = opts || {};
  if (cls) {
    const names = Array.isArray(cls) ? cls : String(cls).split(/\s+/);
    for (const name of names) if (name) node.classList.add(name);
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      const lower = name.toLowerCase();
      if (lower === "style" || lower.startsWith("on") || lower === "srcdoc") {
        throw new Error(`el: refusing attribute ${name}`);
      }
      const str = value === true ? "" : String(value);
      if ((lower === "href" || lower === "src" || lower === "action" || lower === "formaction") && !SAFE_URL.test(str)) {
        continue;
      }
      node.setAttribute(name, str);
    }
  }
  if (on) {
    for (const [type, handler] of Object.entries(on)) {
      if (typeof handler === "function") node.addEventListener(type, handler);
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
}

const NEAR_BOTTOM_PX = 6;
const NEAR_TOP_PX = 48;
const DEFAULT_CAP = 2000;

/**
 * createTerminal({container, render, key, order, loadOlder?, cap?, empty?})
 *
 * Returns {upsert, upsertMany, reset, remove, get, items, size, clear,
 *          scrollToBottom, atBottom, setMore, pane, destroy}.
 */
export function createTerminal(opts) {
  const { container, render, key, order, loadOlder } = opts;
  const cap = opts.cap || DEFAULT_CAP;
  if (!container || typeof render !== "function" || typeof key !== "function" || typeof order !== "function") {
    throw new Error("createTerminal: container, render, key and order are required");
  }

  const pane = el("div", { cls: "terminal", attrs: { role: "log", tabindex: "0", "aria-live": "off" } });
  const emptyLine = el("div", { cls: "terminal-empty", text: opts.empty || "nothing yet" });
  const loadingLine = el("div", { cls: "terminal-loading", text: "loading older…" });
  loadingLine.hidden = true;
  const pill = el("button", {
    cls: "tail-pill",
    attrs: { type: "button", title: "jump to the newest rows" },
    on: { click: () => scrollToBottom() },
  });
  pill.hidden = true;
  const wrap = el("div", { cls: "terminal-wrap" }, pane, pill);
  pane.appendChild(loadingLine);
  pane.appendChild(emptyLine);
  container.appendChild(wrap);

  // Rows sorted by order, ascending; byKey maps key -> entry.
  let rows = [];
  const byKey = new Map();
  let more = false;
  let loading = false;
  let unseen = 0;
  let destroyed = false;

  function isAtBottom() {
    return pane.scrollHeight - pane.scrollTop - pane.clientHeight <= NEAR_BOTTOM_PX;
  }

  function scrollToBottom() {
    pane.scrollTop = pane.scrollHeight;
    setUnseen(0);
  }

  function setUnseen(n) {
    unseen = n;
    pill.hidden = n <= 0;
    pill.textContent = n > 0 ? `↓ ${n} new` : "";
  }

  function updateEmpty() {
    emptyLine.hidden = rows.length > 0;
  }

  function makeNode(item) {
    const node = render(item);
    node.classList.add("row");
    return node;
  }

  // Index of the first row whose order is greater than `o` (stable: equal
  // orders keep arrival order).
  function insertionIndex(o) {
    let lo = 0;
    let hi = rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (rows[mid].order <= o) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function placeNode(entry, index) {
    const next = rows[index + 1];
    pane.insertBefore(entry.node, next ? next.node : emptyLine);
  }

  // Inserts or replaces without touching scroll; returns "new", "updated" or
  // "moved" and whether the row landed at the end.
  function put(item) {
    const k = String(key(item));
    const o = Number(order(item));
    const existing = byKey.get(k);
    if (existing) {
      const node = makeNode(item);
      existing.node.replaceWith(node);
      existing.node = node;
      existing.item = item;
      if (existing.order !== o) {
        const at = rows.indexOf(existing);
        rows.splice(at, 1);
        existing.order = o;
        const index = insertionIndex(o);
        rows.splice(index, 0, existing);
        placeNode(existing, index);
        return { how: "moved", last: index === rows.length - 1 };
      }
      return { how: "updated", last: false };
    }
    const entry = { key: k, order: o, item, node: makeNode(item) };
    const index = insertionIndex(o);
    rows.splice(index, 0, entry);
    byKey.set(k, entry);
    placeNode(entry, index);
    return { how: "new", last: index === rows.length - 1 };
  }

  function dropOldest() {
    let dropped = 0;
    while (rows.length > cap) {
      const entry = rows.shift();
      byKey.delete(entry.key);
      entry.node.remove();
      dropped += 1;
    }
    if (dropped && loadOlder) more = true;
    return dropped;
  }

  // Apply a batch of items, keeping the view where the user left it.
  function apply(items) {
    if (destroyed) return;
    const stick = isAtBottom();
    const beforeHeight = pane.scrollHeight;
    const beforeTop = pane.scrollTop;
    // The first visible row, to keep it in place when rows change above it.
    const anchor = stick ? null : firstVisibleRow();
    const anchorOffset = anchor ? anchor.node.offsetTop - beforeTop : 0;
    let appended = 0;
    for (const item of items) {
      const { how, last } = put(item);
      if (how === "new" && last) appended += 1;
    }
    dropOldest();
    updateEmpty();
    if (stick) {
      pane.scrollTop = pane.scrollHeight;
      setUnseen(0);
    } else {
      if (anchor && anchor.node.isConnected) {
        pane.scrollTop = anchor.node.offsetTop - anchorOffset;
      } else if (pane.scrollHeight !== beforeHeight) {
        pane.scrollTop = beforeTop;
      }
      if (appended) setUnseen(unseen + appended);
    }
  }

  function firstVisibleRow() {
    const top = pane.scrollTop;
    let lo = 0;
    let hi = rows.length - 1;
    let found = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const node = rows[mid].node;
      if (node.offsetTop + node.offsetHeight > top) {
        found = rows[mid];
        hi = mid - 1;
      } else {
        lo = mid + 1;
      }
    }
    return found;
  }

  function upsert(item) {
    apply([item]);
  }

  function upsertMany(items) {
    apply(items);
  }

  function clearRows() {
    for (const entry of rows) entry.node.remove();
    rows = [];
    byKey.clear();
  }

  function reset(items, hasMore) {
    if (destroyed) return;
    clearRows();
    more = Boolean(hasMore);
    for (const item of items || []) put(item);
    dropOldest();
    updateEmpty();
    pane.scrollTop = pane.scrollHeight;
    setUnseen(0);
  }

  function remove(k) {
    const entry = byKey.get(String(k));
    if (!entry) return;
    const stick = isAtBottom();
    byKey.delete(entry.key);
    rows.splice(rows.indexOf(entry), 1);
    entry.node.remove();
    updateEmpty();
    if (stick) pane.scrollTop = pane.scrollHeight;
  }

  async function backfill() {
    if (!loadOlder || !more || loading || destroyed || rows.length === 0) return;
    if (rows.length >= cap) return;
    loading = true;
    loadingLine.hidden = false;
    const oldest = rows[0].item;
    let result = null;
    try {
      result = await loadOlder(oldest);
    } catch (err) {
      result = null;
    }
    loading = false;
    loadingLine.hidden = true;
    if (destroyed) return;
    if (!result) return; // failed: try again on the next scroll to the top
    let items = Array.isArray(result.items) ? result.items : [];
    const room = cap - rows.length;
    if (items.length > room) items = items.slice(items.length - Math.max(room, 0));
    const beforeHeight = pane.scrollHeight;
    const beforeTop = pane.scrollTop;
    for (const item of items) put(item);
    updateEmpty();
    pane.scrollTop = beforeTop + (pane.scrollHeight - beforeHeight);
    more = Boolean(result.more) && items.length > 0;
  }

  pane.addEventListener("scroll", () => {
    if (unseen && isAtBottom()) setUnseen(0);
    if (pane.scrollTop <= NEAR_TOP_PX) backfill();
  }, { passive: true });
  // A pane too short to scroll never fires "scroll": wheel up at the top asks too.
  pane.addEventListener("wheel", (ev) => {
    if (ev.deltaY < 0 && pane.scrollTop <= NEAR_TOP_PX) backfill();
  }, { passive: true });

  updateEmpty();

  return {
    pane,
    wrap,
    upsert,
    upsertMany,
    reset,
    remove,
    get: (k) => {
      const entry = byKey.get(String(k));
      return entry ? entry.item : undefined;
    },
    items: () => rows.map((entry) => entry.item),
    size: () => rows.length,
    clear: () => reset([], false),
    scrollToBottom,
    atBottom: isAtBottom,
    setMore: (value) => { more = Boolean(value); },
    hasMore: () => more,
    destroy: () => {
      destroyed = true;
      clearRows();
      wrap.remove();
    },
  };
}
