// The pages. Each takes (view, params) and renders into `view` (a <section>); all data
// comes from the admin API (its /admin/stats is /stats) through api.js.
import { admin, query, seg, stats, ApiError } from "./api.js";
import { el, time, relative, empty, unavailable, failure, toast, table, n, badge, groupBadge, bodyPreview, bodyView, rateChart, AUTH_CODES } from "./ui.js";

const STATES = ["ready", "in_flight", "delayed", "dead", "half"];
/** The longest listing the admin API gives (its MAX_PEEK). */
const MAX_LIST = 1000;
/** Rows a message table shows. */
const SHOWN = 200;
/** Pages of MAX_LIST a time-range search reads at most before it says where it stopped. */
const MAX_PAGES = 10;

/**
 * Says that a listing answer (`{messages, next}`) stopped before the end (its limit or the
 * broker's 1 MiB listing budget); nothing when it is complete.
 */
const moreNote = (res, ...how) => (res.next ? el("p", { class: "muted", "data-more": "" }, `The first ${res.messages.length} are listed; more remain (`, ...how, ").") : "");

/** The topic page peeking at `state` (for `group`), which pages through them all. */
const peekLink = (topicName, ns, state, group) => el("a", { href: `#/topic/${seg(topicName)}${query([["ns", ns], ["state", state], ["group", group]])}` }, "the topic page pages through them all");

/** The ns query of a topic or group of `instance` (null = the default instance). */
const nsOf = (instance) => instance || "";

/** A topic (or group) with its instance when not the default one: "orders (MQ_INST_1)". */
const withInstance = (name, instance) => (instance ? `${name} (${instance})` : name);

/** The instance a topic or group belongs to, in words (for confirmations). */
const instanceOf = (instance) => (instance ? `instance ${instance}` : "the default instance");

/** A non-default instance beside a name, shown where the Instance column is hidden. */
const narrowInstance = (instance) => (instance ? el("span", { class: "muted show-narrow" }, ` (${instance})`) : "");

/** Every (topic, group) of a /stats document (GET /admin/stats), flattened. */
function groupsOf(doc) {
  return doc.topics.flatMap((t) => t.groups.map((g) => ({ ...g, topic: t.topic, instance: t.instance })));
}

/**
 * The sum of counters, or undefined when one is missing: a gateway (`--backend rocketmq://`)
 * omits what only the cluster holds (ready, in flight, delayed, half…) rather than show 0.
 */
const total = (values) => (values.every((v) => typeof v === "number") ? values.reduce((a, v) => a + v, 0) : undefined);
/** A group's backlog as the broker counts it (`accumulation`: ready + in flight + delayed). */
const backlog = (g) => g.accumulation;
const topicLink = (t) => `#/topic/${seg(t.topic)}${query([["ns", nsOf(t.instance)]])}`;
const groupLink = (g) => `#/group/${seg(g.topic)}/${seg(g.group)}${query([["ns", nsOf(g.instance)]])}`;
const msgLink = (topic, ns, id) => `#/message${query([["topic", topic], ["ns", ns], ["id", id]])}`;

/** The broker's clock now, from GET /admin/clock: {now_ms, offset to Date.now(), test_clock}. */
async function brokerClock() {
  const c = await admin("GET", "/admin/clock");
  return { ...c, skew: c.now_ms - Date.now() };
}

// ---------------------------------------------------------------------------------------
// Overview

export async function overview(view, _params, ctx) {
  const doc = await stats();
  const groups = groupsOf(doc);
  const sum = (f) => total(groups.map(f));
  view.append(el("h1", {}, "Overview"),
    el("div", { class: "cards" },
      // Groups as Topics & groups lists them: one per (instance, group), whatever its topics.
      card("topics", doc.topics.length), card("groups", new Set(groups.map((g) => `${nsOf(g.instance)}\u0000${g.group}`)).size),
      card("backlog", sum(backlog)), card("in flight", sum((g) => g.in_flight)),
      card("delayed", sum((g) => g.delayed)), card("dead letters", sum((g) => g.dead_letters_kept)),
      card("half", total(doc.topics.map((t) => t.half))),
      card("published", doc.published), card("acked", doc.acked)),
    el("h2", {}, "Rates"),
    rateChart(ctx.rates(), ctx.windowMs),
    el("h2", {}, "Topics"),
    doc.topics.length === 0
      ? empty("No topic yet: publish a message (or declare topics with --topic) and it shows here.")
      : table([
        { title: "Topic", value: (t) => [el("a", { href: topicLink(t) }, t.topic), narrowInstance(t.instance)] },
        { title: "Instance", value: (t) => t.instance || "default", narrow: true },
        { title: "Published", value: (t) => n(t.published), num: true },
        { title: "Stored", value: (t) => n(t.stored), num: true },
        { title: "Half", value: (t) => n(t.half), num: true },
        { title: "Groups", value: (t) => n(t.groups.length), num: true },
      ], doc.topics, { href: topicLink, label: "Topics" }),
    el("h2", {}, "Groups"),
    groups.length === 0
      ? empty("No group has consumed yet: a group appears at its first consume.")
      : groupTable(groups));
}

function card(label, value) {
  return el("div", { class: "card", "data-card": label }, el("b", {}, n(value)), el("span", {}, label));
}

function groupTable(groups) {
  return table([
    { title: "Group", value: (g) => el("a", { href: groupLink(g) }, g.group) },
    { title: "Topic", value: (g) => [g.topic, narrowInstance(g.instance)] },
    { title: "Instance", value: (g) => g.instance || "default", narrow: true },
    { title: "Backlog", value: (g) => n(backlog(g)), num: true },
    { title: "Ready", value: (g) => n(g.ready), num: true },
    { title: "In flight", value: (g) => n(g.in_flight), num: true },
    { title: "Delayed", value: (g) => n(g.delayed), num: true },
    { title: "Dead", value: (g) => n(g.dead_letters_kept), num: true },
    { title: "Delivered", value: (g) => n(g.delivered), num: true, narrow: true },
    { title: "Acked", value: (g) => n(g.acked), num: true, narrow: true },
  ], groups, { href: groupLink, label: "Groups" });
}

