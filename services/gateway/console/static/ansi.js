// ANSI SGR colours to DOM spans, safely (text nodes only), across chunk boundaries.
// Handles 0 (reset), 1 (bold), 22, 30–37, 39, 90–97; other escape sequences are dropped.

const ESC = "\x1b";

export class AnsiRenderer {
  constructor(target) {
    this.target = target;
    this.fg = null;
    this.bold = false;
    this.pending = ""; // an escape sequence cut by a chunk boundary
  }

  /** Render `text` (already decoded) at the end of the target. */
  write(text) {
    const fragment = document.createDocumentFragment();
    this.writeTo(fragment, this.pending + text);
    this.target.append(fragment);
  }

  /** Render `text` into `fragment` with this renderer's state (used for earlier pages too). */
  writeTo(fragment, text) {
    this.pending = "";
    let at = 0;
    while (at < text.length) {
      const esc = text.indexOf(ESC, at);
      if (esc === -1) { this.emit(fragment, text.slice(at)); break; }
      if (esc > at) this.emit(fragment, text.slice(at, esc));
      const end = this.sequenceEnd(text, esc);
      if (end === -1) { this.pending = text.slice(esc); break; }
      if (text[esc + 1] === "[" && text[end - 1] === "m") this.apply(text.slice(esc + 2, end - 1));
      at = end;
    }
  }

  /** The index after the escape sequence starting at `esc`, or -1 when the text ends inside it. */
  sequenceEnd(text, esc) {
    if (esc + 1 >= text.length) return -1;
    if (text[esc + 1] !== "[") return esc + 2; // a two-character escape: dropped
    for (let i = esc + 2; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x40 && code <= 0x7e) return i + 1;
      if (i - esc > 64) return i + 1; // not a sane sequence: drop what we saw
    }
    return -1;
  }

  apply(params) {
    const codes = params === "" ? [0] : params.split(";").map((p) => parseInt(p || "0", 10));
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) { this.fg = null; this.bold = false; }
      else if (c === 1) this.bold = true;
      else if (c === 22) this.bold = false;
      else if (c >= 30 && c <= 37) this.fg = c - 30;
      else if (c >= 90 && c <= 97) this.fg = c - 90 + 8;
      else if (c === 39) this.fg = null;
      else if (c === 38 || c === 48) i += codes[i + 1] === 5 ? 2 : codes[i + 1] === 2 ? 4 : 0; // 256/true colour: skipped
    }
  }

  emit(fragment, text) {
    if (!text) return;
    if (this.fg === null && !this.bold) { fragment.append(document.createTextNode(text)); return; }
    const span = document.createElement("span");
    const classes = [];
    if (this.fg !== null) classes.push(`f${this.fg}`);
    if (this.bold) classes.push("b");
    span.className = classes.join(" ");
    span.textContent = text;
    fragment.append(span);
  }
}
