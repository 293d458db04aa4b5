// The app keeps the launch token in memory and sessionStorage (per tab, never a cookie) and
// sends it as a bearer token; the URL fragment that carried it is removed at once.
(function () {
  "use strict";
  var KEY = "attune.launch_token";
  var match = /(?:^#|&)lt=([^&]+)/.exec(window.location.hash);
  var token = match ? decodeURIComponent(match[1]) : null;
  try {
    if (token) { sessionStorage.setItem(KEY, token); } else { token = sessionStorage.getItem(KEY); }
  } catch (e) { /* storage may be blocked in a third-party iframe: memory is enough */ }
  if (match) { history.replaceState(null, "", window.location.pathname + window.location.search); }
  var status = document.getElementById("status");
  if (!token) {
    status.textContent = "Open Attune from your course in the LMS.";
    return;
  }
  fetch("/api/checkins/me", { headers: { "Authorization": "Bearer " + token, "Accept": "application/json" } })
    .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
    .then(function (res) {
      if (!res.ok) {
        status.className = "error";
        status.textContent = res.body.error.message + " " + (res.body.error.hint || "");
        return;
      }
      status.dataset.role = res.body.is_teacher ? "teacher" : "student";
      status.textContent = res.body.is_teacher ? "Signed in as a teacher of this course." : "Signed in as a student of this course.";
    })
    .catch(function () { status.className = "error"; status.textContent = "Attune could not be reached."; });
})();