// ---------------------------------------------------------------------------------------
// A topic: its groups, a peek by state, filters

export async function topic(view, params, ctx) {
  const [name] = params.path;
  const ns = params.get("ns") || "";
  const doc = await stats();
  const t = doc.topics.find((x) => x.topic === name && nsOf(x.instance) === ns);
  view.append(el("h1", {}, `Topic ${name}`, el("span", { class: "muted", "data-instance": "" }, ` · instance ${ns || "default"}`)));
  if (!t) {
    view.append(empty("This topic does not exist (yet): it appears at its first publish or consume."));
    return;
  }
  const groups = t.groups.map((g) => ({ ...g, topic: t.topic, instance: t.instance }));
  view.append(el("div", { class: "cards" }, card("published", t.published), card("stored", t.stored),
    card("half", t.half), card("groups", groups.length)),
  el("h2", {}, "Groups"),
  groups.length ? groupTable(groups) : empty("No group has consumed this topic yet."));

  const state = el("select", { name: "state" }, STATES.map((s) => el("option", { value: s, selected: s === (params.get("state") || "ready") }, s.replace("_", " "))));
  const group = el("select", { name: "group" }, groups.map((g) => el("option", { value: g.group, selected: g.group === params.get("group") }, g.group)));
  const tag = el("input", { name: "tag", placeholder: "any", value: params.get("tag") || "" });
  const key = el("input", { name: "key", placeholder: "any", value: params.get("key") || "" });
  // Local time; either bound may be left empty.
  const from = el("input", { type: "datetime-local", name: "from", step: 1 });
  const to = el("input", { type: "datetime-local", name: "to", step: 1 });
  const out = el("div", { "data-peek": "" });
  const form = el("form", { class: "row", "aria-label": "Peek" },
    el("label", {}, "State", state), el("label", {}, "Group", group),
    el("label", {}, "Tag", tag), el("label", {}, "Key", key),
    el("label", {}, "Published from", from), el("label", {}, "to", to),
    el("button", { class: "primary", type: "submit" }, "Peek"));
  const hasTag = (m) => !tag.value || m.tag === tag.value;
  const hasKey = (m) => !key.value.trim() || (m.properties.KEYS || "").split(/\s+/).includes(key.value.trim());
  const filtered = () => (tag.value || key.value.trim() ? " matches the filter" : "");
  const bound = (input) => (input.value ? new Date(input.value).getTime() : undefined);
  const range = () => {
    const [begin, end] = [bound(from), bound(to)];
    if (begin !== undefined && end !== undefined && end <= begin) {
      throw new ApiError(0, "", "the end of the time range must be after its start");
    }
    return [begin, end];
  };
  const inRange = ([begin, end]) => (m) => (begin === undefined || m.publish_time >= begin) && (end === undefined || m.publish_time < end);
  const rangeText = ([begin, end]) => `published ${begin !== undefined ? `from ${new Date(begin).toLocaleString()}` : "since the start"}${end !== undefined ? ` until ${new Date(end).toLocaleString()}` : ""}`;
  // In the state asked for, for the group asked for (a message found by key or time).
  const inState = (m) => (state.value === "half" ? m.state === "half"
    : (m.groups || []).some((g) => g.group === group.value && g.state === state.value));
  // A key: GET …/messages?key=K finds every message with it, wherever it is; the state,
  // group, tag and time range then narrow what was found.
  // Pages (next → after) are read until MAX_PAGES; past that the count is a lower bound.
  const byKey = async () => {
    const span = range();
    const found = [];
    let after;
    let pages = 0;
    do {
      const res = await admin("GET", `/admin/topics/${seg(name)}/messages${query([["key", key.value.trim()], ["after", after], ["ns", ns], ["limit", MAX_LIST]])}`);
      found.push(...res.messages);
      after = res.next;
      pages += 1;
    } while (after && pages < MAX_PAGES);
    const timed = from.value || to.value;
    const shown = found.filter(hasTag).filter(timed ? inRange(span) : inState);
    const where = timed ? rangeText(span) : `${state.value.replace("_", " ")}${state.value === "half" ? "" : ` for ${group.value}`}`;
    const count = after ? `at least ${found.length} messages have it (the first ${found.length} were searched)` : `${found.length} message(s) have it`;
    out.append(el("p", { class: "muted", "data-summary": "" }, `Looked up by key ${key.value.trim()}: ${count}, ${shown.length} of them ${where}${tag.value ? ` with tag ${tag.value}` : ""}.`),
      shown.length ? messageTable(name, ns, shown, { perGroup: true }) : empty(`No ${timed ? "" : `${state.value.replace("_", " ")} `}message with key ${key.value.trim()}${timed ? ` ${rangeText(span)}` : ""}${tag.value ? ` and tag ${tag.value}` : ""}.`));
  };
  // GET …/messages?begin_ms=&end_ms=&after=: every message published in [from, to), in
  // publish order, with each group's position (a state filter does not apply), from after
  // `start` (a message id; the start of the range when undefined). Pages are read until
  // SHOWN match or MAX_PAGES pages were searched; `cursor` is where the next page starts
  // (the last message shown, or the last one searched), null when none is left.
  const scan = async ([begin, end], keep, start) => {
    const shown = [];
    let searched = 0;
    let after = start;
    for (let pages = 1; ; pages += 1) {
      const res = await admin("GET", `/admin/topics/${seg(name)}/messages${query([["begin_ms", begin ?? 0], ["end_ms", end], ["after", after], ["ns", ns], ["limit", MAX_LIST]])}`);
      let i = 0;
      for (; i < res.messages.length && shown.length < SHOWN; i += 1) {
        if (keep(res.messages[i])) shown.push(res.messages[i]);
      }
      searched += i;
      if (i === res.messages.length && !res.next) return { shown, searched, cursor: null };
      if (shown.length >= SHOWN) return { shown, searched, cursor: res.messages[i - 1].message_id };
      after = res.next;
      if (pages >= MAX_PAGES) return { shown, searched, cursor: after };
    }
  };
  // The summary of page `page` of a listing: "Page 2: " from the second on.
  const pageNo = (page) => (page > 1 ? `Page ${page}: ` : "");
  // "Next page" when more remain: the listing again from `cursor` (its `after`), with the
  // filters as they were (changing one ends the paging: the form's Peek starts over).
  const pager = (cursor, page) => {
    if (!cursor) return "";
    const next = el("button", { type: "button", "data-next": "" }, "Next page →");
    next.onclick = async () => {
      await run(cursor, page + 1);
      // The focus was on the button this replaced: to the new page's first row.
      const first = out.querySelector("tbody tr");
      if (first) first.focus();
      out.scrollIntoView({ block: "start" });
    };
    return el("div", { class: "row" }, next);
  };
  const byTime = async (after, page) => {
    const span = range();
    const { shown, searched, cursor } = await scan(span, hasTag, after);
    const rest = cursor ? " More remain: Next page goes on from here." : "";
    out.append(el("p", { class: "muted", "data-summary": "" }, `${pageNo(page)}${rangeText(span)[0].toUpperCase()}${rangeText(span).slice(1)}, consumed ones included, with each group's state; the state filter does not apply. ${shown.length} of ${searched} shown.${rest}`),
      shown.length ? messageTable(name, ns, shown, { perGroup: true }) : empty(`No message ${rangeText(span)}${filtered()}${page > 1 ? " after the previous page" : ""}.`),
      pager(cursor, page));
  };
  // One page of what the form asks for: the first (`after` undefined), or the one after
  // message `after` (Next page).
  const run = async (after, page = 1) => {
    out.replaceChildren();
    const needsGroup = state.value !== "half";
    try {
      if (key.value.trim()) {
        if (needsGroup && !group.value && !(from.value || to.value)) {
          out.append(empty("Peeking at this state needs a group, and no group has consumed this topic yet."));
          return;
        }
        await byKey();
        return;
      }
      if (from.value || to.value) {
        try { await byTime(after, page); } catch (e) { out.append(e.unavailable ? unavailable("Messages by publish time", e) : failure(e)); }
        return;
      }
      if (needsGroup && !group.value) {
        out.append(empty("Peeking at this state needs a group, and no group has consumed this topic yet."));
        return;
      }
      if (tag.value && needsGroup && page > 1) {
        // Paging a tag search goes on through the topic's messages (below).
        await byTagScan(after, page);
        return;
      }
      // A tag is matched here, in the longest peek the API gives.
      const limit = tag.value ? MAX_LIST : SHOWN;
      const res = await admin("GET", `/admin/topics/${seg(name)}/messages${query([["state", state.value], ["group", needsGroup ? group.value : ""], ["after", after], ["ns", ns], ["limit", limit]])}`);
      if (tag.value && needsGroup && res.next) {
        // More than one peek holds: every message of the topic, page by page, in this state
        // for this group.
        await byTagScan(undefined, page);
        return;
      }
      const shown = res.messages.filter(hasTag);
      const cut = res.next
        ? (tag.value ? ` Only these ${res.messages.length} ${state.value.replace("_", " ")} messages were searched for the tag: Next page searches on.` : " More remain: Next page lists them.") : "";
      out.append(el("p", { class: "muted", "data-summary": "" }, `${pageNo(page)}A peek changes nothing: no delivery, no handle, no counter. ${shown.length} of ${res.messages.length} shown.${cut}`),
        shown.length ? messageTable(name, ns, shown) : empty(`No ${state.value.replace("_", " ")} message${filtered()}${page > 1 ? " after the previous page" : ""}.`),
        pager(res.next, page));
    } catch (e) {
      out.append(e.unavailable ? unavailable(key.value.trim() ? "Lookup by key" : "Peek", e) : failure(e));
    }
  };
  // A tag in a state for a group, beyond one peek: the topic's messages in publish order.
  const byTagScan = async (after, page) => {
    const { shown, searched, cursor } = await scan([undefined, undefined], (m) => hasTag(m) && inState(m), after);
    out.append(el("p", { class: "muted", "data-summary": "" }, `${pageNo(page)}A peek changes nothing: no delivery, no handle, no counter. Searched ${searched} messages of the topic for tag ${tag.value}: ${shown.length} ${state.value.replace("_", " ")} for ${group.value} shown.${cursor ? " More remain: Next page searches on." : ""}`),
      shown.length ? messageTable(name, ns, shown, { perGroup: true }) : empty(`No ${state.value.replace("_", " ")} message${filtered()}${page > 1 ? " after the previous page" : ""}.`),
      pager(cursor, page));
  };
  // Changing the filters ends the paging: the next page would not follow from this one.
  form.addEventListener("input", () => { for (const b of out.querySelectorAll("[data-next]")) b.closest(".row").remove(); });
  form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
  const purge = el("button", { type: "button", class: "danger" }, "Purge topic…");
  purge.onclick = async () => {
    if (!confirm(`Drop every message of ${name} (stored, in flight, dead letters, half)?`)) return;
    try {
      const r = await admin("POST", `/admin/topics/${seg(name)}/purge${query([["ns", ns]])}`);
      toast(`Purged ${r.purged} message(s)`);
      ctx.reload();
    } catch (e) { toast(e.message); }
  };
  view.append(el("h2", {}, "Messages"), form, out, el("div", { class: "row" }, purge));
  run();
}

