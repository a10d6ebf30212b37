"""The try-it page's HTML: one file, no external assets (the page must work on a machine with no internet).

It POSTs the dropped (or picked) file's bytes to /predict?name=<file name> and shows the answer: the top-k labels
as a list with bars, the attribution overlay when there is one, or the error in words. The page's state is on
<body data-state="idle|busy|done|error"> for scripts and tests to wait on.
"""

PAGE_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Try {endpoint}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; padding: 0 1rem; max-width: 52rem;
       color: #1d2733; }}
h1 {{ font-size: 1.35rem; margin-bottom: .2rem; }}
.meta {{ color: #5b6775; margin-top: 0; }}
#drop {{ display: block; margin: 1rem 0; border: 2px dashed #8a97a6; border-radius: 10px; padding: 2.2rem;
         text-align: center; cursor: pointer; }}
#drop.over {{ background: #eef4fb; border-color: #2f6fb3; }}
#result {{ display: flex; gap: 2rem; margin-top: 1.5rem; flex-wrap: wrap; }}
#labels {{ min-width: 18rem; padding-left: 1.4rem; }}
#labels li {{ margin: .3rem 0; }}
.bar {{ display: inline-block; height: .7rem; background: #2f6fb3; vertical-align: middle; margin-left: .5rem; }}
#overlay {{ max-width: 100%; image-rendering: pixelated; }}
#message.error {{ color: #a3211a; }}
</style>
</head>
<body data-state="idle">
<h1>Try endpoint <code>{endpoint}</code></h1>
<p class="meta">target: {target} &middot; drop an image (JPEG, PNG, ...) to see what the model says{overlay_hint}</p>
<label id="drop" for="file">Drop an image here, or click to pick one
  <input type="file" id="file" accept="image/*" hidden>
</label>
<p id="message"></p>
<div id="result">
  <ol id="labels"></ol>
  <figure><img id="overlay" alt="attribution overlay" hidden><figcaption id="overlay-note"></figcaption></figure>
</div>
<script>
const drop = document.getElementById("drop"), input = document.getElementById("file");
const labels = document.getElementById("labels"), overlay = document.getElementById("overlay");
const message = document.getElementById("message"), note = document.getElementById("overlay-note");

function show(state, text) {{
  document.body.dataset.state = state;
  message.textContent = text;
  message.className = state === "error" ? "error" : "";
}}

async function send(file) {{
  labels.replaceChildren(); overlay.hidden = true; note.textContent = "";
  show("busy", "asking the endpoint about " + file.name + " ...");
  let answer;
  try {{
    const response = await fetch("/predict?name=" + encodeURIComponent(file.name), {{method: "POST", body: file}});
    answer = await response.json();
  }} catch (err) {{
    show("error", "the try-it server did not answer (" + err + "): is `pipeline.py ui` still running?");
    return;
  }}
  if (answer.error) {{ show("error", answer.error); return; }}
  for (const entry of answer.top_k) {{
    const item = document.createElement("li"), bar = document.createElement("span");
    item.dataset.label = entry.label; item.dataset.probability = entry.probability;
    item.textContent = entry.label + " " + entry.probability.toFixed(3);
    bar.className = "bar"; bar.style.width = Math.max(1, Math.round(entry.probability * 180)) + "px";
    item.append(bar); labels.append(item);
  }}
  if (answer.overlay) {{ overlay.src = answer.overlay; overlay.hidden = false; }}
  note.textContent = answer.overlay_note || "";
  show("done", file.name);
}}

input.addEventListener("change", () => input.files.length && send(input.files[0]));
drop.addEventListener("dragover", e => {{ e.preventDefault(); drop.classList.add("over"); }});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => {{
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) send(e.dataTransfer.files[0]);
}});
</script>
</body>
</html>
"""
