// The run page's step pickers, a little nicer with JavaScript: a step
// slider shows the step it points at while it moves and loads it when let
// go; a step or key <select> loads on change. Without JavaScript the forms'
// "show" buttons do the same.
(function () {
  "use strict";
  document.querySelectorAll("form.steps").forEach(function (form) {
    var range = form.querySelector("input[type=range]");
    var out = form.querySelector("output");
    if (range && out) {
      range.addEventListener("input", function () { out.value = range.value; });
    }
    form.querySelectorAll("input[type=range], select").forEach(function (el) {
      el.addEventListener("change", function () { form.submit(); });
    });
  });
})();