/**
 * Messages of a topic: as a peek lists them (their state for the group peeked), or, with
 * `perGroup`, as found by key or time (each group's state).
 */
function messageTable(topicName, ns, messages, { perGroup = false } = {}) {
  const link = (m) => msgLink(topicName, ns, m.message_id);
  return table([
    { title: "Message id", value: (m) => el("a", { href: link(m), class: "id" }, m.message_id) },
    perGroup
      ? { title: "State per group", value: (m) => (m.state === "half" || m.state === "rolled_back" || !(m.groups || []).length ? badge(m.state)
        : el("span", { class: "states" }, m.groups.map((g) => el("span", {}, `${g.group}: `, groupBadge(g, m))))) }
      : { title: "State", value: (m) => badge(m.state) },
    { title: "Tag", value: (m) => m.tag || "" },
    // KEYS holds space-separated keys: the cell wraps between them, never inside one (a key
    // too long for the column ends in "…", whole on hover).
    { title: "Key", value: (m) => (m.properties.KEYS || "").split(" ").filter(Boolean).flatMap((k, i) => [i ? " " : "", el("span", { class: "clip key", title: k }, k)]), narrow: true },
    { title: "Body", value: (m) => bodyPreview(m, link(m)) },
    { title: "Published", value: (m) => time(m.publish_time) },
    { title: "Deliveries", value: (m) => n(m.consumed_times), num: true, narrow: true },
    { title: "Next visible", value: (m) => time(m.next_visible_time), narrow: true },
  ], messages, { href: link, label: "Messages" });
}

