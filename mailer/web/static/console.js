// The console's live parts: the preview and the audience follow the editor as it is typed,
// the next firings follow the crontab line, the progress refreshes while a run sends.
// Each part is a fragment the server renders; without this script each is a plain link.
"use strict";

function debounce(fn, ms) {
  let timer = null;
  return function () {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

function query(form, names) {
  // Every named field, disabled ones too (a campaign that has sent shows its fields disabled,
  // and its preview and audience still follow them).
  const params = new URLSearchParams();
  for (const field of form.elements) {
    const name = field.name;
    if (!name || name === "csrf" || (names && !names.includes(name))) continue;
    if ((field.type === "checkbox" || field.type === "radio") && !field.checked) continue;
    if (field.tagName === "BUTTON" || field.tagName === "FIELDSET") continue;
    params.append(name, field.value);
  }
  return params.toString();
}

async function load(target, url) {
  target.setAttribute("aria-busy", "true");
  try {
    const answer = await fetch(url, { credentials: "same-origin" });
    target.innerHTML = await answer.text();
  } catch (error) {
    target.textContent = "—"; // the next refresh tries again
  } finally {
    target.removeAttribute("aria-busy");
  }
}

function editor(form) {
  const frame = document.getElementById("preview-frame");
  const audience = document.getElementById("audience");
  const campaign = form.dataset.campaign || "";
  let targeted = null; // the audience depends on the purpose and the categories only
  const refresh = function () {
    const tail = campaign ? "&campaign=" + campaign : "";
    if (frame) frame.src = "/console/preview?" + query(form) + tail;
    const target = query(form, ["purpose", "categories"]) + tail;
    if (audience && target !== targeted) {
      targeted = target;
      load(audience, "/console/audience?" + target);
    }
  };
  form.addEventListener("input", debounce(refresh, 500));
  form.addEventListener("change", debounce(refresh, 200));
  for (const link of document.querySelectorAll("[data-without-script]")) link.hidden = true;
  refresh();
}

function schedule(form) {
  const target = document.getElementById("firings");
  if (!target) return;
  const refresh = function () {
    load(target, "/console/firings?" + query(form, ["cron", "timezone"]));
  };
  form.addEventListener("input", debounce(refresh, 400));
}

function poll(target) {
  const tick = async function () {
    await load(target, target.dataset.src);
    const live = target.querySelector("[data-live]");
    if (live) setTimeout(tick, 2000);
    else if (target.dataset.wasLive) window.location.reload(); // the run ended: the page's counts
  };
  target.dataset.wasLive = target.querySelector("[data-live]") ? "1" : "";
  if (target.dataset.wasLive) setTimeout(tick, 2000);
}

document.addEventListener("DOMContentLoaded", function () {
  const form = document.getElementById("editor");
  if (form) editor(form);
  const planner = document.getElementById("schedule");
  if (planner) schedule(planner);
  const progress = document.getElementById("progress");
  if (progress) poll(progress);
});
