// A run's log: stdout and stderr told apart (stderr pieces in marked spans), ANSI colours rendered, the tail
// first and live bytes after it, the head on "Jump to start", and between them a gap that loads more on
// demand. A long live log keeps at most MAX_LINES lines in the page: the oldest go back into the gap.
// It reads `/output/chunks` (NDJSON: {stream, offset, data[, base64]}), the same bytes as `/output`.

import { ApiError, HEADER } from "./api.js";
import { AnsiRenderer } from "./ansi.js";
import { bytes, h } from "./dom.js";

const TAIL_BYTES = 256 * 1024;
const PAGE_BYTES = 256 * 1024;
export const MAX_LINES = 20000;
const STREAM_CLASS = { stdout: "out", stderr: "err" };

/** UTF-8 length of a string, without allocating its bytes. */
function utf8Length(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) { n += 4; i++; } // a surrogate pair: one 4-byte character
    else n += 3;
  }
  return n;
}

function base64Bytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

function lineCount(text) {
  let n = 0;
  for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) n++;
  return n;
}

/** The NDJSON body as arrays of parsed lines, one array per network read. */
async function* chunkBatches(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let rest = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += decoder.decode(value, { stream: true });
    const cut = rest.lastIndexOf("\n");
    if (cut === -1) continue;
    const batch = rest.slice(0, cut).split("\n").filter((line) => line).map((line) => JSON.parse(line));
    rest = rest.slice(cut + 1);
    if (batch.length) yield batch;
  }
}

/** One contiguous range of the log: each stream keeps its own UTF-8 decoder (a character may be cut
 * between chunks) and ANSI state, so a colour set on stderr does not leak into stdout. */
class Segment {
  /** `midway`: the range may start inside a character (a tail, an earlier page), whose rest is skipped. */
  constructor(midway = false) {
    this.midway = { stdout: midway, stderr: midway };
    this.decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    this.pending = { stdout: false, stderr: false }; // the decoder may hold part of a character
    this.renderers = { stdout: new AnsiRenderer(null), stderr: new AnsiRenderer(null) };
  }

  /** A chunk as its element: a span of its stream's class, with its byte range and line count. */
  render(item) {
    const stream = item.stream;
    let text, size;
    if (item.base64) {
      let raw = base64Bytes(item.data);
      size = raw.length;
      if (this.midway[stream]) {
        let skip = 0;
        while (skip < 3 && skip < raw.length && raw[skip] >= 0x80 && raw[skip] <= 0xbf) skip++;
        raw = raw.subarray(skip);
      }
      text = this.decoders[stream].decode(raw, { stream: true });
      this.pending[stream] = true;
    } else {
      size = utf8Length(item.data);
      // Valid UTF-8 ends on a character boundary; only bytes held from a base64 chunk need the decoder.
      text = this.pending[stream] ? this.decoders[stream].decode(new TextEncoder().encode(item.data), { stream: true }) : item.data;
      this.pending[stream] = false;
    }
    this.midway[stream] = false;
    const el = document.createElement("span");
    el.className = STREAM_CLASS[stream];
    const fragment = document.createDocumentFragment();
    const renderer = this.renderers[stream];
    renderer.writeTo(fragment, renderer.pending + text);
    el.append(fragment);
    el.dataset.start = String(item.offset);
    el.dataset.end = String(item.offset + size);
    el.lines = lineCount(text);
    return el;
  }
}

