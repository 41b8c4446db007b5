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
const NEAR_END_PX = 48;
const DEFAULT_CAP = 2000;

/**
 * createTerminal({container, render, key, order, loadOlder?, loadNewer?, loadLatest?, revise?,
 *                 cap?, empty?})
 *
 * At most `cap` rows are kept. Without `loadNewer`, new rows push the oldest out and
 * `loadOlder` fills in up to the cap. With `loadNewer` (and `loadLatest`) the rows are a
 * window that slides: scrolled to the top it loads older rows and lets the newest go,
 * scrolled to its bottom it loads newer ones (`loadNewer(newest)`) and lets the oldest go;
 * while newer rows than the window's exist, live rows past its end are not added but
 * counted on the pill, whose click loads the newest page (`loadLatest()`) again. A loader
 * answers `{items, more}` (`more`: there are further rows that way). Rows that arrive late
 * (loaded, or held while newer rows loaded) pass through `revise(item)` first, when given:
 * what happened to them meanwhile.
 *
 * Returns {upsert, upsertMany, reset, remove, get, items, size, clear,
 *          scrollToBottom, atBottom, setMore, hasMore, hasNewer, pane, destroy}.
 */
export function createTerminal(opts) {
  const { container, render, key, order, loadOlder, loadNewer, loadLatest } = opts;
  const revise = typeof opts.revise === "function" ? opts.revise : (item) => item;
  const cap = opts.cap || DEFAULT_CAP;
  const windowed = typeof loadNewer === "function";
  if (!container || typeof render !== "function" || typeof key !== "function" || typeof order !== "function") {
    throw new Error("createTerminal: container, render, key and order are required");
  }

  const pane = el("div", { cls: "terminal", attrs: { role: "log", tabindex: "0", "aria-live": "off" } });
  const emptyLine = el("div", { cls: "terminal-empty", text: opts.empty || "nothing yet" });
  const loadingLine = el("div", { cls: "terminal-loading", text: "loading older…" });
  loadingLine.hidden = true;
  const loadingNewerLine = el("div", { cls: "terminal-loading-newer", text: "loading newer…" });
  loadingNewerLine.hidden = true;
  const pill = el("button", {
    cls: "tail-pill",
    attrs: { type: "button", title: "jump to the newest rows" },
    on: { click: () => (newer ? jumpToLatest() : scrollToBottom()) },
  });
  pill.hidden = true;
  const wrap = el("div", { cls: "terminal-wrap" }, pane, pill);
  pane.appendChild(loadingLine);
  pane.appendChild(emptyLine);
  pane.appendChild(loadingNewerLine);
  container.appendChild(wrap);

  // Rows sorted by order, ascending; byKey maps key -> entry.
  let rows = [];
  const byKey = new Map();
  let more = false; // older rows exist than the first shown
  let newer = false; // newer rows exist than the last shown (a window away from the end)
  let loading = false;
  let forwarding = null; // while newer rows load: the live rows past the end that came meanwhile
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
    pill.hidden = n <= 0 && !newer;
    pill.textContent = n > 0 ? `↓ ${n} new` : newer ? "↓ newest" : "";
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

  function dropEntry(entry) {
    byKey.delete(entry.key);
    entry.node.remove();
  }

  function dropOldest() {
    let dropped = 0;
    while (rows.length > cap) {
      dropEntry(rows.shift());
      dropped += 1;
    }
    if (dropped && loadOlder) more = true;
    return dropped;
  }

  function dropNewest() {
    let dropped = 0;
    while (rows.length > cap) {
      dropEntry(rows.pop());
      dropped += 1;
    }
    if (dropped) newer = true;
    return dropped;
  }

  // A live row past the window's end, where it is not shown: counted, and kept
  // aside while newer rows load (they may end the window's distance to the end).
  function pastTheEnd(item) {
    if (byKey.has(String(key(item)))) return false;
    if (rows.length && Number(order(item)) <= rows[rows.length - 1].order) return false;
    if (forwarding) forwarding.push(item);
    return true;
  }

  // Runs `change` keeping the first visible row where it is on screen.
  function keepingView(change) {
    const anchor = firstVisibleRow();
    const offset = anchor ? anchor.node.offsetTop - pane.scrollTop : 0;
    const beforeTop = pane.scrollTop;
    const result = change();
    if (anchor && anchor.node.isConnected) pane.scrollTop = anchor.node.offsetTop - offset;
    else pane.scrollTop = beforeTop;
    return result;
  }

  // Apply a batch of items, keeping the view where the user left it.
  function apply(items) {
    if (destroyed) return;
    const stick = isAtBottom() && !newer;
    const beforeHeight = pane.scrollHeight;
    const beforeTop = pane.scrollTop;
    // The first visible row, to keep it in place when rows change above it.
    const anchor = stick ? null : firstVisibleRow();
    const anchorOffset = anchor ? anchor.node.offsetTop - beforeTop : 0;
    let appended = 0;
    let skipped = 0;
    for (const item of items) {
      if (windowed && (newer || (!stick && rows.length >= cap)) && pastTheEnd(item)) {
        // Full, and read above its end: the window stops following the end.
        newer = true;
        skipped += 1;
        continue;
      }
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
      setUnseen(unseen + appended + skipped);
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
    newer = false;
    forwarding = null;
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
    if (rows.length >= cap && !windowed) return;
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
    let items = (Array.isArray(result.items) ? result.items : []).map(revise);
    if (windowed) {
      keepingView(() => {
        for (const item of items) put(item);
        dropNewest();
      });
      setUnseen(unseen);
    } else {
      const room = cap - rows.length;
      if (items.length > room) items = items.slice(items.length - Math.max(room, 0));
      const beforeHeight = pane.scrollHeight;
      const beforeTop = pane.scrollTop;
      for (const item of items) put(item);
      pane.scrollTop = beforeTop + (pane.scrollHeight - beforeHeight);
    }
    updateEmpty();
    more = Boolean(result.more) && items.length > 0;
  }

  async function forward() {
    if (!windowed || !newer || loading || destroyed || rows.length === 0) return;
    loading = true;
    loadingNewerLine.hidden = false;
    forwarding = [];
    const newest = rows[rows.length - 1].item;
    let result = null;
    try {
      result = await loadNewer(newest);
    } catch (err) {
      result = null;
    }
    loading = false;
    loadingNewerLine.hidden = true;
    const meanwhile = forwarding || [];
    forwarding = null;
    if (destroyed || !result) return;
    const items = (Array.isArray(result.items) ? result.items : []).map(revise);
    keepingView(() => {
      for (const item of items) put(item);
      newer = Boolean(result.more) && items.length > 0;
      if (!newer) for (const item of meanwhile) put(revise(item));
      dropOldest();
    });
    updateEmpty();
    setUnseen(newer ? Math.max(unseen - items.length, 0) : 0);
  }

  async function jumpToLatest() {
    if (!windowed || typeof loadLatest !== "function" || loading || destroyed) {
      scrollToBottom();
      return;
    }
    loading = true;
    loadingNewerLine.hidden = false;
    forwarding = [];
    let result = null;
    try {
      result = await loadLatest();
    } catch (err) {
      result = null;
    }
    loading = false;
    loadingNewerLine.hidden = true;
    const meanwhile = forwarding || [];
    forwarding = null;
    if (destroyed || !result) return;
    reset((Array.isArray(result.items) ? result.items : []).map(revise), result.more);
    apply(meanwhile.map(revise));
    scrollToBottom();
  }

  pane.addEventListener("scroll", () => {
    if (unseen && !newer && isAtBottom()) setUnseen(0);
    if (pane.scrollTop <= NEAR_TOP_PX) backfill();
    if (newer && pane.scrollHeight - pane.scrollTop - pane.clientHeight <= NEAR_END_PX) forward();
  }, { passive: true });
  // A pane too short to scroll never fires "scroll": the wheel at either end asks too.
  pane.addEventListener("wheel", (ev) => {
    if (ev.deltaY < 0 && pane.scrollTop <= NEAR_TOP_PX) backfill();
    if (ev.deltaY > 0 && newer && pane.scrollHeight - pane.scrollTop - pane.clientHeight <= NEAR_END_PX) forward();
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
    hasNewer: () => newer,
    destroy: () => {
      destroyed = true;
      clearRows();
      wrap.remove();
    },
  };
}
