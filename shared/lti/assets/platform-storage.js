// LTI Platform Storage (1EdTech LTI Client Side postMessages): keeps the login binding in the
// LMS page when the browser blocks third-party cookies. No inline script: the page passes its
// data through data-* attributes of #attune-storage.
(function () {
  "use strict";
  var el = document.getElementById("attune-storage");
  if (!el) { return; }
  var d = el.dataset;
  // The platform answers in milliseconds; 5 s leaves room for a slow school laptop without
  // leaving a person long in front of a blank frame when the platform never answers.
  var TIMEOUT_MS = 5000;

  function storageFrame() {
    try {
      var frame = d.target ? window.parent.frames[d.target] : null;
      return frame || window.parent;
    } catch (e) {
      return window.parent;
    }
  }

  function ask(subject, payload) {
    return new Promise(function (resolve) {
      var id = "attune-" + Math.random().toString(36).slice(2) + Date.now().toString(36);
      var target = storageFrame();
      var done = false;
      function finish(value) {
        if (done) { return; }
        done = true;
        window.removeEventListener("message", onMessage);
        resolve(value);
      }
      function onMessage(event) {
        // Only the platform's own origin may answer, and only for our message id.
        if (event.origin !== d.origin) { return; }
        var m = event.data;
        if (!m || m.subject !== subject + ".response" || m.message_id !== id) { return; }
        finish(m.error ? null : m);
      }
      window.addEventListener("message", onMessage);
      setTimeout(function () { finish(null); }, TIMEOUT_MS);
      var message = { subject: subject, message_id: id };
      for (var k in payload) { message[k] = payload[k]; }
      try {
        target.postMessage(message, d.origin);
      } catch (e) {
        finish(null);
      }
    });
  }

  if (d.mode === "put") {
    ask("lti.put_data", { key: d.key, value: d.value }).then(function () {
      window.location.replace(d.next);
    });
  } else if (d.mode === "get") {
    ask("lti.get_data", { key: d.key }).then(function (reply) {
      var form = document.getElementById("attune-relaunch");
      form.elements.namedItem("lti_storage_bind").value = reply && reply.value ? reply.value : "";
      form.submit();
    });
  }
})();