export class LogView {
  constructor(base) {
    this.base = base;
    this.stream = "";
    this.started = false;
    this.paused = false;
    this.held = [];
    this.controller = null;
    this.reset();

    this.head = h("span", { class: "log-part", "data-testid": "log-head" });
    this.gap = h("span", { class: "gap", "data-testid": "log-gap", hidden: true });
    this.tail = h("span", { class: "log-part", "data-testid": "log-tail" });
    this.pre = h("pre", { class: "log", "data-testid": "log", tabindex: 0, "aria-label": "Output" }, this.head, this.gap, this.tail);
    this.followBox = h("input", { type: "checkbox", id: "follow", checked: true });
    this.pauseButton = h("button", { type: "button", "aria-pressed": "false", onclick: () => this.togglePause() }, "Pause");
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
        h("button", { type: "button", onclick: () => this.jumpToStart() }, "Jump to start"),
        h("button", { type: "button", onclick: () => this.jumpToEnd() }, "Jump to end"),
        this.download, this.note),
      this.pre);
  }

  reset() {
    this.headEnd = 0; // bytes [0, headEnd) are in the head (of `stream`, or of both)
    this.first = 0; // the tail starts here; [headEnd, first) is the gap
    this.lines = 0;
    this.headSegment = new Segment();
    this.tailSegment = new Segment();
  }

  chunksUrl(params) {
    const search = new URLSearchParams(params);
    if (this.stream) search.set("stream", this.stream);
    return `${this.base}/output/chunks?${search}`;
  }

  async fetchChunks(params, signal) {
    const response = await fetch(this.chunksUrl(params), { headers: HEADER, signal });
    if (!response.ok) throw new ApiError(response.status, (await response.json().catch(() => ({}))).detail ?? response.statusText);
    return response;
  }

  /** Load the tail and, while the run goes on, its live chunks (one request: `tail` + `follow`). */
  async open(live) {
    this.started = true;
    this.controller = new AbortController();
    const controller = this.controller;
    this.pre.classList.toggle("stderr", this.stream === "stderr");
    this.download.href = `${this.base}/output${this.stream ? `?stream=${this.stream}` : ""}`;
    this.note.textContent = live ? "live" : "";
    try {
      // follow on an ended run just sends what is stored.
      const response = await this.fetchChunks({ tail: TAIL_BYTES, follow: "true" }, controller.signal);
      this.first = Number(response.headers.get("X-Output-Offset") || 0);
      this.tailSegment = new Segment(this.first > 0);
      this.renderGap();
      for await (const batch of chunkBatches(response)) {
        if (controller !== this.controller) return;
        if (this.paused) this.held.push(...batch); else this.append(batch);
      }
      this.note.textContent = "";
    } catch (err) {
      if (err.name !== "AbortError") this.note.textContent = `log: ${err.message}`;
    }
  }

  append(batch) {
    const fragment = document.createDocumentFragment();
    for (const item of batch) {
      const el = this.tailSegment.render(item);
      this.lines += el.lines;
      fragment.append(el);
    }
    this.tail.append(fragment);
    this.trim();
    if (this.followBox.checked) this.pre.scrollTop = this.pre.scrollHeight;
  }

  /** Keep at most MAX_LINES lines: the oldest chunks of the tail go back into the gap. */
  trim() {
    if (this.lines <= MAX_LINES) return;
    const height = this.pre.scrollHeight;
    while (this.lines > MAX_LINES && this.tail.firstChild && this.tail.firstChild !== this.tail.lastChild) {
      const el = this.tail.firstChild;
      this.lines -= el.lines;
      this.first = Number(el.dataset.end);
      el.remove();
    }
    this.renderGap();
    // A reader looking at older lines keeps seeing them while the top is cut away.
    if (!this.followBox.checked) this.pre.scrollTop -= height - this.pre.scrollHeight;
  }

  renderGap() {
    const missing = this.first - this.headEnd;
    this.gap.hidden = missing <= 0;
    // Emptied when hidden: its words must not be part of the log's text.
    if (missing <= 0) { this.gap.replaceChildren(); return; }
    this.gap.dataset.bytes = String(missing);
    this.gap.replaceChildren(
      h("span", {}, `… ${missing.toLocaleString("en")} bytes (${bytes(missing)}) not loaded …`),
      this.headEnd > 0 ? h("button", { type: "button", onclick: (e) => this.loadMore(e.target) }, "Load more") : "",
      h("button", { type: "button", onclick: (e) => this.loadEarlier(e.target) }, "Load earlier"),
    );
  }

  /** Bytes [from, to) of the log as elements (no follow: a fixed range). */
  async loadRange(from, to, segment) {
    const response = await this.fetchChunks({ offset: from, limit: to - from });
    const fragment = document.createDocumentFragment();
    let lines = 0;
    for await (const batch of chunkBatches(response)) {
      for (const item of batch) {
        const el = segment.render(item);
        lines += el.lines;
        fragment.append(el);
      }
    }
    this.lines += lines;
    return fragment;
  }

  async guarded(button, work) {
    if (button) button.disabled = true;
    const controller = this.controller;
    try {
      await work(controller);
    } catch (err) {
      this.note.textContent = `log: ${err.message}`;
    }
    if (button) button.disabled = false;
  }

  /** The head of the log (its first page) above the gap; then the top of the log in view. */
  async jumpToStart() {
    this.followBox.checked = false;
    if (this.first > this.headEnd && this.headEnd === 0) {
      await this.guarded(null, async (controller) => {
        const to = Math.min(this.first, PAGE_BYTES);
        const fragment = await this.loadRange(0, to, this.headSegment);
        if (controller !== this.controller) return;
        this.head.append(fragment);
        this.headEnd = to;
        this.renderGap();
      });
    }
    this.pre.scrollTop = 0;
  }

  jumpToEnd() {
    this.followBox.checked = true;
    this.pre.scrollTop = this.pre.scrollHeight;
  }

  /** The next page after the head (the gap shrinks from its top). */
  async loadMore(button) {
    await this.guarded(button, async (controller) => {
      const to = Math.min(this.first, this.headEnd + PAGE_BYTES);
      const fragment = await this.loadRange(this.headEnd, to, this.headSegment);
      if (controller !== this.controller) return;
      this.head.append(fragment);
      this.headEnd = to;
      this.renderGap();
    });
  }

  /** The page before the tail (the gap shrinks from its bottom), keeping what the reader looks at in place. */
  async loadEarlier(button) {
    await this.guarded(button, async (controller) => {
      const from = Math.max(this.headEnd, this.first - PAGE_BYTES);
      const fragment = await this.loadRange(from, this.first, new Segment(from > 0));
      if (controller !== this.controller) return;
      const height = this.pre.scrollHeight, top = this.pre.scrollTop;
      this.tail.prepend(fragment);
      this.first = from;
      this.renderGap();
      this.pre.scrollTop = top + (this.pre.scrollHeight - height);
    });
  }

  togglePause() {
    this.paused = !this.paused;
    this.pauseButton.textContent = this.paused ? "Resume" : "Pause";
    this.pauseButton.setAttribute("aria-pressed", String(this.paused));
    if (!this.paused && this.held.length) { const held = this.held; this.held = []; this.append(held); }
  }

  switchStream(stream) {
    this.close();
    this.stream = stream;
    this.head.replaceChildren();
    this.tail.replaceChildren();
    this.held = [];
    this.reset();
    this.renderGap();
    this.open(true);
  }

  close() {
    if (this.controller) this.controller.abort();
  }
}
