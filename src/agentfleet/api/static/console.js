// The task page's live steps: the console's event stream sends each new step as HTML the server
// rendered (and escaped); this script only appends it, shows the model's progress as text, and
// reloads the page once the task has ended (to show its summary and diff).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const steps = document.getElementById("steps");
  if (!steps || !steps.dataset.stream) return;
  const progress = document.getElementById("progress");
  const source = new EventSource(steps.dataset.stream);
  source.addEventListener("step", (event) => {
    steps.insertAdjacentHTML("beforeend", event.data);
    progress.textContent = "";
  });
  source.addEventListener("progress", (event) => {
    progress.textContent = event.data;
  });
  source.addEventListener("status", (event) => {
    const status = document.getElementById("status");
    status.textContent = event.data;
    status.className = "status s-" + event.data.toLowerCase();
  });
  source.addEventListener("end", () => {
    source.close();
    window.location.reload();
  });
});
