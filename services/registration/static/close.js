// Dynamic registration is done: tell the LMS to close its registration frame
// (IMS LTI Dynamic Registration, "org.imsglobal.lti.close"). The page's own file, so the
// Content-Security-Policy needs no inline script.
"use strict";
(function () {
  function close() {
    (window.parent || window).postMessage({ subject: "org.imsglobal.lti.close" }, "*");
  }
  var button = document.getElementById("close");
  if (button) {
    button.addEventListener("click", close);
  }
})();