// ---------------------------------------------------------------------------------------
// A message: find by id or key; body, properties, groups, trace

export async function message(view, params) {
  const topicName = params.get("topic") || "";
  const ns = params.get("ns") || "";
  const doc = await stats();
  // One option per (instance, topic): the same name in two instances is two topics.
  const topicSel = el("select", { name: "topic", required: true },
    doc.topics.map((t, i) => el("option", { value: i, selected: t.topic === topicName && nsOf(t.instance) === ns }, withInstance(t.topic, t.instance))));
  const id = el("input", { name: "id", placeholder: "message id", value: params.get("id") || "", size: 34 });
  const key = el("input", { name: "key", placeholder: "message key", value: params.get("key") || "" });
  const form = el("form", { class: "row", "aria-label": "Find a message" },
    el("label", {}, "Topic", topicSel), el("label", {}, "Message id", id), el("label", {}, "or key", key),
    el("button", { class: "primary", type: "submit" }, "Find"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const t = doc.topics[Number(topicSel.value)];
    if (!t) return;
    location.hash = `#/message${query([["topic", t.topic], ["ns", nsOf(t.instance)], ["id", id.value.trim()], ["key", id.value.trim() ? "" : key.value.trim()]])}`;
  });
  view.append(el("h1", {}, "Find a message"), form);
  if (doc.topics.length === 0) { view.append(empty("No topic yet: nothing to look in.")); return; }
  const lookup = params.get("id") ? ["id", params.get("id")] : params.get("key") ? ["key", params.get("key")] : null;
  if (!lookup || !topicName) { view.append(empty("Give a message id (as the publish answered it) or a key.")); return; }
  let found;
  try {
    found = await admin("GET", `/admin/topics/${seg(topicName)}/messages${query([lookup, ["ns", ns]])}`);
  } catch (e) {
    view.append(e.status === 404 && e.code === "MessageNotExist"
      ? empty(`No message ${lookup[1]} in ${withInstance(topicName, ns)}: consumed by every group, trimmed by retention, or never published there.`)
      : failure(e));
    return;
  }
  if (found.messages.length === 0) { view.append(empty(`No message with key ${lookup[1]} in ${withInstance(topicName, ns)}.`)); return; }
  for (const m of found.messages) view.append(await messageDetail(topicName, ns, m));
  view.append(moreNote(found, "the topic page's key filter counts them all"));
}

