// The console's one way to the broker: the admin API (its /admin/stats is the /stats
// document), with the credentials of this tab's session. Credentials live in sessionStorage only (never in a URL, never
// logged) and are sent as `Authorization: Bearer <admin token>` or as a signature by an
// AccessKey pair, computed here with WebCrypto exactly as `mq admin` signs (PROTOCOL §2.5:
// HMAC-SHA1 over METHOD, Content-MD5, Content-Type, Date, the x-mq-* headers and the
// request target), except that the date travels as `x-mq-date`: browsers may not set Date.
// No Content-MD5 is sent (WebCrypto has no MD5): like five of the seven official SDKs
// (PROTOCOL §2.6) and `mq admin`, the signature's Content-MD5 line is empty, and the broker
// checks the header only when present.

const KEY = "mq-console-credentials";

/** The credentials of this session: {token} or {id, secret}, or null. */
export function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

/** Keeps credentials for this tab's session. */
export function remember(c) {
  sessionStorage.setItem(KEY, JSON.stringify(c));
}

/** Forgets the credentials (log out). */
export function forget() {
  sessionStorage.removeItem(KEY);
}

/** A short, secret-free description of who is logged in. */
export function whoami() {
  const c = credentials();
  if (!c) return "";
  return c.token ? "admin token" : `AccessKey ${c.id}`;
}

/** An admin call that failed: HTTP status, the API's code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
  }
  /** The broker has no such call (an older broker, or `--admin off`), or cannot serve it here. */
  get unavailable() {
    return (this.status === 404 && (this.code === "NotFound" || this.code === ""))
      || this.status === 405 || this.status === 501;
  }
}

const encoder = new TextEncoder();

async function sign(secret, stringToSign) {
  if (!globalThis.crypto || !crypto.subtle) {
    throw new ApiError(0, "InsecureContext",
      "signing needs WebCrypto, which browsers give only to https:// or http://127.0.0.1 / localhost pages; open the console there or log in with the admin token");
  }
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret),
    { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(stringToSign)));
  let bin = "";
  for (const b of mac) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Percent-encodes a query from [name, value] pairs (values undefined or "" are left out). */
export function query(pairs) {
  const parts = [];
  for (const [k, v] of pairs) {
    if (v === undefined || v === null || v === "") continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

/** A path segment, percent-encoded. */
export const seg = encodeURIComponent;

/**
 * Calls the admin API: `method` `target` (path and query, already encoded) with an optional
 * JSON body. Resolves to the parsed JSON answer; rejects with an ApiError.
 */
export async function admin(method, target, body) {
  const c = credentials();
  if (!c) throw new ApiError(401, "NotLoggedIn", "log in first");
  const headers = {};
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  // Sign the target exactly as the browser will send it (its URL serializer may encode
  // more characters than encodeURIComponent).
  const url = new URL(target, location.href);
  const sent = url.pathname + url.search;
  if (c.token) {
    headers.authorization = `Bearer ${c.token}`;
  } else {
    const date = new Date().toUTCString();
    headers["x-mq-date"] = date;
    const toSign = `${method}\n\n${headers["content-type"] || ""}\n${date}\nx-mq-date:${date}\n${sent}`;
    headers.authorization = `MQ ${c.id}:${await sign(c.secret, toSign)}`;
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, "Unreachable", `the broker did not answer (${e.message})`);
  }
  let json = null;
  try {
    json = await resp.json();
  } catch {
    json = null;
  }
  if (!resp.ok) {
    throw new ApiError(resp.status, json && json.code, json && json.message);
  }
  return json;
}

/** GET /admin/stats: the document /stats serves, through the admin API. */
export function stats() {
  return admin("GET", "/admin/stats");
}
