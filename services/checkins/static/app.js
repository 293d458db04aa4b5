// Attune check-ins. The launch token lives in memory and sessionStorage (per tab, never a
// cookie) and goes out as a bearer token; the URL fragment that carried it is removed at once.
// No inline script (CSP script-src 'self'). Every string a person reads comes from the
// server's catalogue in the page's JSON data block (T), words and meanings included.
(function () {
  "use strict";
  var KEY = "attune.launch_token";
  var POLL_MS = 4000;
  var NOTE_MAX = 500;
  var data = JSON.parse(document.getElementById("attune-data").textContent);
  var T = data.strings;
  var VOCAB = data.vocabularies;
  var LANG = document.documentElement.lang || undefined;
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
  var view = "checkins";
  var editing = null;      // id of the check-in whose edit form is open (kept across polls)
  var focusEdit = null;    // id whose Edit button gets the focus back after the next refresh
  var drafts = {};         // student: per check-in {band, word, note, step}, kept across renders
  var linked = null;       // student: the check-in of a deep-linked activity
  var othersShown = false;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; }
      else if (k === "class") { node.className = attrs[k]; }
      else if (attrs[k] !== null && attrs[k] !== false && attrs[k] !== undefined) { node.setAttribute(k, attrs[k] === true ? "" : attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } });
    return node;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }
  // Numbers, plurals and lists as the page's language writes them (the server chose it: <html lang>).
  var NUMBER = new Intl.NumberFormat(LANG);
  var AVERAGE = new Intl.NumberFormat(LANG, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  var PERCENT = new Intl.NumberFormat(LANG, { style: "percent" });
  var PLURAL = new Intl.PluralRules(LANG);
  var LIST = Intl.ListFormat ? new Intl.ListFormat(LANG, { type: "conjunction" }) : null;
  // A message with a count arrives as one text per plural category of the language.
  function fmt(key, values) {
    var text = T[key];
    if (typeof text !== "string") { text = text.forms[PLURAL.select(values[text.count])] || text.forms.other; }
    return text.replace(/\{(\w+)\}/g, function (_, k) {
      var v = values[k];
      return typeof v === "number" ? NUMBER.format(v) : String(v);
    });
  }
  function list(items) { return LIST ? LIST.format(items) : items.join(", "); }
  // Dates and times in the viewer's time zone, to the minute.
  var DATE_TIME = new Intl.DateTimeFormat(LANG, { dateStyle: "medium", timeStyle: "short" });
  var SHORT_DATE = new Intl.DateTimeFormat(LANG, { month: "short", day: "numeric" });
  var DAY = new Intl.DateTimeFormat(LANG, { dateStyle: "medium", timeZone: "UTC" });
  function when(iso) { return iso ? DATE_TIME.format(new Date(iso)) : ""; }
  function label(word) { return T["emotion." + word] || word; }
  function nameOf(s) { return s.name || fmt("teacher.unnamed", { subject: s.subject }); }

  // --- the LMS frame: ask it to fit the content (Canvas: lti.frameResize; the IMS form too) --
  var lastHeight = 0;
  function parentOrigin() {
    var a = window.location.ancestorOrigins;
    return a && a.length ? a[0] : "*";  // a height is all it carries
  }
  function reportHeight() {
    if (window.parent === window) { return; }
    var h = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (h === lastHeight) { return; }
    lastHeight = h;
    var target = parentOrigin();
    ["lti.frameResize", "org.imsglobal.lti.frameResize"].forEach(function (subject) {
      try { window.parent.postMessage({ subject: subject, height: h }, target); } catch (e) { /* no parent to tell */ }
    });
  }
  if (window.ResizeObserver) { new ResizeObserver(reportHeight).observe(document.documentElement); }
  window.addEventListener("load", reportHeight);

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
  // Exports need the bearer token, so they are fetched and handed to the browser as a file.
  function download(button) {
    var path = button.getAttribute("data-path"), format = button.getAttribute("data-format");
    fetch("/api/checkins" + path + "?format=" + format, { headers: { "Authorization": "Bearer " + token } }).then(function (r) {
      if (!r.ok) { throw new Error("export"); }
      var name = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
      return r.blob().then(function (blob) {
        var url = URL.createObjectURL(blob);
        var a = el("a", { href: url, download: name ? name[1] : "attune." + format, hidden: true });
        document.body.appendChild(a);
        a.click();
        document.body.removeChild(a);
        setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
      });
    }).catch(function () { status.className = "error"; status.textContent = T["export.failed"]; });
  }
  Array.prototype.forEach.call(document.querySelectorAll("button.export"), function (b) {
    b.addEventListener("click", function () { download(b); });
  });

  // --- faces: drawn for Attune, inline SVG (no external asset), colour + text label ----------
  var SVG = "http://www.w3.org/2000/svg";
  var MOUTHS = { 1: "M20 47 Q32 35 44 47", 2: "M22 45 Q32 39 42 45", 3: "M22 43 L42 43", 4: "M21 40 Q32 48 43 40", 5: "M19 37 Q32 54 45 37 Z" };
  function svgNode(tag, attrs) {
    var n = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    return n;
  }
  function faceSvg(band, size) {
    var svg = svgNode("svg", { viewBox: "0 0 64 64", width: size, height: size, class: "face-art b" + band, "aria-hidden": "true", focusable: "false" });
    svg.appendChild(svgNode("circle", { cx: 32, cy: 32, r: 29, class: "face-fill" }));
    svg.appendChild(svgNode("circle", { cx: 23, cy: 27, r: 3.5, class: "face-ink" }));
    svg.appendChild(svgNode("circle", { cx: 41, cy: 27, r: 3.5, class: "face-ink" }));
    if (band === 1) {
      svg.appendChild(svgNode("path", { d: "M17 22 L26 18.5 M47 22 L38 18.5", class: "face-line" }));
    }
    if (band === 5) {
      svg.appendChild(svgNode("circle", { cx: 15, cy: 38, r: 4, class: "face-cheek" }));
      svg.appendChild(svgNode("circle", { cx: 49, cy: 38, r: 4, class: "face-cheek" }));
    }
    svg.appendChild(svgNode("path", { d: MOUTHS[band], class: band === 5 ? "face-line face-open" : "face-line" }));
    return svg;
  }
  function check() {
    var svg = svgNode("svg", { viewBox: "0 0 20 20", width: 22, height: 22, class: "check", "aria-hidden": "true", focusable: "false" });
    svg.appendChild(svgNode("circle", { cx: 10, cy: 10, r: 10, class: "check-bg" }));
    svg.appendChild(svgNode("path", { d: "M5 10.5 L8.5 14 L15 6.5", class: "check-tick" }));
    return svg;
  }

  // --- charts: HTML tables drawn as bars (text on a plain background, 14 px at every width;
  // a caption names each one) --------------------------------------------------------------
  function barChart(id, caption, heads, rows, opts) {
    opts = opts || {};
    var max = Math.max.apply(null, rows.map(function (r) { return r.value; }).concat([opts.max || 1]));
    var table = el("table", { class: "chart", id: id }, [
      el("caption", {}, [el("span", { class: "chart-title", text: caption }), opts.scale ? el("span", { class: "chart-scale muted", text: opts.scale }) : null]),
      el("thead", {}, [el("tr", {}, [el("th", { scope: "col", text: heads[0] }), el("th", { scope: "col", text: heads[1] })])])
    ]);
    var body = el("tbody");
    rows.forEach(function (r) {
      var bar = el("span", { class: "bar" + (r.band ? " b" + r.band : ""), "aria-hidden": "true" });
      bar.style.inlineSize = (r.value ? Math.max(2, Math.round(100 * r.value / max)) : 0) + "%";
      body.appendChild(el("tr", {}, [
        el("th", { scope: "row" }, [r.face ? faceSvg(r.band, 20) : null, r.label]),
        el("td", {}, [el("span", { class: "bar-track" }, [bar]), el("span", { class: "value", text: r.text || NUMBER.format(r.value) })])
      ]));
    });
    table.appendChild(body);
    return table;
  }
  function pleasantnessChart(id, counts, faces) {
    return barChart(id, T["chart.pleasantness"], [faces ? T["chart.face"] : T["chart.pleasantness"], T["chart.count"]],
      counts.map(function (n, i) { return { label: T[(faces ? "face." : "band.") + (i + 1)], value: n, band: i + 1, face: faces }; }));
  }

  function recurrenceText(r) {
    if (!r) { return null; }
    if (r.every === "daily") { return T["teacher.recurrence.daily"]; }
    return fmt("teacher.recurrence.weekly_on", { days: list((r.days || []).map(function (d) { return T["weekday." + d]; })) });
  }
  function badges(c) {
    var rec = recurrenceText(c.recurrence);
    return el("p", { class: "badges" }, [
      el("span", { class: "badge " + c.status, text: T["status." + c.status] }),
      el("span", { class: "badge", text: c.anonymous ? T["teacher.anonymous_badge"] : T["teacher.identified_badge"] }),
      rec ? el("span", { class: "badge recurrence", text: fmt("teacher.recurrence_text", { rule: rec }) }) : null,
      el("span", { class: "muted when", text: fmt("time.range", { from: when(c.opens_at), to: when(c.closes_at) }) })
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
  function syncRecurrence() {
    var days = $("recurrence-days");
    var weekly = $("create-form").querySelector("input[name=recurrence]:checked").value === "weekly";
    days.hidden = !weekly;
    if (weekly && !days.querySelector("input:checked")) {
      var start = $("opens_at").value ? new Date($("opens_at").value) : new Date();
      var iso = start.getDay() || 7;
      days.querySelector("input[value='" + iso + "']").checked = true;
    }
  }
  function resetCreateForm() {
    $("create-form").reset();
    var now = new Date();
    $("opens_at").value = localInput(now);
    $("closes_at").value = localInput(new Date(now.getTime() + 7 * 86400000));
    syncRecurrence();
  }

  // Inline edit form: question, note option, closing time; anonymity is fixed after creation.
  function editForm(c) {
    var p = "edit-" + c.id + "-";
    var initialCloses = c.closes_at ? localInput(new Date(c.closes_at)) : "";
    var q = el("input", { id: p + "question", name: "question", dir: "auto", maxlength: "300", required: true, "aria-describedby": p + "question-error" });
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
      el("p", { class: "muted", text: fmt("teacher.anonymity_fixed_text", { kind: c.anonymous ? T["teacher.anonymous_badge"] : T["teacher.identified_badge"] }) }),
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
  function showView(name) {
    view = name;
    Array.prototype.forEach.call(document.querySelectorAll(".view-button"), function (b) {
      b.setAttribute("aria-pressed", String(b.getAttribute("data-view") === name));
    });
    ["checkins", "insights", "students"].forEach(function (v) { $("view-" + v).hidden = v !== name; });
    if (name === "insights") { refreshInsights(); }
    if (name === "students") { refreshStudents(); }
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
    if (deepLinking) {
      // The picker: the course's existing check-ins first, then a form to make a new one.
      $("views").hidden = true;
      $("picker").hidden = false;
      $("export").hidden = true;
      var create = $("create");
      create.open = false;
      create.parentNode.insertBefore(create, $("results"));
    }
    Array.prototype.forEach.call(document.querySelectorAll(".view-button"), function (b) {
      b.addEventListener("click", function () { showView(b.getAttribute("data-view")); });
    });
    Array.prototype.forEach.call($("create-form").querySelectorAll("input[name=recurrence]"), function (r) { r.addEventListener("change", syncRecurrence); });
    resetCreateForm();
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
        resetCreateForm();
        status.className = "";
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
      if (!res.body.checkins.length) { add(el("li", { text: deepLinking ? T["dl.none"] : T["teacher.none"] })); }
      res.body.checkins.forEach(function (c) {
        if (keep && c.id === editing) { kept = true; return; }
        var li = el("li", { "data-checkin": c.id }, [
          el("h3", { dir: "auto", text: c.question }), badges(c),
          el("p", { class: "participation", text: fmt("teacher.participation_text", c.participation) })
        ]);
        var actions = el("p", { class: "actions" });
        li.appendChild(actions);
        if (deepLinking) {
          var choose = el("button", { type: "button", class: "choose", text: T["dl.choose"] });
          choose.addEventListener("click", function () { chooseForCourse(c.id); });
          actions.appendChild(choose);
        }
        var viewButton = el("button", { type: "button", class: "secondary", text: T["teacher.view"] });
        viewButton.addEventListener("click", function () { shownResults = c.id; showResults(true); });
        actions.appendChild(viewButton);
        if (!deepLinking) {
          var edit = el("button", { type: "button", class: "secondary edit", "aria-label": fmt("teacher.edit_label", { question: c.question }), text: T["teacher.edit"] });
          edit.addEventListener("click", function () {
            editing = c.id;
            var form = editForm(c);
            clear(li).appendChild(form);
            form.querySelector("input").focus();
          });
          actions.appendChild(edit);
          if (c.status !== "closed") {
            var close = el("button", { type: "button", class: "secondary", text: T["teacher.close"] });
            close.addEventListener("click", function () { api("POST", "/checkins/" + c.id + "/close").then(refreshTeacher).catch(function () {}); });
            actions.appendChild(close);
          }
          var del = el("button", { type: "button", class: "danger", text: T["teacher.delete"] });
          del.addEventListener("click", function () {
            if (!window.confirm(T["teacher.delete_confirm"])) { return; }
            api("DELETE", "/checkins/" + c.id).then(function () {
              if (shownResults === c.id) { shownResults = null; $("results").hidden = true; }
              refreshTeacher();
            }).catch(function () {});
          });
          actions.appendChild(del);
        }
        add(li);
      });
      if (keep && !kept) { list.removeChild(keep); editing = null; }
      if (focusEdit) {
        var back = list.querySelector("li[data-checkin='" + focusEdit + "'] button.edit");
        focusEdit = null;
        if (back) { back.focus(); }
      }
      if (shownResults) { showResults(false); }
      if (view === "insights") { refreshInsights(); }
    }).catch(function () {});
  }
  function peopleList(id, people, text) {
    return el("ul", { class: "people", id: id }, people.map(function (p) { return el("li", { text: text(p) }); }));
  }
  function showResults(focus) {
    api("GET", "/checkins/" + shownResults).then(function (res) {
      if (!res.ok) { return; }
      var c = res.body;
      $("results").hidden = false;
      $("results-heading").textContent = fmt("teacher.results_heading", { question: c.question });
      var body = clear($("results-body"));
      body.appendChild(el("p", { id: "results-participation", text: fmt("teacher.participation_text", c.participation) }));
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
      if (c.distribution) {
        body.appendChild(pleasantnessChart("results-pleasantness", c.distribution.pleasantness, false));
        var emo = c.distribution.emotions;
        if (emo.length) {
          body.appendChild(barChart("results-emotions", T["chart.emotions"], [T["chart.emotions"], T["chart.count"]],
            emo.map(function (e) { return { label: label(e.emotion), value: e.count, band: e.pleasantness }; })));
        }
      }
      if (c.not_answered) {  // identified check-ins only: the server never sends it for others
        body.appendChild(el("h3", { text: T["teacher.not_answered"] }));
        body.appendChild(el("p", { class: "muted", text: T["teacher.not_answered_help"] }));
        body.appendChild(c.not_answered.length ? peopleList("results-missing", c.not_answered, nameOf)
          : el("p", { id: "results-missing", text: T["teacher.not_answered_none"] }));
      }
      if (c.responses && c.responses.length) {
        body.appendChild(el("h3", { text: T["teacher.who"] }));
        var list = el("ul", { class: "cards", id: "results-who" });
        c.responses.forEach(function (a) {
          list.appendChild(el("li", {}, [
            el("strong", { text: fmt("teacher.who_item", { name: nameOf(a), emotion: label(a.emotion), band: T["band." + a.pleasantness] }) }),
            a.note ? el("p", { dir: "auto", text: a.note }) : null]));
        });
        body.appendChild(list);
      } else if (c.notes && c.notes.length) {
        body.appendChild(el("h3", { text: T["teacher.notes_anonymous"] }));
        body.appendChild(el("ul", {}, c.notes.map(function (n) { return el("li", { dir: "auto", text: n }); })));
      }
      if (focus) { $("results").focus(); }
    }).catch(function () {});
  }
  function refreshInsights() {
    api("GET", "/insights").then(function (res) {
      if (!res.ok) { return; }
      var i = res.body;
      var body = clear($("insights-body"));
      if (i.average_participation !== null) {
        body.appendChild(el("p", { id: "average-participation", text: fmt("teacher.average_participation", { percent: PERCENT.format(Math.round(100 * i.average_participation) / 100) }) }));
      }
      body.appendChild(el("h3", { text: T["teacher.trend"] }));
      if (i.trend.length) {
        body.appendChild(barChart("trend", T["teacher.trend"], [T["chart.day"], T["chart.average"]],
          i.trend.map(function (p) {
            return { label: DAY.format(new Date(p.day + "T00:00:00Z")), value: p.average, text: AVERAGE.format(p.average), band: Math.round(p.average) };
          }), { max: 5, scale: T["teacher.trend_scale"] }));
      } else {
        body.appendChild(el("p", { class: "muted", text: T["teacher.no_trend"] }));
      }
      body.appendChild(el("h3", { text: T["teacher.attention"] }));
      body.appendChild(el("p", { class: "muted", text: T["teacher.attention_help"] }));
      if (i.may_need_conversation.length) {
        body.appendChild(peopleList("attention", i.may_need_conversation, function (s) {
          return fmt("teacher.attention_item", { name: nameOf(s), low: s.low, of: s.of });
        }));
      } else {
        body.appendChild(el("p", { text: T["teacher.attention_none"] }));
      }
    }).catch(function () {});
  }
  // Per student: a compact row of their answers to the identified check-ins, oldest first.
  function refreshStudents() {
    api("GET", "/students").then(function (res) {
      if (!res.ok) { return; }
      var body = clear($("students-body"));
      var checkins = res.body.checkins;
      if (!checkins.length) { body.appendChild(el("p", { text: T["teacher.students_none"] })); return; }
      var list = el("ul", { class: "cards", id: "students-list" });
      res.body.students.forEach(function (s) {
        var name = nameOf(s);
        var row = el("ol", { class: "timeline", "aria-label": fmt("teacher.student_answers", { name: name }) });
        s.answers.forEach(function (a, i) {
          var date = SHORT_DATE.format(new Date(checkins[i].opens_at));
          var text = fmt("teacher.answer_cell", { date: date, emotion: a ? label(a.emotion) : T["teacher.no_answer"] });
          row.appendChild(el("li", { class: a ? "answer b" + a.pleasantness : "answer none", title: checkins[i].question }, [
            a ? faceSvg(a.pleasantness, 18) : null, text]));
        });
        list.appendChild(el("li", {}, [el("h3", { class: "student-name", text: name }), row]));
      });
      body.appendChild(list);
    }).catch(function () {});
  }

  // --- student: pleasantness first (five faces), then the words of that band --------------
  function draftOf(c) {
    if (!drafts[c.id]) {
      var mine = c.my_answer;
      drafts[c.id] = {
        band: mine ? mine.pleasantness : null, word: mine ? mine.emotion : null,
        note: (mine && mine.note) || "", step: mine ? 0 : 1
      };
    }
    return drafts[c.id];
  }
  function renderCard(c, card, justSent) {
    var d = draftOf(c);
    var prefix = "c" + c.id + "-";
    clear(card);
    card.appendChild(el("h3", { id: prefix + "q", dir: "auto", text: c.question }));
    // The promise before anything is chosen and with the answer; step 2 restates it by Send.
    if (c.anonymous && d.step !== 2) { card.appendChild(el("p", { class: "muted anonymous-note", text: T["student.anonymous_note"] })); }
    if (d.step === 0 && c.my_answer) { card.appendChild(sentView(c, d, prefix, justSent)); return; }
    card.appendChild(d.step === 1 ? facesStep(c, d, prefix, card) : wordsStep(c, d, prefix, card));
  }
  function facesStep(c, d, prefix, card) {
    var head = el("h4", { id: prefix + "faces", tabindex: "-1", text: T["student.faces"] });
    var faces = el("div", { class: "faces", role: "group", "aria-labelledby": prefix + "faces" });
    VOCAB[c.vocabulary].forEach(function (band) {
      var b = el("button", { type: "button", class: "face b" + band.band, "aria-pressed": String(d.band === band.band), "data-band": band.band },
        [faceSvg(band.band, 56), el("span", { class: "face-label", text: band.face }), check()]);
      b.addEventListener("click", function () {
        if (d.band !== band.band) { d.word = null; }
        d.band = band.band;
        d.step = 2;
        renderCard(c, card);
        card.querySelector("#" + prefix + "words-legend").focus();
      });
      faces.appendChild(b);
    });
    return el("div", { class: "step step-1" }, [el("p", { class: "step-count", text: fmt("student.step", { step: 1 }) }), head, faces]);
  }
  function wordsStep(c, d, prefix, card) {
    var band = VOCAB[c.vocabulary][d.band - 1];
    var meaning = el("p", { class: "meaning", "aria-hidden": "true" });
    function show(w) {
      clear(meaning);
      if (w) { meaning.appendChild(el("strong", { text: w.label })); meaning.appendChild(document.createTextNode(" " + w.meaning)); }
      else { meaning.textContent = T["student.words_hint"]; }
    }
    function chosen() { return band.words.filter(function (w) { return w.id === d.word; })[0]; }
    var words = el("div", { class: "words" });
    band.words.forEach(function (w) {
      var id = prefix + "w-" + w.id;
      var input = el("input", { type: "radio", name: prefix + "emotion", value: w.id, id: id, class: "word-input", "aria-describedby": id + "-m" });
      input.checked = d.word === w.id;
      input.addEventListener("change", function () { d.word = w.id; show(w); msg.textContent = ""; });
      input.addEventListener("focus", function () { show(w); });
      input.addEventListener("blur", function () { show(chosen()); });
      var lab = el("label", { for: id, class: "word" }, [el("span", { text: w.label }), check()]);
      lab.addEventListener("mouseenter", function () { show(w); });
      lab.addEventListener("mouseleave", function () { show(document.activeElement === input ? w : chosen()); });
      words.appendChild(el("div", { class: "word-item" }, [input, lab, el("span", { id: id + "-m", class: "visually-hidden", text: w.meaning })]));
    });
    show(chosen());
    var back = el("button", { type: "button", class: "secondary back", text: T["student.back"] });
    back.addEventListener("click", function () {
      d.step = 1;
      renderCard(c, card);
      var pressed = card.querySelector(".face[aria-pressed='true']");
      (pressed || card.querySelector("#" + prefix + "faces")).focus();
    });
    var form = el("form", { class: "step step-2", novalidate: true, "aria-labelledby": prefix + "q" }, [
      el("p", { class: "step-head" }, [el("span", { class: "step-count", text: fmt("student.step", { step: 2 }) }),
        el("span", { class: "chosen-face" }, [faceSvg(d.band, 28), " " + fmt("student.chosen_face", { face: band.face })])]),
      el("fieldset", { class: "word-group" }, [el("legend", { id: prefix + "words-legend", tabindex: "-1", text: T["student.words"] }), words]),
      meaning
    ]);
    if (c.allow_note) {
      var nid = prefix + "note";
      var hint = c.anonymous ? el("p", { id: nid + "-hint", class: "muted", text: T["student.anonymous_note_hint"] }) : null;
      var count = el("p", { id: nid + "-count", class: "muted count" });
      var ta = el("textarea", { id: nid, name: "note", dir: "auto", maxlength: String(NOTE_MAX), rows: "2", "aria-describedby": (hint ? nid + "-hint " : "") + nid + "-count" });
      ta.value = d.note;
      function counted() { count.textContent = fmt("student.note_count", { count: ta.value.length, max: NOTE_MAX }); }
      ta.addEventListener("input", function () { d.note = ta.value; counted(); });
      counted();
      form.appendChild(el("div", { class: "field note" }, [el("label", { for: nid, text: T["student.note"] }), ta, count, hint]));
    }
    var nextId = prefix + "next";
    var msg = el("p", { class: "error", role: "alert" });
    var send = el("button", { type: "submit", class: "send", "aria-describedby": nextId, text: c.my_answer ? T["student.change"] : T["student.submit"] });
    form.appendChild(el("p", { id: nextId, class: "next" , text: c.anonymous ? T["student.next_anonymous"] : T["student.next_identified"] }));
    form.appendChild(el("div", { class: "actions" }, [back, send]));
    form.appendChild(msg);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!d.word) { msg.textContent = T["student.word_needed"]; var first = words.querySelector("input"); if (first) { first.focus(); } return; }
      var body = { emotion: d.word };
      if (c.allow_note) { body.note = d.note; }
      send.disabled = true;
      api("PUT", "/checkins/" + c.id + "/response", body).then(function (res) {
        send.disabled = false;
        if (!res.ok) { msg.textContent = res.body.error.message; return; }
        return api("GET", "/checkins/" + c.id).then(function (again) {
          var fresh = again.ok ? again.body : c;
          d.step = 0;
          renderCard(fresh, card, true);
          var thanks = card.querySelector(".thanks");
          if (thanks) { thanks.focus(); }
          refreshHistory();
        });
      }).catch(function () { send.disabled = false; });
    });
    return form;
  }
  function sentView(c, d, prefix, justSent) {
    var a = c.my_answer;
    var change = el("button", { type: "button", class: "secondary change", text: T["student.change"] });
    var box = el("div", { class: "sent" }, [
      justSent ? el("p", { class: "thanks", role: "status", tabindex: "-1", text: T["student.saved"] }) : null,
      el("p", { class: "my-answer" }, [faceSvg(a.pleasantness, 32), " " + T["student.your_answer"] + ": ",
        el("strong", { text: fmt("student.answer_text", { emotion: label(a.emotion), face: T["face." + a.pleasantness] }) })]),
      c.status === "open" ? change : null,
      classView(c, prefix)
    ]);
    change.addEventListener("click", function () {
      d.step = 1;
      var card = box.parentNode;
      renderCard(c, card);
      var pressed = card.querySelector(".face[aria-pressed='true']");
      if (pressed) { pressed.focus(); }
    });
    return box;
  }
  function classView(c, prefix) {
    if (!c["class"]) { return el("p", { class: "muted class-hidden", text: T["student.class_hidden"] }); }
    return el("div", { class: "class-picture" }, [el("h4", { text: T["student.class"] }),
      pleasantnessChart(prefix + "class", c["class"].pleasantness, true)]);
  }
  function studentCard(c, into) {
    var card = el("article", { class: "card answer-card", "aria-labelledby": "c" + c.id + "-q", "data-checkin": c.id });
    renderCard(c, card);
    into.appendChild(card);
    return card;
  }
  function refreshStudent() {
    api("GET", "/checkins").then(function (res) {
      if (!res.ok) { return fail(res.body); }
      var open = clear($("student-open"));
      var others = clear($("student-others-list"));
      var all = res.body.checkins;
      var focus = linked ? all.filter(function (c) { return c.id === linked; })[0] : null;
      if (linked && !focus) {
        // The linked check-in is not open: say so, and show the open ones.
        open.appendChild(el("p", { id: "linked-not-open", text: T["student.not_open"] }));
      }
      if (!all.length) { open.appendChild(el("p", { text: T["student.none_open"] })); }
      if (focus) {
        $("student-heading").textContent = T["student.this_checkin"];
        studentCard(focus, open);
        var rest = all.filter(function (c) { return c !== focus; });
        $("student-others").hidden = !rest.length;
        if (rest.length && !othersShown) {
          var more = el("button", { type: "button", class: "secondary", id: "show-others", text: fmt("student.show_others", { count: rest.length }) });
          more.addEventListener("click", function () {
            othersShown = true;
            others.removeChild(more);
            rest.forEach(function (c) { studentCard(c, others); });
            var first = others.querySelector("h3");
            if (first) { first.setAttribute("tabindex", "-1"); first.focus(); }
          });
          others.appendChild(more);
        } else {
          rest.forEach(function (c) { studentCard(c, others); });
        }
      } else {
        all.forEach(function (c) { studentCard(c, open); });
      }
    }).catch(function () {});
    refreshHistory();
  }
  function refreshHistory() {
    api("GET", "/history").then(function (res) {
      if (!res.ok) { return; }
      var list = clear($("student-history"));
      if (!res.body.history.length) { list.appendChild(el("li", { text: T["student.no_history"] })); }
      res.body.history.forEach(function (c) {
        var a = c.my_answer;
        list.appendChild(el("li", {}, [el("strong", { dir: "auto", text: c.question }), badges(c),
          el("p", {}, [faceSvg(a.pleasantness, 24), " " + T["student.your_answer"] + ": " + fmt("student.answer_text", { emotion: label(a.emotion), face: T["face." + a.pleasantness] })]),
          a.note ? el("p", { class: "muted", dir: "auto", text: a.note }) : null]));
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
      setupTeacher();
    } else if (res.body.is_teacher) {
      if (res.body.checkin_id) { shownResults = res.body.checkin_id; }
      showLmsShares(res.body.lms_shares);
      setupTeacher();
    } else if (res.body.is_learner) {
      linked = res.body.checkin_id || null;
      $("student").hidden = false;
      refreshStudent();
    }
  }).catch(function (e) {
    if (e && e.message === "unauthorized") { return; }
    status.className = "error"; status.textContent = T["app.unreachable"];
  });
})();
