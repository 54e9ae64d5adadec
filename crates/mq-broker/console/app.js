// The console's shell: login, navigation (hash routes, so a page can be bookmarked and
// nothing secret ever goes in the URL), the /admin/stats sampler behind the rate chart.
import { credentials, remember, forget, whoami, admin, stats } from "./api.js";
import { el, failure, describe, AUTH_CODES } from "./ui.js";
import * as pages from "./pages.js";

const ROUTES = {
  "": pages.overview,
  topic: pages.topic,
  message: pages.message,
  group: pages.group,
  dead: pages.dead,
  half: pages.half,
  publish: pages.publish,
  clock: pages.clock,
  catalog: pages.catalog,
};

/** Pages that refresh themselves every few seconds (read-only ones). */
const LIVE = new Set(["", "half", "dead"]);

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const logout = document.getElementById("logout");
const who = document.getElementById("who");

// ---- Rates: successive /admin/stats readings, kept for WINDOW_MS -------------------------------
const WINDOW_MS = 5 * 60 * 1000;
const SAMPLE_MS = 2000;
const samples = [];

async function sample() {
  try {
    const doc = await stats();
    samples.push({ t: Date.now(), published: doc.published, acked: doc.acked,
      delivered: doc.topics.reduce((a, t) => a + t.groups.reduce((b, g) => b + g.delivered, 0), 0) });
    while (samples.length && samples[0].t < Date.now() - WINDOW_MS) samples.shift();
  } catch {
    // The broker went away: the page says so at its next render.
  }
}

function rates() {
  const series = [["published", "#1f6feb"], ["delivered", "#b26a00"], ["acked", "#2e7d32"]];
  return series.map(([name, color]) => ({
    name,
    color,
    points: samples.slice(1).map((s, i) => {
      const prev = samples[i];
      const dt = (s.t - prev.t) / 1000;
      return [s.t, dt > 0 ? Math.max(0, s[name] - prev[name]) / dt : 0];
    }),
  }));
}

// ---- Routing --------------------------------------------------------------------------
let timers = [];
let renderSeq = 0;

/** Why the last session ended, said on the login form (the credentials stopped working). */
let loggedOutBecause = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, q] = raw.split("?");
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    // A malformed percent-encoding: no page has such a name.
    return { name: null, params: { path: [], get: () => null } };
  }
  const name = parts.length ? parts[0] : "";
  const search = new URLSearchParams(q || "");
  return { name, params: { path: parts.slice(1), get: (k) => search.get(k) } };
}

async function render({ quiet = false } = {}) {
  for (const t of timers) clearInterval(t);
  timers = [];
  const seq = ++renderSeq;
  if (!credentials()) {
    nav.hidden = true;
    logout.hidden = true;
    who.textContent = "";
    main.replaceChildren(loginForm());
    main.dataset.ready = `${performance.timeOrigin}:${seq}`;
    return;
  }
  nav.hidden = false;
  logout.hidden = false;
  who.textContent = whoami();
  const { name, params } = parseHash();
  const page = name === null ? undefined : ROUTES[name];
  for (const a of nav.querySelectorAll("a")) {
    const target = a.getAttribute("href").replace(/^#\/?/, "");
    if (target === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = el("section", { "data-page": name || "overview" });
  const ctx = {
    rates,
    windowMs: WINDOW_MS,
    // Timers of a render that a newer one replaced are never started.
    every: (ms, f) => { if (seq === renderSeq) timers.push(setInterval(f, ms)); },
    reload: () => render(),
  };
  try {
    if (!page) {
      view.append(el("h1", {}, "No such page"), el("p", { class: "empty" }, "This console has no page ", location.hash, ". ", el("a", { href: "#/" }, "Overview")));
    } else {
      await page(view, params, ctx);
    }
  } catch (e) {
    if (AUTH_CODES.has(e.code)) {
      // The credentials stopped working (a restarted broker has a new admin token): back
      // to the login form, which says why.
      loggedOutBecause = e;
      forget();
      render();
      return;
    }
    view.append(failure(e));
  }
  if (seq !== renderSeq) return; // a newer render took over
  main.replaceChildren(view);
  // A mark that changes with every render (tests wait for it).
  main.dataset.ready = `${performance.timeOrigin}:${seq}`;
  if (!quiet) {
    // A new page starts at its top, the header in view; focus moves without scrolling.
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  // Read-only pages refresh themselves, unless the user is at work in them (a focused row,
  // field or button).
  if (LIVE.has(name)) ctx.every(SAMPLE_MS * 2, () => {
    const a = document.activeElement;
    if (!a || a === document.body || a === main) render({ quiet: true });
  });
}

// ---- Login ------------------------------------------------------------------------------
function loginForm() {
  const out = el("div");
  const token = el("input", { name: "token", type: "password", autocomplete: "off", id: "token" });
  const id = el("input", { name: "access-key-id", autocomplete: "username", id: "access-key-id" });
  const secret = el("input", { name: "access-key-secret", type: "password", autocomplete: "current-password", id: "access-key-secret" });
  const form = el("form", { class: "login", "aria-label": "Log in" },
    el("h1", {}, "Log in"),
    el("p", { class: "muted" }, "The console shows and steers this broker through its admin API. Use the admin token the broker printed at start, or an AccessKey pair it accepts that is not limited to one instance. They are kept in this tab only, and sent to this broker only."),
    el("fieldset", {}, el("legend", {}, "Admin token"), el("label", {}, "Token", token)),
    el("p", { class: "muted" }, "or"),
    el("fieldset", {}, el("legend", {}, "AccessKey pair (requests are signed in the browser)"),
      el("label", {}, "AccessKey ID", id), el("label", {}, "AccessKey secret", secret)),
    el("div", { class: "row" }, el("button", { type: "submit", class: "primary", id: "login" }, "Log in")),
    out);
  if (loggedOutBecause) {
    out.append(el("p", { class: "error", role: "alert", "data-logged-out": "" },
      `Logged out: ${describe(loggedOutBecause)}. Log in again (a restarted broker prints a new admin token).`));
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    loggedOutBecause = null;
    out.replaceChildren();
    if (token.value) remember({ token: token.value.trim() });
    else if (id.value && secret.value) remember({ id: id.value.trim(), secret: secret.value });
    else { out.append(failure({ code: "", message: "give the admin token, or an AccessKey ID and secret" })); return; }
    try {
      await admin("GET", "/admin/clock");
      render();
    } catch (err) {
      forget();
      out.append(failure(err));
    }
  });
  return form;
}

logout.addEventListener("click", () => {
  loggedOutBecause = null;
  forget();
  samples.length = 0;
  location.hash = "#/";
  render();
});
window.addEventListener("hashchange", () => render());
// A link to the page shown changes no hash: render it afresh (new numbers, an empty form).
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href^='#']");
  const route = (h) => h.replace(/^#\/?/, "");
  if (a && !e.defaultPrevented && route(a.getAttribute("href")) === route(location.hash)) render();
});
sample();
setInterval(sample, SAMPLE_MS);
render();
