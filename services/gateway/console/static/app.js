// The console's shell: who is signed in, the nav, and a hash router that mounts one page module.
// A page module exports `title` and `mount(main, ctx)`; mount may return a cleanup function, called
// when the page is left (stop polls and live streams there). Adding a page = a module + a line below.

import { ApiError, HEADER, del, get } from "./api.js";
import { errorBox, h } from "./dom.js";

// [hash pattern, module path, nav label or null]. The first match wins; groups become ctx.params.
const ROUTES = [
  [/^#\/runs\/([0-9a-f-]{36})$/, "./pages/run.js", null],
  [/^#\/runs$/, "./pages/runs.js", "Runs"],
  [/^#\/commands\/new$/, "./pages/command.js", null],
  [/^#\/commands\/([^/]+)$/, "./pages/command.js", null],
  [/^#\/commands$/, "./pages/commands.js", "Commands"],
  [/^#\/workflow-runs\/([0-9a-f-]{36})$/, "./pages/wfrun.js", null],
  [/^#\/workflows\/([^/]+)\/([^/]+)$/, "./pages/workflow.js", null],
  [/^#\/workflows$/, "./pages/workflows.js", "Workflows"],
  [/^#\/fanouts\/new$/, "./pages/fanout-new.js", null],
  [/^#\/fanouts\/([0-9a-f-]{36})$/, "./pages/fanout.js", null],
  [/^#\/fleet$/, "./pages/fleet.js", "Fleet"],
  [/^#\/schedules$/, "./pages/schedules.js", "Schedules"],
  // Admin pages: a fourth element is the least role the nav shows them to (the API decides anyway).
  [/^#\/files$/, "./pages/files.js", "Files", "read"],
  [/^#\/secrets$/, "./pages/secrets.js", "Secrets", "admin"],
  [/^#\/tokens$/, "./pages/tokens.js", "Tokens", "admin"],
];
const ADMIN_SECTION = "#/files";
const HOME = "#/runs";
// Pages without a nav entry of their own light up their section's.
const SECTIONS = [["#/workflow-runs/", "#/workflows"], ["#/fanouts/", "#/fleet"]];
const RANKS = { read: 1, run: 2, admin: 3 };

const main = document.getElementById("main");
let me = null;
let cleanup = null;

/** What the page may offer: `may("run")` is true for run and admin tokens. */
function may(role) {
  return me !== null && RANKS[me.role] >= RANKS[role];
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  nav.replaceChildren(
    ...ROUTES.filter(([, , label, role]) => label && (!role || may(role))).flatMap(([pattern, , label]) => {
      const href = pattern.source.replace(/^\^/, "").replace(/\$$/, "").replace(/\\\//g, "/");
      const section = SECTIONS.find(([prefix]) => current.startsWith(prefix));
      const active = current.startsWith(href) || (section !== undefined && section[1] === href);
      const link = h("a", { href, "aria-current": active ? "page" : null }, label);
      return href === ADMIN_SECTION ? [h("span", { class: "nav-group", "aria-hidden": "true" }, "Admin"), link] : link;
    }),
    h("a", { href: "/docs" }, "API"),
  );
}

function renderMe() {
  const box = document.getElementById("me");
  if (!me) { box.replaceChildren(); return; }
  const who = h("span", { "data-testid": "whoami" }, `${me.name} · ${me.role}`);
  box.replaceChildren(who, me.anonymous ? "" : h("button", { type: "button", onclick: signOut }, "Sign out"));
}

async function signOut() {
  await del("/console/session").catch(() => null);
  me = null;
  showSignIn();
}

function showSignIn(message) {
  if (cleanup) { cleanup(); cleanup = null; }
  renderMe();
  document.getElementById("nav").replaceChildren();
  const input = h("input", { id: "token", type: "password", name: "token", autocomplete: "current-password", required: true });
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "signin", "data-testid": "signin" },
    h("h1", {}, "Sign in to scriptbus"),
    h("p", { class: "muted" }, "Paste an API token (from SCRIPTBUS_API_TOKENS or `scriptbus token create`)."),
    h("label", { for: "token" }, "API token"),
    input,
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Sign in")),
    status,
  );
  if (message) status.append(errorBox(new Error(message)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    const response = await fetch("/console/session", {
      method: "POST",
      headers: { ...HEADER, "Content-Type": "application/json" },
      body: JSON.stringify({ token: input.value.trim() }),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      status.append(errorBox(new ApiError(response.status, data.detail ?? "sign-in failed")));
      return;
    }
    me = await response.json();
    route();
  });
  main.replaceChildren(form);
  input.focus();
}

async function route() {
  const hash = location.hash || HOME;
  const found = ROUTES.find(([pattern]) => pattern.test(hash));
  if (!found) { location.replace(HOME); return; }
  if (cleanup) { cleanup(); cleanup = null; }
  renderNav(hash);
  renderMe();
  const [pattern, path] = found;
  const params = hash.match(pattern).slice(1).map(decodeURIComponent);
  try {
    const page = await import(path);
    if ((location.hash || HOME) !== hash) return; // navigated away while loading
    document.title = `${page.title} · scriptbus`;
    main.replaceChildren();
    cleanup = (await page.mount(main, { params, may, me, navigate: (to) => { location.hash = to; } })) || null;
  } catch (err) {
    main.replaceChildren(errorBox(err));
  }
}

window.addEventListener("hashchange", () => { if (me) route(); });
window.addEventListener("scriptbus:signed-out", () => { if (me && !me.anonymous) { me = null; showSignIn("Your session ended: sign in again."); } });

async function start() {
  try {
    me = await get("/console/whoami");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) { showSignIn(); return; }
    main.replaceChildren(errorBox(err));
    return;
  }
  route();
}

start();
