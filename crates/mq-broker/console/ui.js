// Small DOM helpers shared by the pages: elements, times, tables, states, the rate chart.

/** Creates an element: el("a", {href: "#/"}, "text", child…). Attributes starting with
 * "on" are listeners; text is always set as text, never parsed as HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** A time in local time, with its epoch ms on hover; "—" for none. */
export function time(ms) {
  if (ms === undefined || ms === null) return el("span", { class: "muted" }, "—");
  const d = new Date(ms);
  return el("time", { datetime: d.toISOString(), title: `${ms} (epoch ms)` }, d.toLocaleString());
}

/** "in 12 s" / "3 s ago" from now (ms) to t (ms). */
export function relative(t, now) {
  const s = Math.round((t - now) / 1000);
  if (s === 0) return "now";
  const abs = Math.abs(s);
  const text = abs >= 3600 ? `${Math.floor(abs / 3600)} h ${Math.floor((abs % 3600) / 60)} min`
    : abs >= 60 ? `${Math.floor(abs / 60)} min ${abs % 60} s` : `${abs} s`;
  return s > 0 ? `in ${text}` : `${text} ago`;
}

/** An empty state: what is not there, and why. */
export function empty(text) {
  return el("p", { class: "empty" }, text);
}

/** A call this broker does not have (older version, other backend): said, not broken. */
export function unavailable(what, error) {
  return el("p", { class: "unavailable", "data-unavailable": "" },
    `${what}: not available on this broker`,
    error && error.message ? ` (${error.status} ${error.code}: ${error.message})` : "");
}

/** An error box; a refusal of the credentials says so. */
export function failure(error) {
  return el("p", { class: "error", role: "alert" }, describe(error));
}

/** Refusals that mean the credentials do not work (a restarted broker has a new token). */
export const AUTH_CODES = new Set(["InvalidAdminToken", "SignatureDoesNotMatch", "InvalidAccessKeyId",
  "AccessDenied", "MissingAuthorizationHeader", "InvalidAuthorizationHeader"]);

/** An error in words: "CODE: message", prefixed with what a refusal of the credentials means. */
export function describe(error) {
  const code = error.code ? `${error.code}: ` : "";
  const why = AUTH_CODES.has(error.code) ? "the broker refused the admin token or signature: " : "";
  return `${why}${code}${error.message}`;
}

/** A short notice in the corner. */
export function toast(text) {
  const box = document.getElementById("toast");
  const item = el("div", {}, text);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

/**
 * A keyboard-friendly table: columns [{title, value(row) → Node|string, num?, narrow?}];
 * rows with href(row) are links (click or Enter), and arrow keys move between rows.
 */
export function table(columns, rows, { href, label } = {}) {
  const head = el("tr", {}, columns.map((c) =>
    el("th", { class: [c.num ? "num" : "", c.narrow ? "hide-narrow" : ""].join(" ").trim() || undefined, scope: "col" }, c.title)));
  const body = el("tbody", {}, rows.map((r) => {
    const link = href ? href(r) : undefined;
    const tr = el("tr", { tabindex: "0", "data-href": link },
      columns.map((c) => el("td", { class: [c.num ? "num" : "", c.narrow ? "hide-narrow" : ""].join(" ").trim() || undefined }, c.value(r))));
    if (link) {
      tr.addEventListener("click", (e) => {
        if (!e.target.closest("button, a, input")) location.hash = link;
      });
      // The row is the one tab stop (Enter opens it): links inside it are for the mouse.
      for (const a of tr.querySelectorAll("a")) a.setAttribute("tabindex", "-1");
    }
    return tr;
  }));
  body.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr");
    if (!tr) return;
    const go = (row) => { row.focus({ preventScroll: true }); row.scrollIntoView({ block: "nearest" }); e.preventDefault(); };
    if (e.key === "ArrowDown" && tr.nextElementSibling) go(tr.nextElementSibling);
    if (e.key === "ArrowUp" && tr.previousElementSibling) go(tr.previousElementSibling);
    if (e.key === "Enter" && tr.dataset.href && e.target === tr) location.hash = tr.dataset.href;
  });
  return el("div", { class: "scroll" }, el("table", { "aria-label": label }, el("thead", {}, head), body));
}

/** A number cell. */
export const n = (v) => (v === undefined || v === null ? "—" : Number(v).toLocaleString());

/**
 * A state badge: `state` as the admin API names it (ready, in_flight, delayed, dead, half,
 * consumed, rolled_back, or one this console does not know yet), or, for null (a group
 * that holds the message no more, or a message no group holds), `none` in words.
 */
