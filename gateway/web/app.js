// The operators' console page: signs in, listens to /ops/events (a snapshot every
// second and after every action) and sends actions to /ops/api/requests. Every value
// from the server is written with textContent, never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const DANGER = ["cancel", "npc_cancel", "package_cancel", "return", "review_reject"]; // actions that stop or send money back
  // The note's hint for actions whose note is more than a note.
  const NOTE_HINTS = { return: "note_return", suspense_apply: "note_apply" };
  const PAYMENT_STATES = ["accepted", "held", "sent", "queued", "netted", "settled", "rejected",
    "cancelled", "returned", "unknown", "received", "credited", "suspense"];

  let lang = localStorage.getItem("paygate.lang") ||
    (navigator.language.startsWith("zh") ? "zh" : "en");
  let me = null;
  let snap = null;
  let source = null;
  // Whether the live feed answers: null until the first snapshot of a signed-in page
  // (the badge is hidden then: before sign-in nothing is known about the feed).
  let live = null;
  let search = null;           // the active payment search, or null for the latest payments
  let detailId = null;         // the payment whose history is open
  let seenVersion = "";        // data_version of the snapshot the searches were run for
  let pending = null;          // what waits in the action bar: a request to send, or a decision
  let actionNames = {};        // action -> {en, zh}: the gateway's one table of names
  let actionLevels = {};       // action -> the lowest level that may request it ("20")
  const lastStates = new Map(); // row key -> state, to flash rows that changed

  function t(key) {
    if (I18N[lang] && key in I18N[lang]) return I18N[lang][key];
    return key in I18N.en ? I18N.en[key] : key;
  }

  // The link card's first line: the link's state, then the login session's in words.
  // While the link is down the NPC cannot be asked, so the session is the one it last
  // answered, said as such: "DOWN · logged_in" read as if both were true now.
  function linkText(link) {
    const state = t("link_" + link.state);
    if (!link.session) return state;
    const session = t("session_" + link.session);
    const words = session === "session_" + link.session ? link.session : session;
    return link.state === "down"
      ? `${state} · ${t("session_last_known")}: ${words}`
      : `${state} · ${words}`;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "on") Object.entries(value).forEach(([n, f]) => node.addEventListener(n, f));
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const answer = await fetch(path, init);
    const data = await answer.json().catch(() => ({}));
    if (answer.status === 401 && path !== "/ops/login") showLogin();
    if (!answer.ok) throw data;
    return data;
  }

  // An action's human name in the page's language (GET /ops/api/actions), never its code
  // unless the gateway has no name for it.
  function actionName(action) {
    const names = actionNames[action];
    return (names && (names[lang] || names.en)) || action;
  }

  async function loadActionNames() {
    try {
      const answer = await api("GET", "/ops/api/actions");
      actionNames = Object.fromEntries(answer.actions.map((a) => [a.action, a.label]));
      actionLevels = Object.fromEntries(answer.actions.map((a) => [a.action, a.request_level_min]));
    } catch (err) {
      actionNames = {};
      actionLevels = {};
    }
  }

  function errorText(err) {
    if (err && err.errors) return err.errors.map((p) => p.code + (p.message ? ": " + p.message : "")).join("; ");
    return String(err);
  }

  // Language

  function applyLang() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = "paygate · " + t("title");
    document.querySelectorAll("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
    document.querySelectorAll("[data-i18n-placeholder]").forEach((n) => {
      n.placeholder = t(n.dataset.i18nPlaceholder);
    });
    $("lang").textContent = lang === "zh" ? "English" : "中文";
    setLive(live);
    const select = $("search-state");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, t("any_state")),
      ...PAYMENT_STATES.map((s) => el("option", { value: s }, t("st_" + s))));
    select.value = chosen;
    if (me) showWho();
    if (pending) renderBar();
    if (snap) render(snap);
  }

  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("paygate.lang", lang);
    applyLang();
  });

  // Signing in and out

  function showLogin() {
    me = null;
    if (source) { source.close(); source = null; }
    setLive(null);
    $("main").classList.add("hidden");
    $("who").classList.add("hidden");
    $("signout").classList.add("hidden");
    $("login").classList.remove("hidden");
  }

  function showWho() {
    $("who").textContent = `${me.name} (${me.user} · ${me.level})`;
  }

  async function showMain() {
    $("login").classList.add("hidden");
    $("main").classList.remove("hidden");
    $("who").classList.remove("hidden");
    $("signout").classList.remove("hidden");
    showWho();
    await loadActionNames();
    connect();
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      me = await api("POST", "/ops/login", { user: $("login-user").value, password: $("login-password").value });
      $("login-password").value = "";
      showMain();
    } catch (err) {
      $("login-error").textContent = errorText(err);
    }
  });

  $("signout").addEventListener("click", async () => {
    await api("POST", "/ops/logout", {}).catch(() => null);
    showLogin();
  });

  // Whether the browser is signed in (GET /ops/session answers 200 either way, so the
  // page makes no request that fails before sign-in): the page if so, the form if not.
  // A gateway that does not answer shows the form at start; once signed in, the event
  // stream keeps trying to reconnect by itself.
  async function checkSession(atStart) {
    try {
      const answer = await api("GET", "/ops/session");
      if (!answer.signed_in) { showLogin(); return; }
      if (!me) { me = answer.operator; showMain(); }
    } catch (err) {
      if (atStart) showLogin();
    }
  }

  // Live snapshots

  function setLive(on) {
    live = on;
    $("live").className = "live " + (on === null ? "hidden" : on ? "on" : "off");
    $("live").textContent = on === null ? "" : t(on ? "live_on" : "live_off");
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/ops/events");
    source.addEventListener("snapshot", (event) => {
      setLive(true);
      snap = JSON.parse(event.data);
      render(snap);
    });
    source.addEventListener("signed_out", () => showLogin());
    source.onerror = () => {
      setLive(false);
      checkSession(false);
    };
  }

  function render(s) {
    renderCards(s);
    renderPending(s.pending);
    fill("t-review", s.review, reviewColumns(), "review");
    $("review-note").textContent = shownOf(s.review.length, s.review_total);
    fill("t-stuck", s.stuck, paymentColumns(true), "stuck");
    $("stuck-note").textContent = shownOf(s.stuck.length, s.stuck_total);
    renderPayments(s);
    fill("t-queues", s.queues, [
      { h: "c_stream", f: (q) => q.stream }, { h: "c_length", f: (q) => q.length, cls: "num" },
      { h: "c_pending", f: (q) => q.pending, cls: "num" }, { h: "c_lag", f: (q) => q.lag, cls: "num" },
      { h: "c_age", f: (q) => q.oldest_age_s ?? "-", cls: "num" }]);
    fill("t-stages", s.stages, [
      { h: "c_stage", f: (g) => g.stage }, { h: "c_processed", f: (g) => g.processed, cls: "num" },
      { h: "c_failed", f: (g) => g.failed, cls: "num" }, { h: "c_rate", f: (g) => g.per_s ?? "-", cls: "num" }]);
    fill("t-dead", s.dead.entries, [
      { h: "c_id", f: (d) => d.id }, { h: "c_stream", f: (d) => d.stream },
      { h: "c_fields", f: (d) => JSON.stringify(d.fields), cls: "wrap" }, { h: "c_tries", f: (d) => d.deliveries },
      { h: "c_age", f: (d) => d.age_s, cls: "num" }, { h: "c_reason", f: (d) => d.reason, cls: "wrap" },
      { h: "c_actions", f: (d) => (me && me.may_act ? actionButton("retry", d.id) : null) }]);
    renderWebhooks(s.webhooks_failed);
    const alertColumns = [
      { h: "c_id", f: (a) => a.id }, { h: "c_at", f: (a) => a.at, cls: "nowrap" },
      { h: "c_code", f: (a) => a.code },
      { h: "c_detail", f: (a) => JSON.stringify(a.detail), cls: "wrap" },
      { h: "c_actions", f: (a) => (a.open && me && me.may_approve
        ? actionButton("alert_acknowledge", String(a.id))
        : a.closable && me && me.may_act
          ? actionButton("alert_close", String(a.id))
          : (a.acknowledged_by ? `${t("acknowledged_by")} ${a.acknowledged_by}` : null)) }];
    fill("t-alerts", s.alerts, alertColumns);
    fill("t-alerts-history", s.alert_history, alertColumns);
    $("alerts-history-count").textContent = s.alert_count.history;
    renderQueries(s.queries);
    fill("t-requests", s.requests, requestColumns(false), "req");
    fill("t-audit", s.audit, [
      { h: "c_at", f: (a) => a.at, cls: "nowrap" }, { h: "c_who", f: (a) => a.actor }, { h: "c_level", f: (a) => a.level },
      { h: "c_what", f: (a) => a.what }, { h: "c_request", f: (a) => a.request_id ?? "-" },
      { h: "c_target", f: (a) => a.target ?? "-", cls: "nowrap" },
      { h: "c_detail", f: (a) => JSON.stringify(a.detail), cls: "wrap" }]);
    $("updated").textContent = `${t("updated")} ${s.window.now.slice(11, 19)}`;
  }

  function renderWebhooks(w) {
    const may = me && me.may_act;
    const rows = (w && w.rows) || [];
    fill("t-webhooks", rows, [
      { h: "c_id", f: (h) => h.id }, { h: "c_events", f: (h) => h.events, cls: "num" },
      { h: "c_payment", f: (h) => h.payments.join(" ") + (h.events > h.payments.length ? " …" : ""), cls: "wrap" },
      { h: "c_tries", f: (h) => h.attempts, cls: "num" },
      { h: "c_at", f: (h) => (h.failed_at || "").replace("T", " ").slice(0, 19), cls: "nowrap" },
      { h: "c_actions", f: (h) => (may ? actionButton("webhook_resend", String(h.id)) : null) }]);
    const all = $("webhooks-all");
    all.replaceChildren();
    if (may && rows.length) {
      all.append(el("button", { type: "button", className: "small",
        dataset: { action: "webhook_resend", target: "failed" },
        on: { click: () => openAction("webhook_resend", "failed") } },
      `${t("a_webhook_resend_all")} (${w.total})`));
    }
  }

  function renderCards(s) {
    const w = s.window;
    $("c-window").textContent = `${w.status} ${lang === "zh" ? (w.name_zh || "") : (w.name_en || "")} · ${t(w.open ? "open" : "closed")}`;
    $("c-workdate").textContent = `${t("work_date")} ${w.work_date}`;
    // HVPS sending held by a refused status notice (ccms.801): since when and why; nothing
    // while the gateway and the NPC are in step.
    const held = w.sending && w.sending.held ? w.sending : null;
    $("c-window").classList.toggle("error", Boolean(held));
    $("c-sending").textContent = held ? sendingHeldText(held) : "";
    const n = w.next || {};
    $("c-next").textContent = n.status ? `${n.status} ${lang === "zh" ? n.name_zh : n.name_en}` : (n.error || "-");
    $("c-next-at").textContent = n.at
      ? n.at.replace("T", " ").slice(0, 16) + (n.overdue ? ` · ${t("overdue_not_announced")}` : "")
      : "";
    const link = s.link || {};
    $("c-link").textContent = linkText(link);
    $("c-link").classList.toggle("error", link.state === "down" || link.state === "degraded");
    const linkSince = `${t("since")} ${(link.since || "").replace("T", " ").slice(0, 19)}`;
    $("c-link-detail").textContent = link.state === "down"
      ? `${linkSince} · ${link.failed_deliveries} ${t("failed_deliveries")} · ${link.cause}`
      : link.state === "degraded"
        ? [linkSince,
           ...(link.refused_deliveries
             ? [`${link.refused_deliveries} ${t("refused_deliveries")}`, link.last_refusal] : []),
           ...(link.discarded_messages
             ? [`${link.discarded_messages} ${t("discarded_messages")}`, link.last_discard] : []),
          ].join(" · ")
        : "";
    $("c-balance").textContent = s.clearing_balance;
    $("c-queued").textContent = `${s.queued_at_npc.count} ${t("n_payments")}`;
    $("c-queued-amount").textContent = s.queued_at_npc.amount;
    $("c-beps").textContent = s.beps ? `${s.beps.net} / ${s.beps.cap || t("na")}` : t("na");
    renderHvpsRecon(s.hvps_reconciliation, s.reconciliation_overdue || [],
      s.hvps_reconciliation_owed || []);
    const r = s.beps_reconciliation;
    $("c-beps-recon").textContent = r ? (r.reconciled_through || "-") : t("na");
    const nn = s.beps_not_netted;
    const late = nn && nn.overdue.packages
      ? [`${t("not_netted_overdue")}: ${nn.overdue.items} (${nn.overdue.amount}) ${t("since")} ${nn.overdue.oldest_sent_at.replace("T", " ").slice(0, 19)}`]
      : [];
    $("c-beps-recon").classList.toggle("error", Boolean(r && r.with_differences) || late.length > 0);
    $("c-beps-recon-detail").textContent = r
      ? [...late, `${r.not_reconciled} ${t("recon_waiting")} · ${r.with_differences} ${t("recon_differing")}`,
         ...(nn && nn.items ? [`${nn.items} ${t("not_netted")}`] : [])].join(" · ")
      : "";
    $("c-pending").textContent = s.pending.length;
    $("c-alerts").textContent = s.alert_count.attention;
    $("c-alerts-history").textContent = `${s.alert_count.history} ${t("n_history")}`;
    const critical = s.critical_alerts || { open: 0, codes: {} };
    $("c-alerts").classList.toggle("error", critical.open > 0);
    $("c-alerts-critical").textContent = critical.open
      ? `${critical.open} ${t("critical_open")}: ${Object.keys(critical.codes).join(", ")}`
      : "";
    $("c-dead").textContent = s.dead.total;
  }

  function sendingHeldText(h) {
    const n = h.refused_notice;
    return [`${t("sending_held")} ${t("since")} ${h.since.replace("T", " ").slice(0, 19)}`,
      `${t("sending_refused_notice")} ${n.orig} → ${n.cur} (${n.date}, ${n.outcome})`,
      `${t("sending_gateway_on")} ${h.gateway_status} (${h.gateway_work_date})`].join(" · ");
  }

  // The last HVPS reconciliation (hvps.710/711): its work date and result; the
  // differing totals (and the items only one side has) when it differed, our totals
  // by kind when it agreed.
  function renderHvpsRecon(r, overdue, owed) {
    const big = $("c-hvps-recon");
    big.classList.toggle("error", Boolean((r && !r.reconciled) || overdue.length || owed.length));
    // Closed dates whose reconciliation is still owed (their books unconfirmed by the
    // NPC), then asks not answered in time (alert reconciliation_overdue): said before
    // the last result, which is not theirs.
    const late = [
      ...owed.map((o) => `${t("recon_owed")} ${o.work_date} ${t("recon_owed_closed")} ${t("since")} ${o.owed_since.replace("T", " ").slice(0, 19)}`),
      ...overdue.map((o) => `${o.system} ${o.work_date} ${t("recon_overdue")} (${o.asked_at.replace("T", " ").slice(0, 19)})`),
    ];
    if (!r) {
      big.textContent = late.length ? late[0] : t("recon_none");
      $("c-hvps-recon-detail").textContent = late.slice(1).join(" · ");
      return;
    }
    big.textContent = late.length ? late[0] : `${r.work_date} · ${t(r.reconciled ? "recon_agreed" : "recon_differs")}`;
    const amount = (d, side) => d[`${side}_yuan`] ?? d[side];
    const parts = r.reconciled
      ? r.totals.map((k) => `${k.kind} ${t("recon_sent")} ${k.sent_count} (${k.sent}), ${t("recon_received")} ${k.received_count} (${k.received})`)
      : r.differences.map((d) => `${d.mt}/${d.business_type} ${d.field}: ${t("recon_ours")} ${amount(d, "ours")}, NPC ${amount(d, "npc")}`);
    if (r.items) {
      parts.push(...r.items.differences.map((d) => `${d.msg_id} ${t("recon_only_at")} ${d.only_at}`));
    }
    if (late.length) parts.unshift(...late.slice(1), `${t("recon_last")} ${r.work_date} · ${t(r.reconciled ? "recon_agreed" : "recon_differs")}`);
    $("c-hvps-recon-detail").textContent = parts.join(" · ");
  }

  function fill(tableId, rows, columns, flashKey) {
    const table = $(tableId);
    const head = el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { className: c.cls || "" }, t(c.h)))));
    const body = el("tbody");
    if (!rows || rows.length === 0) {
      body.append(el("tr", {}, el("td", { colSpan: columns.length, className: "empty" }, t("none"))));
    }
    for (const row of rows || []) {
      const tr = el("tr", { dataset: { id: String(row.id ?? "") } });
      if (row.state) tr.dataset.state = row.state;
      columns.forEach((c) => tr.append(el("td", { className: c.cls || "" }, c.f(row))));
      if (flashKey && row.state) {
        const key = `${flashKey}:${row.id}`;
        if (lastStates.has(key) && lastStates.get(key) !== row.state) tr.classList.add("flash");
        lastStates.set(key, row.state);
      }
      body.append(tr);
    }
    table.replaceChildren(head, body);
  }

  // How much of a list the page shows, when the gateway holds more than it lists: "the
  // oldest 50 of 1,203 shown"; the count alone when the list is whole.
  function shownOf(shown, total) {
    if (total == null) return "";
    const n = (x) => x.toLocaleString("en-US");
    if (total > shown) return `${t("shown_oldest")} ${n(shown)} ${t("shown_of")} ${n(total)} ${t("shown_tail")}`;
    return `${t("in_all_head")} ${n(total)} ${t("in_all")}`.trim();
  }

  function badge(state) {
    return el("span", { className: "state " + state, dataset: { state } }, t("st_" + state));
  }

  // Payments

  function paymentColumns(withActions) {
    const columns = [
      { h: "c_id", f: (p) => el("a", { className: "link", on: { click: () => openDetail(p.id) } }, p.id), cls: "nowrap" },
      { h: "c_state", f: stateCell }, { h: "c_channel", f: (p) => p.channel },
      { h: "c_amount", f: (p) => p.amount, cls: "num" }, { h: "c_priority", f: (p) => p.priority },
      { h: "c_payer", f: (p) => p.payer_account }, { h: "c_payee", f: (p) => p.payee_name, cls: "text" },
      { h: "c_reason", f: (p) => p.reason || "", cls: "text" }, { h: "c_updated", f: (p) => stamp(p.updated_at) }];
    columns.forEach((c) => { c.cls = c.cls || "nowrap"; });
    if (withActions) columns.push({ h: "c_actions", f: paymentActions, cls: "actions" });
    return columns;
  }

  // The review list adds, after the reason, the party a screening reason refers to and
  // its name (the name a list matched), so that it shows without opening the payment.
  function reviewColumns() {
    const columns = paymentColumns(true);
    const at = columns.findIndex((c) => c.h === "c_reason") + 1;
    columns.splice(at, 0, { h: "c_matched", cls: "text",
      f: (p) => (p.matched_party ? t("party_" + p.matched_party) + ": " + (p.matched_name || "") : "") });
    return columns;
  }

  // A timestamp of today's work date as its time alone; of another date, with its date,
  // as the other tables show timestamps (a payment held since an earlier day says so).
  function stamp(at) {
    const today = snap && snap.window ? snap.window.work_date : null;
    return at.slice(0, 10) === today ? at.slice(11, 19) : at.replace("T", " ").slice(0, 19);
  }

  // A debit another bank sent us that the screening holds stays `received` (its state,
  // as the core system sees it), shown held for review beside it.
  function stateCell(p) {
    if (!p.held_for_review || p.state === "held") return badge(p.state);
    return el("span", null, badge(p.state), " ",
      el("span", { className: "state held", dataset: { state: "held_for_review" } }, t("held_for_review")));
  }

  // The row's buttons: the actions the gateway would take a request of now (its state
  // and the requests pending on it, GET /ops/api/payments and the snapshot's lists), those
  // this operator's level may ask for.
  function paymentActions(p) {
    const box = el("span");
    if (!me || !me.may_act) return box;
    box.append(...(p.actions || []).filter(mayRequest).map((a) => actionButton(a, p.id)));
    return box;
  }

  function mayRequest(action) {
    const level = actionLevels[action];
    return level === undefined || Number(me.level) >= Number(level);
  }

  function renderPayments(s) {
    const version = JSON.stringify(s.data_version);
    const changed = version !== seenVersion;
    seenVersion = version;
    if (search === null) {
      $("search-note").textContent = t("recent");
      fill("t-payments", s.recent, paymentColumns(true), "pay");
    } else if (changed) {
      runSearch();
    }
    if (detailId && changed) openDetail(detailId);
  }

  async function runSearch() {
    const query = new URLSearchParams(Object.entries(search).filter(([, v]) => v));
    try {
      const answer = await api("GET", "/ops/api/payments?" + query);
      $("search-note").textContent = `${t("results")}: ${answer.payments.length}`;
      fill("t-payments", answer.payments, paymentColumns(true), "pay");
    } catch (err) {
      $("search-note").textContent = errorText(err);
    }
  }

  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search = Object.fromEntries(new FormData(event.target).entries());
    runSearch();
  });

  $("search-clear").addEventListener("click", () => {
    $("search-form").reset();
    search = null;
    if (snap) renderPayments(snap);
  });

  async function openDetail(id) {
    detailId = id;
    try {
      const p = await api("GET", "/ops/api/payments/" + encodeURIComponent(id));
      $("detail-title").replaceChildren(`${p.id} · `, stateCell(p), ` · ${p.amount} · ${p.payee_name}`);
      fill("t-history", p.history, [
        { h: "c_at", f: (e) => e.at }, { h: "c_state", f: (e) => badge(e.state) },
        { h: "c_event", f: (e) => e.event }, { h: "c_detail", f: (e) => JSON.stringify(e.detail), cls: "wrap" }]);
      // The actions its state allows now, as the gateway checks a request of them (each
      // a request, which a second person approves where the action needs one).
      // And, for a BEPS item, those on the package that carries it.
      $("detail-actions").replaceChildren(...(p.actions || []).map((a) => actionButton(a, p.id)),
        ...(p.package_actions || []).map((a) => actionButton(a, p.package)));
      $("detail-actions-none").classList.toggle("hidden",
        (p.actions || []).length + (p.package_actions || []).length > 0);
      $("detail").classList.remove("hidden");
    } catch (err) {
      $("detail-title").textContent = errorText(err);
    }
  }

  $("detail-close").addEventListener("click", () => { detailId = null; $("detail").classList.add("hidden"); });

  // Requests and actions

  function requestColumns(withDecision) {
    const columns = [
      { h: "c_id", f: (r) => r.id }, { h: "c_action", f: (r) => actionName(r.action) },
      { h: "c_target", f: (r) => r.target + paramsText(r) }, { h: "c_amount", f: (r) => r.amount || "", cls: "num" },
      { h: "c_state", f: (r) => badge(r.state), cls: "nowrap" },
      { h: "c_by", f: (r) => r.requested_by }, { h: "c_at", f: (r) => stamp(r.requested_at) },
      { h: "c_note", f: (r) => r.note, cls: "wrap" }, { h: "c_decided", f: (r) => r.decided_by || "" },
      { h: "c_outcome", f: (r) => (r.outcome ? JSON.stringify(r.outcome) : ""), cls: "wrap" }];
    if (withDecision) columns.push({ h: "c_actions", f: decisionButtons });
    return columns;
  }

  function renderPending(rows) {
    fill("t-pending", rows, requestColumns(true), "pend");
  }

  function decisionButtons(r) {
    const box = el("span");
    if (!me) return box;
    if (r.requested_by === me.user) {
      box.append(el("button", { type: "button", className: "small ghost", dataset: { decide: "reject", request: String(r.id) },
        on: { click: () => openDecision(r, false) } }, t("withdraw")));
    } else if (me.may_approve) {
      box.append(el("button", { type: "button", className: "small", dataset: { decide: "approve", request: String(r.id) },
        on: { click: () => openDecision(r, true) } }, t("approve")));
      box.append(el("button", { type: "button", className: "small danger", dataset: { decide: "reject", request: String(r.id) },
        on: { click: () => openDecision(r, false) } }, t("reject")));
    }
    return box;
  }

  // A decision is never taken on one click: the bar asks to confirm it, naming the
  // action, the payment (or other target) and its amount, with a note for the record.
  function openDecision(r, approve) {
    const own = r.requested_by === (me && me.user);
    pending = { decide: approve ? "approve" : (own ? "withdraw" : "reject"), request: r };
    $("action-note").value = "";
    $("action-error").textContent = "";
    renderBar();
    $("action-bar").classList.remove("hidden");
    $("action-send").focus();
  }

  function renderBar() {
    const bar = $("action-bar");
    const send = $("action-send");
    if (pending.decide) {
      const r = pending.request;
      const amount = r.amount ? ` · ${r.amount} ${t("yuan")}` : "";
      $("action-text").textContent =
        `${t("confirm_" + pending.decide)} #${r.id}: ${actionName(r.action)} · ${r.target}${amount}${paramsText(r)}?`;
      send.textContent = t(pending.decide);
      send.classList.toggle("danger", pending.decide !== "approve");
      bar.dataset.mode = pending.decide;
      $("action-priority").classList.add("hidden");
      $("action-account").classList.add("hidden");
      return;
    }
    $("action-text").textContent = `${t("requested")}: ${actionName(pending.action)} · ${pending.target}`;
    send.textContent = t("send");
    send.classList.remove("danger");
    bar.dataset.mode = "request";
    $("action-priority").classList.toggle("hidden", pending.action !== "priority");
    $("action-account").classList.toggle("hidden", pending.action !== "suspense_apply");
    $("action-note").placeholder = t(NOTE_HINTS[pending.action] || "note");
  }

  // What a request's parameters say beyond its action and target, for the second person
  // deciding on it: every parameter it carries (the priority asked for, the item and the
  // account an application of suspense names, what a retry sends again), named in the
  // page's words where it has them, else by the parameter's own name.
  const PARAM_WORDS = { pending_no: "item", account: "to_account", priority: "c_priority" };
  const PRIORITY_NAMES = { 1: "1 URGT", 2: "2 HIGH", 3: "3 NORM" };
  function paramsText(r) {
    const p = r.params || {};
    const order = ["pending_no", "account", "priority"];
    const names = [...order.filter((k) => k in p), ...Object.keys(p).filter((k) => !order.includes(k))];
    return names.map((k) => {
      const v = p[k];
      const shown = k === "priority" && PRIORITY_NAMES[v] ? PRIORITY_NAMES[v]
        : (typeof v === "object" && v !== null ? JSON.stringify(v) : String(v));
      return ` · ${PARAM_WORDS[k] ? t(PARAM_WORDS[k]) : k} ${shown}`;
    }).join("");
  }

  async function sendDecision() {
    const { decide, request } = pending;
    const path = `/ops/api/requests/${request.id}/${decide === "approve" ? "approve" : "reject"}`;
    try {
      const req = await api("POST", path, { note: $("action-note").value });
      pending = null;
      $("action-text").textContent = `#${req.id} ${actionName(req.action)} · ${t("st_" + req.state)}`;
      $("action-error").textContent = "";
      $("action-send").textContent = t("send");
      $("action-bar").dataset.mode = "done";
    } catch (err) {
      showBarError(err);
    }
  }

  function actionButton(action, target) {
    return el("button", { type: "button", className: "small" + (DANGER.includes(action) ? " danger" : ""),
      dataset: { action, target }, on: { click: () => openAction(action, target) } }, actionName(action));
  }

  function openAction(action, target) {
    pending = { action, target };
    renderBar();
    $("action-note").value = "";
    $("action-account").value = "";
    $("action-error").textContent = "";
    $("action-bar").classList.remove("hidden");
    $(pending.action === "suspense_apply" ? "action-account" : "action-note").focus();
  }

  function showBarError(err) {
    $("action-bar").classList.remove("hidden");
    $("action-error").textContent = errorText(err);
  }

  $("action-send").addEventListener("click", async () => {
    if (!pending) return;
    if (pending.decide) { await sendDecision(); return; }
    const body = { action: pending.action, target: pending.target, note: $("action-note").value, params: {} };
    if (pending.action === "priority") body.params.priority = Number($("action-priority").value);
    if (pending.action === "suspense_apply") body.params.account = $("action-account").value.trim();
    try {
      const req = await api("POST", "/ops/api/requests", body);
      pending = null;
      $("action-text").textContent = `${t("request_sent")}: #${req.id} · ${t("st_" + req.state)}`;
      $("action-bar").dataset.mode = "done";
      $("action-error").textContent = "";
    } catch (err) {
      showBarError(err);
    }
  });

  $("action-close").addEventListener("click", () => { pending = null; $("action-bar").classList.add("hidden"); });

  // Overdue queries and the message archive

  function renderQueries(q) {
    $("queries-panel").classList.toggle("hidden", !q);
    if (!q) return;
    fill("t-queries", q.rows, q.columns.map((c) => ({ h: c, f: (r) => r[c], cls: c === "content" ? "wrap" : "nowrap" })));
    // Our queries, replies and free text the NPC refused: they never reached the bank.
    $("refused-part").classList.toggle("hidden", !q.refused);
    if (!q.refused) return;
    fill("t-refused", q.refused.rows, q.refused.columns.map((c) => ({ h: c, f: (r) => r[c], cls: c === "content" || c === "refusal_reason" ? "wrap" : "nowrap" })));
  }

  $("archive-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = new URLSearchParams([...new FormData(event.target).entries()].filter(([, v]) => v));
    try {
      const answer = await api("GET", "/ops/api/messages?" + query);
      fill("t-archive", answer.messages, [
        { h: "c_id", f: (m) => el("a", { className: "link", on: { click: () => openMessage(m.id) } }, m.id) },
        { h: "c_direction", f: (m) => m.direction }, { h: "c_type", f: (m) => m.mesg_type },
        { h: "c_mesg_id", f: (m) => m.mesg_id }, { h: "c_sender", f: (m) => m.sender },
        { h: "c_receiver", f: (m) => m.receiver }, { h: "c_at", f: (m) => m.at },
        { h: "c_payment", f: (m) => m.payment_id || "" }]);
    } catch (err) {
      $("t-archive").replaceChildren(el("caption", { className: "error" }, errorText(err)));
    }
  });

  async function openMessage(id) {
    const m = await api("GET", "/ops/api/messages/" + id);
    $("message-title").textContent = `${m.mesg_type} · ${m.mesg_id} · ${m.sender} → ${m.receiver}`;
    $("message-raw").textContent = m.raw;
    $("message-parsed").textContent = JSON.stringify(m.parsed, null, 2);
    $("message").classList.remove("hidden");
  }

  $("message-close").addEventListener("click", () => $("message").classList.add("hidden"));

  // Start

  applyLang();
  checkSession(true);
})();
