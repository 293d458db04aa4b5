// Attune check-ins. The launch token lives in memory and sessionStorage (per tab, never a
// cookie) and goes out as a bearer token; the URL fragment that carried it is removed at once.
// No inline script (CSP script-src 'self'); every string comes from the server's catalogue.
(function () {
  "use strict";
  var KEY = "attune.launch_token";
  var POLL_MS = 4000;
  var data = JSON.parse(document.getElementById("attune-data").textContent);
  var T = data.strings;
  var VOCAB = data.vocabularies;
  var match = /(?:^#|&)lt=([^&]+)/.exec(window.location.hash);
  var token = match ? decodeURIComponent(match[1]) : null;
  try {
    if (token) { sessionStorage.setItem(KEY, token); } else { token = sessionStorage.getItem(KEY); }
  } catch (e) { /* storage may be blocked in a third-party iframe: memory is enough */ }
  if (match) { history.replaceState(null, "", window.location.pathname + window.location.search); }
  var status = document.getElementById("status");
  var stopped = false;
  var timer = null;
  var shownResults = null;
  var deepLinking = false;
  var editing = null;      // id of the check-in whose edit form is open (kept across polls)
  var focusEdit = null;    // id whose Edit button gets the focus back after the next refresh

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; }
      else if (k === "class") { node.className = attrs[k]; }
      else if (attrs[k] !== null && attrs[k] !== false) { node.setAttribute(k, attrs[k] === true ? "" : attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } });
    return node;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }
  function fmt(key, values) {
    return T[key].replace(/\{(\w+)\}/g, function (_, k) { return String(values[k]); });
  }
  function when(iso) { return iso ? new Date(iso).toLocaleString() : ""; }
  function label(word) { return T["emotion." + word] || word; }

  function fail(body) {
    var err = (body && body.error) || {};
    status.className = "error";
    status.textContent = (err.message || T["app.unreachable"]) + (err.hint ? " " + err.hint : "");
  }
  function relaunch(body) {
    stopped = true;
    if (timer) { clearInterval(timer); }
    $("teacher").hidden = true;
    $("student").hidden = true;
    status.dataset.code = body.error.code;
    fail(body);
  }
  function api(method, path, body) {
    var init = { method: method, headers: { "Authorization": "Bearer " + token, "Accept": "application/json" } };
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch("/api/checkins" + path, init).then(function (r) {
      if (r.status === 204) { return { ok: true, status: 204, body: null }; }
      return r.json().then(function (b) {
        if (r.status === 401) { relaunch(b); throw new Error("unauthorized"); }
        return { ok: r.ok, status: r.status, body: b };
      });
    });
  }

  // --- charts: SVG with role="img", a spoken summary and a visually-hidden data table -----
  function chart(title, labels, values, opts) {
    opts = opts || {};
    var ns = "http://www.w3.org/2000/svg";
    var max = Math.max.apply(null, values.concat([opts.max || 1]));
    var w = 320, rowH = 22, pad = 110, h = labels.length * rowH + 6;
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("class", "chart");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title + ": " + labels.map(function (l, i) { return l + " " + values[i]; }).join(", "));
    labels.forEach(function (l, i) {
      var y = i * rowH + 3;
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", 0); t.setAttribute("y", y + 14); t.textContent = l;
      var bar = document.createElementNS(ns, "rect");
      var bw = Math.round((w - pad - 40) * values[i] / max);
      bar.setAttribute("x", pad); bar.setAttribute("y", y + 3); bar.setAttribute("height", 14);
      bar.setAttribute("width", Math.max(bw, values[i] ? 2 : 0));
      bar.setAttribute("fill", opts.colors ? opts.colors[i] : "#3e6b9a");
      var v = document.createElementNS(ns, "text");
      v.setAttribute("x", pad + bw + 4); v.setAttribute("y", y + 14);
      v.textContent = opts.format ? opts.format(values[i]) : String(values[i]);
      svg.appendChild(t); svg.appendChild(bar); svg.appendChild(v);
    });
    var table = el("table", { class: "visually-hidden" }, [
      el("caption", { text: title }),
      el("tr", {}, [el("th", { scope: "col", text: opts.labelHead || T["chart.pleasantness"] }), el("th", { scope: "col", text: opts.valueHead || T["chart.count"] })])
    ]);
    labels.forEach(function (l, i) { table.appendChild(el("tr", {}, [el("th", { scope: "row", text: l }), el("td", { text: String(values[i]) })])); });
    return el("figure", { class: "figure" }, [el("figcaption", { text: title }), svg, table]);
  }
  var BAND_COLORS = ["#b23b3b", "#d9822b", "#8a8f98", "#5a9e6f", "#1d6b36"];
  function bandLabels() { return [1, 2, 3, 4, 5].map(function (b) { return T["band." + b]; }); }
  function pleasantnessChart(counts) { return chart(T["chart.pleasantness"], bandLabels(), counts, { colors: BAND_COLORS }); }

  function recurrenceText(r) {
    if (!r) { return null; }
    if (r.every === "daily") { return T["teacher.recurrence.daily"]; }
    return T["teacher.recurrence.weekly"] + " " + (r.days || []).map(function (d) { return T["weekday." + d]; }).join(", ");
  }
  function badges(c) {
    var rec = recurrenceText(c.recurrence);
    return el("p", {}, [
      el("span", { class: "badge " + c.status, text: T["status." + c.status] }),
      el("span", { class: "badge", text: c.anonymous ? T["teacher.anonymous_badge"] : T["teacher.identified_badge"] }),
      rec ? el("span", { class: "badge recurrence", text: T["teacher.recurrence_badge"] + ": " + rec }) : null,
      el("span", { class: "muted", text: when(c.opens_at) + " – " + when(c.closes_at) })
    ]);
  }

  // --- teacher -------------------------------------------------------------------------------
  function localInput(d) {
    var off = d.getTimezoneOffset() * 60000;
    return new Date(d.getTime() - off).toISOString().slice(0, 16);
  }
  function errorText(code) { return T["field." + code] || String(code).replace(/_/g, " "); }
  // Field-level errors next to their control (ids prefix + field, prefix + field + "-error").
  function fieldErrors(fields, prefix, names) {
    prefix = prefix || "";
    (names || ["question", "opens_at", "closes_at", "recurrence"]).forEach(function (f) {
      var slot = $(prefix + f + "-error"), ctl = $(prefix + f);
      if (slot) { slot.textContent = ""; }
      if (ctl) { ctl.removeAttribute("aria-invalid"); }
    });
    Object.keys(fields || {}).forEach(function (f) {
      var slot = $(prefix + f + "-error"), ctl = $(prefix + f);
      if (slot) {
        slot.textContent = errorText(fields[f]);
        if (ctl && ctl.tagName !== "FIELDSET") { ctl.setAttribute("aria-invalid", "true"); }
      }
    });
  }
  function browserZone() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || null; } catch (e) { return null; }
  }
  function recurrenceValue(form) {
    var every = form.querySelector("input[name=recurrence]:checked").value;
    if (every === "none") { return null; }
    var out = { every: every, timezone: browserZone() };
    if (every === "weekly") {
      out.days = Array.prototype.map.call(form.querySelectorAll("input[name=recurrence_day]:checked"), function (i) { return parseInt(i.value, 10); });
    }
    return out;
  }
  function setupRecurrence() {
    var days = $("recurrence-days");
    function sync() {
      var weekly = $("create-form").querySelector("input[name=recurrence]:checked").value === "weekly";
      days.hidden = !weekly;
      if (weekly && !days.querySelector("input:checked")) {
        var start = $("opens_at").value ? new Date($("opens_at").value) : new Date();
        var iso = start.getDay() || 7;
        days.querySelector("input[value='" + iso + "']").checked = true;
      }
    }
    Array.prototype.forEach.call($("create-form").querySelectorAll("input[name=recurrence]"), function (r) { r.addEventListener("change", sync); });
    sync();
  }

  // Inline edit form: question, note option, closing time; anonymity is fixed after creation.
  function editForm(c) {
    var p = "edit-" + c.id + "-";
    var initialCloses = c.closes_at ? localInput(new Date(c.closes_at)) : "";
    var q = el("input", { id: p + "question", name: "question", maxlength: "300", required: true, "aria-describedby": p + "question-error" });
    q.value = c.question;
    var note = el("input", { type: "checkbox", id: p + "allow_note", name: "allow_note" });
    note.checked = !!c.allow_note;
    var closes = el("input", { type: "datetime-local", id: p + "closes_at", name: "closes_at", "aria-describedby": p + "closes_at-error" });
    closes.value = initialCloses;
    var summary = el("p", { class: "error", role: "alert", id: p + "error", hidden: true });
    var cancel = el("button", { type: "button", class: "secondary", text: T["teacher.cancel"] });
    var form = el("form", { class: "edit-form", novalidate: true, "aria-labelledby": p + "heading" }, [
      el("h3", { id: p + "heading", text: T["teacher.edit_heading"] }),
      summary,
      el("div", { class: "field" }, [el("label", { for: p + "question", text: T["teacher.question"] }), q,
        el("span", { id: p + "question-error", class: "error field-error" })]),
      el("div", { class: "field" }, [el("label", {}, [note, " " + T["teacher.allow_note"]]),
        el("span", { id: p + "allow_note-error", class: "error field-error" })]),
      el("div", { class: "field" }, [el("label", { for: p + "closes_at", text: T["teacher.closes_at"] }), closes,
        el("span", { id: p + "closes_at-error", class: "error field-error" })]),
      el("p", { class: "muted", text: (c.anonymous ? T["teacher.anonymous_badge"] : T["teacher.identified_badge"]) + ". " + T["teacher.anonymity_fixed"] }),
      el("button", { type: "submit", text: T["teacher.save"] }),
      cancel
    ]);
    function done() { editing = null; focusEdit = c.id; refreshTeacher(); }
    cancel.addEventListener("click", done);
    form.addEventListener("keydown", function (ev) { if (ev.key === "Escape") { ev.preventDefault(); done(); } });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = { question: q.value, allow_note: note.checked };
      if (closes.value && closes.value !== initialCloses) { body.closes_at = new Date(closes.value).toISOString(); }
      summary.hidden = true;
      api("PATCH", "/checkins/" + c.id, body).then(function (res) {
        var names = ["question", "allow_note", "closes_at"];
        if (!res.ok) {
          var err = res.body.error || {};
          fieldErrors(err.fields, p, names);
          summary.hidden = false;
          var other = Object.keys(err.fields || {}).filter(function (f) { return names.indexOf(f) < 0; });
          summary.textContent = (err.message || T["app.unreachable"]) +
            (other.length ? " " + other.map(function (f) { return f + ": " + errorText(err.fields[f]); }).join("; ") : "");
          var first = names.filter(function (f) { return err.fields && err.fields[f]; })[0];
          if (first) { $(p + first).focus(); }
          return;
        }
        status.className = "";
        status.textContent = T["teacher.saved"];
        done();
      }).catch(function () {});
    });
    return form;
  }
  // What the launch showed the LMS shares (its admin decides it after registering Attune):
  // without the roster or names, say so instead of showing partial numbers silently.
  function showLmsShares(shares) {
    if (!shares) { return; }
    $("lms-no-roster").hidden = shares.roster;
    $("lms-no-names").hidden = shares.names;
    $("lms-shares").hidden = shares.roster && shares.names;
  }
  function setupTeacher() {
    $("teacher").hidden = false;
    var now = new Date();
    $("opens_at").value = localInput(now);
    $("closes_at").value = localInput(new Date(now.getTime() + 7 * 86400000));
    setupRecurrence();
    $("create-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var form = ev.target;
      var body = {
        question: $("question").value,
        vocabulary: form.querySelector("input[name=vocabulary]:checked").value,
        anonymous: $("anonymous").checked,
        allow_note: $("allow_note").checked,
        recurrence: recurrenceValue(form)
      };
      if ($("opens_at").value) { body.opens_at = new Date($("opens_at").value).toISOString(); }
      if ($("closes_at").value) { body.closes_at = new Date($("closes_at").value).toISOString(); }
      $("create-error").hidden = true;
      api("POST", "/checkins", body).then(function (res) {
        if (!res.ok) {
          fieldErrors(res.body.error.fields);
          $("create-error").hidden = false;
          $("create-error").textContent = res.body.error.message;
          return;
        }
        fieldErrors({});
        if (deepLinking) { return chooseForCourse(res.body.id); }
        status.textContent = T["teacher.created"];
        refreshTeacher();
      }).catch(function () {});
    });
    refreshTeacher();
    timer = setInterval(function () { if (!stopped) { refreshTeacher(); } }, POLL_MS);
  }
  // Deep linking: post the launch token and the choice to our server, which answers with a page
  // that returns the signed response to the LMS (a plain same-origin form post).
  function chooseForCourse(id) {
    stopped = true;
    status.textContent = T["dl.sending"];
    var form = el("form", { method: "post", action: "/app/deep-link", hidden: "hidden" }, [
      el("input", { type: "hidden", name: "lt", value: token }),
      el("input", { type: "hidden", name: "checkin_id", value: String(id) })
    ]);
    document.body.appendChild(form);
    form.submit();
  }
  function refreshTeacher() {
    api("GET", "/checkins").then(function (res) {
      if (!res.ok) { return fail(res.body); }
      var list = $("teacher-list");
      // An open edit form survives the poll: its node stays in place (keeping focus and input).
      var keep = editing ? list.querySelector("li[data-checkin='" + editing + "']") : null;
      var kept = false;
      Array.prototype.slice.call(list.children).forEach(function (n) { if (n !== keep) { list.removeChild(n); } });
      function add(li) { if (keep && !kept) { list.insertBefore(li, keep); } else { list.appendChild(li); } }
      if (!res.body.checkins.length) { add(el("li", { text: T["teacher.none"] })); }
      res.body.checkins.forEach(function (c) {
        if (keep && c.id === editing) { kept = true; return; }
        var p = c.participation;
        var li = el("li", { "data-checkin": c.id }, [
          el("h3", { text: c.question }), badges(c),
          el("p", { class: "participation", text: T["teacher.participation"] + ": " + fmt("teacher.of_learners", p) })
        ]);
        if (deepLinking) {
          var choose = el("button", { type: "button", class: "choose", text: T["dl.choose"] });
          choose.addEventListener("click", function () { chooseForCourse(c.id); });
          li.appendChild(choose);
        }
        var view = el("button", { type: "button", class: "secondary", text: T["teacher.view"] });
        view.addEventListener("click", function () { shownResults = c.id; showResults(true); });
        li.appendChild(view);
        var edit = el("button", { type: "button", class: "secondary edit", "aria-label": T["teacher.edit"] + ": " + c.question, text: T["teacher.edit"] });
        edit.addEventListener("click", function () {
          editing = c.id;
          var form = editForm(c);
          clear(li).appendChild(form);
          form.querySelector("input").focus();
        });
        li.appendChild(edit);
        if (c.status !== "closed") {
          var close = el("button", { type: "button", class: "secondary", text: T["teacher.close"] });
          close.addEventListener("click", function () { api("POST", "/checkins/" + c.id + "/close").then(refreshTeacher).catch(function () {}); });
          li.appendChild(close);
        }
        var del = el("button", { type: "button", class: "danger", text: T["teacher.delete"] });
        del.addEventListener("click", function () {
          if (!window.confirm(T["teacher.delete_confirm"])) { return; }
          api("DELETE", "/checkins/" + c.id).then(function () {
            if (shownResults === c.id) { shownResults = null; $("results").hidden = true; }
            refreshTeacher();
          }).catch(function () {});
        });
        li.appendChild(del);
        add(li);
      });
      if (keep && !kept) { list.removeChild(keep); editing = null; }
      if (focusEdit) {
        var back = list.querySelector("li[data-checkin='" + focusEdit + "'] button.edit");
        focusEdit = null;
        if (back) { back.focus(); }
      }
      if (shownResults) { showResults(false); }
      refreshInsights();
    }).catch(function () {});
  }
  function showResults(focus) {
    api("GET", "/checkins/" + shownResults).then(function (res) {
      if (!res.ok) { return; }
      var c = res.body;
      $("results").hidden = false;
      $("results-heading").textContent = T["teacher.responses"] + ": " + c.question;
      var body = clear($("results-body"));
      body.appendChild(el("p", { id: "results-participation", text: T["teacher.participation"] + ": " + fmt("teacher.of_learners", c.participation) }));
      // Anonymous: released results only, in groups (the server never sends more).
      var r = c.results;
      if (r) {
        var closed = c.status === "closed";
        var state = c.distribution ? (closed ? "teacher.results_final" : "teacher.results_cover") : (closed ? "teacher.results_none" : "teacher.results_waiting");
        body.appendChild(el("p", { id: "results-state", text: fmt(state, { answers: r.answers, next: r.next_in }) }));
        if (closed && c.distribution && r.not_shown) {
          body.appendChild(el("p", { class: "muted", text: fmt("teacher.results_left_out", r) }));
        }
      }
      if (!c.distribution) {
        if (focus) { $("results").focus(); }
        return;
      }
      body.appendChild(pleasantnessChart(c.distribution.pleasantness));
      var emo = c.distribution.emotions;
      if (emo.length) {
        body.appendChild(chart(T["chart.emotions"], emo.map(function (e) { return label(e.emotion); }), emo.map(function (e) { return e.count; }),
          { colors: emo.map(function (e) { return BAND_COLORS[e.pleasantness - 1]; }), labelHead: T["chart.emotions"] }));
      }
      if (c.responses) {
        var list = el("ul", { class: "cards", id: "results-who" });
        c.responses.forEach(function (r) {
          list.appendChild(el("li", {}, [el("strong", { text: r.name || r.subject }), " — " + label(r.emotion) + " (" + T["band." + r.pleasantness] + ")",
            r.note ? el("p", { text: r.note }) : null]));
        });
        body.appendChild(el("h3", { text: T["teacher.who"] }));
        body.appendChild(list);
      } else if (c.notes && c.notes.length) {
        body.appendChild(el("h3", { text: T["teacher.notes_anonymous"] }));
        body.appendChild(el("ul", {}, c.notes.map(function (n) { return el("li", { text: n }); })));
      }
      if (focus) { $("results").focus(); }
    }).catch(function () {});
  }
  function refreshInsights() {
    api("GET", "/insights").then(function (res) {
      if (!res.ok) { return; }
      var i = res.body;
      var body = clear($("insights-body"));
      body.appendChild(el("h3", { text: T["teacher.trend"] }));
      if (i.trend.length) {
        body.appendChild(chart(T["teacher.trend"], i.trend.map(function (p) { return p.day; }), i.trend.map(function (p) { return p.average; }),
          { max: 5, labelHead: T["chart.day"], valueHead: T["chart.average"] }));
      } else {
        body.appendChild(el("p", { class: "muted", text: T["teacher.no_trend"] }));
      }
      body.appendChild(el("h3", { text: T["teacher.attention"] }));
      body.appendChild(el("p", { class: "muted", text: T["teacher.attention_help"] }));
      if (i.may_need_conversation.length) {
        body.appendChild(el("ul", { id: "attention" }, i.may_need_conversation.map(function (s) { return el("li", { text: (s.name || s.subject) + " (" + s.low + "/" + s.of + ")" }); })));
      } else {
        body.appendChild(el("p", { text: T["teacher.attention_none"] }));
      }
    }).catch(function () {});
  }

  // --- student -------------------------------------------------------------------------------
  function answerForm(c) {
    var form = el("form", { class: "answer", "data-checkin": c.id });
    var groupId = "q-" + c.id;
    form.appendChild(el("p", { id: groupId, text: T["student.choose"] }));
    VOCAB[c.vocabulary].forEach(function (band) {
      var fs = el("fieldset", { class: "band b" + band.band, "aria-describedby": groupId }, [el("legend", { text: band.label })]);
      var words = el("div", { class: "words" });
      band.words.forEach(function (w) {
        var input = el("input", { type: "radio", name: "emotion", value: w.id, required: true });
        if (c.my_answer && c.my_answer.emotion === w.id) { input.checked = true; }
        words.appendChild(el("label", {}, [input, el("span", { text: w.label })]));
      });
      fs.appendChild(words);
      form.appendChild(fs);
    });
    if (c.allow_note) {
      var nid = "note-" + c.id;
      var hint = c.anonymous ? el("p", { id: nid + "-hint", class: "muted", text: T["student.anonymous_note_hint"] }) : null;
      var ta = el("textarea", { id: nid, name: "note", maxlength: "500", "aria-describedby": hint ? nid + "-hint" : null });
      ta.value = (c.my_answer && c.my_answer.note) || "";
      form.appendChild(el("div", { class: "field" }, [el("label", { for: nid, text: T["student.note"] }), ta, hint]));
    }
    var msg = el("p", { class: "saved", role: "status" });
    form.appendChild(el("button", { type: "submit", text: c.my_answer ? T["student.change"] : T["student.submit"] }));
    form.appendChild(msg);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var chosen = form.querySelector("input[name=emotion]:checked");
      if (!chosen) { msg.className = "error"; msg.textContent = T["student.choose"]; return; }
      var body = { emotion: chosen.value };
      var note = form.querySelector("textarea");
      if (note) { body.note = note.value; }
      api("PUT", "/checkins/" + c.id + "/response", body).then(function (res) {
        if (!res.ok) { msg.className = "error"; msg.textContent = res.body.error.message; return; }
        refreshStudent(T["student.saved"], c.id);
      }).catch(function () {});
    });
    return form;
  }
  function classView(c) {
    if (!c.my_answer) { return null; }
    if (!c["class"]) { return el("p", { class: "muted", text: T["student.class_hidden"] }); }
    return el("div", {}, [el("h4", { text: T["student.class"] }), pleasantnessChart(c["class"].pleasantness)]);
  }
  function refreshStudent(savedMessage, savedId) {
    api("GET", "/checkins").then(function (res) {
      if (!res.ok) { return fail(res.body); }
      var open = clear($("student-open"));
      if (!res.body.checkins.length) { open.appendChild(el("p", { text: T["student.none_open"] })); }
      res.body.checkins.forEach(function (c) {
        var card = el("article", { class: "card", "aria-label": c.question }, [el("h3", { text: c.question }),
          c.anonymous ? el("p", { class: "muted", text: T["student.anonymous_note"] }) : null]);
        if (c.my_answer) {
          card.appendChild(el("p", { class: "my-answer", text: T["student.your_answer"] + ": " + label(c.my_answer.emotion) }));
        }
        var form = answerForm(c);
        card.appendChild(form);
        if (savedId === c.id) { form.querySelector(".saved").textContent = savedMessage; }
        card.appendChild(classView(c) || el("span"));
        open.appendChild(card);
      });
    }).catch(function () {});
    api("GET", "/history").then(function (res) {
      if (!res.ok) { return; }
      var list = clear($("student-history"));
      if (!res.body.history.length) { list.appendChild(el("li", { text: T["student.no_history"] })); }
      res.body.history.forEach(function (c) {
        list.appendChild(el("li", {}, [el("strong", { text: c.question }), badges(c),
          el("p", { text: T["student.your_answer"] + ": " + label(c.my_answer.emotion) + " (" + T["band." + c.my_answer.pleasantness] + ")" }),
          c.my_answer.note ? el("p", { class: "muted", text: c.my_answer.note }) : null]));
      });
    }).catch(function () {});
  }

  if (!token) {
    status.textContent = T["app.no_token"];
    return;
  }
  api("GET", "/me").then(function (res) {
    if (!res.ok) { return fail(res.body); }
    status.dataset.role = res.body.is_teacher ? "teacher" : "student";
    status.textContent = res.body.is_teacher ? T["app.signed_in_teacher"] : T["app.signed_in_student"];
    if (res.body.deep_linking) {
      deepLinking = true;
      status.textContent = T["dl.heading"] + ". " + T["dl.intro"];
      setupTeacher();
    } else if (res.body.is_teacher) {
      if (res.body.checkin_id) { shownResults = res.body.checkin_id; }
      showLmsShares(res.body.lms_shares);
      setupTeacher();
    } else if (res.body.is_learner) { $("student").hidden = false; refreshStudent(); }
  }).catch(function (e) {
    if (e && e.message === "unauthorized") { return; }
    status.className = "error"; status.textContent = T["app.unreachable"];
  });
})();
