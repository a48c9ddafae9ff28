// Files: the store runs take files from. Everyone may list and download; admins upload (the browser
// streams the chosen file as the PUT body, never reading it into the page) and delete.

import { ApiError, HEADER, del, get } from "../api.js";
import { bytes, errorBox, h, when } from "../dom.js";

export const title = "Files";

export async function mount(main, ctx) {
  const admin = ctx.may("admin");
  const problem = h("div", { "aria-live": "polite" });
  const tbody = h("tbody");
  main.append(h("h1", {}, "Files"),
    h("p", { class: "muted" }, "Files a run or command names are placed in its folder before the script starts."),
    admin ? uploadForm() : "", problem,
    h("div", { class: "table-wrap" }, h("table", { "data-testid": "files" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Size"), h("th", {}, "SHA-256"),
        h("th", { class: "hide-narrow" }, "Stored"), h("th", { class: "hide-narrow" }, "By"), h("th", {}, ""))),
      tbody)));

  function uploadForm() {
    const file = h("input", { id: "f-file", type: "file", required: true });
    const name = h("input", { id: "f-name", size: 40, placeholder: "e.g. tools/deploy.sh (empty: the file's own name)" });
    const executable = h("input", { id: "f-exec", type: "checkbox" });
    const status = h("div", { "aria-live": "polite" });
    const button = h("button", { class: "primary", type: "submit" }, "Upload");
    const form = h("form", { "data-testid": "upload-form" },
      h("h2", {}, "Upload a file"),
      h("label", { for: "f-file" }, "File"), file,
      h("label", { for: "f-name" }, "Store as"), name,
      h("div", { class: "row" }, executable, h("label", { for: "f-exec", class: "inline plain" }, "executable (mode 0755 in run folders)")),
      h("div", { class: "row" }, button), status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      status.replaceChildren();
      const chosen = file.files[0];
      if (!chosen) return;
      const target = name.value.trim() || chosen.name;
      button.disabled = true;
      status.append(h("p", { class: "muted" }, `Uploading ${target} (${bytes(chosen.size)})…`));
      try {
        const path = target.split("/").map(encodeURIComponent).join("/");
        // A File body is sent from disk as it is read: a large file never sits in the page's memory.
        const response = await fetch(`/api/v1/files/${path}${executable.checked ? "?executable=true" : ""}`, {
          method: "PUT", headers: { ...HEADER, "Content-Type": "application/octet-stream" }, body: chosen, credentials: "same-origin",
        });
        const data = await response.json().catch(() => null);
        if (!response.ok) throw new ApiError(response.status, data?.detail ?? response.statusText);
        status.replaceChildren(h("p", { class: "muted" }, `Stored ${data.name}: ${bytes(data.size)}, sha256 ${data.sha256}.`));
        form.reset();
        refresh();
      } catch (err) { status.replaceChildren(errorBox(err)); }
      button.disabled = false;
    });
    return form;
  }

  function row(f) {
    const href = `/api/v1/files/${f.name.split("/").map(encodeURIComponent).join("/")}`;
    return h("tr", { "data-file": f.name },
      h("td", { class: "mono" }, f.name, f.executable ? h("span", { class: "muted" }, " (executable)") : ""),
      h("td", { title: `${f.size} bytes` }, bytes(f.size)),
      h("td", { class: "mono", "data-testid": `sha-${f.name}` }, f.sha256),
      h("td", { class: "hide-narrow" }, when(f.stored_at)),
      h("td", { class: "hide-narrow" }, f.stored_by),
      h("td", { class: "actions" },
        h("a", { class: "button", href, download: f.name.split("/").pop(), "aria-label": `Download ${f.name}` }, "Download"),
        admin ? h("button", { type: "button", class: "danger", onclick: () => remove(f), "aria-label": `Delete ${f.name}` }, "Delete") : ""));
  }

  async function remove(f) {
    if (!confirm(`Delete the file ${f.name}? Runs waiting for it will fail.`)) return;
    problem.replaceChildren();
    try { await del(`/api/v1/files/${f.name.split("/").map(encodeURIComponent).join("/")}`); } catch (err) { problem.append(errorBox(err)); }
    refresh();
  }

  async function refresh() {
    try {
      const list = await get("/api/v1/files");
      tbody.replaceChildren(...(list.files.length ? list.files.map(row) : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No files stored."))]));
    } catch (err) { problem.replaceChildren(errorBox(err)); }
  }
  await refresh();
}
