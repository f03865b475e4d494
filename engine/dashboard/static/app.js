/* The dashboard: a few views over the admin API, chosen by the address's #fragment. */
"use strict";

(function () {
  var D = window.Draw, el = D.el, t = window.t, tOr = window.tOr;
  var view = document.getElementById("view");
  var timer = null;

  function api(path, options) {
    options = options || {};
    var headers = { "Accept": "application/json" };
    if (options.method && options.method !== "GET") headers["X-Requested-With"] = "journey-dashboard";
    return fetch(path, { method: options.method || "GET", headers: headers, credentials: "same-origin" })
      .then(function (reply) {
        if (reply.status === 401) { window.location.href = "/dashboard"; throw new Error("signed out"); }
        return reply.json().then(function (body) {
          if (!reply.ok) throw new Error(body.message || reply.statusText);
          return body;
        });
      });
  }

  function when(iso) {
    if (!iso) return "–";
    return new Date(iso).toLocaleString(window.currentLang(), { hour12: false });
  }

  function card(title, body, extra) {
    return el("section", { class: "card " + ((extra && extra.class) || ""), "data-card": extra && extra.name }, [
      el("h2", {}, title), body
    ]);
  }

  function show(nodes) {
    view.replaceChildren.apply(view, (Array.isArray(nodes) ? nodes : [nodes]).filter(Boolean));
  }

  function failed(error) {
    show(el("p", { class: "error", role: "alert" }, t("error", [error.message])));
  }

  function statusBadge(status) {
    status = status || "running";
    return el("span", { class: "badge status-" + status }, tOr("status", status));
  }

  /* -- journeys -- */

  function journeysView() {
    show(el("p", { class: "muted" }, t("loading")));
    Promise.all([api("/api/journeys"), api("/api/stats")]).then(function (found) {
      var deployed = found[0], stats = {};
      found[1].journeys.forEach(function (s) { stats[s.journey] = s; });
      if (!deployed.deployment) { show(el("p", { class: "muted" }, t("journeys.empty"))); return; }
      var d = deployed.deployment;
      var cards = deployed.journeys.map(function (j) {
        var s = stats[j.id] || {};
        return el("a", { class: "journey-card", href: "#/journey/" + encodeURIComponent(j.id), "data-journey": j.id }, [
          el("div", { class: "journey-head" }, [el("h3", {}, j.name), statusBadge(j.status)]),
          el("div", { class: "muted mono" }, j.id + " · " + j.version.slice(0, 12)),
          el("div", { class: "figures" }, [
            figure(t("entered"), D.number(s.entered)), figure(t("active"), D.number(j.active_runs)),
            figure(t("sent"), D.number(s.sent)), figure(t("converted"), D.number(s.converted)),
            figure(t("rate"), D.percent(s.conversion_rate))
          ])
        ]);
      });
      show([
        el("div", { class: "page-head" }, [
          el("h1", {}, t("journeys.title")),
          el("p", { class: "muted" }, t("journeys.deployment", [d.id, d.version.slice(0, 12), when(d.deployed_at)]))
        ]),
        el("div", { class: "journey-grid" }, cards)
      ]);
    }).catch(failed);
  }

  function figure(label, value, extra) {
    return el("div", { class: "figure" }, [el("div", { class: "figure-value" }, value), el("div", { class: "figure-label" }, label), extra || null]);
  }

  /* -- one journey -- */

  function journeyView(id, version) {
    show(el("p", { class: "muted" }, t("loading")));
    var query = version ? "?version=" + encodeURIComponent(version) : "";
    var base = "/api/journeys/" + encodeURIComponent(id);
    Promise.all([api(base + "/graph" + query), api(base + "/stats" + query)]).then(function (found) {
      var graph = found[0], stats = found[1];
      var versions = el("select", { id: "version", "aria-label": t("journey.version"), onchange: function (e) {
        location.hash = "#/journey/" + encodeURIComponent(id) + (e.target.value ? "/" + encodeURIComponent(e.target.value) : "");
      } }, [el("option", { value: "" }, t("journey.current"))].concat(
        stats.versions.map(function (v) { return el("option", { value: v, selected: v === version }, v.slice(0, 12)); }),
        [el("option", { value: "all", selected: version === "all" }, t("journey.allVersions"))]
      ));
      show([
        el("div", { class: "page-head" }, [
          el("a", { href: "#/", class: "back" }, "← " + t("journey.back")),
          el("h1", {}, graph.name),
          el("div", { class: "muted mono" }, [id + " · ", el("label", {}, [t("journey.version") + " ", versions])])
        ]),
        el("div", { class: "figures wide" }, [
          figure(t("entered"), D.number(stats.entered)),
          figure(t("active"), D.number(stats.outcomes.active || 0)),
          figure(t("converted"), D.number(stats.conversions.converted)),
          figure(t("rate"), D.percent(stats.conversions.rate))
        ]),
        card(t("journey.graph"), el("div", { class: "graph-wrap" }, [D.journeyGraph(graph, stats), el("p", { class: "muted small" }, t("journey.graphHint"))]), { name: "graph" }),
        el("div", { class: "two" }, [
          card(t("journey.funnel"), funnel(stats), { name: "funnel" }),
          el("div", {}, [
            card(t("journey.conversions"), conversions(stats), { name: "conversions" }),
            card(t("journey.attribution"), attribution(stats), { name: "attribution" })
          ])
        ]),
        stats.splits.length ? card(t("journey.splits"), el("div", {}, stats.splits.map(split)), { name: "splits" }) : null
      ]);
    }).catch(failed);
  }

  function funnel(stats) {
    var rows = [{ key: "entered", label: t("funnel.entered"), value: stats.entered, kind: "entered" }];
    stats.steps.forEach(function (s) {
      var m = s.messages, detail = null;
      if (s.kind === "send" || m.suppressed_total || m.sent) {
        var parts = [t("sent") + " " + D.number(m.sent)];
        if (m.delivered) parts.push(t("delivered") + " " + D.number(m.delivered));
        if (m.failed) parts.push(t("failed") + " " + D.number(m.failed));
        if (m.waiting) parts.push(t("waiting") + " " + D.number(m.waiting));
        var reasons = Object.keys(m.suppressed).sort().map(function (r) { return tOr("reason", r) + " " + D.number(m.suppressed[r]); });
        if (reasons.length) parts.push(t("funnel.suppressedBy", [reasons.join(", ")]));
        detail = parts.join(" · ");
      }
      rows.push({ key: s.name, label: s.name, value: s.reached, kind: "kind-" + s.kind, detail: detail });
    });
    return D.bars(rows, { class: "funnel" });
  }

  function conversions(stats) {
    var c = stats.conversions;
    if (!c.goal.length) return el("p", { class: "muted" }, t("journey.noGoal"));
    return el("div", {}, [
      el("p", { class: "muted" }, t("conv.goal", [c.goal.join(" | "), c.within])),
      el("div", { class: "figures" }, [
        figure(t("rate"), D.percent(c.rate), el("div", { class: "muted small" }, t("conv.of", [D.number(c.converted), D.number(c.entered)]))),
        figure(t("conv.open"), D.number(c.open)),
        figure(t("conv.decided"), D.percent(c.rate_decided))
      ])
    ]);
  }

  function attribution(stats) {
    var a = stats.attribution;
    if (!a.conversions) return el("p", { class: "muted" }, t("attr.none"));
    if (!a.channels.length) return el("p", { class: "muted", "data-unattributed": a.unattributed }, t("attr.unattributed", [a.unattributed]));
    var models = [["first_touch", "attr.first"], ["last_touch", "attr.last"], ["linear", "attr.linear"]];
    var body = el("div", { class: "attribution" }, models.map(function (m) {
      return el("div", { class: "model", "data-model": m[0] }, [
        el("h3", {}, t(m[1])),
        D.bars(a.channels.map(function (ch) {
          var value = ch[m[0]];
          return { key: ch.channel, label: tOr("channel", ch.channel), value: value, kind: "channel-" + ch.channel,
            text: m[0] === "linear" ? value.toLocaleString(window.currentLang(), { maximumFractionDigits: 2 }) : D.number(value) };
        }))
      ]);
    }));
    return el("div", {}, [body, a.unattributed ? el("p", { class: "muted small" }, t("attr.unattributed", [a.unattributed])) : null]);
  }

  function split(s) {
    var verdict = s.significant ? t("split.winner", [s.leader]) : t("split.notYet");
    var test = t("split.test", [s.test, s.alpha]) + (s.arms.length > 2 ? " " + t("split.bonferroni", [s.alpha_per_comparison.toFixed(3)]) : "");
    return el("div", { class: "split", "data-split": s.step }, [
      el("h3", {}, [s.step + " ", el("span", { class: "badge " + (s.significant ? "good" : "neutral") }, verdict)]),
      el("table", {}, [
        el("thead", {}, el("tr", {}, [t("split.arm"), t("split.weight"), t("split.runs"), t("converted"), t("rate"),
          t("split.interval", [Math.round(100 * s.confidence) + "%"]), t("split.p")].map(function (h) { return el("th", {}, h); }))),
        el("tbody", {}, s.arms.map(function (arm) {
          var leader = arm.step === s.leader;
          return el("tr", { class: leader ? "leader" : "" }, [
            el("td", {}, [arm.step, leader ? el("span", { class: "badge neutral small" }, t("split.leader")) : null]),
            el("td", { class: "num" }, arm.weight), el("td", { class: "num" }, D.number(arm.runs)),
            el("td", { class: "num" }, D.number(arm.converted)), el("td", { class: "num" }, D.percent(arm.rate)),
            el("td", {}, [D.intervalPlot(arm.ci_low, arm.ci_high, arm.rate, leader),
              el("span", { class: "muted small" }, D.percent(arm.ci_low) + " – " + D.percent(arm.ci_high))]),
            el("td", { class: "num" }, arm.p_value === null ? "" : arm.p_value.toFixed(3))
          ]);
        }))
      ]),
      el("p", { class: "muted small" }, test)
    ]);
  }

  /* -- a user's timeline -- */

  function usersView(userId) {
    var input = el("input", { id: "user-id", name: "user", placeholder: t("users.search"), value: userId || "", autocomplete: "off" });
    var form = el("form", { class: "search", onsubmit: function (e) {
      e.preventDefault();
      location.hash = "#/users/" + encodeURIComponent(input.value.trim());
    } }, [input, el("button", { type: "submit" }, t("users.show"))]);
    var result = el("div", { id: "timeline" });
    show([el("div", { class: "page-head" }, [el("h1", {}, t("users.title"))]), form, result]);
    if (!userId) return;
    result.replaceChildren(el("p", { class: "muted" }, t("loading")));
    api("/api/users/" + encodeURIComponent(userId) + "/timeline").then(function (found) {
      var counts = { event: 0, run: 0, message: 0 };
      found.items.forEach(function (i) { counts[i.kind] += 1; });
      result.replaceChildren(
        el("p", { class: "muted" }, found.user_id + " · " + counts.event + " " + t("users.events") + " · " + counts.run + " " + t("users.runs") + " · " + counts.message + " " + t("users.messages")),
        el("ol", { class: "timeline" }, found.items.map(timelineItem))
      );
    }).catch(function (error) {
      result.replaceChildren(el("p", { class: "muted" }, error.message === "no such user" ? t("users.notFound") : t("error", [error.message])));
    });
  }

  function timelineItem(item) {
    var title, detail = "";
    if (item.kind === "event") {
      title = item.type + (item.name ? " · " + item.name : "");
      detail = item.status + " · " + item.message_id;
    } else if (item.kind === "run") {
      title = t("tl." + item.what, [item.journey]);
      detail = item.run_id + (item.step ? " · " + item.step : "");
    } else {
      title = tOr("channel", item.channel) + " · " + item.step;
      detail = t(item.status) + (item.reason ? " · " + tOr("reason", item.reason) : "") + " · " + item.journey;
    }
    return el("li", { class: "tl tl-" + item.kind + (item.status ? " st-" + item.status : "") }, [
      el("span", { class: "tl-dot", "aria-hidden": "true" }),
      el("div", { class: "tl-body" }, [
        el("div", { class: "tl-head" }, [el("span", { class: "tl-kind" }, t("tl." + item.kind)), el("strong", {}, title)]),
        el("div", { class: "muted small" }, when(item.at) + " · " + detail)
      ])
    ]);
  }

  /* -- operations -- */

  function opsView() {
    function load() {
      api("/api/ops").then(function (ops) {
        var queues = ops.queues
          ? el("table", {}, [el("thead", {}, el("tr", {}, [el("th", {}, t("ops.queue")), el("th", {}, t("ops.depth"))])),
            el("tbody", {}, Object.keys(ops.queues).map(function (q) { return el("tr", {}, [el("td", {}, q), el("td", { class: "num" }, D.number(ops.queues[q]))]); }))])
          : el("p", { class: "muted" }, t("ops.noBroker"));
        show([
          el("div", { class: "page-head" }, [el("h1", {}, t("ops.title")), el("p", { class: "muted small" }, t("ops.refreshed", [when(ops.at)]))]),
          el("div", { class: "figures wide", "data-card": "ops" }, [
            figure(t("ops.timerLag"), t("seconds", [ops.timer_lag_seconds.toFixed(1)]), ops.oldest_due_timer ? el("div", { class: "muted small" }, t("ops.oldest", [when(ops.oldest_due_timer)])) : null),
            figure(t("ops.timersDue"), D.number(ops.timers_due)),
            figure(t("ops.outbox"), D.number(ops.outbox_backlog)),
            figure(t("ops.events"), D.number(ops.events_pending)),
            figure(t("ops.deadLetters"), D.number(ops.dead_letters))
          ]),
          card(t("ops.queues"), queues, { name: "queues" })
        ]);
      }).catch(failed);
    }
    load();
    timer = setInterval(load, 5000);
  }

  /* -- dead letters -- */

  function deadLettersView(showReplayed) {
    var notice = el("p", { class: "notice", role: "status" });
    function act(path, method, id) {
      return api(path, { method: method }).then(function (done) {
        notice.textContent = t("dlq.done", [id, done.note || t("dlq.discard")]);
        load();
      }).catch(function (error) { notice.textContent = t("error", [error.message]); });
    }
    function load() {
      api("/api/dead-letters" + (showReplayed ? "?all=true" : "")).then(function (found) {
        var rows = found.dead_letters.map(function (d) {
          return el("tr", { "data-dead-letter": d.id }, [
            el("td", { class: "num" }, d.id), el("td", {}, tOr("kind", d.kind)), el("td", { class: "mono small" }, d.ref),
            el("td", { class: "error-text" }, d.error), el("td", {}, when(d.created_at)), el("td", {}, when(d.replayed_at)),
            el("td", { class: "actions" }, d.replayed_at ? "" : [
              el("button", { type: "button", class: "replay", onclick: function () { act("/api/dead-letters/" + d.id + "/replay", "POST", d.id); } }, t("dlq.replay")),
              el("button", { type: "button", class: "discard secondary", onclick: function () {
                if (window.confirm(t("dlq.confirmDiscard", [d.id]))) act("/api/dead-letters/" + d.id, "DELETE", d.id);
              } }, t("dlq.discard"))
            ])
          ]);
        });
        var toggle = el("label", { class: "small" }, [el("input", { type: "checkbox", checked: showReplayed, onchange: function (e) {
          location.hash = e.target.checked ? "#/dead-letters/all" : "#/dead-letters";
        } }), " " + t("dlq.showReplayed")]);
        var all = el("button", { type: "button", class: "replay-all", disabled: !found.dead_letters.some(function (d) { return !d.replayed_at; }),
          onclick: function () { act("/api/dead-letters/replay", "POST", "*"); } }, t("dlq.replayAll"));
        show([
          el("div", { class: "page-head" }, [el("h1", {}, t("dlq.title")), el("p", { class: "muted" }, t("dlq.hint"))]),
          el("div", { class: "toolbar" }, [all, toggle]), notice,
          rows.length ? el("table", { class: "dead-letters" }, [
            el("thead", {}, el("tr", {}, ["#", t("dlq.kind"), t("dlq.ref"), t("dlq.error"), t("dlq.created"), t("dlq.replayed"), ""].map(function (h) { return el("th", {}, h); }))),
            el("tbody", {}, rows)
          ]) : el("p", { class: "muted empty" }, t("dlq.empty"))
        ]);
      }).catch(failed);
    }
    load();
  }

  /* -- audit -- */

  function auditView() {
    api("/api/audit?limit=200").then(function (found) {
      show([
        el("div", { class: "page-head" }, [el("h1", {}, t("audit.title"))]),
        found.entries.length ? el("table", { class: "audit" }, [
          el("thead", {}, el("tr", {}, [t("audit.at"), t("audit.actor"), t("audit.action"), t("audit.target"), t("audit.detail")].map(function (h) { return el("th", {}, h); }))),
          el("tbody", {}, found.entries.map(function (e) {
            return el("tr", {}, [el("td", {}, when(e.at)), el("td", {}, e.actor), el("td", {}, el("span", { class: "badge neutral" }, tOr("action", e.action))),
              el("td", { class: "mono small" }, e.target), el("td", { class: "mono small detail" }, e.detail ? JSON.stringify(e.detail) : "")]);
          }))
        ]) : el("p", { class: "muted" }, t("audit.empty"))
      ]);
    }).catch(failed);
  }

  /* -- routing, language -- */

  function translateStatic() {
    document.querySelectorAll("[data-t]").forEach(function (node) { node.textContent = t(node.getAttribute("data-t")); });
    document.getElementById("lang-switch").textContent = window.currentLang() === "en" ? "中文" : "English";
    document.title = t("brand");
  }

  function route() {
    if (timer) { clearInterval(timer); timer = null; }
    var parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    var page = parts[0] || "journeys";
    document.querySelectorAll("[data-nav]").forEach(function (a) {
      var on = a.getAttribute("data-nav") === (page === "journey" ? "journeys" : page);
      if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    if (page === "journey") journeyView(parts[1], parts[2]);
    else if (page === "users") usersView(parts[1]);
    else if (page === "ops") opsView();
    else if (page === "dead-letters") deadLettersView(parts[1] === "all");
    else if (page === "audit") auditView();
    else journeysView();
  }

  document.getElementById("lang-switch").addEventListener("click", function () {
    var next = window.currentLang() === "en" ? "zh-CN" : "en";
    document.documentElement.lang = next;
    document.cookie = "journey_lang=" + next + "; path=/dashboard; max-age=31536000; samesite=strict";
    translateStatic();
    route();
  });
  window.addEventListener("hashchange", route);
  translateStatic();
  route();
})();
