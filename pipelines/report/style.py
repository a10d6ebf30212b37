"""The report's stylesheet, inlined into the page (the page loads nothing from anywhere)."""

CSS = """
:root { --ok: #2e7d32; --bad: #c62828; --run: #1565c0; --warn: #ef6c00; --none: #757575; --line: #e0e0e0;
        --soft: #f7f8fa; --text: #1f2328; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--text); background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 20px 28px 40px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 8px; }
section { margin: 26px 0; }
code, .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; word-break: break-all; }
.subtitle { color: #57606a; margin-bottom: 14px; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: 8px 0; z-index: 1; }
nav a { margin-right: 14px; color: var(--run); text-decoration: none; font-weight: 600; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12.5px; font-weight: 600;
         color: #fff; background: var(--none); white-space: nowrap; }
.badge.ok { background: var(--ok); } .badge.bad { background: var(--bad); } .badge.run { background: var(--run); }
.badge.warn { background: var(--warn); } .badge.none { background: #bdbdbd; color: #212121; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.card { flex: 1 1 130px; background: var(--soft); border: 1px solid var(--line); border-radius: 8px;
        padding: 10px 14px; }
.card .label { color: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 650; margin-top: 2px; }
.card .value.small { font-size: 14px; }
.card .note { font-size: 12.5px; color: #57606a; margin-top: 4px; }
.alert { border-left: 4px solid var(--bad); background: #fdecea; padding: 10px 14px; border-radius: 4px;
         margin: 10px 0; white-space: pre-wrap; }
.missing { color: #57606a; background: var(--soft); border: 1px dashed #bdbdbd; border-radius: 6px;
           padding: 10px 14px; margin: 8px 0; }
.missing b { color: var(--text); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; font-size: 13px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff8e1; font-weight: 600; }
tr.issue td { background: #fff4f2; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 8px 0; }
dl.facts dt { color: #57606a; } dl.facts dd { margin: 0; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }
.panel { border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
img.chart { max-width: 100%; height: auto; display: block; margin: 8px 0; border: 1px solid var(--line);
            border-radius: 6px; }
.dag-wrap { overflow-x: auto; border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: #fff; }
svg.dag { display: block; margin: 0 auto; max-width: 100%; height: auto; }
svg.dag .step-name { font-weight: 650; font-size: 14px; fill: #1f2328; }
svg.dag .step-meta { font-size: 12px; }
svg.dag .edge-label { font-size: 12px; fill: #424242; font-style: italic; }
.bar { background: #e3f2fd; border-radius: 3px; height: 8px; margin-top: 4px; }
.bar > span { display: block; background: var(--run); height: 8px; border-radius: 3px; }
span.detail { white-space: pre-line; }
code.kv { word-break: normal; white-space: nowrap; }
ul.recs li { margin: 4px 0; }
.params { columns: 2; column-gap: 28px; }
.params div { break-inside: avoid; padding: 2px 0; border-bottom: 1px dotted var(--line); }
.params span.k { color: #57606a; margin-right: 8px; }
.legend span { margin-right: 14px; font-size: 12.5px; }
.legend i { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 5px;
            vertical-align: -1px; border: 2px solid; }
.verdict { border-left: 4px solid var(--ok); background: #edf7ed; padding: 10px 14px; border-radius: 4px;
           margin: 10px 0; font-weight: 600; }
.verdict.act { border-left-color: var(--warn); background: #fff4e5; }
.overlays { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.overlays figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px; background: #fff; }
.overlays figure.wrong { border-color: var(--bad); }
.overlays img { width: 100%; height: auto; display: block; image-rendering: pixelated; }
.overlays figcaption { font-size: 12.5px; margin-top: 4px; }
footer { color: #57606a; font-size: 12.5px; border-top: 1px solid var(--line); padding-top: 10px; margin-top: 30px; }
"""