async function messageDetail(topicName, ns, m) {
  const props = el("dl", { class: "props" }, Object.entries(m.properties).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const trace = el("div", { "data-trace": "" });
  const box = el("article", { class: "panel", "data-message": m.message_id },
    el("h2", { class: "id" }, m.message_id, " ", badge(m.state)),
    el("dl", { class: "props" },
      el("dt", {}, "Topic"), el("dd", {}, topicName),
      el("dt", {}, "Instance"), el("dd", { "data-instance": "" }, ns || "default"),
      el("dt", {}, "Tag"), el("dd", {}, m.tag || "—"),
      el("dt", {}, "Published"), el("dd", {}, time(m.publish_time)),
      el("dt", {}, "Deliver at"), el("dd", {}, time(m.start_deliver_time)),
      el("dt", {}, "Body MD5"), el("dd", {}, m.body_md5 || "—")),
    el("h2", {}, "Body"),
    m.body_truncated
      ? el("p", { class: "muted" }, `Only the beginning of this ${n(m.body_size)}-byte body is shown… `,
        el("a", { href: msgLink(topicName, ns, m.message_id) }, "the whole body (by id)"))
      : null,
    bodyView(m.body),
    el("h2", {}, "Properties"), Object.keys(m.properties).length ? props : empty("No properties."),
    el("h2", {}, "Groups"),
    m.groups.length ? table([
      { title: "Group", value: (g) => g.group },
      { title: "State", value: (g) => groupBadge(g, m) },
      { title: "Deliveries", value: (g) => n(g.consumed_times), num: true },
      { title: "Next visible", value: (g) => time(g.next_visible_time) },
    ], m.groups, { label: "Groups" }) : empty("No group has consumed this topic yet."),
    el("h2", {}, "Trace"), trace);
  try {
    // GET /admin/messages/{id}/trace: {events: [{event, time_ms, group, producer,
    // receipt_handle, next_consume_time, consumed_times}], dropped_events}.
    const t = await admin("GET", `/admin/messages/${seg(m.message_id)}/trace`);
    const events = t.events || [];
    trace.append(events.length ? el("ol", { class: "timeline" }, events.map((ev) =>
      el("li", {}, time(ev.time_ms), " ", el("b", {}, (ev.event || "event").replace("_", " ")),
        ev.group ? ` · ${ev.group}` : "",
        ev.producer ? ` · by ${ev.producer}` : "",
        ev.consumed_times ? ` · delivery ${ev.consumed_times}` : "",
        ev.next_consume_time ? [" · NextConsumeTime ", time(ev.next_consume_time)] : ""))) : empty("No trace recorded for this message."),
    t.dropped_events ? el("p", { class: "muted" }, `${t.dropped_events} earlier event(s) not kept.`) : "");
  } catch (e) {
    if (e.code === "MessageNotExist") trace.append(empty("The broker keeps no trace of this message any more."));
    else trace.append(e.unavailable ? unavailable("Message trace", e) : failure(e));
  }
  return box;
}

// ---------------------------------------------------------------------------------------
// A group: backlog, in flight with NextConsumeTime counting down, reset offset

export async function group(view, params, ctx) {
  const [topicName, groupId] = params.path;
  const ns = params.get("ns") || "";
  const [doc, clock] = await Promise.all([stats(), brokerClock()]);
  const t = doc.topics.find((x) => x.topic === topicName && nsOf(x.instance) === ns);
  const g = t && t.groups.find((x) => x.group === groupId);
  view.append(el("h1", {}, `Group ${groupId}`, el("span", { class: "muted" }, ` on ${withInstance(topicName, ns)}`)));
  if (!g) { view.append(empty("This group has not consumed this topic yet.")); return; }
  view.append(el("div", { class: "cards" }, card("backlog", backlog(g)), card("ready", g.ready), card("in flight", g.in_flight),
    card("delayed", g.delayed), card("dead letters", g.dead_letters_kept), card("delivered", g.delivered),
    card("redelivered", g.redelivered), card("acked", g.acked)),
  el("p", { class: "muted" }, "Registered ", time(g.registered_at_ms), clock.test_clock ? " · the broker runs a test clock" : ""));
  for (const state of ["in_flight", "ready", "delayed"]) {
    view.append(el("h2", {}, state === "in_flight" ? "In flight" : state[0].toUpperCase() + state.slice(1)));
    try {
      const res = await admin("GET", `/admin/topics/${seg(topicName)}/messages${query([["state", state], ["group", groupId], ["ns", ns], ["limit", 100]])}`);
      if (!res.messages.length) { view.append(empty(`Nothing ${state.replace("_", " ")}.`)); continue; }
      if (state === "in_flight") {
        view.append(table([
          { title: "Message id", value: (m) => el("a", { href: msgLink(topicName, ns, m.message_id) }, m.message_id) },
          { title: "Deliveries", value: (m) => n(m.consumed_times), num: true },
          { title: "NextConsumeTime", value: (m) => time(m.next_visible_time) },
          { title: "Visible again", value: (m) => el("span", { "data-countdown": m.next_visible_time }, relative(m.next_visible_time, Date.now() + clock.skew)) },
        ], res.messages, { href: (m) => msgLink(topicName, ns, m.message_id), label: "In flight" }));
      } else {
        view.append(messageTable(topicName, ns, res.messages));
      }
      view.append(moreNote(res, peekLink(topicName, ns, state, groupId)));
    } catch (e) {
      view.append(e.unavailable ? unavailable("Peek", e) : failure(e));
    }
  }
  ctx.every(1000, () => {
    for (const span of view.querySelectorAll("[data-countdown]")) {
      span.textContent = relative(Number(span.dataset.countdown), Date.now() + clock.skew);
    }
  });
  // Reset offset (the admin API's reset of a group's consumer offset to a time).
  const at = el("input", { type: "datetime-local", name: "time", step: 1 });
  const out = el("div");
  const reset = el("form", { class: "row", "aria-label": "Reset offset" }, el("label", {}, "Deliver again what was published since", at),
    el("button", { type: "submit", class: "danger" }, "Reset offset"));
  reset.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.replaceChildren();
    const ms = at.value ? new Date(at.value).getTime() : NaN;
    if (Number.isNaN(ms)) { out.append(failure(new ApiError(0, "", "choose a time"))); return; }
    if (!confirm(`Reset ${groupId}'s offset on ${withInstance(topicName, ns)} to ${new Date(ms).toLocaleString()}? Messages published since then are delivered to it again; earlier ones it still holds are skipped (not delivered).`)) return;
    try {
      const r = await admin("POST", `/admin/topics/${seg(topicName)}/groups/${seg(groupId)}/reset_offset${query([["time_ms", ms], ["ns", ns]])}`);
      toast(`Offset reset: ${r.redelivered ?? 0} to deliver again, ${r.skipped ?? 0} skipped`);
      ctx.reload();
    } catch (err) {
      out.append(err.unavailable ? unavailable("Reset offset", err) : failure(err));
    }
  });
  view.append(el("h2", {}, "Reset offset"), reset, out);
}

// ---------------------------------------------------------------------------------------
// Dead letters: list per group; resend, delete

export async function dead(view, _params, ctx) {
  const doc = await stats();
  const groups = groupsOf(doc);
  view.append(el("h1", {}, "Dead letters"));
  if (!groups.length) { view.append(empty("No group has consumed yet, so there are no dead letters.")); return; }
  let any = false;
  for (const g of groups) {
    const ns = nsOf(g.instance);
    const base = `/admin/topics/${seg(g.topic)}/groups/${seg(g.group)}/dead_letters`;
    // The dead-letter call where the broker has it (bodies while kept), else a peek.
    let res;
    try {
      res = await admin("GET", `${base}${query([["ns", ns], ["limit", 200]])}`);
    } catch (e) {
      if (AUTH_CODES.has(e.code)) throw e; // the shell logs out and says why
      if (!e.unavailable) { view.append(failure(e)); return; }
      try {
        res = await admin("GET", `/admin/topics/${seg(g.topic)}/messages${query([["state", "dead"], ["group", g.group], ["ns", ns], ["limit", 200]])}`);
      } catch (e2) {
        view.append(e2.unavailable ? unavailable("Dead letters", e2) : failure(e2));
        return;
      }
    }
    if (!res.messages.length) continue;
    any = true;
    const out = el("div");
    const act = (label, method, path, ask) => async () => {
      if (ask && !confirm(ask)) return;
      out.replaceChildren();
      try {
        const r = await admin(method, path);
        toast(`${label}: done${r.resent !== undefined ? ` (${r.resent} resent)` : r.deleted !== undefined ? ` (${r.deleted} deleted)` : ""}`);
        setTimeout(ctx.reload, 1000);
      } catch (e) {
        out.append(e.unavailable ? unavailable(label, e) : failure(e));
      }
    };
    const where = `${g.group} on ${withInstance(g.topic, g.instance)}`;
    view.append(el("h2", {}, where),
      el("div", { class: "row" },
        el("button", { type: "button", onclick: act("Resend all", "POST", `${base}/resend${query([["ns", ns]])}`) }, "Resend all"),
        el("button", { type: "button", class: "danger", onclick: act("Delete all", "DELETE", `${base}${query([["ns", ns]])}`, `Delete every dead letter of ${where}? They cannot be resent afterwards.`) }, "Delete all")),
      table([
        { title: "Message id", value: (m) => el("a", { href: msgLink(g.topic, ns, m.message_id), class: "id" }, m.message_id) },
        { title: "Body", value: (m) => bodyPreview(m, msgLink(g.topic, ns, m.message_id)), narrow: true },
        { title: "Published", value: (m) => time(m.publish_time) },
        { title: "Dead-lettered", value: (m) => time(m.dead_lettered_at) },
        { title: "Deliveries", value: (m) => n(m.consumed_times), num: true },
        { title: "", value: (m) => el("span", { class: "row" },
          el("button", { type: "button", onclick: act("Resend", "POST", `${base}/resend${query([["id", m.message_id], ["ns", ns]])}`) }, "Resend"),
          el("button", { type: "button", class: "danger", onclick: act("Delete", "DELETE", `${base}${query([["id", m.message_id], ["ns", ns]])}`, `Delete dead letter ${m.message_id} of ${where}? It cannot be resent afterwards.`) }, "Delete")) },
      ], res.messages, { href: (m) => msgLink(g.topic, ns, m.message_id), label: `Dead letters of ${g.group}` }),
      moreNote(res, "Resend all and Delete all take every one; ", peekLink(g.topic, ns, "dead", g.group)), out);
  }
  if (!any) view.append(empty("No dead letters: no message has reached its group's maximum deliveries."));
}

