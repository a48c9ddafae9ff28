// Runs: a live list (polled) with the API's filters, cursor paging that stays put, and a form to run a script
// with everything the API takes.

import { get, post, query } from "../api.js";
import { STATUSES, duration, errorBox, firstLine, h, parseArgs, parseEnv, runDuration, statusBadge, when } from "../dom.js";

export const title = "Runs";
const POLL_MS = 1500;
const PAGE = 50;

export async function mount(main, ctx) {
  const filters = { status: "", command_id: "", host: "", pool: "", after: "", before: "" };
  // cursors[i] opens page i; page 0 (no cursor) shows the newest runs and takes in new ones live.
  const cursors = [null];
  let page = 0, nextCursor = null, timer = null, stopped = false;

  const input = (name, attrs = {}) => h("input", { id: `f-${name}`, name, ...attrs, oninput: () => changed() });
  const statusSelect = h("select", { id: "f-status", name: "status", onchange: () => changed() },
    h("option", { value: "" }, "any"), ...STATUSES.map((s) => h("option", { value: s }, s)));
  const fields = {
    status: statusSelect,
    command_id: input("command_id", { placeholder: "id or name", size: 14 }),
    host: input("host", { size: 12 }),
    pool: input("pool", { size: 10 }),
    after: input("after", { type: "datetime-local" }),
    before: input("before", { type: "datetime-local" }),
  };
  const labels = { status: "Status", command_id: "Command", host: "Host", pool: "Pool", after: "Created after", before: "Created before" };
  const tbody = h("tbody");
  const summary = h("span", { class: "muted", "aria-live": "polite" });
  const newer = h("button", { type: "button", onclick: () => go(page - 1) }, "← Newer");
  const older = h("button", { type: "button", onclick: () => go(page + 1) }, "Older →");
  const problem = h("div");

  main.append(
    h("h1", {}, "Runs"),
    ctx.may("run") ? quickRun(ctx) : "",
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      ...Object.entries(fields).map(([name, el]) => h("div", {}, h("label", { for: el.id }, labels[name]), el))),
    problem,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "runs" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Status"), h("th", {}, "Command"), h("th", { class: "hide-narrow" }, "Host"),
        h("th", {}, "Duration"), h("th", { class: "hide-narrow" }, "By"), h("th", {}, "Created"))),
      tbody)),
    h("div", { class: "pager" }, newer, older, summary),
  );

  function changed() {
    for (const [name, el] of Object.entries(fields)) filters[name] = el.value.trim();
    cursors.length = 1; page = 0;
    refresh();
  }

  function go(to) {
    if (to < 0 || (to > page && !nextCursor)) return;
    if (to > page) cursors[to] = nextCursor;
    page = to;
    refresh();
  }

  function params() {
    const p = { ...filters, limit: PAGE, cursor: cursors[page] };
    // datetime-local has no zone: send the browser's local time as an instant.
    for (const key of ["after", "before"]) if (p[key]) p[key] = new Date(p[key]).toISOString();
    return p;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const list = await get(`/api/v1/runs${query(params())}`);
      if (stopped) return;
      problem.replaceChildren();
      nextCursor = list.next_cursor;
      tbody.replaceChildren(...list.items.map(row));
      if (!list.items.length) tbody.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No runs match.")));
      summary.textContent = `${list.total} run${list.total === 1 ? "" : "s"} · page ${page + 1}`;
      newer.disabled = page === 0;
      older.disabled = !nextCursor;
    } catch (err) {
      if (stopped) return;
      problem.replaceChildren(errorBox(err));
    }
    if (!stopped) timer = setTimeout(refresh, document.hidden ? POLL_MS * 4 : POLL_MS);
  }

  function row(run) {
    const what = run.description || firstLine(run.script) + (run.args.length ? ` ${run.args.join(" ")}` : "");
    return h("tr", { "data-run": run.id },
      h("td", {}, statusBadge(run.status)),
      h("td", { class: "script mono" }, h("a", { href: `#/runs/${run.id}`, title: run.script }, what || "(empty script)")),
      h("td", { class: "hide-narrow" }, run.host || run.target_host || ""),
      h("td", {}, duration(runDuration(run))),
      h("td", { class: "hide-narrow" }, run.requested_by),
      h("td", {}, when(run.created_at)));
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); };
}

