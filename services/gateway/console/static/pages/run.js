// One run: its facts (polled while it runs), Stop and Run again, its artifacts once it has ended, and its
// log (log.js: the tail first, live bytes after it, other parts on demand, stderr marked).

import { ApiError, get, post } from "../api.js";
import { TERMINAL, bytes, duration, errorBox, h, runDuration, statusBadge, when } from "../dom.js";
import { LogView } from "../log.js";

export { LogView };
export const title = "Run";
const POLL_MS = 1500;

export async function mount(main, ctx) {
  const [id] = ctx.params;
  const base = `/api/v1/runs/${id}`;
  let run = null, timer = null, stopped = false;

  const heading = h("h1", {}, "Run ", h("span", { class: "mono" }, id.slice(0, 8)));
  const problem = h("div", { "aria-live": "polite" });
  const meta = h("dl", { class: "meta", "data-testid": "run-meta" });
  const actions = h("div", { class: "toolbar" });
  const log = new LogView(base);
  const artifacts = h("section", { "aria-label": "Artifacts", "data-testid": "artifacts", hidden: true });
  let artifactsLoaded = false;
  main.append(heading, actions, problem, meta, artifacts, log.element);

  async function refresh() {
    clearTimeout(timer);
    try {
      run = await get(base);
    } catch (err) {
      if (stopped) return;
      problem.replaceChildren(errorBox(err));
      if (!(err instanceof ApiError && err.status === 404)) timer = setTimeout(refresh, POLL_MS * 2);
      return;
    }
    if (stopped) return;
    render();
    if (!TERMINAL.has(run.status)) timer = setTimeout(refresh, POLL_MS);
  }

  function render() {
    const ended = TERMINAL.has(run.status);
    const outcome = run.signal !== null ? `signal ${run.signal}` : run.exit_code !== null ? `exit code ${run.exit_code}` : "";
    const facts = [
      ["Status", h("span", {}, statusBadge(run.status), run.reason ? h("span", { class: "muted" }, ` — ${run.reason}`) : "")],
      ["Outcome", outcome ? h("span", { "data-testid": "outcome" }, outcome) : ""],
      ["Script", h("code", { class: "mono" }, run.script.length > 400 ? run.script.slice(0, 400) + "…" : run.script)],
      ["Arguments", run.args.length ? run.args.map((a) => JSON.stringify(a)).join(" ") : ""],
      ["Command", run.command_id ? h("a", { href: `#/commands/${run.command_id}` }, run.command_id) : ""],
      ["Host", run.host || (run.target_host ? `${run.target_host} (asked)` : "")],
      ["Pool", run.pool],
      ["Pid", run.pid ?? ""],
      ["Requested by", run.requested_by],
      ["Created", when(run.created_at)],
      ["Started", when(run.started_at)],
      ["Finished", when(run.finished_at)],
      ["Duration", duration(runDuration(run))],
      ["Output", `${bytes(run.output_bytes)}${run.output_truncated ? ` (cut at the cap; ${bytes(run.dropped_bytes)} dropped)` : ""}`],
      ["Survivors", run.survivors.length ? run.survivors.join(", ") : ""],
      ["Workflow run", run.workflow_run_id ? `${run.workflow_run_id} · ${run.workflow_step} · attempt ${run.attempt}` : ""],
    ].filter(([, value]) => value !== "");
    meta.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    actions.replaceChildren(
      ctx.may("run") && !ended ? h("button", { type: "button", class: "danger", onclick: stop, disabled: run.status === "stopping" }, run.status === "stopping" ? "Stopping…" : "Stop") : "",
      ctx.may("run") ? h("button", { type: "button", onclick: again }, "Run again") : "",
    );
    if (!log.started) log.open(!ended);
    if (ended && !artifactsLoaded) { artifactsLoaded = true; showArtifacts(); }
  }

  /** What the run's `artifacts` patterns kept (listed once it has ended), each a download link. */
  async function showArtifacts() {
    let list;
    try { list = await get(`${base}/artifacts`); } catch (err) { artifacts.hidden = false; artifacts.replaceChildren(errorBox(err)); return; }
    if (stopped || !list.artifacts.length) return;
    artifacts.hidden = false;
    artifacts.replaceChildren(h("h2", {}, "Artifacts"), h("ul", { class: "artifacts" },
      ...list.artifacts.map((a) => h("li", {},
        h("a", { href: `${base}/artifacts/${a.path.split("/").map(encodeURIComponent).join("/")}`, download: a.path.split("/").pop() }, a.path),
        h("span", { class: "muted" }, ` ${bytes(a.size)} · sha256 ${a.sha256.slice(0, 12)}…`)))));
  }

  async function stop() {
    problem.replaceChildren();
    try { await post(`${base}/stop`); } catch (err) { problem.replaceChildren(errorBox(err)); }
    refresh();
  }

  async function again() {
    problem.replaceChildren();
    const body = { args: run.args, env: run.env, secrets: run.secrets, pool: run.pool, stop_grace_s: run.stop_grace_s };
    if (run.command_id) body.command_id = run.command_id; else body.script = run.script;
    if (run.description) body.description = run.description;
    if (run.timeout_s !== null) body.timeout_s = run.timeout_s;
    if (run.target_host) body.host = run.target_host;
    try {
      const next = await post("/api/v1/runs", body);
      ctx.navigate(`#/runs/${next.id}`);
    } catch (err) { problem.replaceChildren(errorBox(err)); }
  }

  refresh();
  return () => { stopped = true; clearTimeout(timer); log.close(); };
}
