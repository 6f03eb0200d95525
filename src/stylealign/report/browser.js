// The trace browser: draws one problem's traces from the embedded JSON. Text goes in as text nodes only.
(() => {
  const data = JSON.parse(document.getElementById("tb-data").textContent);
  const select = document.getElementById("tb-problem");
  const search = document.getElementById("tb-search");
  const showDiff = document.getElementById("tb-diff");
  const view = document.getElementById("tb-view");
  const STOPS = [[255, 247, 236], [253, 212, 158], [252, 141, 89], [215, 48, 31], [127, 0, 0]]; // ColorBrewer OrRd
  const max = data.scale_max;

  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const shade = (nll) => {
    const t = Math.max(0, Math.min(1, nll / max)) * (STOPS.length - 1);
    const i = Math.min(Math.floor(t), STOPS.length - 2);
    const f = t - i;
    return {rgb: `rgb(${STOPS[i].map((v, k) => Math.round(v + f * (STOPS[i + 1][k] - v))).join(",")})`, dark: t > 2.4};
  };
  const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v));

  function legend() {
    const box = document.getElementById("tb-legend");
    box.append(el("span", "tb-legend-label", "student NLL per token (nats):"));
    const bar = el("span", "tb-legend-bar");
    bar.style.background = `linear-gradient(to right, ${STOPS.map((c) => `rgb(${c.join(",")})`).join(", ")})`;
    box.append(el("span", "tb-tick", "0"), bar, el("span", "tb-tick", `≥ ${max}`));
    const marks = el("span", "tb-legend-label");
    marks.append(" · marks: ", el("span", "mark step", "step 2"), " step boundary ",
      el("span", "mark quarter", "Q2"), " quarter of the response tokens · ",
      el("ins", null, "inserted"), " ", el("del", null, "deleted"), " vs parent");
    box.append(marks);
  }

  function heat(trace, body) {
    if (!trace.nll.length) {
      body.append(el("div", "tb-note", "no per-token NLL stored for this trace (run the score stage again)"));
      body.append(trace.text);
      return;
    }
    const text = trace.text;
    let pos = 0;
    let m = 0;
    const marksUpTo = (limit) => {
      while (m < trace.marks.length && trace.marks[m][0] <= limit) {
        body.append(el("span", `mark ${trace.marks[m][2]}`, trace.marks[m][1]));
        m += 1;
      }
    };
    trace.spans.forEach(([s, e], i) => {
      if (s > pos) {
        marksUpTo(pos);
        body.append(text.slice(pos, s));
        pos = s;
      }
      const start = Math.max(s, pos);
      if (e <= start) return;
      marksUpTo(start);
      const nll = trace.nll[i] / 1000;
      const token = text.slice(start, e);
      const span = el("span", "tok", token);
      const colour = shade(nll);
      span.dataset.nll = nll.toFixed(3);
      span.title = `${JSON.stringify(token)}  NLL ${nll.toFixed(3)}`;
      span.style.background = colour.rgb;
      if (colour.dark) span.style.color = "#fff";
      body.append(span);
      pos = e;
    });
    marksUpTo(text.length);
    if (pos < text.length) body.append(text.slice(pos));
  }

  function diff(trace, body) {
    for (const [op, words] of trace.diff) {
      body.append(op === "=" ? words : el(op === "+" ? "ins" : "del", null, words));
    }
  }

  function column(trace) {
    const col = el("div", "tb-col");
    col.dataset.stream = trace.stream;
    const head = el("div", "tb-head");
    head.append(el("strong", null, trace.stream));
    if (trace.correct !== null && trace.correct !== undefined) {
      head.append(el("span", trace.correct ? "ok" : "bad", trace.correct ? " ✓ correct" : " ✗ wrong"));
    }
    const stats = Object.entries(trace.metrics).map(([k, v]) => `${k.replaceAll("_", " ")} ${fmt(v)}`).join(" · ");
    head.append(el("div", "tb-stats", stats));
    if (trace.parent) {
      const added = trace.diff.filter(([op]) => op === "+").reduce((n, [, w]) => n + w.split(/\s+/).filter(Boolean).length, 0);
      const removed = trace.diff.filter(([op]) => op === "-").reduce((n, [, w]) => n + w.split(/\s+/).filter(Boolean).length, 0);
      head.append(el("div", "tb-stats", `vs parent (${trace.parent.stream || "sample"}): +${added} / −${removed} words`));
    }
    col.append(head);
    const body = el("div", "tb-trace");
    if (trace.parent && showDiff.checked) diff(trace, body); else heat(trace, body);
    col.append(body);
    return col;
  }

  function render() {
    view.replaceChildren();
    const problem = data.problems[Number(select.value)];
    if (!problem) return;
    view.dataset.problem = problem.id;
    const head = el("div", "tb-problem");
    head.append(el("strong", null, problem.id), el("span", "tb-why", problem.why));
    head.append(el("div", "tb-question", problem.question));
    const grid = el("div", "tb-grid");
    problem.traces.forEach((t) => grid.append(column(t)));
    view.append(head, grid);
  }

  function fill() {
    const query = search.value.trim().toLowerCase();
    const current = select.value;
    select.replaceChildren();
    const groups = new Map();
    data.problems.forEach((p, i) => {
      if (query && !p.id.toLowerCase().includes(query) && !p.question.toLowerCase().includes(query)) return;
      if (!groups.has(p.why)) groups.set(p.why, el("optgroup"));
      const group = groups.get(p.why);
      group.label = p.why;
      const option = el("option", null, `${p.id} — ${p.question.replace(/\s+/g, " ").slice(0, 90)}`);
      option.value = String(i);
      group.append(option);
    });
    groups.forEach((g) => select.append(g));
    const values = [...select.options].map((o) => o.value);
    select.value = values.includes(current) ? current : (values[0] ?? "");
    render();
  }

  if (!data.problems.length) return;
  legend();
  select.addEventListener("change", render);
  search.addEventListener("input", fill);
  showDiff.addEventListener("change", render);
  fill();
})();
