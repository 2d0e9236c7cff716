"""The labelling page: one self-contained HTML document (no external assets), served at ``/``."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>transferkit label</title>
<style>
  :root { color-scheme: light dark; font-family: system-ui, sans-serif; }
  body { margin: 0; padding: 1rem; display: flex; flex-direction: column; align-items: center; gap: .8rem; }
  header { display: flex; gap: 1rem; align-items: baseline; flex-wrap: wrap; justify-content: center; }
  h1 { font-size: 1.1rem; margin: 0; }
  #progress { font-variant-numeric: tabular-nums; }
  figure { margin: 0; display: flex; flex-direction: column; align-items: center; gap: .3rem; }
  #image { max-width: min(90vw, 720px); max-height: 60vh; image-rendering: auto; background: #8884;
           min-width: 64px; min-height: 64px; }
  figcaption { font-size: .85rem; opacity: .8; word-break: break-all; max-width: 90vw; text-align: center; }
  #classes, #actions { display: flex; flex-wrap: wrap; gap: .5rem; justify-content: center; }
  button { font: inherit; padding: .55rem .9rem; border-radius: .4rem; border: 1px solid #8888;
           cursor: pointer; }
  button:focus-visible { outline: 3px solid #2a7; outline-offset: 2px; }
  button:disabled { opacity: .4; cursor: default; }
  kbd { font-family: ui-monospace, monospace; border: 1px solid #8888; border-radius: .25rem;
        padding: 0 .3rem; font-size: .85em; }
  #status { min-height: 1.4em; }
  #done[hidden], #work[hidden] { display: none; }
  .help { font-size: .85rem; opacity: .8; text-align: center; }
</style>
</head>
<body>
<header>
  <h1>transferkit label</h1>
  <span id="progress" aria-live="polite"></span>
</header>
<main id="work">
  <figure>
    <img id="image" alt="image to label">
    <figcaption id="path"></figcaption>
  </figure>
  <div id="classes" role="group" aria-label="labels"></div>
  <div id="actions">
    <button id="skip" type="button">skip <kbd>Space</kbd></button>
    <button id="undo" type="button">undo <kbd>Backspace</kbd></button>
  </div>
</main>
<section id="done" hidden>
  <p>Every image is labelled or skipped. Skipped images come back when the server restarts.</p>
  <button id="undo-done" type="button">undo <kbd>Backspace</kbd></button>
</section>
<p id="status" role="status" aria-live="polite"></p>
<p class="help">Press a class's key (shown on its button), <kbd>Space</kbd> to skip, <kbd>Backspace</kbd> or
<kbd>Ctrl</kbd>+<kbd>Z</kbd> to undo. Every answer is saved at once.</p>
<script>
"use strict";
let state = null;
let busy = false;
const keyToLabel = new Map();

function render(next) {
  state = next;
  const c = state.counts;
  document.getElementById("progress").textContent =
    `${c.labelled} of ${c.total} labelled` + (c.skipped ? `, ${c.skipped} skipped` : "");
  const current = state.current;
  document.getElementById("work").hidden = current === null;
  document.getElementById("done").hidden = current !== null;
  document.getElementById("undo").disabled = !state.can_undo;
  document.getElementById("undo-done").disabled = !state.can_undo;
  if (current !== null) {
    const image = document.getElementById("image");
    image.src = `/image/${current.index}`;
    image.dataset.index = current.index;
    image.alt = `image ${current.index + 1} of ${c.total}: ${current.name}`;
    document.getElementById("path").textContent = current.path;
  }
  document.body.dataset.current = current === null ? "" : String(current.index);
}

function buildButtons(classes) {
  const group = document.getElementById("classes");
  group.replaceChildren();
  keyToLabel.clear();
  for (const entry of classes) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = entry.name;
    button.append(entry.name);
    for (const key of entry.keys) {
      keyToLabel.set(key, entry.name);
      const kbd = document.createElement("kbd");
      kbd.textContent = key;
      button.append(" ", kbd);
    }
    button.addEventListener("click", () => answer("label", entry.name));
    group.append(button);
  }
}

async function call(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: {"Content-Type": "application/json"},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json();
  if (!response.ok) throw new Error(payload.detail || response.statusText);
  return payload;
}

async function answer(kind, label) {
  if (busy || !state) return;
  if (kind !== "undo" && state.current === null) return;
  busy = true;
  try {
    let next;
    if (kind === "undo") next = await call("/api/undo", {});
    else if (kind === "skip") next = await call("/api/skip", {index: state.current.index});
    else next = await call("/api/label", {index: state.current.index, label});
    const said = kind === "label" ? `saved: ${label}` : kind === "skip" ? "skipped" : "undone";
    document.getElementById("status").textContent = said;
    render(next);
  } catch (error) {
    document.getElementById("status").textContent = `not saved: ${error.message}`;
  } finally {
    busy = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.altKey || event.metaKey) return;
  if (event.ctrlKey) {
    if (event.key.toLowerCase() === "z") { event.preventDefault(); answer("undo"); }
    return;
  }
  if (event.key === "Backspace") { event.preventDefault(); answer("undo"); return; }
  if (event.key === " ") { event.preventDefault(); answer("skip"); return; }
  const label = keyToLabel.get(event.key.toLowerCase());
  if (label !== undefined) { event.preventDefault(); answer("label", label); }
});
document.getElementById("skip").addEventListener("click", () => answer("skip"));
document.getElementById("undo").addEventListener("click", () => answer("undo"));
document.getElementById("undo-done").addEventListener("click", () => answer("undo"));

call("/api/state")
  .then((first) => { buildButtons(first.classes); render(first); document.body.dataset.ready = "1"; })
  .catch((error) => { document.getElementById("status").textContent = `cannot load: ${error.message}`; });
</script>
</body>
</html>
"""