/** Everything POST /api/v1/runs takes, as a form; the API's 4xx detail shows under it. */
function quickRun(ctx) {
  const field = (id, label, control, hint) => h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("span", { class: "muted hint" }, hint) : "");
  const script = h("textarea", { id: "quick-script", class: "code short", rows: 3, placeholder: "echo hello" });
  const args = h("textarea", { id: "quick-args", class: "code short", rows: 2, placeholder: "one argument a line" });
  const env = h("textarea", { id: "quick-env", class: "code short", rows: 2, placeholder: "NAME=value, one a line" });
  const pool = h("input", { id: "quick-pool", value: "default", size: 12 });
  const host = h("input", { id: "quick-host", size: 14, placeholder: "any host of the pool" });
  const timeout = h("input", { id: "quick-timeout", type: "number", min: "0", step: "any", size: 8, placeholder: "none" });
  const artifacts = h("textarea", { id: "quick-artifacts", class: "code short", rows: 2, placeholder: "*.log, one pattern a line" });
  const secrets = h("fieldset", { class: "choices", "data-testid": "quick-secrets" }, h("legend", {}, "Secrets"));
  const files = h("fieldset", { class: "choices", "data-testid": "quick-files" }, h("legend", {}, "Files"));
  const status = h("div", { "aria-live": "polite", "data-testid": "quick-run-problem" });
  const form = h("form", { "data-testid": "quick-run" },
    field("quick-script", "Run a script", script),
    h("div", { class: "form-grid" },
      field("quick-args", "Arguments", args),
      field("quick-env", "Environment", env),
      field("quick-artifacts", "Artifacts", artifacts, "glob patterns of files to keep"),
      field("quick-pool", "Pool", pool),
      field("quick-host", "Host", host),
      field("quick-timeout", "Timeout (s)", timeout)),
    h("div", { class: "row" }, secrets, files),
    h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Run")),
    status);

  // Names to choose from: the stored files and the secrets (a 503 when secrets are off: none to offer).
  async function choices(box, path, pick, name) {
    let names = [];
    try { names = pick(await get(path)); } catch { names = []; }
    box.replaceChildren(box.firstChild, ...(names.length ? names.map((n, i) => h("span", { class: "choice" },
      h("input", { type: "checkbox", id: `quick-${name}-${i}`, value: n }),
      h("label", { for: `quick-${name}-${i}`, class: "inline plain" }, ` ${n}`))) : [h("span", { class: "muted" }, "none stored")]));
  }
  const checked = (box) => [...box.querySelectorAll("input:checked")].map((el) => el.value);
  const lines = (text) => text.split("\n").map((l) => l.trim()).filter((l) => l);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.replaceChildren();
    try {
      const body = { script: script.value, args: parseArgs(args.value), env: parseEnv(env.value), pool: pool.value.trim() || "default" };
      if (host.value.trim()) body.host = host.value.trim();
      if (timeout.value !== "") body.timeout_s = Number(timeout.value);
      const chosenSecrets = checked(secrets), chosenFiles = checked(files), patterns = lines(artifacts.value);
      if (chosenSecrets.length) body.secrets = chosenSecrets;
      if (chosenFiles.length) body.files = chosenFiles;
      if (patterns.length) body.artifacts = patterns;
      const run = await post("/api/v1/runs", body);
      ctx.navigate(`#/runs/${run.id}`);
    } catch (err) {
      status.append(errorBox(err));
    }
  });
  const details = h("details", {}, h("summary", {}, "Run a script…"), form);
  details.addEventListener("toggle", () => {
    if (!details.open) return;
    choices(files, "/api/v1/files", (r) => r.files.map((f) => f.name), "file");
    choices(secrets, "/api/v1/secrets", (r) => r.items.map((x) => x.name), "secret");
  });
  return details;
}