// ---------------------------------------------------------------------------------------
// Half messages

export async function half(view) {
  const doc = await stats();
  view.append(el("h1", {}, "Half messages"),
    el("p", { class: "muted" }, "Transactional messages waiting for commit or rollback. Their producer decides with the receipt handle it got at publish, or its checker with the handle of a check; here you decide for it by message id: Commit delivers the message to the topic's groups, Roll back drops it."));
  const topics = doc.topics.filter((t) => t.half > 0);
  if (!topics.length) { view.append(empty("No half message is waiting for a decision.")); return; }
  for (const t of topics) {
    const ns = nsOf(t.instance);
    const out = el("div");
    view.append(el("h2", {}, withInstance(t.topic, t.instance)));
    try {
      const res = await admin("GET", `/admin/topics/${seg(t.topic)}/messages${query([["state", "half"], ["ns", ns], ["limit", 200]])}`);
      // POST /admin/topics/{topic}/half/{id}/commit|rollback; the row goes once decided.
      const decide = (m, action, label) => async (e) => {
        const row = e.target.closest("tr");
        if (!confirm(`${label} half message ${m.message_id} of ${t.topic}?${action === "rollback" ? " It will never be delivered." : " It will be delivered to the topic's groups."}`)) return;
        out.replaceChildren();
        try {
          await admin("POST", `/admin/topics/${seg(t.topic)}/half/${seg(m.message_id)}/${action}${query([["ns", ns]])}`);
          toast(`${action === "commit" ? "Committed" : "Rolled back"} ${m.message_id}`);
          const body = row.parentElement;
          row.remove();
          if (!body.children.length) body.closest(".scroll").replaceWith(empty(`No half message of ${t.topic} is waiting any more.`));
        } catch (err) {
          out.append(err.unavailable ? unavailable(label, err) : failure(err));
        }
      };
      view.append(res.messages.length ? table([
        { title: "Message id", value: (m) => el("a", { href: msgLink(t.topic, ns, m.message_id), class: "id" }, m.message_id) },
        { title: "Body", value: (m) => bodyPreview(m, msgLink(t.topic, ns, m.message_id)) },
        { title: "Published", value: (m) => time(m.publish_time) },
        { title: "Checks", value: (m) => n(m.consumed_times), num: true, narrow: true },
        { title: "Next check", value: (m) => time(m.next_visible_time), narrow: true },
        { title: "", value: (m) => el("span", { class: "row" },
          el("button", { type: "button", "data-action": "commit", onclick: decide(m, "commit", "Commit") }, "Commit"),
          el("button", { type: "button", class: "danger", "data-action": "rollback", onclick: decide(m, "rollback", "Roll back") }, "Roll back")) },
      ], res.messages, { href: (m) => msgLink(t.topic, ns, m.message_id), label: `Half messages of ${t.topic}` })
        : empty(`No half message of ${t.topic} is waiting any more.`), moreNote(res, "decide these first, or ", peekLink(t.topic, ns, "half")), out);
    } catch (e) {
      view.append(e.unavailable ? unavailable("Half messages", e) : failure(e));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Publish a test message

export async function publish(view, params) {
  const f = (name, attrs = {}) => el("input", { name, ...attrs });
  // A pattern is compiled with the `v` flag, where a literal "-" in a class is escaped.
  const topicIn = f("topic", { required: true, value: params.get("topic") || "", pattern: "[A-Za-z0-9_%.\\-]+" });
  const ns = f("ns", { placeholder: "default" });
  const tag = f("tag");
  const key = f("key");
  const sharding = f("sharding_key", { placeholder: "FIFO topics" });
  // One name=value a line, so a value may hold commas (and "=" after the first).
  const props = el("textarea", { name: "properties", rows: 2, placeholder: "name=value\none a line" });
  const body = el("textarea", { name: "body", required: true }, "hello from the console");
  const when = el("select", { name: "when" }, el("option", { value: "now" }, "now"), el("option", { value: "delay" }, "after a delay (s)"), el("option", { value: "at" }, "at a time"));
  const delay = f("delay", { type: "number", min: 0, value: 10 });
  const at = f("at", { type: "datetime-local", step: 1 });
  const tx = f("transactional", { type: "checkbox" });
  const immunity = f("immunity", { type: "number", min: 10, max: 300, value: 10 });
  const out = el("div", { "data-receipt": "" });
  const form = el("form", { "aria-label": "Publish a test message" },
    el("div", { class: "row" }, el("label", {}, "Topic", topicIn), el("label", {}, "Instance (ns)", ns), el("label", {}, "Tag", tag), el("label", {}, "Key", key),
      el("label", {}, "Sharding key", sharding)),
    el("div", { class: "row" }, el("label", { class: "wide" }, "Properties", props)),
    el("div", { class: "row" }, el("label", { class: "wide" }, "Body", body)),
    el("div", { class: "row" }, el("label", {}, "Deliver", when), el("label", {}, "Delay, s", delay), el("label", {}, "At", at),
      el("label", { class: "check" }, tx, " transactional"), el("label", {}, "First check after, s", immunity)),
    el("div", { class: "row" }, el("button", { type: "submit", class: "primary" }, "Publish")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.replaceChildren();
    // No prototype: a property named "__proto__" (or "constructor") is a property like any
    // other, not dropped by the object's setter.
    const properties = Object.create(null);
    for (const pair of props.value.split("\n").map((p) => p.trim()).filter(Boolean)) {
      const i = pair.indexOf("=");
      if (i < 1) { out.append(failure(new ApiError(0, "", `property "${pair}" is not name=value`))); return; }
      const name = pair.slice(0, i).trim();
      if (Object.hasOwn(properties, name)) { out.append(failure(new ApiError(0, "", `property "${name}" is given twice`))); return; }
      properties[name] = pair.slice(i + 1).trim();
    }
    const msg = { body: body.value, tag: tag.value || undefined, key: key.value || undefined, sharding_key: sharding.value || undefined, properties };
    if (when.value === "delay") msg.delay_ms = Math.round(Number(delay.value) * 1000);
    if (when.value === "at") {
      const ms = new Date(at.value).getTime();
      if (Number.isNaN(ms)) { out.append(failure(new ApiError(0, "", "choose a delivery time"))); return; }
      msg.deliver_at_ms = ms;
    }
    if (tx.checked) { msg.transactional = true; msg.check_immunity_s = Number(immunity.value); }
    try {
      const r = await admin("POST", `/admin/topics/${seg(topicIn.value)}/messages${query([["ns", ns.value]])}`, msg);
      out.append(el("div", { class: "panel" }, el("b", {}, "Published "),
        el("a", { href: msgLink(topicIn.value, ns.value, r.message_id), "data-message-id": r.message_id }, r.message_id),
        r.receipt_handle ? el("p", { class: "muted" }, `Half message: its producer's handle is ${r.receipt_handle}`) : ""));
    } catch (err) {
      out.append(err.unavailable ? unavailable("Publishing from the console", err) : failure(err));
    }
  });
  view.append(el("h1", {}, "Publish a test message"), form, out);
}

// ---------------------------------------------------------------------------------------
// Clock and faults; reset

export async function clock(view, _params, ctx) {
  view.append(el("h1", {}, "Clock & faults"));
  const c = await brokerClock();
  const now = el("b", { "data-broker-now": "" }, time(c.now_ms));
  view.append(el("div", { class: "panel" }, el("p", {}, "Broker time: ", now, " · offset ", n(c.offset_ms), " ms")));
  ctx.every(1000, () => now.replaceChildren(time(Date.now() + c.skew)));
  if (c.test_clock) {
    const ms = el("input", { type: "number", name: "advance", min: 1, step: 1, required: true, value: 60000 });
    const advance = async (by) => {
      try {
        const r = await admin("POST", `/admin/clock${query([["advance_ms", by]])}`);
        toast(`Clock moved forward ${by} ms`);
        ctx.reload();
      } catch (e) { toast(e.message); }
    };
    const form = el("form", { class: "row", "aria-label": "Advance the clock" },
      [1000, 10000, 60000, 3600000].map((by) => el("button", { type: "button", onclick: () => advance(by) }, `+${by >= 3600000 ? "1 h" : by >= 60000 ? "1 min" : `${by / 1000} s`}`)),
      el("label", {}, "ms", ms), el("button", { type: "submit", class: "primary" }, "Advance"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const by = Number(ms.value);
      if (!ms.value || !Number.isInteger(by) || by < 1) { toast("give a whole number of ms, at least 1"); return; }
      advance(by);
    });
    view.append(el("h2", {}, "Test clock"), form);
  } else {
    view.append(el("p", { class: "muted" }, "The clock is the real one (start the broker with --test-clock to move it from here)."));
  }
  view.append(el("h2", {}, "Faults"));
  try {
    const f = await admin("GET", "/admin/faults");
    if (!f.enabled) {
      view.append(el("p", { class: "muted" }, "Fault injection is off (start the broker with --faults)."));
    } else {
      view.append(f.rules.length ? table([
        { title: "Operation", value: (r) => r.operation },
        { title: "Action", value: faultAction },
        { title: "Probability", value: (r) => r.probability, num: true },
        { title: "Latency ms", value: (r) => n(r.latency_ms), num: true },
        { title: "Remaining", value: (r) => (r.remaining ?? "∞"), num: true },
        { title: "Hits", value: (r) => n(r.hits), num: true },
      ], f.rules, { label: "Active faults" }) : empty("No fault is active."));
      const op = el("select", { name: "operation" }, ["any", "publish", "consume", "consume_orderly", "consume_half", "ack", "commit", "rollback"].map((o) => el("option", { value: o }, o)));
      const code = el("input", { name: "error", value: "Throttling" });
      const p = el("input", { name: "probability", type: "number", step: "0.05", min: 0, max: 1, value: 1 });
      const add = el("form", { class: "row", "aria-label": "Add a fault" }, el("label", {}, "Operation", op), el("label", {}, "Error code", code),
        el("label", {}, "Probability", p), el("button", { type: "submit" }, "Add rule"),
        el("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm("Remove every fault rule? Calls are answered normally again.")) return;
          try { await admin("DELETE", "/admin/faults"); ctx.reload(); } catch (e) { toast(e.message); }
        } }, "Remove all"));
      add.addEventListener("submit", async (e) => {
        e.preventDefault();
        try {
          await admin("POST", `/admin/faults${query([["operation", op.value], ["error", code.value], ["probability", p.value]])}`);
          ctx.reload();
        } catch (err) { toast(err.message); }
      });
      view.append(add);
    }
  } catch (e) {
    view.append(e.unavailable ? unavailable("Faults", e) : failure(e));
  }
  view.append(el("h2", {}, "Reset"), el("div", { class: "row" }, el("button", {
    type: "button", class: "danger", onclick: async () => {
      if (!confirm("Forget every message, consumer position and counter? Auto-created topics go; declared and created topics stay, empty; created groups stay with their settings. The broker's clock goes back to real time (a test clock's moves are dropped).")) return;
      try { await admin("POST", "/admin/reset"); toast("Broker reset"); ctx.reload(); } catch (e) { toast(e.message); }
    },
  }, "Reset all state…")));
}

/** A fault rule's action ({kind: "error", code} | {kind: "reset"} | {kind: "delay"}) in words. */
function faultAction(rule) {
  const a = rule.action || {};
  if (a.kind === "error") return `answer ${a.code}`;
  if (a.kind === "reset") return "close the connection unanswered";
  if (a.kind === "delay") return "latency only";
  return JSON.stringify(a);
}

// ---------------------------------------------------------------------------------------
// Topics & groups (list, create, delete)

export async function catalog(view, _params, ctx) {
  view.append(el("h1", {}, "Topics & groups"));
  let topics;
  let groups;
  try {
    [topics, groups] = await Promise.all([admin("GET", "/admin/topics"), admin("GET", "/admin/groups")]);
  } catch (e) {
    view.append(e.unavailable ? unavailable("Listing, creating and deleting topics and groups", e) : failure(e),
      el("p", { class: "muted" }, "The overview shows every topic and group this broker holds (from /admin/stats)"));
    return;
  }
  const del = (what, path) => async () => {
    if (!confirm(`Delete ${what} and its messages?`)) return;
    try { await admin("DELETE", path); ctx.reload(); } catch (e) { toast(e.message); }
  };
  view.append(el("h2", {}, "Topics"), topics.topics.length ? table([
    { title: "Topic", value: (t) => el("a", { href: topicLink(t) }, t.topic) },
    { title: "Instance", value: (t) => t.instance || "default" },
    { title: "Type", value: (t) => t.message_type || "" },
    { title: "Published", value: (t) => n(t.published), num: true },
    { title: "", value: (t) => el("button", { type: "button", class: "danger", onclick: del(`topic ${t.topic} of ${instanceOf(t.instance)}`, `/admin/topics/${seg(t.topic)}${query([["ns", nsOf(t.instance)]])}`) }, "Delete") },
  ], topics.topics, { label: "Topics" }) : empty("No topic."));
  // An instance (ns) field: empty is the default instance.
  const instanceField = () => el("input", { name: "ns", placeholder: "default" });
  const tname = el("input", { name: "topic", required: true });
  const tns = instanceField();
  const ttype = el("select", { name: "message_type" }, ["MIXED", "NORMAL", "FIFO", "DELAY", "TRANSACTION"].map((t) => el("option", { value: t }, t)));
  const tform = el("form", { class: "row", "aria-label": "Create a topic" }, el("label", {}, "Topic", tname), el("label", {}, "Instance (ns)", tns),
    el("label", {}, "Message type", ttype), el("button", { type: "submit" }, "Create topic"));
  tform.addEventListener("submit", async (e) => {
    e.preventDefault();
    try { await admin("POST", `/admin/topics${query([["topic", tname.value.trim()], ["message_type", ttype.value], ["ns", tns.value.trim()]])}`); ctx.reload(); } catch (err) { toast(err.message); }
  });
  view.append(tform, el("h2", {}, "Groups"), groups.groups.length ? table([
    { title: "Group", value: (g) => g.group },
    { title: "Instance", value: (g) => g.instance || "default" },
    { title: "Topics", value: (g) => (g.topics || []).map((t) => t.topic).join(", ") },
    // null: the group follows the broker's setting.
    { title: "Invisibility ms", value: (g) => (g.invisibility_ms == null ? el("span", { class: "muted" }, "the broker's") : n(g.invisibility_ms)), num: true },
    { title: "Max deliveries", value: (g) => (g.max_deliveries == null ? el("span", { class: "muted" }, "the broker's") : n(g.max_deliveries)), num: true },
    { title: "", value: (g) => el("button", { type: "button", class: "danger", onclick: del(`group ${g.group} of ${instanceOf(g.instance)}`, `/admin/groups/${seg(g.group)}${query([["ns", nsOf(g.instance)]])}`) }, "Delete") },
  ], groups.groups, { label: "Groups" }) : empty("No group."));
  const gname = el("input", { name: "group", required: true, value: "GID_" });
  const gns = instanceField();
  const gtopic = el("input", { name: "topic", placeholder: "orders, audit" });
  // Empty: the broker's setting (a new group), or the group's as it is (an update).
  const ginvisible = el("input", { name: "invisibility_ms", type: "number", min: 1, max: 43200000, step: 1, placeholder: "the broker's" });
  const gmax = el("input", { name: "max_deliveries", type: "number", min: 1, step: 1, placeholder: "the broker's" });
  const gform = el("form", { class: "row", "aria-label": "Create a group" }, el("label", {}, "Group", gname), el("label", {}, "Instance (ns)", gns),
    el("label", {}, "Topics (comma-separated)", gtopic), el("label", {}, "Invisibility, ms", ginvisible), el("label", {}, "Max deliveries", gmax),
    el("button", { type: "submit" }, "Create group"));
  gform.addEventListener("submit", async (e) => {
    e.preventDefault();
    // POST /admin/groups?group=G&topic=T…&invisibility_ms=N&max_deliveries=N&ns=I: creates
    // the group, or updates the settings given and adds the topics.
    const topics = gtopic.value.split(/[\s,]+/).filter(Boolean).map((t) => ["topic", t]);
    try {
      await admin("POST", `/admin/groups${query([["group", gname.value.trim()], ...topics, ["invisibility_ms", ginvisible.value], ["max_deliveries", gmax.value], ["ns", gns.value.trim()]])}`);
      ctx.reload();
    } catch (err) { toast(err.message); }
  });
  view.append(gform);
}
