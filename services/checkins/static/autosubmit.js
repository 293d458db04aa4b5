// Posts the deep-linking response back to the LMS (no inline script: CSP script-src 'self').
(function () {
  "use strict";
  var form = document.getElementById("deep-link-return");
  if (form) { form.submit(); }
})();
