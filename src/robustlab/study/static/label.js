// Keyboard shortcuts: 0-9 choose a class, c means "can't tell"; the response time goes with the
// answer. Submitting clicks the same button a mouse would, so both paths post the same form.
(function () {
  var shown = performance.now(), sent = false;
  var form = document.getElementById("answer-form");
  form.addEventListener("submit", function (e) {
    if (sent) { e.preventDefault(); return; }  // one answer per item, even on a double press
    sent = true;
    document.getElementById("rt_ms").value = Math.round(performance.now() - shown);
  });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var b = form.querySelector('button[data-key="' + e.key.toLowerCase() + '"]');
    if (b) { e.preventDefault(); b.click(); }
  });
})();