export function badge(state, none = "held by no group") {
  if (!state) return el("span", { class: "badge none", "data-state": "" }, none);
  // "consumed" is the API's name for a message kept while no group holds it (every group
  // acked it, or the topic has no group): said as what it is.
  const words = { half: "half: waiting for commit/rollback", rolled_back: "rolled back", consumed: "held by no group" }[state]
    || state.replaceAll("_", " ");
  return el("span", { class: `badge ${state}`, "data-state": state }, words);
}

/**
 * Where a group stands with message `m` (a found message): its state there, or, when the
 * group holds it no more, why in words.
 */
export function groupBadge(g, m) {
  // An undecided transaction is no group's yet (the admin API says `half` for each group).
  if (g.state === "half") return badge(null, "not delivered yet: waiting for commit/rollback");
  if (g.state) return badge(g.state);
  if (m.state === "rolled_back") return badge(null, "never delivered: rolled back");
  return badge(null, "not held: acked, filtered out, or subscribed later");
}

/**
 * A body's first characters (60), with "…" when there is more — here or, when the listing
 * cut it (`body_truncated`), on the message page `href` leads to, which has it whole.
 */
export function bodyPreview(m, href) {
  if (m.body === null || m.body === undefined) return el("span", { class: "muted" }, "not kept");
  const more = m.body.length > 60 || m.body_truncated;
  const text = m.body.slice(0, 60);
  if (!more) return el("span", { class: "clip" }, text);
  return el("span", { class: "clip", title: m.body_truncated ? "the listing holds only the start: the message page shows it all" : m.body.slice(0, 500) },
    text, href ? el("a", { href, tabindex: "-1", "aria-label": "the whole body" }, "…") : "…");
}

/** Hex dump of a string's UTF-8 bytes, 16 a line. */
export function hex(text) {
  const bytes = new TextEncoder().encode(text);
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const chunk = [...bytes.slice(i, i + 16)];
    lines.push(`${i.toString(16).padStart(6, "0")}  ${chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ")}`);
  }
  return lines.join("\n");
}

/** A message body with a text / hex toggle. */
export function bodyView(text) {
  if (text === null || text === undefined) return empty("The body is not kept (a dead letter keeps only its record).");
  const pre = el("pre", { class: "body", "data-body": "" }, text);
  const asText = el("button", { type: "button", "aria-pressed": "true" }, "Text");
  const asHex = el("button", { type: "button", "aria-pressed": "false" }, "Hex");
  asText.onclick = () => { pre.textContent = text; asText.setAttribute("aria-pressed", "true"); asHex.setAttribute("aria-pressed", "false"); };
  asHex.onclick = () => { pre.textContent = hex(text); asHex.setAttribute("aria-pressed", "true"); asText.setAttribute("aria-pressed", "false"); };
  return el("div", {}, el("div", { class: "tabs", role: "group", "aria-label": "Body as" }, asText, asHex), pre);
}

/**
 * An inline SVG chart of rates per second: series [{name, color, points: [[ms, value]]}],
 * over what was seen of the last `windowMs`.
 */
export function rateChart(series, windowMs) {
  const w = 600, h = 120, pad = 4;
  const all = series.flatMap((s) => s.points);
  const box = el("div", { class: "chart panel" });
  if (all.length < 2) {
    box.append(empty("Rates appear after a few seconds on this page (computed from successive /admin/stats readings)."));
    return box;
  }
  // The x axis spans what was seen, up to the window.
  const tMax = Math.max(...all.map((p) => p[0]));
  const span = Math.max(10000, Math.min(windowMs, tMax - Math.min(...all.map((p) => p[0]))));
  const tMin = tMax - span;
  const peak = Math.max(0, ...all.map((p) => p[1]));
  const vMax = Math.max(1, peak);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", series.map((s) => `${s.name}: ${(s.points.at(-1) || [0, 0])[1].toFixed(1)}/s`).join(", "));
  for (const s of series) {
    const pts = s.points.map(([t, v]) =>
      `${(pad + ((t - tMin) / span) * (w - 2 * pad)).toFixed(1)},${(h - pad - (v / vMax) * (h - 2 * pad)).toFixed(1)}`);
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", s.color);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
  }
  box.append(svg, el("div", { class: "legend" },
    series.map((s) => el("span", {}, el("i", { style: undefined, "data-color": s.color }), `${s.name} ${(s.points.at(-1) || [0, 0])[1].toFixed(1)}/s`)),
    el("span", { "data-peak": peak }, `${peak > 0 ? `peak ${peak.toFixed(1)}/s` : "no traffic"} over the last ${span >= 60000 ? `${Math.round(span / 60000)} min` : `${Math.round(span / 1000)} s`}`)));
  // Colour the legend marks without inline style attributes (the CSP forbids them in markup).
  for (const i of box.querySelectorAll("i[data-color]")) i.style.background = i.dataset.color;
  return box;
}
