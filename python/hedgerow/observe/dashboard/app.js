// hedgerow dashboard: polls /dashboard/api/state and redraws. No framework, no build step.
// Everything from the server is put in the page with textContent (never as HTML): event
// details can carry text an upstream wrote.
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const REFRESH_MS = Math.max(250, Number(params.get("refresh") || 2) * 1000);
  const SPAN_S = 30 * 60; // the timeline and the event list cover the last 30 minutes
  const SVG = "http://www.w3.org/2000/svg";
  const LANES = [
    ["failover", "failovers"],
    ["breaker", "breakers"],
    ["alert", "alerts"],
    ["degraded", "degraded"],
    ["operator", "operator"],
    ["status", "status pages"],
    ["hedge", "hedges / retries"],
  ];

  let previous = null; // {at, attempts} from the last poll, for req/s
  let rates = {};

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(x < 0.1 ? 1 : 0) + "%");
  function ms(x) {
    if (x === null || x === undefined) return "–";
    if (x >= 1000) return (x / 1000).toFixed(2) + " s";
    return x.toFixed(x < 10 ? 1 : 0) + " ms";
  }
  const clock = (epoch) => new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "start";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    return (seconds / 3600).toFixed(1) + " h ago";
  }

  function laneOf(kind) {
    if (kind === "failover") return "failover";
    if (kind === "breaker") return "breaker";
    if (kind === "alert") return "alert";
    if (kind === "degraded" || kind === "retries_exhausted") return "degraded";
    if (kind === "operator") return "operator";
    if (kind.startsWith("status_")) return "status";
    if (kind.startsWith("hedge_") || kind.startsWith("retry")) return "hedge";
    return null;
  }

  function markerClass(event) {
    const lane = laneOf(event.kind);
    if (lane === "breaker") return "k-breaker-" + (event.detail.state || "open");
    if (lane === "alert") return event.detail.state === "resolved" ? "k-alert-resolved" : "k-alert";
    return "k-" + lane;
  }

  function describe(event) {
    const d = event.detail || {};
    switch (event.kind) {
      case "failover":
        return `→ ${event.deployment} (tier ${d.tier}) after ${d.after || "?"}`;
      case "breaker":
        return `${event.deployment} breaker ${d.state}`;
      case "alert":
        return `${(d.state || "").toUpperCase()} ${d.summary || d.rule}`;
      case "degraded":
        return `minimal answer: ${d.minimal}` + (d.after ? ` after ${d.after}` : "");
      case "operator": {
        const who = d.by ? ` by ${d.by}` : "";
        const why = d.reason ? ` — ${d.reason}` : "";
        if (d.action === "pin") return `pin ${event.route} to tier ${d.tier === null ? "all" : d.tier}${who}${why}`;
        if (d.action === "minimal") return `${event.route} minimal ${d.on ? "on" : "off"}${who}${why}`;
        return `${d.action} ${event.deployment}${who}${why}`;
      }
      case "status_incident":
        return `${event.deployment}: ${d.name || d.id} (${d.state}${d.impact ? ", " + d.impact : ""})`;
      case "status_action":
        return `${event.deployment}: ${d.action}`;
      case "retries_exhausted":
        return `retries exhausted after ${d.attempts} attempts (${d.error || "?"})`;
      default:
        return [event.route, event.deployment].filter(Boolean).join(" ") || "";
    }
  }

  function renderOverall(health) {
    const pill = $("overall");
    pill.dataset.status = health.status;
    pill.textContent = health.status;
    const flags = $("operator-flags");
    flags.replaceChildren();
    for (const key of health.operator.disabled) flags.append(el("span", { class: "flag" }, "disabled: " + key));
    for (const [route, tier] of Object.entries(health.operator.pinned)) flags.append(el("span", { class: "flag" }, `${route} pinned to tier ${tier}`));
    for (const route of health.operator.minimal) flags.append(el("span", { class: "flag" }, `${route}: minimal answer`));
  }

  function renderAlerts(alerts) {
    const list = $("alerts");
    const count = $("alert-count");
    count.textContent = String(alerts.length);
    count.classList.toggle("hot", alerts.length > 0);
    list.replaceChildren();
    if (!alerts.length) {
      list.append(el("li", { class: "muted" }, "none"));
      return;
    }
    for (const alert of alerts) {
      list.append(
        el("li", { "data-alert": alert.key },
          el("span", { class: "rule" }, alert.rule),
          alert.summary + " ",
          el("span", { class: "muted" }, "since " + clock(alert.started_at)))
      );
    }
  }

  function renderDeployments(deployments) {
    const body = $("deployments").tBodies[0];
    body.replaceChildren();
    for (const d of deployments) {
      const state = d.disabled ? "disabled" : d.state;
      const label = d.disabled ? "disabled" : d.state.replace("_", "-");
      const limits = Object.entries(d.rate_limits)
        .map(([name, l]) => `${Math.floor(l.remaining)}/${l.limit} ${name}`)
        .join(", ") || "–";
      const rate = rates[d.deployment];
      const errClass = d.window.error_rate >= 0.05 ? "bad" : d.window.error_rate > 0 ? "warn" : "";
      body.append(
        el("tr", { "data-deployment": d.deployment },
          el("td", {}, el("strong", {}, d.deployment)),
          el("td", { class: "sub" }, d.routes.map((r) => `${r.route} (${r.tier})`).join(", ")),
          el("td", { "data-field": "state" }, el("span", { class: "badge state-" + state }, label)),
          el("td", { "data-field": "since", class: "sub" }, ago(d.breaker.since_seconds)),
          el("td", { class: "num " + errClass, "data-field": "error-rate" }, pct(d.window.total ? d.window.error_rate : null)),
          el("td", { class: "num", "data-field": "p50" }, ms(d.window.p50_ms)),
          el("td", { class: "num", "data-field": "p99" }, ms(d.window.p99_ms)),
          el("td", { class: "num", "data-field": "rps" }, (rate === undefined ? d.window.per_second : rate).toFixed(2)),
          el("td", { class: "num", "data-field": "in-flight" }, String(d.in_flight)),
          el("td", { class: "num", "data-field": "rate-limit" }, limits))
      );
    }
  }

  function renderRoutes(routes) {
    const body = $("routes").tBodies[0];
    body.replaceChildren();
    for (const r of routes) {
      const flags = [];
      if (r.pinned_tier !== null) flags.push(`pinned to tier ${r.pinned_tier}`);
      if (r.force_minimal) flags.push("minimal answer forced");
      const tiers = r.tiers.map((tier, i) => `${i}: ${tier.join(", ")}`);
      if (r.minimal.length) tiers.push("minimal: " + r.minimal.join(", "));
      body.append(
        el("tr", { "data-route": r.route },
          el("td", {}, el("strong", {}, r.route)),
          el("td", { class: "sub" }, tiers.join(" · ")),
          el("td", { class: flags.length ? "warn" : "muted" }, flags.join(", ") || "—"),
          el("td", { class: "num" }, r.ready_in === null ? "out" : r.ready_in > 0 ? r.ready_in.toFixed(1) + " s" : "now"))
      );
    }
  }

  function renderStatusPages(pages) {
    const list = $("status-pages");
    list.replaceChildren();
    if (!pages.length) {
      list.append(el("li", { class: "muted" }, "none configured"));
      return;
    }
    for (const p of pages) {
      const state = p.result === "ok" ? (p.incidents.length ? "incident" : p.description || "ok") : p.result || "not polled yet";
      const item = el("li", { "data-provider": p.provider },
        el("strong", {}, p.provider), " — ",
        el("span", { class: p.incidents.length ? "bad" : p.result === "ok" ? "" : "warn" }, state),
        el("span", { class: "muted" }, ` (${p.action})`));
      for (const i of p.incidents) item.append(el("div", { class: "sub" }, `${i.impact}: ${i.name} [${i.status}]`));
      list.append(item);
    }
  }

  function renderTimeline(events, now) {
    const box = $("timeline");
    const width = box.clientWidth || 900;
    const height = 190;
    const left = 110;
    const right = 12;
    const laneH = (height - 24) / LANES.length;
    box.setAttribute("viewBox", `0 0 ${width} ${height}`);
    box.replaceChildren();
    const x = (t) => left + ((t - (now - SPAN_S)) / SPAN_S) * (width - left - right);
    for (let minute = 0; minute <= 30; minute += 5) {
      const t = now - minute * 60;
      box.append(svg("line", { class: "tick", x1: x(t), x2: x(t), y1: 0, y2: height - 18 }));
      box.append(svg("text", { class: "tick-label", x: x(t) - 12, y: height - 4 }, minute ? `-${minute}m` : "now"));
    }
    box.append(svg("line", { class: "now", x1: x(now), x2: x(now), y1: 0, y2: height - 18 }));
    LANES.forEach(([, label], i) => {
      box.append(svg("text", { class: "lane-label", x: 4, y: i * laneH + laneH / 2 + 4 }, label));
    });
    for (const event of events) {
      const lane = laneOf(event.kind);
      if (!lane || event.at < now - SPAN_S) continue;
      const i = LANES.findIndex(([name]) => name === lane);
      const marker = svg("circle", { cx: x(event.at), cy: i * laneH + laneH / 2, r: 5, class: markerClass(event) });
      marker.append(svg("title", {}, `${clock(event.at)} ${event.kind}: ${describe(event)}`));
      box.append(marker);
    }
  }

  function renderEvents(events) {
    const list = $("events");
    list.replaceChildren();
    const recent = events.slice(-200).reverse();
    if (!recent.length) {
      list.append(el("li", { class: "muted" }, "none in the last 30 minutes"));
      return;
    }
    for (const event of recent) {
      list.append(
        el("li", { "data-kind": event.kind },
          el("span", { class: "muted" }, clock(event.at)),
          el("span", { class: "kind " + markerClass(event) }, event.kind),
          el("span", {}, (event.route ? `[${event.route}] ` : "") + describe(event)))
      );
    }
  }

  function updateRates(counters) {
    if (previous) {
      const dt = counters.at - previous.at;
      if (dt > 0) {
        rates = {};
        for (const [key, count] of Object.entries(counters.attempts)) {
          rates[key] = Math.max(0, (count - (previous.attempts[key] || 0)) / dt);
        }
      }
    }
    previous = { at: counters.at, attempts: counters.attempts };
  }

  function banner(text) {
    const node = $("banner");
    node.hidden = !text;
    node.textContent = text || "";
  }

  async function poll() {
    try {
      const response = await fetch("/dashboard/api/state?since=30m", { cache: "no-store", credentials: "same-origin" });
      if (response.status === 401 || response.status === 403) {
        banner("This dashboard needs an admin key (HTTP " + response.status + ").");
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const state = await response.json();
      updateRates(state.counters);
      renderOverall(state.health);
      renderAlerts(state.health.alerts);
      renderDeployments(state.health.deployments);
      renderRoutes(state.health.routes);
      renderStatusPages(state.health.status_pages);
      renderTimeline(state.events, state.counters.at);
      renderEvents(state.events);
      $("updated").textContent = "updated " + clock(state.counters.at);
      document.body.dataset.updated = String(state.counters.at);
      banner(null);
    } catch (error) {
      banner("Cannot reach hedgerow (" + error.message + "); retrying…");
    } finally {
      window.setTimeout(poll, REFRESH_MS);
    }
  }

  $("refresh-every").textContent = String(REFRESH_MS / 1000);
  poll();
})();
