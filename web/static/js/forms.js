// Form behaviour that the Content-Security-Policy keeps out of the markup (no inline handlers):
// <form data-confirm="question"> asks before it is sent; <select data-autosubmit> sends its form on change.
document.querySelectorAll("form[data-confirm]").forEach((form) => {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); event.stopImmediatePropagation(); }
  });
});
document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
