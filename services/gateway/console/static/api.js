// The API as the console calls it: the sign-in cookie authenticates, the console header makes unsafe
// requests acceptable (the gateway refuses cookie-borne POST/PUT/DELETE without it: CSRF).

export const HEADER = { "X-Scriptbus-Console": "1" };

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : (Array.isArray(detail) ? detail.map(describe).join("; ") : JSON.stringify(detail)));
    this.status = status;
  }
}

function describe(item) {
  const where = (item.loc || []).filter((part) => part !== "body").join(".");
  return where ? `${where}: ${item.msg}` : item.msg;
}

export async function request(method, path, body) {
  const init = { method, headers: { ...HEADER }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("scriptbus:signed-out"));
    throw new ApiError(response.status, data?.detail ?? response.statusText);
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body ?? {});
export const put = (path, body) => request("PUT", path, body);
export const del = (path) => request("DELETE", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== "" && value !== null && value !== undefined) search.set(key, value);
  const text = search.toString();
  return text ? `?${text}` : "";
}
