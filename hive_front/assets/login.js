// The login page of both web pages: trades the link's one-time code for a
// session token kept in this origin's storage, then opens the page. A link
// that was used or has expired, opened by a browser that is logged in here
// already, just opens the page.

import { authHeaders, forget, keep, token } from "./auth.js";

const STATES = ["login-working", "login-needed", "login-expired", "login-failed"];

function show(id) {
  for (const s of STATES) document.getElementById(s).hidden = s !== id;
}

async function sessionValid() {
  if (!token()) return false;
  const resp = await fetch("/api/session", { cache: "no-store", headers: { ...authHeaders(), Accept: "application/json" } });
  if (resp.status === 401) forget();
  return resp.ok;
}

async function redeem(code) {
  const resp = await fetch("/api/session", {
    method: "POST",
    cache: "no-store",
    headers: { "Content-Type": "application/json", "X-Hive-Request": "1", Accept: "application/json" },
    body: JSON.stringify({ code }),
  });
  const data = await resp.json().catch(() => null);
  return resp.ok && data && typeof data.token === "string" ? data.token : "";
}

async function main() {
  const code = new URLSearchParams(location.search).get("code");
  show("login-working");
  try {
    const got = code ? await redeem(code) : "";
    if (code !== null) history.replaceState(null, "", "/login"); // the code is spent
    if (got) keep(got);
    if (got || (await sessionValid())) {
      location.replace("/");
      return;
    }
    show(code ? "login-expired" : "login-needed");
  } catch {
    show("login-failed"); // the server did not answer: a reload tries the link again
  }
}

main();
