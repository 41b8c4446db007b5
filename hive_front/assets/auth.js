// The page's session: a token kept in this origin's own storage (an origin
// includes its port, so no other port of this host ever sees it) and sent as
// `Authorization: Bearer`. Event streams, which send no headers, open with a
// one-use ticket fetched with the token just before.

const KEY = "hive.session";

/** The stored session token, or "" when this browser is not logged in here. */
export function token() {
  try {
    return localStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

export function keep(value) {
  localStorage.setItem(KEY, value);
}

export function forget() {
  try {
    localStorage.removeItem(KEY);
  } catch {
    /* storage unavailable: nothing kept */
  }
}

/** The Authorization header for `value` (the stored token by default). */
export function authHeaders(value = token()) {
  return value ? { Authorization: `Bearer ${value}` } : {};
}

/** Leave for the login page, forgetting a token the server refused. */
export function toLogin() {
  forget();
  location.replace("/login");
}

/**
 * `path` with a fresh one-use stream ticket; throws an Error carrying
 * `status` when the server refuses (401: the session is gone).
 */
export async function ticketed(path) {
  const resp = await fetch("/api/ticket", {
    method: "POST",
    cache: "no-store",
    headers: { ...authHeaders(), "Content-Type": "application/json", "X-Hive-Request": "1", Accept: "application/json" },
    body: "{}",
  });
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok || !data || typeof data.ticket !== "string") {
    const err = new Error(`${resp.status}: ${(data && data.error) || "no stream ticket"}`);
    err.status = resp.status;
    throw err;
  }
  return `${path}${path.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(data.ticket)}`;
}
