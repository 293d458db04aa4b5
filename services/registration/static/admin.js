// Attune admin pages. The admin token lives in this tab's sessionStorage only and travels as
// an Authorization header; no cookie is involved. Data is inserted with textContent only.
"use strict";
(function () {
  var KEY = "attune-admin-token";
  var page = document.body.getAttribute("data-page");
  // Every sentence comes from the server, in the reader's language (the page's data block).
  var T = JSON.parse(document.getElementById("admin-data").textContent).strings;
  var LANG = document.documentElement.lang || undefined;
  var WHEN = new Intl.DateTimeFormat(LANG, { dateStyle: "medium", timeStyle: "short" });
  function fmt(key, values) {
    return T[key].replace(/\{(\w+)\}/g, function (_, k) { return String(values[k]); });
  }
  function when(iso) { return iso ? WHEN.format(new Date(iso)) : ""; }

  function $(id) { return document.getElementById(id); }
  function token() { return window.sessionStorage.getItem(KEY); }
  function status(text) { var el = $("status"); if (el) { el.textContent = text || ""; } }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function api(method, path, body) {
    var headers = { "Accept": "application/json", "Authorization": "Bearer " + (token() || "") };
    var init = { method: method, headers: headers, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (resp.status === 401) {
          window.sessionStorage.removeItem(KEY);
          if (page === "admin") { showSignedOut(); }
        }
        return { status: resp.status, ok: resp.ok, data: data };
      });
    });
  }

  function errorText(result) {
    var e = result.data && result.data.error;
    return e ? e.message + " (" + e.code + ")" : fmt("request_failed", { status: result.status });
  }

  // --- dashboard ------------------------------------------------------------------------------

  function showSignedOut() {
    $("signin").hidden = false;
    $("signed-in").hidden = true;
  }

  function deploymentAction(platform, deployment, action) {
    api("POST", "/api/admin/platforms/" + platform.id + "/deployments/" + action,
        { deployment_id: deployment.deployment_id }).then(function (r) {
      status(r.ok ? fmt("deployment_" + action + "d", { deployment: deployment.deployment_id }) : errorText(r));
      loadAll();
    });
  }

  function deletePlatform(platform) {
    var question = fmt("delete_confirm", { name: platform.name || platform.issuer, client_id: platform.client_id });
    if (!window.confirm(question)) { return; }
    api("DELETE", "/api/admin/platforms/" + platform.id).then(function (r) {
      status(r.ok ? fmt("deleted", { retention: r.data.data_retention }) : errorText(r));
      loadAll();
    });
  }

  // A re-registration code: the only install code that may update this registration (the
  // LMS's "Update" / re-register). Shown once, next to the platform it is for.
  function reregistrationCode(platform, out) {
    var label = fmt("reregister_label", { name: platform.name || platform.issuer }).slice(0, 200);
    api("POST", "/api/admin/install-codes", { platform_id: platform.id, label: label })
      .then(function (r) {
        out.hidden = false;
        out.textContent = r.ok
          ? fmt("reregistration_code", { expires: when(r.data.expires_at), code: r.data.install_code })
          : errorText(r);
        loadAudit();
      });
  }

  function regions() {
    var names = ($("signed-in").getAttribute("data-regions") || "").split(" ");
    return names.filter(function (name) { return name !== ""; });
  }

  // Where the LMS's launches and check-ins are kept: one region's cell, or any (Canvas).
  function regionControl(p) {
    var line = el("p");
    var id = "region-" + p.id;
    var label = el("label", T.region_label);
    label.htmlFor = id;
    line.appendChild(label);
    line.appendChild(document.createTextNode(" "));
    var select = el("select");
    select.id = id;
    var any = el("option", T.region_any_option);
    any.value = "";
    select.appendChild(any);
    regions().forEach(function (name) {
      var option = el("option", name);
      option.value = name;
      select.appendChild(option);
    });
    select.value = p.region || "";
    line.appendChild(select);
    line.appendChild(document.createTextNode(" "));
    var save = el("button", T.region_save, "secondary");
    save.type = "button";
    save.addEventListener("click", function () {
      api("PUT", "/api/admin/platforms/" + p.id + "/region",
          { region: select.value || null }).then(function (r) {
        status(r.ok ? fmt("region_saved", { region: select.value || T.region_any }) : errorText(r));
        loadAll();
      });
    });
    line.appendChild(save);
    return line;
  }

  function renderPlatform(p) {
    var box = el("section", null, "platform");
    box.appendChild(el("h3", (p.name || p.issuer) + " · " + p.product));
    var facts = el("p", null, "meta");
    facts.textContent = fmt("facts", { issuer: p.issuer, client_id: p.client_id, method: p.registration_method,
      policy: p.deployment_policy, environment: p.environment }) + " · " +
      fmt("region_fact", { region: p.region || T.region_any });
    box.appendChild(facts);
    if (regions().length > 1) { box.appendChild(regionControl(p)); }
    var missing = p.not_granted_summary || [];
    if (missing.length) {
      var warning = el("div", null, "warning");
      warning.appendChild(el("p", T.not_granted));
      var lines = el("ul");
      missing.forEach(function (line) { lines.appendChild(el("li", line)); });
      warning.appendChild(lines);
      box.appendChild(warning);
    }
    var table = el("table");
    var head = el("tr");
    [T.col_deployment, T.col_status, T.col_seen_via, ""].forEach(function (h) { head.appendChild(el("th", h)); });
    table.appendChild(head);
    p.deployments.forEach(function (d) {
      var row = el("tr");
      row.appendChild(el("td", d.deployment_id + (d.label ? " (" + d.label + ")" : "")));
      row.appendChild(el("td", d.status, "status-" + d.status));
      row.appendChild(el("td", d.source + (d.seen_in ? " (" + d.seen_in.join(", ") + ")" : "")));
      var actions = el("td");
      if (d.status !== "active") {
        var approve = el("button", T.approve);
        approve.type = "button";
        approve.addEventListener("click", function () { deploymentAction(p, d, "approve"); });
        actions.appendChild(approve);
      }
      if (d.status !== "disabled") {
        var disable = el("button", T.disable, "secondary");
        disable.type = "button";
        disable.addEventListener("click", function () { deploymentAction(p, d, "disable"); });
        actions.appendChild(disable);
      }
      row.appendChild(actions);
      table.appendChild(row);
    });
    if (!p.deployments.length) {
      var empty = el("tr");
      var cell = el("td", T.no_deployment);
      cell.colSpan = 4;
      empty.appendChild(cell);
      table.appendChild(empty);
    }
    box.appendChild(table);
    var actions = el("p");
    var reregister = el("button", T.create_reregistration, "secondary");
    reregister.type = "button";
    var code = el("p", null, "secret");
    code.hidden = true;
    code.setAttribute("role", "status");
    reregister.addEventListener("click", function () { reregistrationCode(p, code); });
    actions.appendChild(reregister);
    actions.appendChild(document.createTextNode(" "));
    var del = el("button", T.delete_registration, "secondary");
    del.type = "button";
    del.addEventListener("click", function () { deletePlatform(p); });
    actions.appendChild(del);
    box.appendChild(actions);
    box.appendChild(code);
    return box;
  }

  function loadAll() {
    api("GET", "/api/admin/platforms").then(function (r) {
      var list = $("platforms");
      list.replaceChildren();
      if (!r.ok) { status(errorText(r)); return; }
      if (!r.data.platforms.length) { list.appendChild(el("p", T.no_platform)); }
      r.data.platforms.forEach(function (p) { list.appendChild(renderPlatform(p)); });
    });
    loadAudit();
  }

  function loadAudit() {
    api("GET", "/api/admin/audit?limit=50").then(function (r) {
      var list = $("audit");
      list.replaceChildren();
      if (!r.ok) { return; }
      r.data.audit.forEach(function (a) {
        list.appendChild(el("li", when(a.at) + " · " + a.actor + " · " + a.action +
          (a.issuer ? " · " + a.issuer + " / " + a.client_id : "") +
          " · " + JSON.stringify(a.details)));
      });
    });
  }

  function signIn() {
    return api("GET", "/api/admin/me").then(function (r) {
      if (!r.ok) { status(errorText(r)); showSignedOut(); return; }
      $("who").textContent = r.data.name;
      $("signin").hidden = true;
      $("signed-in").hidden = false;
      status("");
      loadAll();
    });
  }

  function initAdmin() {
    $("signin").addEventListener("submit", function (event) {
      event.preventDefault();
      window.sessionStorage.setItem(KEY, $("token").value.trim());
      $("token").value = "";
      signIn();
    });
    $("signout").addEventListener("click", function () {
      window.sessionStorage.removeItem(KEY);
      showSignedOut();
    });
    $("new-code").addEventListener("submit", function (event) {
      event.preventDefault();
      var label = $("code-label").value.trim();
      api("POST", "/api/admin/install-codes", label ? { label: label } : {}).then(function (r) {
        var out = $("new-code-value");
        out.hidden = false;
        out.textContent = r.ok
          ? fmt("install_code", { expires: when(r.data.expires_at), code: r.data.install_code })
          : errorText(r);
        loadAll();
      });
    });
    if (token()) { signIn(); } else { showSignedOut(); }
  }

  // --- manual registration ----------------------------------------------------------------------

  function initManual() {
    var form = $("manual");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = {};
      Array.prototype.forEach.call(form.elements, function (input) {
        if (input.name && input.value.trim() !== "") { body[input.name] = input.value.trim(); }
      });
      document.querySelectorAll(".field-error").forEach(function (e) { e.textContent = ""; });
      if (!token()) { status(T.sign_in_first); return; }
      api("POST", "/api/admin/platforms", body).then(function (r) {
        if (r.ok) {
          var warnings = r.data.warnings || {};
          status(fmt(r.data.created ? "registered" : "updated", { id: r.data.platform.id }) +
            (Object.keys(warnings).length ? " " + fmt("warnings", { warnings: JSON.stringify(warnings) }) : ""));
          return;
        }
        var fields = (r.data.error && r.data.error.fields) || {};
        Object.keys(fields).forEach(function (name) {
          var slot = document.querySelector('.field-error[data-for="' + name + '"]');
          if (slot) { slot.textContent = fields[name]; }
        });
        status(errorText(r));
      });
    });
  }

  if (page === "admin") { initAdmin(); }
  if (page === "manual") { initManual(); }
})();
