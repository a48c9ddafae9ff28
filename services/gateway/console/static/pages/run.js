// One run: its facts (polled while it runs), Stop and Run again, and its log — the tail first, live
// bytes after it, earlier parts on demand, so a 100 MB log costs what its last page costs.

import { ApiError, HEADER, get, post } from "../api.js";
import { AnsiRenderer } from "../ansi.js";
import { TERMINAL, bytes, duration, errorBox, h, runDuration, statusBadge, when } from "../dom.js";

export const title = "Run";
const TAIL_BYTES = 256 * 1024;
const EARLIER_BYTES = 256 * 1024;
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
  main.append(heading, actions, problem, meta, log.element);

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

export class LogView {
  constructor(base) {
    this.base = base;
    this.stream = "";
    this.started = false;
    this.paused = false;
    this.held = [];
    this.first = 0; // the first loaded byte (of `stream`, or of both)
    this.controller = null;

    this.pre = h("pre", { class: "log", "data-testid": "log", tabindex: 0, "aria-label": "Output" });
    this.followBox = h("input", { type: "checkbox", id: "follow", checked: true });
    this.pauseButton = h("button", { type: "button", "aria-pressed": "false", onclick: () => this.togglePause() }, "Pause");
    this.earlier = h("button", { type: "button", onclick: () => this.loadEarlier(), hidden: true }, "Load earlier");
    this.note = h("span", { class: "muted", "aria-live": "polite" });
    this.download = h("a", { class: "button", href: `${base}/output`, download: "" }, "Download");
    const select = h("select", { id: "log-stream", onchange: (e) => this.switchStream(e.target.value) },
      h("option", { value: "" }, "stdout + stderr"), h("option", { value: "stdout" }, "stdout only"), h("option", { value: "stderr" }, "stderr only"));
    this.element = h("section", { "aria-label": "Log" },
      h("h2", {}, "Log"),
      h("div", { class: "toolbar" },
        h("label", { for: "log-stream", class: "inline" }, "Stream"), select,
        h("span", {}, this.followBox, h("label", { for: "follow", class: "inline plain" }, " follow")),
        this.pauseButton,
        h("button", { type: "button", onclick: () => { this.followBox.checked = false; this.pre.scrollTop = 0; } }, "Jump to start"),
        h("button", { type: "button", onclick: () => { this.pre.scrollTop = this.pre.scrollHeight; } }, "Jump to end"),
        this.earlier, this.download, this.note),
      this.pre);
  }

  /** Load the tail and, while the run goes on, its live bytes (one request: `tail` + `follow`). */
  async open(live) {
    this.started = true;
    this.controller = new AbortController();
    const renderer = new AnsiRenderer(this.pre);
    this.renderer = renderer;
    const decoder = new TextDecoder();
    const streamParam = this.stream ? `&stream=${this.stream}` : "";
    // follow on an ended run just sends what is stored.
    const url = `${this.base}/output?tail=${TAIL_BYTES}${streamParam}&follow=true`;
    this.pre.classList.toggle("stderr", this.stream === "stderr");
    this.download.href = `${this.base}/output${this.stream ? `?stream=${this.stream}` : ""}`;
    this.note.textContent = live ? "live" : "";
    try {
      const response = await fetch(url, { headers: HEADER, signal: this.controller.signal });
      if (!response.ok) throw new ApiError(response.status, (await response.json().catch(() => ({}))).detail ?? response.statusText);
      this.first = Number(response.headers.get("X-Output-Offset") || 0);
      this.earlier.hidden = this.first === 0;
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.show(decoder.decode(value, { stream: true }), renderer);
      }
      this.show(decoder.decode(), renderer);
      this.note.textContent = "";
    } catch (err) {
      if (err.name !== "AbortError") this.note.textContent = `log: ${err.message}`;
    }
  }

  show(text, renderer) {
    if (!text || renderer !== this.renderer) return;
    if (this.paused) { this.held.push(text); return; }
    renderer.write(text);
    if (this.followBox.checked) this.pre.scrollTop = this.pre.scrollHeight;
  }

  togglePause() {
    this.paused = !this.paused;
    this.pauseButton.textContent = this.paused ? "Resume" : "Pause";
    this.pauseButton.setAttribute("aria-pressed", String(this.paused));
    if (!this.paused) { const held = this.held.join(""); this.held = []; this.show(held, this.renderer); }
  }

  async loadEarlier() {
    const from = Math.max(0, this.first - EARLIER_BYTES);
    const streamParam = this.stream ? `&stream=${this.stream}` : "";
    this.earlier.disabled = true;
    try {
      const response = await fetch(`${this.base}/output?offset=${from}&limit=${this.first - from}${streamParam}`, { headers: HEADER });
      if (!response.ok) throw new ApiError(response.status, response.statusText);
      const text = new TextDecoder().decode(await response.arrayBuffer());
      const fragment = document.createDocumentFragment();
      new AnsiRenderer(null).writeTo(fragment, text);
      const height = this.pre.scrollHeight, top = this.pre.scrollTop;
      this.pre.prepend(fragment);
      this.pre.scrollTop = top + (this.pre.scrollHeight - height); // keep what the reader was looking at
      this.first = from;
      this.earlier.hidden = from === 0;
    } catch (err) {
      this.note.textContent = `log: ${err.message}`;
    }
    this.earlier.disabled = false;
  }

  switchStream(stream) {
    this.close();
    this.stream = stream;
    this.pre.replaceChildren();
    this.held = [];
    this.open(true);
  }

  close() {
    if (this.controller) this.controller.abort();
  }
}
