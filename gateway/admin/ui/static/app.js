// seawall admin page: polls /admin/ui/state twice a second (paused while the tab is
// hidden or the pause button is pressed) and renders it. Every value from the server
// is put in the page as text (textContent, createElement): never as HTML.
(function () {
  "use strict";

  const POLL_MS = 500;
  const TIMEOUT_MS = 5000;
  const KEY_STORAGE = "seawall.adminKey";
  const SVG = "http://www.w3.org/2000/svg";
  const DASH = "\u2013";

  const $ = (id) => document.getElementById(id);
  let paused = false;
  let blocked = false; // the key was refused: wait for another one
  let timer = null;
  let busy = false;
  let facts = null; // what was announced last: breaker states, alerts, rollout

  // -- small DOM helpers -----------------------------------------------------

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function td(row, content, className) {
    const cell = el("td", null, className);
    if (content instanceof Node) cell.appendChild(content);
    else cell.textContent = content === undefined || content === null ? DASH : String(content);
    row.appendChild(cell);
    return cell;
  }

  function fill(table, rows, empty) {
    const body = table.tBodies[0];
    const columns = table.tHead.rows[0].cells.length;
    if (rows.length === 0) {
      const row = el("tr");
      const cell = td(row, empty, "empty");
      cell.colSpan = columns;
      body.replaceChildren(row);
      return;
    }
    body.replaceChildren(...rows);
  }

  function pill(text, kind) {
    return el("span", text, "pill " + String(kind || text).replace(/[^a-z_-]/gi, ""));
  }

  function meter(share, near) {
    const box = el("span", null, near ? "meter near" : "meter");
    box.setAttribute("aria-hidden", "true");
    const bar = el("span");
    bar.style.width = Math.max(0, Math.min(100, share * 100)).toFixed(1) + "%";
    box.appendChild(bar);
    return box;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // -- formatting ------------------------------------------------------------

  function ms(value) {
    if (value === null || value === undefined) return DASH;
    return value < 10 ? value.toFixed(1) : String(Math.round(value));
  }
  function percent(value, digits) {
    if (value === null || value === undefined) return DASH;
    return (value * 100).toFixed(digits === undefined ? 1 : digits) + "%";
  }
  function fixed(value, digits) {
    return value === null || value === undefined ? DASH : Number(value).toFixed(digits);
  }
  function clock(unix) {
    return unix ? new Date(unix * 1000).toLocaleTimeString([], { hour12: false }) : DASH;
  }
  function seconds(value) {
    if (value === null || value === undefined) return DASH;
    if (value < 90) return Math.round(value) + " s";
    if (value < 5400) return Math.round(value / 60) + " min";
    return (value / 3600).toFixed(1) + " h";
  }
  function version(v) {
    return v ? "#" + v.number + " " + v.id : DASH;
  }

  // -- sparklines ------------------------------------------------------------

  function sparkline(points, label) {
    const width = 120, height = 28;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    const values = points.map((p) => Number(p[1]) || 0);
    const latest = values.length ? values[values.length - 1] : null;
    const text = values.length < 2
      ? label + ": not enough samples yet"
      : label + ": " + values.length + " samples, latest " + latest.toFixed(2) + ", highest " + Math.max(...values).toFixed(2);
    svg.setAttribute("aria-label", text);
    const title = document.createElementNS(SVG, "title");
    title.textContent = text;
    svg.appendChild(title);
    if (values.length < 2) return svg;
    const top = Math.max(1, ...values) * 1.1;
    const y = (v) => (height - 1 - (v / top) * (height - 2)).toFixed(1);
    const x = (i) => ((i / (values.length - 1)) * width).toFixed(1);
    const line = values.map((v, i) => x(i) + "," + y(v)).join(" ");
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("points", "0," + height + " " + line + " " + width + "," + height);
    svg.appendChild(area);
    const budget = document.createElementNS(SVG, "line"); // burn rate 1: on budget
    budget.setAttribute("x1", "0");
    budget.setAttribute("x2", String(width));
    budget.setAttribute("y1", y(1));
    budget.setAttribute("y2", y(1));
    svg.appendChild(budget);
    const path = document.createElementNS(SVG, "polyline");
    path.setAttribute("points", line);
    svg.appendChild(path);
    return svg;
  }

  // -- sections ----------------------------------------------------------------

  function renderSummary(state) {
    const viewer = state.viewer;
    const scope = viewer.root ? "the whole gateway" : "tenant " + viewer.tenant + " and below";
    setText(
      $("summary"),
      "Serving config " + version(state.config.version) + " \u00b7 key " + viewer.key +
        " (" + viewer.roles.join(", ") + ") sees " + scope
    );
  }

  function renderDeployments(routing) {
    const rows = [];
    for (const group of routing.groups) {
      for (const d of group.deployments) {
        const row = el("tr");
        row.dataset.deployment = d.id;
        const cell = td(row, el("span", d.id, "name"));
        cell.appendChild(el("div", group.name + " \u00b7 " + d.provider + " \u00b7 " + d.model, "muted small"));
        const breaker = td(row, pill(d.breaker.state), "breaker");
        if (d.breaker.state === "open" && d.breaker.reopens_in_ms !== null) {
          const wait = d.breaker.reopens_in_ms / 1000;
          breaker.appendChild(el("div", wait < 0.5 ? "next call probes" : "probe in " + seconds(wait), "muted small"));
        }
        const errors = td(row, percent(d.window.error_rate), "num");
        errors.appendChild(el("div", d.window.errors + " of " + d.window.attempts, "muted small"));
        td(row, ms(d.window.p50_ms), "num");
        td(row, ms(d.window.p99_ms), "num");
        td(row, d.in_flight, "num");
        td(row, fixed(d.effective_weight, 2), "num");
        td(row, fixed(d.weight, 2), "num");
        rows.push(row);
      }
    }
    fill($("deployments"), rows, "No deployment in your scope.");
  }

  function windowBurn(slo, seconds) {
    const found = slo.windows.find((w) => w.window_s === seconds);
    return found ? found.burn_rate : null;
  }

  function renderSlos(slos) {
    const rows = slos.map((slo) => {
      const row = el("tr");
      row.dataset.slo = slo.name;
      const scope = (slo.tenant ? "tenant " + slo.tenant : "all tenants") +
        (slo.model_group ? " \u00b7 " + slo.model_group : "") + " \u00b7 " + slo.kind;
      const name = td(row, el("span", slo.name, "name"));
      name.appendChild(el("div", scope, "muted small"));
      td(row, slo.severity ? pill(slo.severity) : pill("none", "ok"));
      td(row, sparkline(slo.history || [], "5-minute burn rate of " + slo.name));
      td(row, fixed(slo.windows.length ? slo.windows[0].burn_rate : null, 2), "num");
      td(row, fixed(windowBurn(slo, 3600), 2), "num");
      const left = td(row, meter(Math.max(0, slo.budget_remaining), slo.budget_remaining < 0.2), "num");
      left.appendChild(document.createTextNode(
        slo.budget_remaining < 0 ? "none (" + percent(slo.budget_consumed, 0) + " used)" : percent(slo.budget_remaining)
      ));
      td(row, percent(slo.objective, 2), "num");
      return row;
    });
    fill($("slos"), rows, "No SLO in your scope.");
  }

  function renderLimits(limits, audit) {
    const store = limits.store;
    setText(
      $("limits-store"),
      "Store: " + store.kind + (store.available ? ", answering" : ", not answering: " + (store.last_error || "unknown")) +
        " \u00b7 " + limits.near + " of " + limits.count + " limits near exhaustion"
    );
    const rows = limits.limits.map((l) => {
      const row = el("tr");
      td(row, l.level);
      td(row, l.limit);
      const share = td(row, meter(l.share, l.near));
      share.appendChild(document.createTextNode(percent(l.share, 0) + " "));
      if (l.near) share.appendChild(pill("near"));
      td(row, l.used, "num");
      td(row, l.max, "num");
      td(row, l.reset_ms === null ? DASH : seconds(l.reset_ms / 1000), "num");
      return row;
    });
    fill($("limits"), rows, "No limit in your scope.");

    const table = $("refusals");
    let refusals = [];
    if (audit.enabled) {
      table.caption.textContent = "Requests refused by a limit in the last 15 minutes (audit log), by level";
      refusals = (audit.refusals || []).map((r) => [r.level, DASH, r.count]);
    } else if (limits.refused_totals) {
      table.caption.textContent = "Requests refused by a limit since the gateway started, by kind of level (the audit log is off)";
      refusals = limits.refused_totals.map((r) => [r.level, r.limit, r.count]);
    } else {
      table.caption.textContent = "Requests refused by a limit, by level (needs the audit log)";
    }
    fill(table, refusals.map((values) => {
      const row = el("tr");
      td(row, values[0]);
      td(row, values[1]);
      td(row, values[2], "num");
      return row;
    }), "No refusal.");
  }

  function renderChaos(chaos) {
    setText($("chaos-mode"), chaos.enabled ? "Chaos mode is on." : "Chaos mode is off (chaos.enabled).");
    fill($("faults"), chaos.faults.map((f) => {
      const row = el("tr");
      td(row, f.fault);
      td(row, f.target || "anything");
      td(row, f.scope);
      td(row, f.injected, "num");
      td(row, seconds(f.expires_in_s), "num");
      return row;
    }), "No fault scheduled.");
    fill($("injected"), chaos.injected.map((i) => {
      const row = el("tr");
      td(row, i.fault);
      td(row, i.where);
      td(row, i.count, "num");
      return row;
    }), "Nothing injected.");
  }

  function fact(list, term, value) {
    list.appendChild(el("dt", term));
    const dd = el("dd");
    if (value instanceof Node) dd.appendChild(value);
    else dd.textContent = value === undefined || value === null ? DASH : String(value);
    list.appendChild(dd);
  }

  function renderRollout(rollout) {
    const box = $("rollout");
    const parts = [el("h3", "Rollout")];
    if (!rollout) {
      parts.push(el("p", "No rollout.", "muted"));
      box.replaceChildren(...parts);
      return;
    }
    const list = el("dl", null, "facts");
    fact(list, "State", pill(rollout.state));
    fact(list, "Baseline", version(rollout.baseline));
    fact(list, "Candidate", version(rollout.candidate));
    if (rollout.share !== undefined) fact(list, "Share", percent(rollout.share, 0));
    if (rollout.tenants && rollout.tenants.length) fact(list, "Tenants", rollout.tenants.join(", "));
    const samples = rollout.samples || {};
    let counted = "baseline " + (samples.baseline ?? DASH) + " \u00b7 candidate " + (samples.candidate ?? DASH);
    if (rollout.min_samples !== undefined) counted += " (at least " + rollout.min_samples + ")";
    fact(list, "Samples", counted);
    if (rollout.started_at) fact(list, "Started", clock(rollout.started_at));
    if (rollout.bake_s !== undefined) fact(list, "Bake", seconds(rollout.bake_s));
    const verdict = rollout.verdict || {};
    fact(list, "Verdict", verdict.result ? pill(verdict.result) : "not yet");
    parts.push(list);
    if (verdict.reasons && verdict.reasons.length) {
      const reasons = el("ul", null, "small");
      for (const reason of verdict.reasons) reasons.appendChild(el("li", reason));
      parts.push(reasons);
    }
    if (rollout.steps && rollout.steps.length) {
      const table = el("table");
      table.appendChild(el("caption", "Rollout steps, newest first"));
      const head = el("thead");
      const headRow = el("tr");
      for (const name of ["At", "Action", "Version", "Reason"]) {
        const th = el("th", name);
        th.scope = "col";
        headRow.appendChild(th);
      }
      head.appendChild(headRow);
      table.appendChild(head);
      const body = el("tbody");
      for (const step of rollout.steps.slice(-5).reverse()) {
        const row = el("tr");
        td(row, clock(step.at));
        td(row, step.action);
        td(row, step.version);
        td(row, step.reason);
        body.appendChild(row);
      }
      table.appendChild(body);
      parts.push(table);
    }
    box.replaceChildren(...parts);
  }

  function renderConfig(config) {
    const list = $("config");
    const items = el("dl");
    fact(items, "Serving", version(config.version));
    fact(items, "Loaded", clock(config.version.loaded_at));
    if (config.version.origin) fact(items, "From", config.version.origin);
    if (config.reloads) {
      const counts = Object.entries(config.reloads).map((e) => e[0] + " " + e[1]);
      fact(items, "Reloads", counts.length ? counts.join(", ") : "none yet");
    }
    list.replaceChildren(...items.childNodes);
    renderRollout(config.rollout);

    const root = Array.isArray(config.versions);
    $("versions").hidden = !root;
    $("refused").hidden = !root;
    if (!root) return;
    fill($("versions"), config.versions.map((v) => {
      const row = el("tr");
      td(row, v.number, "num");
      td(row, v.id, "mono");
      td(row, clock(v.loaded_at));
      td(row, v.origin);
      return row;
    }), "No version.");
    fill($("refused"), config.refused.map((r) => {
      const row = el("tr");
      td(row, r.id, "mono");
      td(row, clock(r.at));
      td(row, r.origin);
      td(row, r.problems.join("; "));
      return row;
    }), "Nothing refused since the start.");
  }

  function renderAudit(audit) {
    if (!audit.enabled) {
      setText($("audit-note"), "The audit log is off (audit.enabled in the config): no decisions to show.");
      fill($("decisions"), [], "The audit log is off.");
      return;
    }
    setText(
      $("audit-note"),
      (audit.error ? audit.error + " " : "") + "From the audit log, as of " + clock(audit.as_of) + "; the last 15 minutes."
    );
    fill($("decisions"), (audit.decisions || []).map((d) => {
      const row = el("tr");
      td(row, clock(d.time));
      const what = td(row, d.what.length ? d.what.join("; ") : d.error);
      what.appendChild(el("div", d.status + (d.error ? " " + d.error : "") + (d.model ? " \u00b7 " + d.model : ""), "muted small"));
      td(row, d.tenant);
      td(row, d.key);
      return row;
    }), "No decision in the last 15 minutes.");
  }

  // -- announcements (aria-live): only what changed, never every refresh -------

  function announce(state) {
    const now = new Map();
    for (const group of state.deployments.groups) {
      for (const d of group.deployments) now.set("Breaker of " + d.id, d.breaker.state);
    }
    for (const slo of state.slos) now.set("Alert of SLO " + slo.name, slo.severity || "none");
    const rollout = state.config.rollout;
    now.set("Rollout", rollout ? rollout.state : "none");
    const previous = facts;
    facts = now;
    if (previous === null) return;
    const changes = [];
    for (const [name, value] of now) {
      if (previous.has(name) && previous.get(name) !== value) changes.push(name + ": " + value);
    }
    if (changes.length) setText($("status"), changes.join(". ") + ".");
  }

  function render(state) {
    renderSummary(state);
    renderDeployments(state.deployments);
    renderSlos(state.slos);
    renderLimits(state.limits, state.audit);
    renderChaos(state.chaos);
    renderConfig(state.config);
    renderAudit(state.audit);
    announce(state);
    setText($("updated"), "Updated " + clock(state.generated_at));
  }

  // -- polling -----------------------------------------------------------------

  function problem(text) {
    const box = $("problem");
    if (text) {
      setText(box, text);
      box.hidden = false;
    } else if (!box.hidden) {
      box.hidden = true;
      box.textContent = "";
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    if (!paused && !blocked && !document.hidden) timer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    clearTimeout(timer);
    if (busy) return;
    busy = true;
    const controller = new AbortController();
    const deadline = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const headers = { Accept: "application/json" };
      const key = sessionStorage.getItem(KEY_STORAGE);
      if (key) headers.Authorization = "Bearer " + key;
      const response = await fetch("/admin/ui/state", {
        headers: headers,
        cache: "no-store",
        credentials: "omit",
        signal: controller.signal,
      });
      if (!response.ok) {
        let message = "HTTP " + response.status;
        try {
          const body = await response.json();
          if (body && body.error && body.error.message) message = body.error.message;
        } catch (ignored) {
          // not the gateway's envelope: the status says enough
        }
        if (response.status === 401 || response.status === 403) {
          blocked = true;
          problem("The gateway refused the key (" + response.status + "): " + message + " Enter an admin or auditor key.");
        } else {
          problem("The gateway answered " + response.status + ": " + message);
        }
        return;
      }
      render(await response.json());
      problem(null);
    } catch (error) {
      problem(error.name === "AbortError"
        ? "The gateway did not answer within " + TIMEOUT_MS / 1000 + " s."
        : "The gateway could not be reached.");
    } finally {
      clearTimeout(deadline);
      busy = false;
      schedule();
    }
  }

  function setPaused(value) {
    paused = value;
    const button = $("pause");
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume updates" : "Pause updates";
    setText($("status"), paused ? "Updates paused." : "Updates resumed.");
    if (paused) schedule();
    else poll();
  }

  function start() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("key");
      const key = input.value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
      input.value = "";
      blocked = false;
      setText($("status"), key ? "Key set for this tab." : "No key: asking as the local caller.");
      poll();
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      blocked = false;
      setText($("status"), "Key forgotten.");
      poll();
    });
    $("pause").addEventListener("click", () => setPaused(!paused));
    $("refresh").addEventListener("click", () => {
      blocked = false;
      poll();
    });
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) schedule();
      else if (!paused) poll();
    });
    poll();
  }

  start();
})();
